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
