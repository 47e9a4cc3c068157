//! Skyscope: a capability-based microkernel that is also a hypervisor.
//!
//! This binary is the hardware glue around `skyscope-core`: boot, traps,
//! page tables, the interrupt controller, the timer and the console. It
//! starts the root task at EL0 and from then on only reacts to its traps.
#![no_std]
#![no_main]
#![forbid(clippy::undocumented_unsafe_blocks)]

mod arch;
mod cell;
mod console;
mod drivers;
mod kernel;
mod loader;
mod thread;
mod trap;

use arch::{
    PageTables, Permissions, UserContext,
    gicv3::Gic,
    platform::Platform,
    power::{self, PowerControl},
};
use core::sync::atomic::{AtomicBool, Ordering};
use skyscope_abi::{BootInfo, bootinfo as abi_boot};
use skyscope_core::{
    PhysAddr, VirtAddr,
    addr::PAGE_SIZE,
    memory::{FreeRegions, Region},
};
use zerocopy::IntoBytes;

/// The root task's ELF image, built by `cargo xtask` before the kernel.
static ROOT_TASK_ELF: &[u8] = include_bytes!(env!("SKYSCOPE_ROOT_TASK_ELF"));

/// Kernel timer interrupts per second.
const TICK_HZ: u64 = 100;
/// ASID of the root task's address space.
const ROOT_ASID: u16 = 1;
/// Exit status reported to the host when the kernel panics.
pub const KERNEL_PANIC_STATUS: u64 = 3;

/// Rust entry point, called by `arch::boot` on the kernel stack with the
/// MMU on and the kernel running in the upper half.
pub extern "C" fn kernel_main(loader_x0: u64) -> ! {
    let platform = match arch::platform::discover(loader_x0) {
        Ok(p) => p,
        // Without a device tree there is no console to report on.
        Err(_) => power::halt(),
    };
    // SAFETY: the UART range comes from the device tree and lies in the
    // first gigabyte, which the boot map maps as device memory (and the
    // final kernel map maps again at the same address).
    unsafe { console::init(arch::phys_to_virt(platform.uart.start)) };
    let power = PowerControl {
        psci: platform.psci,
        semihosting: platform.has_bootarg("exit=semihosting"),
    };
    power.make_global();

    let (midr, vhe_supported) = arch::cpu_description();
    kprintln!();
    kprintln!(
        "Skyscope v{} - capability microkernel and hypervisor (aarch64)",
        env!("CARGO_PKG_VERSION")
    );
    kprintln!(
        "cpu: MIDR {midr:#010x}, EL2 with VHE {}",
        if arch::vhe_enabled() && vhe_supported {
            "on (HCR_EL2.E2H=1)"
        } else {
            "OFF"
        }
    );
    if !(arch::vhe_enabled() && vhe_supported) {
        panic!("this CPU lacks VHE (FEAT_VHE); use -cpu max, cortex-a76 or neoverse-n1");
    }

    let (image_start, image_end) = arch::boot::kernel_image_phys();
    let mut free = usable_memory(&platform, image_start, image_end);
    kprintln!(
        "memory: {} MiB RAM in {} bank(s); kernel {:#x}..{:#x}; device tree {:#x} ({} bytes)",
        platform.ram.total() >> 20,
        platform.ram.iter().count(),
        image_start,
        image_end,
        platform.dtb.start.0,
        platform.dtb.size()
    );

    let devices = [platform.uart, platform.gicd, platform.gicr];
    let kernel_tables = arch::mmu::build_kernel_tables(&platform.ram, &devices, &mut || {
        loader::allocate_zeroed(&mut free, PAGE_SIZE)
    })
    .unwrap_or_else(|e| panic!("cannot build the kernel page tables: {e:?}"));
    arch::mmu::activate_kernel_tables(&kernel_tables);
    kprintln!(
        "mmu: kernel in the upper half, W^X, stack guard page; root table {}",
        kernel_tables.root()
    );

    let gic = Gic::init(platform.gicd, platform.gicr).unwrap_or_else(|e| panic!("{e}"));
    kprintln!(
        "gic: GICv3, {} interrupt IDs, redistributor IIDR {:#x}",
        gic.lines(),
        gic.iidr()
    );
    let frequency = arch::timer::frequency();
    let tick_interval = frequency / TICK_HZ;
    arch::timer::init_el0_access();
    gic.enable(platform.hyp_timer_intid);
    arch::timer::arm(tick_interval);
    kprintln!(
        "timer: EL2 physical timer, INTID {}, counter {} Hz, tick {} Hz",
        platform.hyp_timer_intid,
        frequency,
        TICK_HZ
    );

    let thread = start_root_task(&platform, &mut free);
    kprintln!("memory: {} KiB free for user space", free.total() >> 10);
    kernel::install(kernel::Kernel {
        power,
        gic,
        timer_intid: platform.hyp_timer_intid,
        tick_interval,
        ticks: 0,
        thread,
    });
    trap::continue_with(kernel::Next::Resume)
}

/// RAM minus everything already in use: reservations, the device tree,
/// the kernel image, and the first page of physical memory.
fn usable_memory(platform: &Platform, image_start: u64, image_end: u64) -> FreeRegions {
    let mut free = platform.ram.clone();
    let page_round = |r: Region| Region {
        start: r.start.align_down(PAGE_SIZE),
        end: r.end.checked_align_up(PAGE_SIZE).unwrap_or(r.end),
    };
    let in_use = platform.reserved.iter().chain([
        platform.dtb,
        Region {
            start: PhysAddr(image_start),
            end: PhysAddr(image_end),
        },
    ]);
    for r in in_use {
        if free.remove(page_round(r)).is_err() {
            panic!("too many memory regions to track after reserving {r:?}");
        }
    }
    free
}

/// Loads the root task and builds its address space: the ELF segments,
/// a stack (with an unmapped guard page below it), an IPC buffer and the
/// read-only boot-info page.
fn start_root_task(platform: &Platform, free: &mut FreeRegions) -> thread::Thread {
    if ROOT_TASK_ELF.is_empty() {
        panic!("no root task embedded: build the kernel with `cargo xtask build`");
    }
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
        Permissions::READ_WRITE,
    );
    map_new(
        &mut space,
        free,
        abi_boot::IPC_BUFFER_ADDRESS,
        PAGE_SIZE,
        Permissions::READ_WRITE,
    );
    let info_frame = map_new(
        &mut space,
        free,
        abi_boot::BOOT_INFO_ADDRESS,
        PAGE_SIZE,
        Permissions::READ,
    );

    let mut info = BootInfo::new();
    info.ipc_buffer = abi_boot::IPC_BUFFER_ADDRESS;
    info.image_start = image.start;
    info.image_end = image.end;
    info.stack_top = abi_boot::ROOT_STACK_TOP;
    info.stack_size = abi_boot::ROOT_STACK_SIZE;
    info.timer_frequency = arch::timer::frequency();
    info.ram_bytes = platform.ram.total();
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
    thread::Thread {
        name: "root",
        context: UserContext::new_thread(
            image.entry,
            abi_boot::ROOT_STACK_TOP,
            abi_boot::BOOT_INFO_ADDRESS,
        ),
        address_space: space,
        asid: ROOT_ASID,
        state: thread::ThreadState::Runnable,
    }
}

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::Relaxed) {
        power::halt(); // a panic while reporting a panic
    }
    kprintln!("\nKERNEL PANIC: {info}");
    PowerControl::global().shutdown(KERNEL_PANIC_STATUS)
}
