//! The root task: the first (and, at boot, only) user-space program.
//!
//! With `test=NAME` on the kernel command line it runs that in-QEMU test
//! scenario and powers off with its result; with `guest=linux` it runs the
//! Linux guest the boot modules carry under a VMM process ([`linux`]);
//! otherwise it announces itself and waits for interrupts.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use skyscope_abi::{BootInfo, bootinfo::slots, println};

mod linux;

/// The line `cargo xtask run --expect` waits for by default.
pub const BANNER: &str = "Skyscope root task: up";

fn main(boot_info: &'static BootInfo) -> ! {
    if let Some(name) = boot_info.bootarg("test") {
        skyscope_tests::run(name, boot_info);
    }
    if boot_info.bootarg("guest") == Some("linux") {
        linux::run(boot_info);
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
        skyscope_abi::rt::exit(status);
    }
    println!(
        "{BANNER} (image {:#x}..{:#x}, {} MiB RAM, bootargs \"{}\")",
        boot_info.image_start,
        boot_info.image_end,
        boot_info.ram_bytes >> 20,
        boot_info.bootargs()
    );
    println!(
        "Nothing else to run yet; printing the kernel's audit stream. (QEMU: Ctrl-A X quits.)"
    );
    loop {
        skyscope_abi::syscall::wait_for_interrupt();
        drain_audit_log();
    }
}

/// Prints what the kernel's audit stream holds (the root task's debug
/// service for it).
fn drain_audit_log() {
    use skyscope_abi::{audit::Record, invocation::AUDIT_READ_MAX};
    let mut records = [Record::default(); AUDIT_READ_MAX];
    while let Ok((lost, n)) = skyscope_abi::invocation::audit_read(slots::AUDIT_LOG, &mut records) {
        for r in &records[..n] {
            println!(
                "audit #{} at {}: {:?} thread {:#x} object {:#x} detail {:#x} reason {}",
                r.sequence,
                r.time,
                r.kind(),
                r.thread,
                r.object,
                r.detail,
                r.reason
            );
        }
        if n == 0 {
            if lost > 0 {
                println!("audit: {lost} events lost so far");
            }
            break;
        }
    }
}

skyscope_abi::entry!(main);
