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
mod modules;
mod root_task;

mod trap;

use arch::{Platform, PowerControl, power};
use core::sync::atomic::{AtomicBool, Ordering};
use drivers::gicv3::Gic;
use skyscope_core::{
    PhysAddr,
    addr::PAGE_SIZE,
    memory::{FreeRegions, Region},
};

/// Kernel timer interrupts per second.
const TICK_HZ: u64 = 100;
/// Exit status reported to the host when the kernel panics.
pub const KERNEL_PANIC_STATUS: u64 = 3;

/// Rust entry point, called by `arch::boot` on the kernel stack with the
/// MMU on and the kernel running in the upper half.
pub extern "C" fn kernel_main(loader_x0: u64) -> ! {
    let platform = match arch::discover_platform(loader_x0) {
        Ok(p) => p,
        // Without a device tree there is no console to report on.
        Err(_) => power::halt(),
    };
    // SAFETY: the UART range comes from the device tree and lies in the
    // first gigabyte, which the boot map maps as device memory (and the
    // final kernel map maps again at the same address).
    unsafe { console::init(arch::device_virt(platform.uart.start)) };
    arch::set_ram_bounds(&platform.ram);
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

    let (image_start, image_end) = arch::kernel_image_phys();
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
    // Before anything is allocated from `free`: the modules' frames must
    // never be handed out twice.
    let image = Region {
        start: PhysAddr(image_start),
        end: PhysAddr(image_end),
    };
    let boot_modules = modules::discover(&platform, image, &mut free);

    let devices = [platform.uart, platform.gicd, platform.gicr];
    let kernel_tables = arch::build_kernel_tables(&platform.ram, &devices, &mut || {
        loader::allocate_zeroed(&mut free, PAGE_SIZE)
    })
    .unwrap_or_else(|e| panic!("cannot build the kernel page tables: {e:?}"));
    arch::activate_kernel_tables(&kernel_tables);
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
    match platform.uart_intid {
        Some(intid) if (32..gic.lines()).contains(&intid) => {
            console::enable_input(intid);
            gic.enable(intid);
            kprintln!(
                "console: input on INTID {intid}, {} byte buffer",
                console::INPUT_CAPACITY
            );
        }
        _ => kprintln!("console: the UART has no usable interrupt; no console input"),
    }
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

    let (guest, guest_ids, vtr) = arch::init_guest_support();
    kprintln!(
        "vcpu: stage 2 with 39-bit guest-physical spaces, VMIDs up to {}; \
         virtual GIC with {} list registers, {} priority bits",
        guest.max_vmid,
        vtr.list_registers,
        vtr.priority_bits
    );
    let guest_interrupts = arch::GuestInterrupts {
        maintenance: arch::MAINTENANCE_INTID,
        virtual_timer: platform.guest_timer_intids.0,
        physical_timer: platform.guest_timer_intids.1,
    };
    gic.enable(guest_interrupts.maintenance);
    let machine = arch::KernelMachine {
        gic,
        timer_intid: platform.hyp_timer_intid,
        fp_owner: PhysAddr(0),
        counter_frequency: frequency,
        ram: platform.ram.clone(),
        loaded_vcpu: None,
        in_guest: None,
        active_ttbr0: 0,
        // As boot left CPTR_EL2 (FP/SIMD not trapped): the first thread
        // that does not own the unit gets the trap set.
        fp_enabled: true,
        fp_trap_switches: 0,
        guest,
        ticks: 0,
        guest_interrupts,
        armed_vcpus: PhysAddr(0),
        guest_ids,
    };
    let mut core = skyscope_core::Kernel::new(machine);
    root_task::create(
        &mut core,
        &platform,
        &mut free,
        &devices,
        tick_interval,
        &boot_modules,
    );
    let next_tick = arch::timer::now() + tick_interval;
    kernel::install(kernel::State {
        core,
        power,
        tick_interval,
        next_tick,
        armed_at: 0,
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

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::Relaxed) {
        power::halt(); // a panic while reporting a panic
    }
    kprintln!("\nKERNEL PANIC: {info}");
    PowerControl::global().shutdown(KERNEL_PANIC_STATUS)
}
