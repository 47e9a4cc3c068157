//! The root task: the first (and, at boot, only) user-space program.
//!
//! With `test=NAME` on the kernel command line it runs that in-QEMU test
//! scenario and powers off with its result; otherwise it announces itself
//! and waits for interrupts.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use skyscope_abi::{BootInfo, println};

/// The line `cargo xtask run --expect` waits for by default.
pub const BANNER: &str = "Skyscope root task: up";

fn main(boot_info: &'static BootInfo) -> ! {
    if let Some(name) = boot_info.bootarg("test") {
        skyscope_tests::run(name, boot_info);
    }
    if boot_info.bootarg("bench") == Some("ipc") {
        let n = boot_info
            .bootarg("iterations")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        let status = match skyscope_tests::bench::run_ipc(boot_info, n) {
            Ok(_) => 0,
            Err(e) => {
                println!("BENCH-ERROR {e}");
                1
            }
        };
        skyscope_abi::syscall::debug_shutdown(status);
    }
    println!(
        "{BANNER} (image {:#x}..{:#x}, {} MiB RAM, bootargs \"{}\")",
        boot_info.image_start,
        boot_info.image_end,
        boot_info.ram_bytes >> 20,
        boot_info.bootargs()
    );
    println!("Nothing else to run yet; idling. (QEMU: Ctrl-A X quits.)");
    loop {
        skyscope_abi::syscall::wait_for_interrupt();
    }
}

skyscope_abi::entry!(main);
