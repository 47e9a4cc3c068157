//! Boot scenarios: the kernel comes up, the root task runs at EL0, the
//! timer ticks, and user mistakes are reported without hurting the kernel.

use crate::Outcome;
use skyscope_abi::{
    BootInfo, Error,
    bootinfo::{BOOT_INFO_ADDRESS, IPC_BUFFER_ADDRESS, ROOT_STACK_SIZE, ROOT_STACK_TOP, slots},
    println,
    syscall::{self, console_write_raw, counter_now, debug_timer_ticks, raw_syscall},
};

/// The banner itself is checked by the harness on the console; here the
/// root task only confirms it was started with a sane boot-info page.
pub fn kernel_banner(info: &'static BootInfo) -> Outcome {
    check!(
        info.ram_bytes >= 64 << 20,
        "RAM reported as {} bytes",
        info.ram_bytes
    );
    Ok(())
}

pub fn root_task_runs(info: &'static BootInfo) -> Outcome {
    check_eq!(info.stack_top, ROOT_STACK_TOP);
    check_eq!(info.stack_size, ROOT_STACK_SIZE);
    check_eq!(info.ipc_buffer, IPC_BUFFER_ADDRESS);
    check_eq!(info.bootarg("test"), Some("boot::root_task_runs"));
    check!(info.timer_frequency > 0, "timer frequency is 0");

    // This code and this stack are where the boot info says they are.
    let code = root_task_runs as *const () as u64;
    check!(
        (info.image_start..info.image_end).contains(&code),
        "code at {code:#x} outside image {:#x}..{:#x}",
        info.image_start,
        info.image_end
    );
    let local = 0u64;
    let sp = &raw const local as u64;
    check!(
        (ROOT_STACK_TOP - ROOT_STACK_SIZE..ROOT_STACK_TOP).contains(&sp),
        "stack at {sp:#x}"
    );
    check_eq!(core::ptr::from_ref(info) as u64, BOOT_INFO_ADDRESS);

    // The IPC buffer page is private, writable memory.
    let ipc = IPC_BUFFER_ADDRESS as *mut u64;
    for i in 0..512 {
        // SAFETY: the kernel maps the 4 KiB IPC buffer read-write here.
        unsafe { ipc.add(i).write_volatile(i as u64 * 0x0101_0101) };
    }
    for i in 0..512 {
        // SAFETY: as above.
        let v = unsafe { ipc.add(i).read_volatile() };
        check_eq!(v, i as u64 * 0x0101_0101);
    }

    // Deep recursion uses the stack well beyond one page.
    check_eq!(recurse(2000), 2000 * 2001 / 2);

    // FP/SIMD is usable at EL0 (the kernel leaves CPTR_EL2.FPEN open).
    let x = core::hint::black_box(1.5f64);
    check_eq!(x * x + 0.75, 3.0);

    syscall::yield_now();
    println!("  root task at EL0: image, stack, IPC buffer, boot info and FP all as expected");
    Ok(())
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let pad = core::hint::black_box([n; 4]);
    if n == 0 { 0 } else { pad[3] + recurse(n - 1) }
}

pub fn bad_syscalls_return_errors(_: &'static BootInfo) -> Outcome {
    let invalid = Error::InvalidSyscall.code();
    check_eq!(raw_syscall(0xdead, 0, 0), invalid);
    check_eq!(raw_syscall(u64::MAX, 1, 2), invalid);
    check_eq!(raw_syscall(0, 0, 0), invalid);

    let cases: [(&str, u64, u64, Result<(), Error>); 7] = [
        (
            "unmapped buffer",
            0xdead_0000,
            16,
            Err(Error::InvalidUserBuffer),
        ),
        (
            "kernel address",
            0xffff_ff80_4020_0000,
            16,
            Err(Error::InvalidUserBuffer),
        ),
        (
            "buffer running off the IPC page",
            IPC_BUFFER_ADDRESS + 4000,
            200,
            Err(Error::InvalidUserBuffer),
        ),
        (
            "address wraps",
            u64::MAX - 2,
            8,
            Err(Error::InvalidUserBuffer),
        ),
        ("too long", IPC_BUFFER_ADDRESS, 5000, Err(Error::RangeError)),
        ("null", 0, 1, Err(Error::InvalidUserBuffer)),
        ("empty", 0, 0, Ok(())),
    ];
    for (what, address, length, expected) in cases {
        let got = console_write_raw(slots::CONSOLE, address, length);
        check!(
            got == expected,
            "{what}: ConsoleWrite({address:#x}, {length}) gave {got:?}, expected {expected:?}"
        );
    }
    // Still alive and serving valid requests.
    check!(
        console_write_raw(
            slots::CONSOLE,
            b"  kernel still answering\n".as_ptr() as u64,
            25
        )
        .is_ok(),
        "valid write failed"
    );
    Ok(())
}

pub fn timer_interrupt_fires(info: &'static BootInfo) -> Outcome {
    // Spin for 200 ms of counter time without entering the kernel; only
    // timer interrupts taken from EL0 can advance the tick count.
    let before = debug_timer_ticks(slots::DEBUG);
    let start = counter_now();
    let mut last = start;
    while last - start < info.timer_frequency / 5 {
        let now = counter_now();
        check!(now >= last, "counter went backwards: {last} -> {now}");
        last = now;
    }
    let ticks = debug_timer_ticks(slots::DEBUG) - before;
    println!("  {ticks} ticks in 200 ms of spinning at EL0");
    check!(
        (10..=60).contains(&ticks),
        "expected about 20 ticks at 100 Hz, saw {ticks}"
    );

    // `wfi` at EL0 returns only after an interrupt has been taken.
    for _ in 0..5 {
        let t = debug_timer_ticks(slots::DEBUG);
        syscall::wait_for_interrupt();
        let after = debug_timer_ticks(slots::DEBUG);
        check!(after > t, "woke from wfi without a tick ({t} -> {after})");
    }
    Ok(())
}

pub fn user_fault_reported(_: &'static BootInfo) -> Outcome {
    println!("  storing to unmapped address 0xdead0000");
    // SAFETY: deliberately invalid: the store faults, the kernel reports it
    // and stops this thread, so execution never continues past it.
    unsafe { (0xdead_0000 as *mut u64).write_volatile(1) };
    check!(false, "the store to an unmapped address did not fault");
    Ok(())
}

pub fn user_undefined_instruction_reported(_: &'static BootInfo) -> Outcome {
    println!("  executing an undefined instruction");
    // SAFETY: deliberately undefined: the kernel reports the exception and
    // stops this thread.
    unsafe { core::arch::asm!("udf #0x5c") };
    check!(false, "the undefined instruction did not trap");
    Ok(())
}
