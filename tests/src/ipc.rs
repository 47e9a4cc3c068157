//! IPC scenarios: call/reply, badges, capability transfer, long messages,
//! notifications, faults, and the fastpath against the slow path.

use crate::{
    Outcome,
    support::{
        Env, ROOT, ROOT_DEPTH, ipc_buffer, map_fresh_page, read, spawn, spawn_with_fault_handler,
    },
};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use skyscope_abi::{
    BootInfo, CapRights, Error, MessageInfo, ObjectType,
    bootinfo::slots,
    fault, invocation as inv,
    ipc::{self, Received},
    println,
    syscall::debug_fastpath,
};

/// Slots shared with the threads of a scenario (set before they start).
static EP: AtomicU64 = AtomicU64::new(0);
static REPLY: AtomicU64 = AtomicU64::new(0);
static NTFN: AtomicU64 = AtomicU64::new(0);
static AUX: AtomicU64 = AtomicU64::new(0);
static RESULT: AtomicU64 = AtomicU64::new(0);
/// A notification a thread signals when it has stored its RESULT.
static DONE: AtomicU64 = AtomicU64::new(0);

/// Makes the DONE notification.
fn make_done(env: &mut Env, ut: u64) -> Result<u64, crate::Failure> {
    let n = env
        .retype(ut, ObjectType::Notification, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    DONE.store(n, SeqCst);
    Ok(n)
}

/// Stores the result and tells the scenario.
fn report(value: u64) {
    RESULT.store(value, SeqCst);
    let _ = ipc::signal(DONE.load(SeqCst));
}

fn msg(label: u64, len: usize) -> MessageInfo {
    MessageInfo::new(label, len, 0)
}

fn park() -> ! {
    loop {
        skyscope_abi::syscall::wait_for_interrupt();
    }
}

/// Server: answers label L with words [a, b, c, d] by label L+1 and
/// [a+b+c+d, badge, a*b, 0].
extern "C" fn adder_server(_: u64) -> ! {
    let (ep, reply) = (EP.load(SeqCst), REPLY.load(SeqCst));
    let mut r = ipc::recv(ep, reply);
    loop {
        let Ok(Received {
            badge,
            info,
            words: w,
        }) = r
        else {
            park()
        };
        let answer = [w[0] + w[1] + w[2] + w[3], badge, w[0].wrapping_mul(w[1]), 0];
        r = ipc::reply_recv(ep, reply, msg(info.label() + 1, 4), answer);
    }
}

/// Endpoint, reply object and a private untyped.
fn setup(env: &mut Env) -> Result<u64, crate::Failure> {
    let ut = env.private_untyped(20).map_err(|e| fail!("untyped: {e}"))?;
    let ep = env
        .retype(ut, ObjectType::Endpoint, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let reply = env
        .retype(ut, ObjectType::Reply, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    EP.store(ep, SeqCst);
    REPLY.store(reply, SeqCst);
    Ok(ut)
}

fn teardown(ut: u64) -> Outcome {
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}

pub fn call_reply_roundtrip(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = setup(&mut env)?;
    let badged = env
        .mint(EP.load(SeqCst), CapRights::ALL, 0x77)
        .map_err(|e| fail!("{e}"))?;
    spawn(&mut env, ut, 0, adder_server, 0, 254, 10_000, 10_000)
        .map_err(|e| fail!("spawn: {e}"))?;
    for i in 0..1000u64 {
        let words = [i, 2 * i + 1, 3, i ^ 0x55];
        let r =
            ipc::call(badged, msg(100 + i % 7, 4), words).map_err(|e| fail!("call {i}: {e}"))?;
        check_eq!(r.info.label(), 101 + i % 7);
        check_eq!(r.info.length(), 4);
        check_eq!(
            r.words,
            [words.iter().sum::<u64>(), 0x77, i * (2 * i + 1), 0]
        );
    }
    println!("  1000 calls answered by a server thread, each checked");
    teardown(ut)
}

extern "C" fn badge_client(n: u64) -> ! {
    let cap = AUX.load(SeqCst) + n;
    let _ = ipc::send(cap, msg(1, 1), [n * 10, 0, 0, 0]);
    park()
}

pub fn badges_identify_senders(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = setup(&mut env)?;
    let ep = EP.load(SeqCst);
    let first = env.slots(3);
    for n in 0..3 {
        check_ok!(inv::cnode_mint(
            ROOT,
            first + n,
            ROOT_DEPTH,
            ROOT,
            ep,
            ROOT_DEPTH,
            CapRights::WRITE,
            n + 1
        ));
    }
    AUX.store(first - 1, SeqCst); // client n uses slot first + n - 1 ... n in 1..=3
    for n in 1..=3 {
        spawn(&mut env, ut, n, badge_client, n, 200, 10_000, 10_000).map_err(|e| fail!("{e}"))?;
    }
    let mut seen = 0u64;
    for _ in 0..3 {
        let r = ipc::recv(ep, 0).map_err(|e| fail!("recv: {e}"))?;
        check!((1..=3).contains(&r.badge), "unexpected badge {}", r.badge);
        check_eq!(r.words[0], r.badge * 10);
        seen |= 1 << r.badge;
    }
    check_eq!(seen, 0b1110);
    // A receive-only copy cannot send; a send-only copy cannot receive.
    let recv_only = env.copy(ep, CapRights::READ).map_err(|e| fail!("{e}"))?;
    check_eq!(
        ipc::send(recv_only, msg(0, 0), [0; 4]),
        Err(Error::InsufficientRights)
    );
    check_eq!(
        ipc::nb_recv(first, 0).map(drop),
        Err(Error::InsufficientRights)
    );
    println!("  three senders told apart by badge");
    teardown(ut)
}

/// Receives one message with a receive slot set, reports (extra caps,
/// the received frame's address or 0) in RESULT, replies.
extern "C" fn cap_receiver(_: u64) -> ! {
    let (ep, reply, slot) = (EP.load(SeqCst), REPLY.load(SeqCst), AUX.load(SeqCst));
    loop {
        let b = ipc_buffer();
        b.receive_cnode = ROOT;
        b.receive_index = slot;
        b.receive_depth = ROOT_DEPTH;
        let Ok(r) = ipc::recv(ep, reply) else { park() };
        let address = inv::frame_get_address(slot).unwrap_or(0);
        RESULT.store(address, SeqCst);
        let _ = inv::cnode_delete(ROOT, slot, ROOT_DEPTH);
        let _ = ipc::reply(reply, msg(r.info.extra_caps() as u64, 0), [0; 4]);
    }
}

pub fn cap_transfer_requires_grant(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = setup(&mut env)?;
    let ep = EP.load(SeqCst);
    AUX.store(env.slot(), SeqCst);
    let frame = env
        .retype(ut, ObjectType::Frame4K, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let address = inv::frame_get_address(frame).map_err(|e| fail!("{e}"))?;
    spawn(&mut env, ut, 0, cap_receiver, 0, 254, 10_000, 10_000).map_err(|e| fail!("{e}"))?;
    ipc_buffer().caps_or_badges[0] = frame;
    let no_grant = env
        .copy(ep, CapRights::WRITE | CapRights::GRANT_REPLY)
        .map_err(|e| fail!("{e}"))?;
    let r =
        ipc::call(no_grant, MessageInfo::new(0, 0, 1), [0; 4]).map_err(|e| fail!("call: {e}"))?;
    check_eq!(r.info.label(), 0); // the receiver saw no capability
    check_eq!(RESULT.load(SeqCst), 0);
    ipc_buffer().caps_or_badges[0] = frame;
    let r = ipc::call(ep, MessageInfo::new(0, 0, 1), [0; 4]).map_err(|e| fail!("call: {e}"))?;
    check_eq!(r.info.label(), 1);
    check_eq!(RESULT.load(SeqCst), address);
    println!("  a frame capability crossed only through an endpoint capability with GRANT");
    teardown(ut)
}

/// Echoes a message with the words reversed (all 120 of them).
extern "C" fn reverser(_: u64) -> ! {
    let (ep, reply) = (EP.load(SeqCst), REPLY.load(SeqCst));
    let mut r = ipc::recv(ep, reply);
    loop {
        let Ok(m) = r else { park() };
        let n = m.info.length();
        let b = ipc_buffer();
        let mut all = [0u64; 120];
        all[..4].copy_from_slice(&m.words);
        all[4..n].copy_from_slice(&b.msg[4..n]);
        all[..n].reverse();
        b.msg[4..n].copy_from_slice(&all[4..n]);
        r = ipc::reply_recv(
            ep,
            reply,
            msg(m.info.label(), n),
            [all[0], all[1], all[2], all[3]],
        );
    }
}

pub fn long_message_via_ipc_buffer(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = setup(&mut env)?;
    spawn(&mut env, ut, 0, reverser, 0, 254, 10_000, 10_000).map_err(|e| fail!("{e}"))?;
    let b = ipc_buffer();
    let words: [u64; 120] = core::array::from_fn(|i| 0x1000 + i as u64 * 3);
    b.msg[4..].copy_from_slice(&words[4..]);
    let r = ipc::call(
        EP.load(SeqCst),
        msg(5, 120),
        [words[0], words[1], words[2], words[3]],
    )
    .map_err(|e| fail!("{e}"))?;
    check_eq!(r.info.length(), 120);
    let mut got = [0u64; 120];
    got[..4].copy_from_slice(&r.words);
    got[4..].copy_from_slice(&ipc_buffer().msg[4..]);
    for (i, &g) in got.iter().enumerate() {
        check!(
            g == words[119 - i],
            "word {i} is {g:#x}, expected {:#x}",
            words[119 - i]
        );
    }
    println!("  120-word message reversed by the server, 116 words through the IPC buffers");
    teardown(ut)
}

extern "C" fn signaller(bit: u64) -> ! {
    let n = NTFN.load(SeqCst);
    let _ = inv::cnode_mint(
        ROOT,
        AUX.load(SeqCst) + bit,
        ROOT_DEPTH,
        ROOT,
        n,
        ROOT_DEPTH,
        CapRights::WRITE,
        1 << bit,
    );
    let _ = ipc::signal(AUX.load(SeqCst) + bit);
    park()
}

pub fn notification_signal_wait(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = setup(&mut env)?;
    let n = env
        .retype(ut, ObjectType::Notification, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    NTFN.store(n, SeqCst);
    AUX.store(env.slots(8), SeqCst);
    check_eq!(ipc::poll(n), Ok(0));
    // Two signallers at lower priority: their badges OR together.
    for bit in [1, 4] {
        spawn(&mut env, ut, bit, signaller, bit, 100, 10_000, 10_000).map_err(|e| fail!("{e}"))?;
    }
    let mut word = 0;
    while word != 0b10010 {
        word |= ipc::wait(n).map_err(|e| fail!("wait: {e}"))?;
    }
    check_eq!(ipc::poll(n), Ok(0));
    // A badged signal before the wait is kept until taken.
    let mine = env
        .mint(n, CapRights::WRITE, 0x100)
        .map_err(|e| fail!("{e}"))?;
    check_ok!(ipc::signal(mine));
    check_ok!(ipc::signal(mine));
    check_eq!(ipc::wait(n), Ok(0x100));
    println!(
        "  waits collected badges 0b10 and 0b10000 from two threads; polls saw nothing pending"
    );
    teardown(ut)
}

/// Blocks in Recv on the endpoint while bound to the notification; reports
/// what woke it.
extern "C" fn bound_receiver(_: u64) -> ! {
    let r = ipc::recv(EP.load(SeqCst), 0);
    report(r.map_or(u64::MAX, |m| m.badge));
    park()
}

pub fn bound_notification_wakes_recv(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = setup(&mut env)?;
    let n = env
        .retype(ut, ObjectType::Notification, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let badged = env
        .mint(n, CapRights::WRITE, 0x42)
        .map_err(|e| fail!("{e}"))?;
    RESULT.store(0, SeqCst);
    let done = make_done(&mut env, ut)?;
    let t =
        spawn(&mut env, ut, 0, bound_receiver, 0, 200, 10_000, 10_000).map_err(|e| fail!("{e}"))?;
    check_ok!(inv::tcb_bind_notification(t.tcb, n));
    // Let it block on the endpoint (it runs while we wait for nothing).
    check_eq!(ipc::poll(done), Ok(0));
    check_ok!(inv::tcb_set_priority(slots::TCB, 100));
    check_ok!(inv::tcb_set_priority(slots::TCB, 255));
    check_eq!(RESULT.load(SeqCst), 0); // blocked on the endpoint
    check_ok!(ipc::signal(badged));
    check_ok!(ipc::wait(done).map(drop));
    check_eq!(RESULT.load(SeqCst), 0x42);
    check_eq!(
        inv::tcb_bind_notification(t.tcb, n),
        Err(Error::IllegalOperation)
    );
    check_ok!(inv::tcb_unbind_notification(t.tcb));
    println!("  a signal on the bound notification woke the thread waiting on the endpoint");
    teardown(ut)
}

const FAULT_PAGE: u64 = 0x20_0000_0000;

extern "C" fn faulting_thread(kind: u64) -> ! {
    if kind == 0 {
        // SAFETY: deliberately unmapped: the handler maps it and restarts us.
        unsafe { (FAULT_PAGE as *mut u64).write_volatile(0xfeed) };
        report(read(FAULT_PAGE));
    } else {
        // SAFETY: deliberately undefined; the handler stops this thread.
        unsafe { core::arch::asm!("udf #7") };
        RESULT.store(u64::MAX, SeqCst);
    }
    park()
}

pub fn fault_delivered_to_handler(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = setup(&mut env)?;
    let (ep, reply) = (EP.load(SeqCst), REPLY.load(SeqCst));
    let handler_cap = env
        .mint(ep, CapRights::ALL, 0xfa)
        .map_err(|e| fail!("{e}"))?;
    RESULT.store(0, SeqCst);
    let done = make_done(&mut env, ut)?;
    // A thread whose store faults: the handler maps the page and restarts it.
    spawn_with_fault_handler(
        &mut env,
        ut,
        0,
        faulting_thread,
        0,
        200,
        10_000,
        10_000,
        handler_cap,
    )
    .map_err(|e| fail!("spawn: {e}"))?;
    let r = ipc::recv(ep, reply).map_err(|e| fail!("recv: {e}"))?;
    check_eq!(r.badge, 0xfa);
    check_eq!(r.info.label(), fault::VM_FAULT);
    check_eq!(r.words[1], FAULT_PAGE);
    check!(r.words[2] & fault::FLAG_WRITE != 0, "the fault is a write");
    map_fresh_page(&mut env, ut, FAULT_PAGE).map_err(|e| fail!("map: {e}"))?;
    check_ok!(ipc::reply(reply, msg(0, 0), [0; 4]));
    check_ok!(ipc::wait(done).map(drop));
    check_eq!(RESULT.load(SeqCst), 0xfeed);
    println!(
        "  VM fault at {FAULT_PAGE:#x} delivered with badge 0xfa; the handler mapped the page and the thread resumed"
    );
    // A thread executing an undefined instruction: the handler stops it.
    let other = spawn_with_fault_handler(
        &mut env,
        ut,
        1,
        faulting_thread,
        1,
        200,
        10_000,
        10_000,
        handler_cap,
    )
    .map_err(|e| fail!("spawn: {e}"))?;
    let r = ipc::recv(ep, reply).map_err(|e| fail!("recv: {e}"))?;
    check_eq!(r.info.label(), fault::USER_EXCEPTION);
    check_eq!(r.words[2], fault::KIND_UNDEFINED);
    check_ok!(inv::tcb_suspend(other.tcb));
    check_eq!(RESULT.load(SeqCst), 0xfeed); // it never got past the instruction
    println!(
        "  undefined instruction delivered as a user exception; the handler stopped the thread"
    );
    teardown(ut)
}

pub fn fastpath_matches_slowpath(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = setup(&mut env)?;
    spawn(&mut env, ut, 0, adder_server, 0, 254, 10_000, 10_000).map_err(|e| fail!("{e}"))?;
    let ep = EP.load(SeqCst);
    let mut results = [[0u64; 6]; 2];
    let mut hits = [0u64; 2];
    for (pass, fast) in [(0, true), (1, false)] {
        let before = debug_fastpath(slots::DEBUG, fast);
        let mut digest = [0u64; 6];
        for i in 0..500u64 {
            let words = [i, i * i, 7, 0xabc ^ i];
            let len = (i % 5) as usize;
            let r = ipc::call(ep, msg(i % 13, len), words).map_err(|e| fail!("call: {e}"))?;
            digest[0] = digest[0].wrapping_mul(31).wrapping_add(r.info.raw());
            for (d, w) in digest[1..5].iter_mut().zip(r.words) {
                *d = d.wrapping_mul(31).wrapping_add(w);
            }
            digest[5] = digest[5].wrapping_add(r.badge);
        }
        hits[pass] = debug_fastpath(slots::DEBUG, true) - before;
        results[pass] = digest;
    }
    println!(
        "  fastpath on: {} fastpath syscalls; off: {}",
        hits[0], hits[1]
    );
    check!(
        hits[0] >= 500,
        "the fastpath handled only {} of the 1000+ syscalls",
        hits[0]
    );
    check_eq!(hits[1], 0);
    check_eq!(results[0], results[1]);
    teardown(ut)
}
