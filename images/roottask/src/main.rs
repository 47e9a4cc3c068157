//! The root task: the first (and, at boot, only) user-space program.
//!
//! With `guest=linux` on the kernel command line it runs the
//! Linux guest the boot modules carry under a VMM process ([`linux`]);
//! otherwise it announces itself and the boot modules it was given, then
//! echoes what is typed at the console (read with `ConsoleRead` when the
//! kernel signals input) and prints the kernel's audit stream.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use skyscope_abi::{
    BootInfo, ObjectType, bootinfo::slots, invocation, ipc, println, syscall,
    syscall::CONSOLE_READ_MAX,
};

mod linux;

/// The line `cargo xtask run --expect` waits for by default.
pub const BANNER: &str = "Skyscope root task: up";

fn main(boot_info: &'static BootInfo) -> ! {
    if boot_info.bootarg("guest") == Some("linux") {
        linux::run(boot_info);
    }
    println!(
        "{BANNER} (image {:#x}..{:#x}, {} MiB RAM, bootargs \"{}\")",
        boot_info.image_start,
        boot_info.image_end,
        boot_info.ram_bytes >> 20,
        boot_info.bootargs()
    );
    for m in boot_info.modules() {
        println!(
            "boot module '{}': {} bytes in {} frames of 2^{} bytes (slots {}..{})",
            m.name(),
            m.size,
            m.frames.len(),
            m.frame_bits,
            m.frames.start,
            m.frames.end
        );
    }
    let listener = listen_to_console(boot_info);
    match listener {
        Some(_) => println!(
            "Nothing else to run yet; echoing what you type (as `typed: ...`) and printing the kernel's audit stream. (QEMU: Ctrl-A X quits.)"
        ),
        None => println!(
            "Nothing else to run yet; printing the kernel's audit stream. (QEMU: Ctrl-A X quits.)"
        ),
    }
    // What was typed before the listener was set raised no signal.
    echo_console_input();
    loop {
        match listener {
            Some(notification) => {
                let _ = ipc::wait(notification);
                echo_console_input();
            }
            None => syscall::wait_for_interrupt(),
        }
        drain_audit_log();
    }
}

/// Makes a notification (in the first empty slot, from the first RAM
/// untyped) and has the kernel signal it when console input arrives.
fn listen_to_console(info: &BootInfo) -> Option<u64> {
    let (index, _) = info
        .untyped_regions()
        .iter()
        .enumerate()
        .find(|(_, u)| u.is_device == 0)?;
    let untyped = info.untyped.start + index as u64;
    let slot = info.empty.start;
    invocation::untyped_retype(
        untyped,
        ObjectType::Notification,
        0,
        slots::CNODE,
        0,
        0,
        slot,
        1,
    )
    .ok()?;
    syscall::console_notify(slots::CONSOLE, slot).ok()?;
    Some(slot)
}

/// Prints what has been typed, escaped, up to 128 characters a line.
fn echo_console_input() {
    let print = |line: &[u8]| {
        // Escaped ASCII is valid UTF-8.
        println!("typed: \"{}\"", core::str::from_utf8(line).unwrap_or("?"));
    };
    let mut chunk = [0u8; CONSOLE_READ_MAX];
    let mut line = [0u8; 128];
    let mut n = 0;
    while let Ok(k @ 1..) = syscall::console_read(slots::CONSOLE, &mut chunk) {
        for &b in &chunk[..k] {
            let escaped = core::ascii::escape_default(b);
            if n + escaped.len() > line.len() {
                print(&line[..n]);
                n = 0;
            }
            for e in escaped {
                line[n] = e;
                n += 1;
            }
        }
    }
    if n > 0 {
        print(&line[..n]);
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
