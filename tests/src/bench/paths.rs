//! Benchmarks of the other kernel paths:
//!
//! - `syscall/null`: `Yield` with no other thread of the caller's
//!   priority ready (the kernel returns to the caller), both counter reads
//!   in the caller;
//! - `yield/switch`: two threads of one priority yielding to each other,
//!   from one's read before its `svc` to the other's after its return;
//! - `notification/wake`: a signal to a higher-priority thread waiting on
//!   the notification, from the signaller's read before `svc` to the
//!   waiter's after its wait returns;
//! - `fault`: a thread's undefined instruction reaching its handler
//!   (`fault`: faulting instruction to the handler's return from receive),
//!   the handler's reply "skip it" (`reply`: its `svc` to the thread's next
//!   instruction), and both (`roundtrip`, both reads in the faulting
//!   thread);
//! - `frame/map-unmap`: `Frame::Map` then `Frame::Unmap` of a 4 KiB frame
//!   where the page tables exist, both invocations;
//! - `lookup/depth1`, `lookup/depth4`: a signal through a notification
//!   capability found through one CNode or four (the same invocation; the
//!   difference is the capability lookup);
//! - `irq/latency`: a device interrupt to the user-level thread handling
//!   it. QEMU `virt`'s PL061 GPIO controller (handed to user space as
//!   device memory) raises its line when an output pin configured for a
//!   level interrupt is driven to the interrupting level, so a thread can
//!   raise it with one store: from the counter read before that store to
//!   the handler thread's read after its wait on the line's notification
//!   returns (the kernel's interrupt entry, the GIC, the signal, the
//!   switch).

use super::{Bench, BenchError, WARMUP, profile_mark, release, sample};
use crate::support::{
    Env, ROOT, ROOT_DEPTH, map_fresh_page, map_into, spawn, spawn_in_cspace,
    spawn_with_fault_handler,
};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use skyscope_abi::{
    CapRights, MessageInfo, ObjectType,
    bootinfo::slots,
    fault, invocation as inv, ipc,
    syscall::{counter_now, yield_now},
};

/// Counter value of the last "before" read of a multi-thread case.
static STAMP: AtomicU64 = AtomicU64::new(0);
/// Samples taken so far in a multi-thread case.
static TAKEN: AtomicU64 = AtomicU64::new(0);
/// Where the samples go (the benchmark's buffers): up to three metrics.
static BUFFERS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
/// Samples wanted (warm-up included), the notification signalled when
/// they are taken, and the endpoint/reply of the fault handler.
static WANTED: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static OVERHEAD: AtomicU64 = AtomicU64::new(0);
static HANDLER: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// When the fault handler's reply left.
static SENT: AtomicU64 = AtomicU64::new(0);

/// Stores sample `i` (after the warm-up) of metric `which`; returns
/// whether every sample is taken.
fn store(which: usize, i: u64, value: u64) -> bool {
    let wanted = WANTED.load(SeqCst);
    if i >= WARMUP as u64 && i < wanted {
        let at = BUFFERS[which].load(SeqCst) as *mut u64;
        // SAFETY: the buffers hold `wanted - WARMUP` words each; the root
        // task reads them only after `DONE`.
        unsafe { at.add((i - WARMUP as u64) as usize).write_volatile(value) };
    }
    i + 1 >= wanted
}

/// Parks a thread whose part is over (until its untyped is revoked).
fn park() -> ! {
    loop {
        skyscope_abi::syscall::wait_for_interrupt();
    }
}

/// Sets up the shared state of a multi-thread case: `n` samples.
fn prepare(bench: &mut Bench, done: u64) {
    let [a, b, c] = bench.buffers();
    for (slot, buffer) in BUFFERS.iter().zip([a, b, c]) {
        slot.store(buffer.as_mut_ptr() as u64, SeqCst);
    }
    STAMP.store(0, SeqCst);
    TAKEN.store(0, SeqCst);
    WANTED.store((WARMUP + bench.n) as u64, SeqCst);
    DONE.store(done, SeqCst);
    OVERHEAD.store(bench.overhead, SeqCst);
}

/// Runs the cases the filter selects.
pub fn run(bench: &mut Bench, env: &mut Env) -> Result<(), BenchError> {
    null_syscall(bench);
    let cases: [(&[&str], Case); 6] = [
        (&["yield/switch"], yield_switch),
        (&["notification/wake"], notification_wake),
        (&["fault"], fault_roundtrip),
        (&["frame/map-unmap"], frame_map_unmap),
        (&["lookup/depth1", "lookup/depth4"], lookup_depth),
        (&["irq/latency"], irq_latency),
    ];
    for (names, case) in cases {
        if names.iter().any(|name| bench.selected(name)) {
            let ut = env.private_untyped(20)?;
            case(bench, env, ut)?;
            release(ut)?;
        }
    }
    Ok(())
}

/// A case that needs objects: made from `ut`, which the caller releases.
type Case = fn(&mut Bench, &mut Env, u64) -> Result<(), BenchError>;

/// `syscall/null`.
fn null_syscall(bench: &mut Bench) {
    const NAME: &str = "syscall/null";
    if !bench.selected(NAME) {
        return;
    }
    let overhead = bench.overhead;
    let [round, _, _] = bench.buffers();
    let n = round.len();
    for i in 0..WARMUP + n {
        if i == WARMUP {
            profile_mark(NAME);
        }
        let start = counter_now();
        yield_now();
        let end = counter_now();
        if i >= WARMUP {
            round[i - WARMUP] = sample(overhead, start, end);
        }
    }
    profile_mark(NAME);
    bench.report(NAME, "roundtrip", 0);
}

/// One of the two yielding threads.
extern "C" fn yielder(_: u64) -> ! {
    loop {
        STAMP.store(counter_now(), SeqCst);
        yield_now();
        let end = counter_now();
        let stamp = STAMP.load(SeqCst);
        if stamp > end {
            // A timer tick switched threads between this thread's counter
            // read and its load of the stamp, and the other thread stamped
            // its next yield in between: no sample (only seen without
            // icount, where ticks fall anywhere).
            continue;
        }
        let i = TAKEN.fetch_add(1, SeqCst);
        let s = sample(OVERHEAD.load(SeqCst), stamp, end);
        if i == WARMUP as u64 {
            profile_mark("yield/switch");
        }
        if store(0, i, s) {
            profile_mark("yield/switch");
            let _ = ipc::signal(DONE.load(SeqCst));
            park();
        }
    }
}

/// `yield/switch`.
fn yield_switch(bench: &mut Bench, env: &mut Env, ut: u64) -> Result<(), BenchError> {
    let done = env.retype(ut, ObjectType::Notification, 0, 1)?;
    prepare(bench, done);
    // Both below the root task, which waits for them.
    for n in 0..2 {
        spawn(env, ut, 20 + n, yielder, 0, 100, 10_000, 10_000)?;
    }
    ipc::wait(done)?;
    bench.report("yield/switch", "oneway", 0);
    Ok(())
}

/// The waiter: waits, notes how long the signal took to arrive.
extern "C" fn waiter(notification: u64) -> ! {
    loop {
        let _ = ipc::wait(notification);
        let end = counter_now();
        let i = TAKEN.fetch_add(1, SeqCst);
        if i == WARMUP as u64 {
            profile_mark("notification/wake");
        }
        if store(0, i, sample(OVERHEAD.load(SeqCst), STAMP.load(SeqCst), end)) {
            profile_mark("notification/wake");
            let _ = ipc::signal(DONE.load(SeqCst));
            park();
        }
    }
}

/// The signaller: notes the time and signals, forever.
extern "C" fn signaller(notification: u64) -> ! {
    loop {
        STAMP.store(counter_now(), SeqCst);
        let _ = ipc::signal(notification);
    }
}

/// `notification/wake`.
fn notification_wake(bench: &mut Bench, env: &mut Env, ut: u64) -> Result<(), BenchError> {
    let done = env.retype(ut, ObjectType::Notification, 0, 1)?;
    let n = env.retype(ut, ObjectType::Notification, 0, 1)?;
    prepare(bench, done);
    spawn(env, ut, 20, waiter, n, 150, 10_000, 10_000)?;
    spawn(env, ut, 21, signaller, n, 100, 10_000, 10_000)?;
    ipc::wait(done)?;
    bench.report("notification/wake", "oneway", 0);
    Ok(())
}

/// The faulting thread: an undefined instruction between two counter
/// reads, resumed after it by its handler; forever.
extern "C" fn faulter(_: u64) -> ! {
    let mut i = 0u64;
    loop {
        let start = counter_now();
        STAMP.store(start, SeqCst);
        // SAFETY: an undefined instruction traps to the kernel, which
        // sends it to this thread's handler; the handler resumes the thread
        // after it with no register changed.
        unsafe { core::arch::asm!("udf #1", options(nostack)) };
        let end = counter_now();
        store(2, i, sample(OVERHEAD.load(SeqCst), start, end));
        if store(1, i, sample(OVERHEAD.load(SeqCst), SENT.load(SeqCst), end)) {
            let _ = ipc::signal(DONE.load(SeqCst));
            park();
        }
        i += 1;
    }
}

/// The fault handler: notes when a fault arrived and when the reply
/// left, and resumes the thread after its faulting instruction.
extern "C" fn fault_handler(_: u64) -> ! {
    let (ep, reply) = (HANDLER[0].load(SeqCst), HANDLER[1].load(SeqCst));
    let mut r = ipc::recv(ep, reply);
    let mut i = 0u64;
    loop {
        let arrived = counter_now();
        if i == WARMUP as u64 || i + 1 == WANTED.load(SeqCst) {
            profile_mark("fault");
        }
        let ok = matches!(r, Ok(m) if m.info.label() == fault::USER_EXCEPTION);
        store(
            0,
            i,
            sample(OVERHEAD.load(SeqCst), STAMP.load(SeqCst), arrived),
        );
        if !ok {
            let _ = ipc::signal(DONE.load(SeqCst));
            park();
        }
        i += 1;
        SENT.store(counter_now(), SeqCst);
        r = ipc::reply_recv(
            ep,
            reply,
            MessageInfo::new(0, 1, 0),
            [fault::REPLY_SKIP_INSTRUCTION, 0, 0, 0],
        );
    }
}

/// `fault` (metrics `fault`, `reply`, `roundtrip`).
fn fault_roundtrip(bench: &mut Bench, env: &mut Env, ut: u64) -> Result<(), BenchError> {
    let done = env.retype(ut, ObjectType::Notification, 0, 1)?;
    let ep = env.retype(ut, ObjectType::Endpoint, 0, 1)?;
    let reply = env.retype(ut, ObjectType::Reply, 0, 1)?;
    prepare(bench, done);
    HANDLER[0].store(ep, SeqCst);
    HANDLER[1].store(reply, SeqCst);
    spawn(env, ut, 20, fault_handler, 0, 150, 10_000, 10_000)?;
    spawn_with_fault_handler(env, ut, 21, faulter, 0, 100, 10_000, 10_000, ep)?;
    ipc::wait(done)?;
    bench.report("fault", "fault", 0);
    bench.report("fault", "reply", 1);
    bench.report("fault", "roundtrip", 2);
    Ok(())
}

/// Where `frame/map-unmap` maps its frame (its tables made first).
const MAP_AT: u64 = 0x34_0000_0000;

/// `frame/map-unmap`.
fn frame_map_unmap(bench: &mut Bench, env: &mut Env, ut: u64) -> Result<(), BenchError> {
    const NAME: &str = "frame/map-unmap";
    if !bench.selected(NAME) {
        return Ok(());
    }
    // Makes the tables over MAP_AT, then frees the address again.
    let first = map_fresh_page(env, ut, MAP_AT)?;
    inv::frame_unmap(first)?;
    let frame = env.retype(ut, ObjectType::Frame4K, 0, 1)?;
    let overhead = bench.overhead;
    let [pair, _, _] = bench.buffers();
    let n = pair.len();
    for i in 0..WARMUP + n {
        if i == WARMUP {
            profile_mark(NAME);
        }
        let start = counter_now();
        inv::frame_map(
            frame,
            slots::VSPACE,
            MAP_AT,
            CapRights::READ | CapRights::WRITE,
            0,
        )?;
        inv::frame_unmap(frame)?;
        let end = counter_now();
        if i >= WARMUP {
            pair[i - WARMUP] = sample(overhead, start, end);
        }
    }
    profile_mark(NAME);
    bench.report(NAME, "pair", 0);
    Ok(())
}

/// The capability addresses the lookup thread signals through: the
/// notification in the first CNode's slot 2, and in the fourth's slot 1
/// (each CNode 16 slots; the first's guard takes the top 48 bits).
const DEPTH1: u64 = 0x2000;
const DEPTH4: u64 = 0x1111;
/// The `done` notification in the first CNode's slot 3.
const LOOKUP_DONE: u64 = 0x3000;

/// Signals through `DEPTH1`, then `DEPTH4`, `n` times each (after the
/// warm-up), timing each signal; signals `LOOKUP_DONE` after each.
extern "C" fn looker(_: u64) -> ! {
    let overhead = OVERHEAD.load(SeqCst);
    let wanted = WANTED.load(SeqCst);
    for (which, cptr, name) in [(0, DEPTH1, "lookup/depth1"), (1, DEPTH4, "lookup/depth4")] {
        for i in 0..wanted {
            if i == WARMUP as u64 {
                profile_mark(name);
            }
            let start = counter_now();
            let _ = ipc::signal(cptr);
            let end = counter_now();
            store(which, i, sample(overhead, start, end));
        }
        profile_mark(name);
    }
    let _ = ipc::signal(LOOKUP_DONE);
    park()
}

/// `lookup/depth1` and `lookup/depth4`.
fn lookup_depth(bench: &mut Bench, env: &mut Env, ut: u64) -> Result<(), BenchError> {
    let done = env.retype(ut, ObjectType::Notification, 0, 1)?;
    let target = env.retype(ut, ObjectType::Notification, 0, 1)?;
    let nodes = env.retype(ut, ObjectType::CNode, 4, 4)?;
    // Each CNode in slot 1 of the one before it, without a guard.
    for level in 1..4 {
        inv::cnode_mint(
            nodes + level - 1,
            1,
            4,
            ROOT,
            nodes + level,
            ROOT_DEPTH,
            CapRights::ALL,
            inv::guard_word(0, 0),
        )?;
    }
    for (node, index, cap) in [(nodes, 2, target), (nodes + 3, 1, target), (nodes, 3, done)] {
        inv::cnode_copy(node, index, 4, ROOT, cap, ROOT_DEPTH, CapRights::ALL)?;
    }
    prepare(bench, done);
    spawn_in_cspace(
        env,
        ut,
        20,
        looker,
        0,
        (100, 10_000, 10_000),
        0,
        (nodes, 48),
    )?;
    ipc::wait(done)?;
    bench.report("lookup/depth1", "signal", 0);
    bench.report("lookup/depth4", "signal", 1);
    Ok(())
}

/// QEMU `virt`'s PL061: registers, interrupt (SPI 7), and where the
/// benchmark maps it.
const PL061: u64 = 0x0903_0000;
const PL061_INTID: u64 = 32 + 7;
const GPIO_AT: u64 = 0x35_0000_0000;
/// PL061 registers (ARM DDI 0190B, 3.3): data (address bits 9:2 mask the
/// pins written), direction, interrupt sense, event, mask, clear.
const GPIO_DATA_PIN0: u64 = 0x004;
const GPIO_DIR: u64 = 0x400;
const GPIO_IS: u64 = 0x404;
const GPIO_IEV: u64 = 0x40c;
const GPIO_IE: u64 = 0x410;
const GPIO_IC: u64 = 0x41c;

fn gpio_write(register: u64, value: u32) {
    // SAFETY: GPIO_AT maps the PL061's register page (device memory) for
    // this case; the registers written are the controller's own.
    unsafe { ((GPIO_AT + register) as *mut u32).write_volatile(value) };
}

/// The handler: waits for the line, notes how long it took, lowers pin 0
/// and clears the interrupt, acknowledges the line; forever.
extern "C" fn irq_handler(notification: u64) -> ! {
    let handler = HANDLER[0].load(SeqCst);
    let mut i = 0u64;
    loop {
        let _ = ipc::wait(notification);
        let end = counter_now();
        if i == WARMUP as u64 {
            profile_mark("irq/latency");
        }
        let done = store(0, i, sample(OVERHEAD.load(SeqCst), STAMP.load(SeqCst), end));
        gpio_write(GPIO_DATA_PIN0, 0);
        gpio_write(GPIO_IC, 1);
        let _ = inv::irq_handler_ack(handler);
        i += 1;
        if done {
            profile_mark("irq/latency");
            let _ = ipc::signal(DONE.load(SeqCst));
            park();
        }
    }
}

/// The trigger: notes the time and drives pin 0 high (raising the line),
/// forever; the handler preempts it at once.
extern "C" fn irq_trigger(_: u64) -> ! {
    loop {
        STAMP.store(counter_now(), SeqCst);
        gpio_write(GPIO_DATA_PIN0, 1);
    }
}

/// `irq/latency`.
fn irq_latency(bench: &mut Bench, env: &mut Env, ut: u64) -> Result<(), BenchError> {
    let Some(device) = env
        .info
        .untyped_regions()
        .iter()
        .position(|d| d.is_device != 0 && d.paddr == PL061)
        .map(|i| env.info.untyped.start + i as u64)
    else {
        skyscope_abi::println!("BENCH-NOTE irq/latency: no PL061 at {PL061:#x}; not measured");
        return Ok(());
    };
    let frame = env.retype(device, ObjectType::Frame4K, 0, 1)?;
    map_into(
        env,
        ut,
        slots::VSPACE,
        frame,
        GPIO_AT,
        CapRights::READ | CapRights::WRITE,
        inv::MAP_DEVICE,
    )?;
    let handler = env.slot();
    inv::irq_control_get(slots::IRQ_CONTROL, PL061_INTID, ROOT, handler, ROOT_DEPTH)?;
    let line = env.retype(ut, ObjectType::Notification, 0, 1)?;
    inv::irq_handler_set_notification(handler, line)?;
    inv::irq_handler_ack(handler)?;
    // Pin 0: an output, level-sensitive, interrupting when high; low now.
    for (register, value) in [
        (GPIO_IE, 0),
        (GPIO_DATA_PIN0, 0),
        (GPIO_DIR, 1),
        (GPIO_IS, 1),
        (GPIO_IEV, 1),
        (GPIO_IC, 1),
        (GPIO_IE, 1),
    ] {
        gpio_write(register, value);
    }
    let done = env.retype(ut, ObjectType::Notification, 0, 1)?;
    prepare(bench, done);
    HANDLER[0].store(handler, SeqCst);
    spawn(env, ut, 20, irq_handler, line, 150, 10_000, 10_000)?;
    spawn(env, ut, 21, irq_trigger, 0, 100, 10_000, 10_000)?;
    ipc::wait(done)?;
    gpio_write(GPIO_IE, 0);
    bench.report("irq/latency", "oneway", 0);
    inv::cnode_delete(ROOT, handler, ROOT_DEPTH)?;
    inv::cnode_revoke(ROOT, device, ROOT_DEPTH)?;
    Ok(())
}
