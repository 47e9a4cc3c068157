//! Boot scenarios: the kernel comes up, the root task runs at EL0, the
//! timer ticks, boot modules arrive as frames (and a bad bundle is only
//! reported), and user mistakes are reported without hurting the kernel.

use crate::{
    Outcome,
    support::{Env, map_into},
};
use skyscope_abi::{
    BootInfo, CapRights, Error,
    bootinfo::{BOOT_INFO_ADDRESS, IPC_BUFFER_ADDRESS, ROOT_STACK_SIZE, ROOT_STACK_TOP, slots},
    invocation as inv, println,
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

/// Where `modules_handed_over` maps the modules (2 MiB aligned, clear of
/// the thread area and the image).
const MODULE_WINDOW: u64 = 0x30_0000_0000;

pub fn modules_handed_over(info: &'static BootInfo) -> Outcome {
    use crate::modules::{PATTERN_MODULES, pattern_word};
    use skyscope_abi::bundle::{self, MODULE_ALIGN, MODULE_ALIGN_BITS};
    let mut env = Env::new(info);
    let base = info
        .bootarg("modules")
        .and_then(bundle::parse_address)
        .ok_or_else(|| fail!("no modules= address on the command line"))?;
    let expected = bundle::layout(&PATTERN_MODULES.map(|m| (m.name, m.size)))
        .map_err(|e| fail!("the test modules do not lay out: {e}"))?;
    check_eq!(info.modules().len(), PATTERN_MODULES.len());
    let untyped = env
        .ram_untyped(21)
        .ok_or_else(|| fail!("no untyped for page tables"))?;
    let mut window = MODULE_WINDOW;
    for ((module, pattern), layout) in info
        .modules()
        .iter()
        .zip(PATTERN_MODULES)
        .zip(expected.modules())
    {
        let name = pattern.name;
        check_eq!(module.name(), name);
        check_eq!(info.module(name).map(|m| m.size), Some(pattern.size));
        check_eq!(module.size, pattern.size);
        check_eq!(module.frame_bits, u64::from(MODULE_ALIGN_BITS));
        check_eq!(module.frames.len(), pattern.size.div_ceil(MODULE_ALIGN));
        // Each capability is a frame at the module's own place in the
        // bundle, in order, and that memory is in no untyped region.
        let start = base + layout.offset;
        let end = start + layout.span();
        for (k, slot) in (module.frames.start..module.frames.end).enumerate() {
            let got = inv::frame_get_address(slot);
            check!(
                got == Ok(start + k as u64 * MODULE_ALIGN),
                "{name} frame {k} (slot {slot}) is at {got:x?}, expected {:#x}",
                start + k as u64 * MODULE_ALIGN
            );
        }
        for u in info.untyped_regions() {
            let (lo, hi) = (u.paddr, u.paddr + (1u64 << u.size_bits));
            check!(
                hi <= start || end <= lo,
                "untyped {lo:#x}..{hi:#x} overlaps module {name} at {start:#x}..{end:#x}"
            );
        }
        // They are 2 MiB frames: a copy will not map at an address that is
        // only 4 KiB aligned, and the original maps at a 2 MiB one.
        let copy = env
            .copy(module.frames.start, CapRights::READ)
            .map_err(|e| fail!("copy of {name}'s first frame: {e:?}"))?;
        check_eq!(
            inv::frame_map(copy, slots::VSPACE, window + 4096, CapRights::READ, 0),
            Err(Error::AlignmentError)
        );
        for (k, slot) in (module.frames.start..module.frames.end).enumerate() {
            map_into(
                &mut env,
                untyped,
                slots::VSPACE,
                slot,
                window + k as u64 * MODULE_ALIGN,
                CapRights::READ,
                0,
            )
            .map_err(|e| fail!("mapping {name} frame {k}: {e:?}"))?;
        }
        // Every byte: the pattern up to the size, zeros after it.
        let started = counter_now();
        let words = (module.frames.len() * MODULE_ALIGN / 8) as usize;
        // SAFETY: the module's frames were just mapped readable here,
        // contiguously, and nothing writes them while the slice lives.
        let memory = unsafe { core::slice::from_raw_parts(window as *const u64, words) };
        let full = (pattern.size / 8) as usize;
        if let Some(i) = memory[..full]
            .iter()
            .enumerate()
            .position(|(i, &w)| w != pattern_word(pattern.seed, i as u64))
        {
            check!(
                false,
                "{name}: word {i} (offset {:#x}) is {:#x}, expected {:#x}",
                i * 8,
                memory[i],
                pattern_word(pattern.seed, i as u64)
            );
        }
        let tail_bytes = (pattern.size % 8) as usize;
        let last = pattern_word(pattern.seed, full as u64).to_le_bytes();
        let mut keep = [0u8; 8];
        keep[..tail_bytes].copy_from_slice(&last[..tail_bytes]);
        if full < words {
            check_eq!(memory[full], u64::from_le_bytes(keep));
        }
        let padding = memory.get(full + 1..).unwrap_or(&[]);
        check!(
            padding.iter().all(|&w| w == 0),
            "{name}: the last frame is not zero past the module's end"
        );
        let ticks = counter_now() - started;
        let ms = ticks * 1000 / info.timer_frequency.max(1);
        println!(
            "  {name}: {} bytes in {} frame{} of 2 MiB at {start:#x} checked word by word in {ms} ms",
            pattern.size,
            module.frames.len(),
            if module.frames.len() == 1 { "" } else { "s" }
        );
        window += 1 << 30;
    }
    check!(info.module("missing").is_none(), "a module nobody loaded");
    Ok(())
}

pub fn corrupt_modules_reported(info: &'static BootInfo) -> Outcome {
    use skyscope_abi::bundle;
    check_eq!(info.module_count, 0);
    check!(info.modules().is_empty(), "modules from a refused bundle");
    // The refused bundle's memory is not lost: RAM untyped covers it.
    let base = info
        .bootarg("modules")
        .and_then(bundle::parse_address)
        .ok_or_else(|| fail!("no modules= address on the command line"))?;
    let covered = info.untyped_regions().iter().any(|u| {
        u.is_device == 0 && u.paddr <= base && base + (4 << 20) <= u.paddr + (1u64 << u.size_bits)
    });
    check!(
        covered,
        "no RAM untyped covers the refused bundle at {base:#x}"
    );
    println!("  no modules; the refused bundle's memory at {base:#x} is untyped");
    Ok(())
}
