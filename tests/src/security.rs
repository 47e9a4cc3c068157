//! Security scenarios: each closes a way an unprivileged thread could
//! reach memory or authority its capabilities do not grant, and fails on
//! a kernel that still has the hole.

use crate::{
    Outcome,
    support::{Env, ROOT, ROOT_DEPTH, is_empty, spawn, spawn_in_cspace},
};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use skyscope_abi::{
    BootInfo, CapRights, Error, ObjectType, Syscall,
    bootinfo::{ROOT_CNODE_RADIX, slots},
    invocation as inv, ipc, println,
    syscall::{self, counter_now, raw_syscall},
};

/// Where these scenarios map pages in the root task's address space.
const AREA: u64 = 0x30_0000_0000;

/// A device frame (from a device untyped the boot info lists) is refused
/// as an IPC buffer: the kernel reads and writes IPC buffers through its
/// physmap, which holds RAM only.
pub fn device_frame_not_ipc_buffer(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let device = info
        .untyped_regions()
        .iter()
        .position(|d| d.is_device != 0)
        .map(|i| info.untyped.start + i as u64)
        .ok_or_else(|| fail!("no device untyped in the boot info"))?;
    let frame = env
        .retype(device, ObjectType::Frame4K, 0, 1)
        .map_err(|e| fail!("device frame: {e}"))?;
    let ut = env.private_untyped(16).map_err(|e| fail!("{e}"))?;
    let tcb = env
        .retype(ut, ObjectType::Tcb, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let configure = |frame| {
        inv::tcb_configure(
            tcb,
            0,
            10,
            ROOT,
            64 - ROOT_CNODE_RADIX,
            slots::VSPACE,
            AREA,
            frame,
        )
    };
    check_eq!(configure(frame), Err(Error::InvalidArgument));
    let ram = env
        .retype(ut, ObjectType::Frame4K, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    check_ok!(configure(ram));
    println!("  a device frame is refused as an IPC buffer; a RAM frame is accepted");
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    check_ok!(inv::cnode_delete(ROOT, frame, ROOT_DEPTH));
    Ok(())
}

/// A page-table capability can be neither copied nor minted, so one table
/// is never installed twice (at two levels of one space, or in a VSpace
/// and a GuestSpace at once).
pub fn page_table_maps_once(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(16).map_err(|e| fail!("{e}"))?;
    let space = env
        .retype(ut, ObjectType::VSpace, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let guest = env
        .retype(ut, ObjectType::GuestSpace, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let table = env
        .retype(ut, ObjectType::PageTable, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let spare = env.slot();
    let copy = |src| {
        inv::cnode_copy(
            ROOT,
            spare,
            ROOT_DEPTH,
            ROOT,
            src,
            ROOT_DEPTH,
            CapRights::ALL,
        )
    };
    check_eq!(copy(table), Err(Error::IllegalOperation));
    check_eq!(
        inv::cnode_mint(
            ROOT,
            spare,
            ROOT_DEPTH,
            ROOT,
            table,
            ROOT_DEPTH,
            CapRights::ALL,
            0
        ),
        Err(Error::IllegalOperation)
    );
    check_ok!(inv::page_table_map(table, space, 0x40_0000));
    // Mapped, it still has one capability: a second installation (here at
    // the next level, or in the GuestSpace) is refused.
    check_eq!(copy(table), Err(Error::IllegalOperation));
    check_eq!(
        inv::page_table_map(table, space, 0x40_0000),
        Err(Error::IllegalOperation)
    );
    check_eq!(
        inv::page_table_map(table, guest, 0x40_0000),
        Err(Error::IllegalOperation)
    );
    // Moving keeps the single capability (and its mapping).
    check_ok!(inv::cnode_move(
        ROOT, spare, ROOT_DEPTH, ROOT, table, ROOT_DEPTH
    ));
    check_eq!(
        inv::page_table_map(spare, guest, 0x40_0000),
        Err(Error::IllegalOperation)
    );
    println!("  page-table capabilities: copy and mint refused, a table maps once");
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}

/// Unmapping a page table, or deleting the space it is in, empties it: a
/// frame mapped through it can be deleted and its memory reused without a
/// stale entry waiting in the table to bring it back.
pub fn unmapped_table_is_empty(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(18).map_err(|e| fail!("{e}"))?;
    // The frame comes from its own untyped, so its memory can be reused.
    let frame_ut = env.private_untyped(12).map_err(|e| fail!("{e}"))?;
    let tables = env
        .retype(ut, ObjectType::PageTable, 0, 2)
        .map_err(|e| fail!("{e}"))?;
    let (level2, level3) = (tables, tables + 1);
    let va = AREA;
    check_ok!(inv::page_table_map(level2, slots::VSPACE, va));
    check_ok!(inv::page_table_map(level3, slots::VSPACE, va));
    let frame = env
        .retype(frame_ut, ObjectType::Frame4K, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    check_ok!(inv::frame_map(frame, slots::VSPACE, va, CapRights::ALL, 0));
    // SAFETY: the frame was just mapped read-write at `va`.
    unsafe { (va as *mut u64).write_volatile(0x5ec7e7) };

    // Take the level-2 table out, delete the frame, and make its memory a
    // CNode: a live kernel object.
    check_ok!(inv::page_table_unmap(level2));
    check_ok!(inv::cnode_delete(ROOT, frame, ROOT_DEPTH));
    let cnode = env
        .retype(frame_ut, ObjectType::CNode, 6, 1)
        .map_err(|e| fail!("CNode over the frame's memory: {e}"))?;
    // Put both tables back. The level-3 table's capability still names
    // its old place: unmap it first, as the rules require.
    check_ok!(inv::page_table_map(level2, slots::VSPACE, va));
    check_ok!(inv::page_table_unmap(level3));
    check_ok!(inv::page_table_map(level3, slots::VSPACE, va));
    // Nothing is mapped at `va`: a new frame maps there. (A table that kept
    // its entries would answer DeleteFirst, and `va` would reach the CNode.)
    let probe = env
        .retype(ut, ObjectType::Frame4K, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    check_ok!(inv::frame_map(probe, slots::VSPACE, va, CapRights::ALL, 0));
    check_eq!(crate::support::read(va), 0);

    // Deleting a space empties the tables in it too.
    let space = env
        .retype(ut, ObjectType::VSpace, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let table = env
        .retype(ut, ObjectType::PageTable, 0, 2)
        .map_err(|e| fail!("{e}"))?;
    let other = env
        .retype(ut, ObjectType::Frame4K, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let va2 = AREA + (1 << 30);
    check_ok!(inv::page_table_map(table, space, va2));
    check_ok!(inv::page_table_map(table + 1, space, va2));
    check_ok!(inv::frame_map(other, space, va2, CapRights::ALL, 0));
    check_ok!(inv::cnode_delete(ROOT, space, ROOT_DEPTH));
    for t in [table, table + 1] {
        check_ok!(inv::page_table_unmap(t));
        check_ok!(inv::page_table_map(t, slots::VSPACE, va2));
    }
    let probe2 = env
        .retype(ut, ObjectType::Frame4K, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    check_ok!(inv::frame_map(
        probe2,
        slots::VSPACE,
        va2,
        CapRights::ALL,
        0
    ));
    if !is_empty(slots::DEBUG) {
        check!(
            syscall::debug_check_invariants(slots::DEBUG),
            "kernel invariants (every translation entry has its capability)"
        );
    }
    println!("  unmapped and orphaned tables come back empty; the CNode stays unreachable");
    check_ok!(inv::cnode_delete(ROOT, cnode, ROOT_DEPTH));
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    check_ok!(inv::cnode_revoke(ROOT, frame_ut, ROOT_DEPTH));
    Ok(())
}

/// Results of the unprivileged thread in [`debug_calls_need_cap`].
static ATTEMPTS: [AtomicU64; 12] = [const { AtomicU64::new(u64::MAX) }; 12];
static ATTEMPTS_DONE: AtomicU64 = AtomicU64::new(0);

/// Slots of the unprivileged thread's CSpace (a 4-slot CNode): a
/// notification to say it is done, a console capability without WRITE,
/// an endpoint, nothing.
const DONE_SIGNAL: u64 = 0;
const READ_ONLY_CONSOLE: u64 = 1;
const NOT_A_CONSOLE: u64 = 2;
const NOTHING: u64 = 3;

extern "C" fn unprivileged(_: u64) -> ! {
    let forged = b"SKYSCOPE-TEST security::debug_calls_need_cap: FORGED\n";
    let mut i = 0;
    let mut record = |v: u64| {
        ATTEMPTS[i].store(v, SeqCst);
        i += 1;
    };
    for cap in [READ_ONLY_CONSOLE, NOT_A_CONSOLE, NOTHING] {
        record(raw3(
            Syscall::ConsoleWrite,
            cap,
            forged.as_ptr() as u64,
            forged.len() as u64,
        ));
    }
    for cap in [READ_ONLY_CONSOLE, NOT_A_CONSOLE, NOTHING] {
        record(raw3(Syscall::PowerOff, cap, 0, 0));
    }
    for cap in [NOT_A_CONSOLE, NOTHING] {
        record(raw3(Syscall::DebugFastpath, cap, 0, 0));
        record(raw3(Syscall::DebugCheckInvariants, cap, 0, 0));
    }
    record(raw3(Syscall::DebugTimerTicks, NOTHING, 0, 0));
    // Also the old convention (status in x0, no capability argument).
    record(raw_syscall(Syscall::PowerOff as u64, 0, 0));
    ATTEMPTS_DONE.store(1, SeqCst);
    let _ = ipc::signal(DONE_SIGNAL);
    loop {
        syscall::wait_for_interrupt();
    }
}

fn raw3(number: Syscall, a0: u64, a1: u64, a2: u64) -> u64 {
    syscall::raw_syscall7(number as u64, [a0, a1, a2, 0, 0, 0, 0])[0]
}

/// Console output, power off and the debug syscalls need capabilities
/// that only the root task is given: a thread without them gets error
/// codes (and in the `hardened` kernel the debug syscalls do not exist).
pub fn debug_calls_need_cap(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(18).map_err(|e| fail!("{e}"))?;
    let cspace = env
        .retype(ut, ObjectType::CNode, 2, 1)
        .map_err(|e| fail!("{e}"))?;
    check_ok!(inv::cnode_copy(
        cspace,
        READ_ONLY_CONSOLE,
        2,
        ROOT,
        slots::CONSOLE,
        ROOT_DEPTH,
        CapRights::READ
    ));
    let ep = env
        .retype(ut, ObjectType::Endpoint, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    check_ok!(inv::cnode_copy(
        cspace,
        NOT_A_CONSOLE,
        2,
        ROOT,
        ep,
        ROOT_DEPTH,
        CapRights::ALL
    ));
    let done = env
        .retype(ut, ObjectType::Notification, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    check_ok!(inv::cnode_copy(
        cspace,
        DONE_SIGNAL,
        2,
        ROOT,
        done,
        ROOT_DEPTH,
        CapRights::WRITE
    ));
    spawn_in_cspace(
        &mut env,
        ut,
        20,
        unprivileged,
        0,
        (100, 10_000, 10_000),
        0,
        (cspace, 62),
    )
    .map_err(|e| fail!("spawn: {e}"))?;
    check_ok!(ipc::wait(done).map(drop));
    check_eq!(ATTEMPTS_DONE.load(SeqCst), 1);
    let hardened = is_empty(slots::DEBUG);
    let debug_error = |wrong_type: Error| {
        if hardened {
            Error::InvalidSyscall
        } else {
            wrong_type
        }
    };
    let expected = [
        Error::InsufficientRights,
        Error::WrongType,
        Error::InvalidCapability,
        Error::WrongType,
        Error::WrongType,
        Error::InvalidCapability,
        debug_error(Error::WrongType),
        debug_error(Error::WrongType),
        debug_error(Error::InvalidCapability),
        debug_error(Error::InvalidCapability),
        debug_error(Error::InvalidCapability),
        // Slot 0 holds the notification.
        Error::WrongType,
    ];
    for (i, want) in expected.iter().enumerate() {
        let got = ATTEMPTS[i].load(SeqCst);
        check!(
            got == want.code(),
            "attempt {i}: got {got} ({:?}), expected {want:?}",
            Error::from_code(got)
        );
    }
    // The root task's own capabilities work.
    check_ok!(syscall::console_write(
        slots::CONSOLE,
        b"  console, power and debug syscalls refused without their capabilities\n"
    ));
    if hardened {
        check_eq!(
            raw3(Syscall::DebugTimerTicks, slots::DEBUG, 0, 0),
            Error::InvalidSyscall.code()
        );
        println!("  hardened kernel: no debug syscalls, not even for the root task");
    } else {
        let before = syscall::debug_timer_ticks(slots::DEBUG);
        check!(before > 0 && before < 1 << 40, "tick count {before}");
    }
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}

/// A pause longer than this (1 ms of counter ticks) means the periodic
/// thread was off the processor.
static GAP_OF_A_NEW_PERIOD: AtomicU64 = AtomicU64::new(u64::MAX);
/// Set by the periodic thread of [`revoke_is_preemptible`].
static LONGEST_GAP: AtomicU64 = AtomicU64::new(0);
static RUNS: AtomicU64 = AtomicU64::new(0);
static RUNS_DURING_REVOKE: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicU64 = AtomicU64::new(0);
static WORK: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// A high-priority thread on a 2 ms / 10 ms budget: records the longest
/// time it went without running (budget exhausted: ~8 ms; a kernel that
/// cannot be preempted: as long as its longest operation).
extern "C" fn periodic(_: u64) -> ! {
    let mut last = counter_now();
    while STOP.load(SeqCst) == 0 {
        let now = counter_now();
        let gap = now - last;
        if gap > LONGEST_GAP.load(SeqCst) {
            LONGEST_GAP.store(gap, SeqCst);
        }
        if gap > GAP_OF_A_NEW_PERIOD.load(SeqCst) {
            RUNS.fetch_add(1, SeqCst);
        }
        last = now;
    }
    loop {
        syscall::wait_for_interrupt();
    }
}

/// The low-priority worker: a huge retype, then a huge revoke.
extern "C" fn long_operations(_: u64) -> ! {
    let [big, frames_at, small, cnode_at, done] = [0, 1, 2, 3, 4].map(|i| WORK[i].load(SeqCst));
    let start = counter_now();
    // 128 frames of 2 MiB: 256 MiB to zero.
    let retyped = inv::untyped_retype(big, ObjectType::Frame2M, 0, ROOT, 0, 0, frames_at, 128);
    let after_retype = counter_now();
    // A 65,536-slot CNode full of endpoints, then revoke their untyped.
    let mut filled = inv::untyped_retype(small, ObjectType::CNode, 16, ROOT, 0, 0, cnode_at, 1);
    for chunk in 0..256u64 {
        if filled.is_ok() {
            filled = inv::untyped_retype(
                small,
                ObjectType::Endpoint,
                0,
                ROOT,
                cnode_at,
                ROOT_DEPTH,
                chunk * 256,
                256,
            );
        }
    }
    let revoke_start = counter_now();
    let runs_before = RUNS.load(SeqCst);
    let revoked = inv::cnode_revoke(ROOT, small, ROOT_DEPTH);
    let end = counter_now();
    RUNS_DURING_REVOKE.store(RUNS.load(SeqCst) - runs_before, SeqCst);
    let ok = retyped.is_ok() && filled.is_ok() && revoked.is_ok();
    WORK[0].store(after_retype - start, SeqCst);
    WORK[1].store(end - revoke_start, SeqCst);
    WORK[2].store(u64::from(ok), SeqCst);
    let _ = ipc::signal(done);
    loop {
        syscall::wait_for_interrupt();
    }
}

/// A huge retype (256 MiB to zero) and a huge revoke (65,536 endpoints and
/// the CNode holding them) run in a low-priority thread while a
/// high-priority periodic thread keeps getting the processor every period:
/// the long operations stop at preemption points and continue afterwards.
pub fn revoke_is_preemptible(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let threads = env.private_untyped(20).map_err(|e| fail!("{e}"))?;
    let big = env.private_untyped(28).map_err(|e| fail!("{e}"))?;
    let small = env.private_untyped(23).map_err(|e| fail!("{e}"))?;
    let frames_at = env.slots(128);
    let cnode_at = env.slot();
    let done = env
        .retype(threads, ObjectType::Notification, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    for (i, v) in [big, frames_at, small, cnode_at, done]
        .into_iter()
        .enumerate()
    {
        WORK[i].store(v, SeqCst);
    }
    let frequency = info.timer_frequency;
    GAP_OF_A_NEW_PERIOD.store(frequency / 1000, SeqCst);
    spawn(&mut env, threads, 30, periodic, 0, 200, 2_000, 10_000).map_err(|e| fail!("{e}"))?;
    spawn(
        &mut env,
        threads,
        31,
        long_operations,
        0,
        100,
        10_000,
        10_000,
    )
    .map_err(|e| fail!("{e}"))?;
    // The root task (priority 255) waits until the worker is done.
    check_ok!(ipc::wait(done).map(drop));
    STOP.store(1, SeqCst);
    let ms = |ticks: u64| ticks * 1000 / frequency;
    let (retype_ms, revoke_ms) = (ms(WORK[0].load(SeqCst)), ms(WORK[1].load(SeqCst)));
    let gap_ms = ms(LONGEST_GAP.load(SeqCst));
    println!(
        "  retype of 256 MiB took {retype_ms} ms, revoke of 65,536 endpoints {revoke_ms} ms; \
         the 2 ms / 10 ms thread ran {} times, longest wait {gap_ms} ms",
        RUNS.load(SeqCst)
    );
    check_eq!(WORK[2].load(SeqCst), 1);
    // The operations took many periods: without preemption points the
    // periodic thread would have waited that long.
    check!(
        retype_ms + revoke_ms > 100,
        "operations too short to show anything ({retype_ms} + {revoke_ms} ms)"
    );
    check!(
        gap_ms <= 40,
        "periodic thread waited {gap_ms} ms (period 10 ms)"
    );
    // And during the revoke alone it got (nearly) every period.
    let during = RUNS_DURING_REVOKE.load(SeqCst);
    check!(
        during + 2 >= revoke_ms / 10,
        "periodic thread ran {during} times during a {revoke_ms} ms revoke"
    );
    check_ok!(inv::cnode_revoke(ROOT, big, ROOT_DEPTH));
    Ok(())
}

/// Where the guest scenarios map their guests' RAM in the root task.
const GUEST_WINDOWS: [u64; 2] = [0x34_0000_0000, 0x35_0000_0000];

/// Two guests, each setting its own pointer-authentication keys: each
/// finds zeros at first (never the other's keys) and always reads back
/// its own, however their runs interleave on the one CPU.
pub fn guest_keys_isolated(info: &'static BootInfo) -> Outcome {
    use crate::vm::{build_guest_at, from_guest};
    use skyscope_vmm::{arch::aarch64::exit::Exit, channel::Resume, vcpu::call_arguments};
    let mut env = Env::new(info);
    let ut = env.private_untyped(20).map_err(|e| fail!("{e}"))?;
    let keys = [0x1111_2222_3333_4444u64, 0x5555_6666_7777_8888];
    let mut guests = [0, 1].map(|i| {
        build_guest_at(
            &mut env,
            ut,
            skyscope_guest_minimal::keys(),
            (10_000, 10_000),
            keys[i],
            GUEST_WINDOWS[i],
        )
    });
    let [a, b] = &mut guests;
    let guests = [
        a.as_mut().map_err(|_| fail!("guest A"))?,
        b.as_mut().map_err(|_| fail!("guest B"))?,
    ];
    // First exits: each reports what it found before setting its keys.
    let mut pending = [None, None];
    for (i, g) in guests.iter().enumerate() {
        let m = g.channel.wait().map_err(|e| fail!("wait: {e}"))?;
        from_guest(&m)?;
        check_eq!(m.exit, Exit::Hypercall { imm: 1 });
        let x = call_arguments(g.vcpu.tcb).map_err(|e| fail!("{e}"))?;
        check!(
            x[0] == 0 && x[1] == 0,
            "guest {i} started with keys {:#x}/{:#x}",
            x[0],
            x[1]
        );
        pending[i] = Some(m);
    }
    // Then alternate: every time a guest exits, its keys are its own.
    for round in 0..20 {
        for (i, g) in guests.iter().enumerate() {
            let m = g
                .channel
                .resume_and_wait(Resume::SKIP)
                .map_err(|e| fail!("resume: {e}"))?;
            from_guest(&m)?;
            check_eq!(m.exit, Exit::Hypercall { imm: 2 });
            let x = call_arguments(g.vcpu.tcb).map_err(|e| fail!("{e}"))?;
            check!(
                x[0] == keys[i] && x[1] == keys[i],
                "round {round}: guest {i} read keys {:#x}/{:#x}, its own are {:#x}",
                x[0],
                x[1],
                keys[i]
            );
        }
    }
    let _ = pending;
    println!("  two guests set and read their own pointer-authentication keys 20 times each");
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}

static CANARY: AtomicU64 = AtomicU64::new(0);
/// The count at which the canary signals [`CANARY_SIGNAL`].
static CANARY_TARGET: AtomicU64 = AtomicU64::new(u64::MAX);
static CANARY_SIGNAL: AtomicU64 = AtomicU64::new(0);

extern "C" fn canary(_: u64) -> ! {
    loop {
        let n = CANARY.fetch_add(1, SeqCst) + 1;
        if n == CANARY_TARGET.load(SeqCst) {
            let _ = ipc::signal(CANARY_SIGNAL.load(SeqCst));
        }
    }
}

/// A guest's SError is taken at its exit and reported to its VMM (as
/// `EXIT_SERROR`), never charged to the thread that runs next: a native
/// canary keeps running without a fault, and the guest resumes and goes
/// on. QEMU raises no physical SErrors, so the dev kernel's debug
/// capability arms one for the next guest exit.
pub fn guest_serror_contained(info: &'static BootInfo) -> Outcome {
    use crate::vm::{build_guest_at, from_guest};
    use skyscope_vmm::{arch::aarch64::exit::Exit, channel::Resume, vcpu::call_arguments};
    let mut env = Env::new(info);
    let ut = env.private_untyped(20).map_err(|e| fail!("{e}"))?;
    let g = build_guest_at(
        &mut env,
        ut,
        skyscope_guest_minimal::caller(),
        (10_000, 10_000),
        0,
        GUEST_WINDOWS[0],
    )?;
    // The canary runs below the guest, with no fault handler: a fault
    // charged to it would stop it (and it would never signal).
    let signal = env
        .retype(ut, ObjectType::Notification, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    CANARY_SIGNAL.store(signal, SeqCst);
    spawn(&mut env, ut, 40, canary, 0, 100, 10_000, 10_000).map_err(|e| fail!("{e}"))?;
    let mut m = g.channel.wait().map_err(|e| fail!("wait: {e}"))?;
    from_guest(&m)?;
    check_eq!(m.exit, Exit::Hypercall { imm: 5 });
    check_ok!(syscall::debug_inject_guest_serror(slots::DEBUG));
    let mut serrors = 0;
    let mut last_count = 0;
    for _ in 0..10 {
        m = g
            .channel
            .resume_and_wait(Resume::SKIP)
            .map_err(|e| fail!("resume: {e}"))?;
        from_guest(&m)?;
        match m.exit {
            Exit::SError { syndrome } => {
                serrors += 1;
                check_eq!(syndrome >> 31 & 1, 1);
                // Resume it: the interrupted `hvc` runs again.
                m = g
                    .channel
                    .resume_and_wait(Resume::default())
                    .map_err(|e| fail!("resume after SError: {e}"))?;
                check_eq!(m.exit, Exit::Hypercall { imm: 5 });
            }
            Exit::Hypercall { imm: 5 } => {}
            other => check!(false, "unexpected exit {other:?}"),
        }
        let x = call_arguments(g.vcpu.tcb).map_err(|e| fail!("{e}"))?;
        check!(x[0] >= last_count, "the guest's count went back");
        last_count = x[0];
    }
    check_eq!(serrors, 1);
    // The canary is alive and was never stopped by someone else's SError:
    // with the root task waiting and the guest waiting for its reply, it
    // counts on and signals.
    CANARY_TARGET.store(CANARY.load(SeqCst) + 100_000, SeqCst);
    check_ok!(ipc::wait(signal).map(drop));
    println!("  the guest's SError reached its VMM; the guest went on; the canary ran on");
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}
