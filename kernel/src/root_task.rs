//! Builds the root task: its address space, CNode, TCB, and the
//! capabilities to everything else (all free memory as untyped).
//!
//! This is the only place the kernel allocates memory for user space; the
//! boot allocator's leftovers become untyped capabilities at the end, and
//! from then on every kernel object comes from user-space retypes.

use crate::arch::{
    self, KernelMachine, PageTables, UserContext,
    mmu::{UserEntry, walk_user_space},
    platform::Platform,
};
use crate::{kprintln, loader};
use skyscope_abi::{
    BootInfo, CapRights,
    bootinfo::{
        self as abi_boot, BootModule, MAX_BOOT_UNTYPED, ROOT_CNODE_RADIX, SlotRange, UntypedDesc,
        slots,
    },
    bundle::{MODULE_ALIGN, MODULE_ALIGN_BITS},
};
use skyscope_core::{
    Kernel, PhysAddr, VirtAddr,
    addr::PAGE_SIZE,
    bootmodules::Placement,
    cap::{Cap, FrameSize, Mapping, SlotRef},
    machine::{Access, prelude::*},
    memory::{FreeRegions, Region, aligned_blocks},
    object::tcb::{self, ThreadState},
    slot::{SLOT_BITS, SlotStore},
};
use zerocopy::IntoBytes;

/// Priority of the root task (the highest).
const ROOT_PRIORITY: u8 = 255;
/// Largest untyped block handed out (1 GiB).
const MAX_UNTYPED_BLOCK_BITS: u8 = 30;

/// The root task's ELF image, built by `cargo xtask` before the kernel.
static ROOT_TASK_ELF: &[u8] = include_bytes!(env!("SKYSCOPE_ROOT_TASK_ELF"));

/// Boot memory for a kernel object of `2^bits` bytes, zeroed (as retype
/// leaves memory for the objects it creates).
fn allocate(free: &mut FreeRegions, bits: u8) -> PhysAddr {
    let pa = free.allocate(1 << bits, 1 << bits).unwrap_or_else(|_| {
        panic!(
            "out of boot memory allocating {} KiB for the root task",
            (1u64 << bits) >> 10
        )
    });
    arch::zero_phys(pa, 1 << bits);
    pa
}

/// Places capabilities in consecutive root-CNode slots.
struct SlotCursor {
    cnode: PhysAddr,
    next: u64,
}

impl SlotCursor {
    fn slot(&self, index: u64) -> SlotRef {
        SlotRef(self.cnode.0 + (index << SLOT_BITS))
    }

    fn push(&mut self, kernel: &mut Kernel<KernelMachine>, cap: Cap) -> u64 {
        let index = self.next;
        assert!(
            index < 1 << ROOT_CNODE_RADIX,
            "root CNode too small for the boot capabilities"
        );
        kernel.install_original(SlotRef::NONE, self.slot(index), cap);
        self.next += 1;
        index
    }
}

/// Creates the root task and returns its TCB.
pub fn create(
    kernel: &mut Kernel<KernelMachine>,
    platform: &Platform,
    free: &mut FreeRegions,
    kernel_devices: &[Region],
    timeslice: u64,
    modules: &Placement,
) -> PhysAddr {
    if ROOT_TASK_ELF.is_empty() {
        panic!("no root task embedded: build the kernel with `cargo xtask build`");
    }
    // Address space: the ELF segments, a stack (guard page below it), the
    // IPC buffer and the read-only boot-info page.
    let mut space = PageTables::new(true, &mut || loader::allocate_zeroed(free, PAGE_SIZE))
        .unwrap_or_else(|e| panic!("no memory for the root task's page tables: {e:?}"));
    let image = loader::load_elf(ROOT_TASK_ELF, &mut space, free)
        .unwrap_or_else(|e| panic!("cannot load the root task ELF: {e:?}"));
    let map_new = |space: &mut PageTables, free: &mut FreeRegions, va: u64, size: u64, perms| {
        let frames = loader::allocate_zeroed(free, size)
            .unwrap_or_else(|| panic!("no memory for the root task"));
        space
            .map_range(VirtAddr(va), frames, size, perms, &mut || {
                loader::allocate_zeroed(free, PAGE_SIZE)
            })
            .unwrap_or_else(|e| panic!("root task image overlaps its stack or boot pages: {e:?}"));
        frames
    };
    let stack_bottom = abi_boot::ROOT_STACK_TOP - abi_boot::ROOT_STACK_SIZE;
    map_new(
        &mut space,
        free,
        stack_bottom,
        abi_boot::ROOT_STACK_SIZE,
        Access::READ_WRITE,
    );
    let ipc_frame = map_new(
        &mut space,
        free,
        abi_boot::IPC_BUFFER_ADDRESS,
        PAGE_SIZE,
        Access::READ_WRITE,
    );
    let info_frame = map_new(
        &mut space,
        free,
        abi_boot::BOOT_INFO_ADDRESS,
        PAGE_SIZE,
        Access::READ,
    );

    // Kernel objects of the root task, from boot memory.
    let cnode = allocate(free, ROOT_CNODE_RADIX + SLOT_BITS);
    kernel.machine.create_object(
        skyscope_abi::ObjectType::CNode,
        cnode,
        ROOT_CNODE_RADIX + SLOT_BITS,
        false,
    );
    let tcb_bits = skyscope_abi::ObjectType::Tcb.object_bits(0).unwrap_or(11);
    let tcb = allocate(free, tcb_bits);
    kernel
        .machine
        .create_object(skyscope_abi::ObjectType::Tcb, tcb, tcb_bits, false);
    let vspace = space.root();
    let asid = kernel.register_boot_vspace(vspace);

    let mut cursor = SlotCursor {
        cnode,
        next: slots::TCB,
    };
    let all = CapRights::ALL;
    cursor.push(
        kernel,
        Cap::Tcb {
            ptr: tcb,
            rights: all,
        },
    );
    let cnode_cap = Cap::CNode {
        ptr: cnode,
        radix: ROOT_CNODE_RADIX,
        guard_bits: 64 - ROOT_CNODE_RADIX,
        guard: 0,
        rights: all,
    };
    cursor.push(kernel, cnode_cap);
    cursor.push(
        kernel,
        Cap::VSpace {
            ptr: vspace,
            asid,
            rights: all,
        },
    );
    cursor.push(kernel, Cap::IrqControl);
    cursor.push(kernel, Cap::SchedControl);
    let frame = |base: PhysAddr, rights, va: u64| Cap::Frame {
        base,
        size: FrameSize::Small,
        device: false,
        rights,
        mapping: Mapping::new(asid, va),
    };
    cursor.push(
        kernel,
        frame(info_frame, CapRights::READ, abi_boot::BOOT_INFO_ADDRESS),
    );
    cursor.push(kernel, frame(ipc_frame, all, abi_boot::IPC_BUFFER_ADDRESS));
    cursor.next = slots::FIRST_VARIABLE;

    // Capabilities to the root task's own frames and page tables.
    let mut frames = SlotRange {
        start: cursor.next,
        end: cursor.next,
    };
    let mut tables = SlotRange::default();
    walk_user_space(vspace, &mut |e| {
        if let UserEntry::Frame {
            frame: base,
            size,
            vaddr,
            writable,
        } = e
            && vaddr != abi_boot::BOOT_INFO_ADDRESS
            && vaddr != abi_boot::IPC_BUFFER_ADDRESS
        {
            let size = if size == PAGE_SIZE {
                FrameSize::Small
            } else {
                FrameSize::Large
            };
            let rights = if writable { all } else { CapRights::READ };
            cursor.push(
                kernel,
                Cap::Frame {
                    base,
                    size,
                    device: false,
                    rights,
                    mapping: Mapping::new(asid, vaddr),
                },
            );
        }
    });
    frames.end = cursor.next;
    tables.start = cursor.next;
    walk_user_space(vspace, &mut |e| {
        if let UserEntry::Table {
            table,
            level,
            vaddr,
        } = e
        {
            cursor.push(
                kernel,
                Cap::PageTable {
                    ptr: table,
                    mapping: Mapping::new(asid, vaddr),
                    level,
                },
            );
        }
    });
    tables.end = cursor.next;

    // The TCB: CSpace, VSpace and IPC buffer, registers, priority.
    let slot = |i| cursor.slot(i);
    for (from, to) in [
        (slots::CNODE, tcb::slots::CSPACE),
        (slots::VSPACE, tcb::slots::VSPACE),
    ] {
        let cap = kernel.machine.slot(slot(from)).cap;
        kernel.install_derived(slot(from), tcb::slot_ref(tcb, to), cap);
    }
    let ipc_cap = kernel
        .machine
        .slot(slot(slots::IPC_BUFFER_FRAME))
        .cap
        .derive()
        .expect("frame copy");
    kernel.install_derived(
        slot(slots::IPC_BUFFER_FRAME),
        tcb::slot_ref(tcb, tcb::slots::IPC_BUFFER),
        ipc_cap,
    );
    {
        let t = kernel.machine.tcb_mut(tcb);
        t.ipc_buffer = abi_boot::IPC_BUFFER_ADDRESS;
        t.priority = ROOT_PRIORITY;
        t.max_priority = ROOT_PRIORITY;
        t.context = UserContext::new_thread(
            image.entry,
            abi_boot::ROOT_STACK_TOP,
            abi_boot::BOOT_INFO_ADDRESS,
        );
        t.state = ThreadState::Inactive;
    }
    // A scheduling context whose budget is its whole period: the root task
    // is never throttled and shares the processor round robin.
    let sc_bits = skyscope_abi::ObjectType::SchedContext
        .object_bits(0)
        .unwrap_or(8);
    let sc = allocate(free, sc_bits);
    kernel
        .machine
        .create_object(skyscope_abi::ObjectType::SchedContext, sc, sc_bits, false);
    kernel.bind_boot_sched_context(sc, tcb, timeslice, timeslice);
    let saved = cursor.next;
    cursor.next = slots::SCHED_CONTEXT;
    cursor.push(
        kernel,
        Cap::SchedContext {
            ptr: sc,
            rights: all,
        },
    );
    cursor.push(kernel, Cap::AuditLog { rights: all });
    cursor.push(kernel, Cap::Console { rights: all });
    cursor.push(kernel, Cap::PowerControl);
    if cfg!(not(feature = "hardened")) {
        cursor.push(kernel, Cap::Debug);
    }
    cursor.next = saved;
    kernel.resume(tcb).expect("root TCB has a VSpace");

    let mut info = BootInfo::new();
    // Boot modules: 2 MiB frame capabilities over exactly each module's
    // blocks (memory `modules::discover` took out of `free`, so no untyped
    // covers it), unmapped. The kernel zeroes the last frame past the
    // module's end, as the ABI promises, whatever the loader left there;
    // it never reads the module.
    for (i, m) in modules.modules().iter().enumerate() {
        let mut frames = SlotRange {
            start: cursor.next,
            end: cursor.next,
        };
        for k in 0..m.module.frames() {
            cursor.push(
                kernel,
                Cap::Frame {
                    base: PhysAddr(m.base.0 + k * MODULE_ALIGN),
                    size: FrameSize::Large,
                    device: false,
                    rights: all,
                    mapping: Mapping::NONE,
                },
            );
        }
        frames.end = cursor.next;
        let end = m.base.0 + m.module.size;
        arch::zero_phys(PhysAddr(end), m.region().end.0 - end);
        info.modules[i] = BootModule {
            name: m.module.name,
            size: m.module.size,
            frames,
            frame_bits: u64::from(MODULE_ALIGN_BITS),
        };
        info.module_count = i as u64 + 1;
    }

    // Everything left is untyped: RAM first, then device memory.
    let mut untyped = SlotRange {
        start: cursor.next,
        end: cursor.next,
    };
    let mut described = 0usize;
    let mut add_untyped = |kernel: &mut Kernel<KernelMachine>,
                           cursor: &mut SlotCursor,
                           base: PhysAddr,
                           bits: u8,
                           device: bool| {
        if described == MAX_BOOT_UNTYPED {
            return false;
        }
        cursor.push(
            kernel,
            Cap::Untyped {
                base,
                free_offset: 0,
                // Nothing in boot RAM is known to be zero (retype zeroes it
                // before use); device memory is never zeroed.
                zeroed_to: if device { 1 << bits } else { 0 },
                size_bits: bits,
                device,
            },
        );
        info.untyped_list[described] = UntypedDesc {
            paddr: base.0,
            size_bits: bits,
            is_device: device as u8,
            ..Default::default()
        };
        described += 1;
        true
    };
    let mut ram_untyped = 0u64;
    let mut ram_blocks = 0u64;
    for region in free.iter() {
        for (base, bits) in aligned_blocks(region, 12, MAX_UNTYPED_BLOCK_BITS) {
            if add_untyped(kernel, &mut cursor, base, bits, false) {
                ram_untyped += 1 << bits;
                ram_blocks += 1;
            }
        }
    }
    // Device memory: the registers of the devices the device tree
    // describes, except the kernel's own and those that can reach memory
    // by themselves (DMA masters such as the GIC ITS, an SMMU, the PCIe
    // root complex, virtio-mmio and fw_cfg), whose registers would let a
    // thread read and write any RAM. Nothing the tree does not describe.
    let page_round = |r: Region| Region {
        start: r.start.align_down(PAGE_SIZE),
        end: r.end.checked_align_up(PAGE_SIZE).unwrap_or(r.end),
    };
    let mut device = FreeRegions::new();
    for r in platform.devices.iter() {
        if device.add(page_round(r)).is_err() {
            kprintln!("root task: too many device regions; {r:?} not handed out");
        }
    }
    for r in platform
        .ram
        .iter()
        .chain(kernel_devices.iter().copied())
        .chain(platform.withheld.iter())
    {
        let _ = device.remove(page_round(r));
    }
    for r in platform.withheld.iter() {
        kprintln!(
            "root task: withheld DMA-capable device {:#x}..{:#x}",
            r.start.0,
            r.end.0
        );
    }
    let mut dropped = 0;
    for region in device.iter() {
        for (base, bits) in aligned_blocks(region, 12, 39) {
            if !add_untyped(kernel, &mut cursor, base, bits, true) {
                dropped += 1;
            }
        }
    }
    untyped.end = cursor.next;
    if dropped > 0 {
        kprintln!("root task: {dropped} device untyped regions did not fit in the boot info");
    }

    info.ipc_buffer = abi_boot::IPC_BUFFER_ADDRESS;
    info.image_start = image.start;
    info.image_end = image.end;
    info.stack_top = abi_boot::ROOT_STACK_TOP;
    info.stack_size = abi_boot::ROOT_STACK_SIZE;
    info.timer_frequency = arch::timer::frequency();
    info.ram_bytes = platform.ram.total();
    info.image_frames = frames;
    info.page_tables = tables;
    info.untyped = untyped;
    info.empty = SlotRange {
        start: cursor.next,
        end: 1 << ROOT_CNODE_RADIX,
    };
    info.set_bootargs(platform.bootargs());
    arch::copy_to_phys(info_frame, info.as_bytes());

    kprintln!(
        "root task: entry {:#x}, image {:#x}..{:#x} ({} KiB), bootargs \"{}\"",
        image.entry,
        image.start,
        image.end,
        (image.end - image.start) >> 10,
        platform.bootargs()
    );
    kprintln!(
        "root task: {} caps; {} untyped ({} MiB RAM, {} device), {} frames, {} page tables, {} empty slots",
        cursor.next - 1,
        untyped.len(),
        ram_untyped >> 20,
        untyped.len() - ram_blocks,
        frames.len(),
        tables.len(),
        info.empty.len()
    );
    crate::kernel::ROOT_TCB.set(tcb);
    tcb
}
