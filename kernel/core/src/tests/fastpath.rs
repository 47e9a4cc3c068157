//! The fastpath leaves exactly the state the general path leaves.

use crate::{
    cap::Cap,
    machine::prelude::*,
    object::tcb::ThreadState,
    testing::{Thread, World, layout},
};
use proptest::prelude::*;
use skyscope_abi::{
    CapRights, Label, MessageInfo, ObjectType, Syscall, invocation::REGISTER_COUNT,
};
use std::vec::Vec;

extern crate std;

const EP: u64 = 2;
const BADGED: u64 = 7;

#[derive(Clone, Debug)]
struct Op {
    thread: usize,
    kind: u8,
    label: u64,
    length: usize,
    word: u64,
}

fn op() -> impl Strategy<Value = Op> {
    (0..4usize, 0..7u8, 0..50u64, 0..12usize, any::<u64>()).prop_map(
        |(thread, kind, label, length, word)| Op {
            thread,
            kind,
            label,
            length,
            word,
        },
    )
}

fn world(priorities: &[u8; 4], fastpath: bool) -> (World, Vec<Thread>) {
    let mut w = World::new();
    w.retype(layout::UNTYPED_SLOT, ObjectType::Endpoint, 0, EP, 1)
        .unwrap();
    w.retype(layout::UNTYPED_SLOT, ObjectType::Reply, 0, 3, 4)
        .unwrap();
    w.mint(EP, BADGED, CapRights::ALL, 5).unwrap();
    // Threads 0 and 1 send their faults to the endpoint (badged for one).
    let fault_eps = [EP, BADGED, 0, 0];
    let threads: Vec<Thread> = (0..4)
        .map(|i| w.thread_with_fault_endpoint(10 + 10 * i as u64, priorities[i], fault_eps[i]))
        .collect();
    w.kernel.fastpath_enabled = fastpath;
    (w, threads)
}

/// Words 4..12 of `t`'s IPC buffer (message words past the registers).
fn buffer_words(w: &World, t: Thread) -> [u64; 8] {
    let mut words = [0; 8];
    if let Some(at) = w
        .kernel
        .ipc_buffer_address(t.tcb)
        .and_then(crate::ipc::buffer_message_words)
    {
        w.kernel.machine.read_words(at, &mut words);
    }
    words
}

/// Fills words 4..12 of `t`'s IPC buffer from `op` (what a long message
/// sends).
fn fill_buffer(w: &mut World, t: Thread, op: &Op) {
    let words: [u64; 8] = core::array::from_fn(|i| op.word.rotate_left(i as u32) ^ i as u64);
    if let Some(at) = w
        .kernel
        .ipc_buffer_address(t.tcb)
        .and_then(crate::ipc::buffer_message_words)
    {
        w.kernel.machine.write_words(at, &words);
    }
}

fn apply(w: &mut World, t: Thread, i: usize, op: &Op) {
    fill_buffer(w, t, op);
    if op.kind == 6 {
        let (label, words) = fault_message(op);
        w.fault_as(t, label, words);
        return;
    }
    let (number, regs) = op_registers(i, op);
    w.syscall_as(t, number, regs);
}

/// The fault of a fault op: a guest exit or a native fault's message.
fn fault_message(op: &Op) -> (u64, [u64; skyscope_abi::fault::WORDS]) {
    let label = 1 + op.label % 4;
    (
        label,
        [op.word, op.word >> 5, op.label, op.word.rotate_left(9)],
    )
}

/// The syscall and registers of `op` by thread number `i`.
fn op_registers(i: usize, op: &Op) -> (Syscall, [u64; 7]) {
    let info = MessageInfo::new(op.label, op.length, 0).raw();
    // Word 1 often a register index, for replies to faults.
    let words = [op.word, op.word % 40, !op.word, op.word >> 3];
    let reply = 3 + i as u64;
    let ep = if op.word.is_multiple_of(3) {
        BADGED
    } else {
        EP
    };
    let (number, regs) = match op.kind {
        0 | 1 => (
            Syscall::Call,
            [ep, info, words[0], words[1], words[2], words[3], 0],
        ),
        2 => (
            Syscall::ReplyRecv,
            [EP, info, words[0], words[1], words[2], words[3], reply],
        ),
        3 => (Syscall::Recv, [EP, 0, 0, 0, 0, 0, reply]),
        4 => (
            Syscall::Send,
            [ep, info, words[0], words[1], words[2], words[3], 0],
        ),
        _ => (
            Syscall::Reply,
            [0, info, words[0], words[1], words[2], words[3], reply],
        ),
    };
    (number, regs)
}

fn snapshot(w: &World, threads: &[Thread]) -> Vec<u64> {
    let mut s = Vec::new();
    for &t in threads {
        s.push(w.state(t) as u64);
        let tcb = w.kernel.machine.tcb(t.tcb);
        s.extend((0..REGISTER_COUNT).map(|r| tcb.context.register(r)));
        s.extend([
            tcb.blocked_on.0,
            tcb.recv_reply.0,
            tcb.queue_next.0,
            tcb.queue_prev.0,
            u64::from(tcb.ipc_flags),
            tcb.fault_label,
        ]);
        s.extend(tcb.fault);
        s.extend(buffer_words(w, t));
    }
    s.push(w.kernel.current.map_or(0, |c| c.0));
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 256 }, ..ProptestConfig::default() })]

    #[test]
    fn fastpath_and_slowpath_agree(
        priorities in prop::array::uniform4(50u8..53),
        ops in prop::collection::vec(op(), 1..if cfg!(miri) { 10 } else { 120 }),
    ) {
        let (mut fast, threads) = world(&priorities, true);
        let (mut slow, _) = world(&priorities, false);
        for op in &ops {
            let t = threads[op.thread];
            if fast.state(t) != ThreadState::Runnable {
                continue;
            }
            apply(&mut fast, t, op.thread, op);
            apply(&mut slow, t, op.thread, op);
            prop_assert_eq!(snapshot(&fast, &threads), snapshot(&slow, &threads), "after {:?}", op);
            let Cap::Endpoint { ptr, .. } = fast.cap(EP) else { unreachable!() };
            prop_assert_eq!(*fast.kernel.machine.endpoint_mut(ptr), *slow.kernel.machine.endpoint_mut(ptr));
            for w in [&mut fast, &mut slow] {
                if let Err(e) = w.kernel.check_invariants(&[World::root_cap()]) {
                    prop_assert!(false, "invariants after {:?}: {}", op, e);
                }
            }
        }
        prop_assert_eq!(slow.kernel.counters.fastpath_hits, 0);
    }
}

/// A fault reaches a waiting handler on the fastpath, and the handler's
/// reply (skip the instruction, set a register) restarts the thread on it.
#[test]
fn faults_and_their_replies_take_the_fastpath() {
    use skyscope_abi::{fault, invocation::REG_PC, invocation::REG_X0};
    let (mut w, threads) = world(&[50, 60, 40, 40], true);
    let (faulter, handler) = (threads[0], threads[1]);
    w.syscall_as(handler, Syscall::Recv, [EP, 0, 0, 0, 0, 0, 4]);
    w.kernel
        .machine
        .tcb_mut(faulter.tcb)
        .context
        .set_register(REG_PC, 0x1000);
    let before = w.kernel.counters.fastpath_hits;
    for i in 0..10 {
        w.fault_as(faulter, fault::GUEST_EXIT, [0x1000, 0x5a00_0006, 6, 0]);
        assert_eq!(w.kernel.current, Some(handler.tcb));
        assert_eq!(w.regs(handler)[2], 0x1000);
        let info = MessageInfo::new(0, 3, 0).raw();
        let flags = fault::REPLY_SKIP_INSTRUCTION | fault::REPLY_SET_REGISTER;
        w.syscall_as(
            handler,
            Syscall::ReplyRecv,
            [EP, info, flags, REG_X0 as u64, 100 + i, 0, 4],
        );
        assert_eq!(w.kernel.current, Some(faulter.tcb));
        let c = &w.kernel.machine.tcb(faulter.tcb).context;
        assert_eq!(c.register(REG_X0), 100 + i);
        assert_eq!(c.register(REG_PC), 0x1004 + 4 * i);
        w.kernel
            .machine
            .tcb_mut(faulter.tcb)
            .context
            .set_register(REG_PC, 0x1000 + 4 * (i + 1));
    }
    assert_eq!(w.kernel.counters.fastpath_hits - before, 20);
}

/// Every thread's scheduling-context state and the release queue: what
/// time accounting leaves behind.
fn budgets(w: &mut World, threads: &[Thread]) -> Vec<u64> {
    let mut s = Vec::new();
    for &t in threads {
        let sc = w.kernel.machine.tcb(t.tcb).sched_context;
        let c = *w.kernel.machine.sched_context_mut(sc);
        s.extend([
            c.remaining,
            c.replenish_at,
            u64::from(c.in_release_queue),
            c.release_next.0,
            u64::from(w.kernel.machine.tcb(t.tcb).queued),
        ]);
    }
    s.push(w.kernel.release_head.0);
    s.push(w.kernel.counters.budget_depletions);
    s
}

/// Runs `op` as thread `t` the way the kernel's entry does, on a clock:
/// `t` is made current at the world's time (as if just switched to),
/// `elapsed` passes, then the fastpath is tried and otherwise the entry
/// is charged (budget and refills, as `State::handle` does) and the
/// general path runs; the scheduler picks next.
fn apply_timed(w: &mut World, t: Thread, i: usize, op: &Op, elapsed: u64) {
    w.kernel.current = Some(t.tcb);
    w.kernel.scheduler.remove(&mut w.kernel.machine, t.tcb);
    w.kernel.last_charge = w.kernel.machine.clock;
    w.kernel.machine.clock += elapsed;
    let now = w.kernel.machine.clock;
    fill_buffer(w, t, op);
    if op.kind == 6 {
        let (label, words) = fault_message(op);
        if w.kernel.fastpath_fault(label, words).is_none() {
            w.kernel.charge(now);
            w.kernel.release_due(now);
            if w.kernel.current == Some(t.tcb) {
                w.kernel.deliver_fault(t.tcb, label, words);
            }
        }
        w.kernel.schedule();
        return;
    }
    let (number, regs) = op_registers(i, op);
    for (r, &v) in regs.iter().enumerate() {
        w.kernel.machine.tcb_mut(t.tcb).context.set_arg(r, v);
    }
    if !w.kernel.fastpath(number as u64) {
        w.kernel.charge(now);
        w.kernel.release_due(now);
        w.kernel.syscall(number as u64);
    }
    w.kernel.schedule();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 256 }, ..ProptestConfig::default() })]

    /// With budgets: constrained scheduling contexts, refills due or not,
    /// budgets running out — the fastpath charges exactly what the entry
    /// charges, or leaves the entry to the general path.
    #[test]
    fn fastpath_and_slowpath_agree_on_budgets(
        priorities in prop::array::uniform4(50u8..53),
        budgets_us in prop::array::uniform4(prop::sample::select(&[300u64, 600, 1000][..])),
        ops in prop::collection::vec((op(), 0..400_000u64), 1..if cfg!(miri) { 10 } else { 120 }),
    ) {
        let mut worlds = [world(&priorities, true), world(&priorities, false)];
        let threads = worlds[0].1.clone();
        for (w, _) in worlds.iter_mut() {
            for (t, &budget) in threads.iter().zip(&budgets_us) {
                w.invoke_slot(
                    World::sched_control(),
                    Label::SchedControlConfigure,
                    &[budget, 1000],
                    &[World::slot(t.slot + 2)],
                )
                .unwrap();
            }
        }
        let [(fast, _), (slow, _)] = &mut worlds;
        for (op, elapsed) in &ops {
            let t = threads[op.thread];
            // Only a thread the scheduler could have picked: runnable, not
            // waiting for its refill.
            let sc = fast.kernel.machine.tcb(t.tcb).sched_context;
            if fast.state(t) != ThreadState::Runnable
                || fast.kernel.machine.sched_context_mut(sc).in_release_queue
            {
                continue;
            }
            apply_timed(fast, t, op.thread, op, *elapsed);
            apply_timed(slow, t, op.thread, op, *elapsed);
            prop_assert_eq!(snapshot(fast, &threads), snapshot(slow, &threads), "after {:?}", op);
            prop_assert_eq!(budgets(fast, &threads), budgets(slow, &threads), "budgets after {:?}", op);
            for w in [&mut *fast, &mut *slow] {
                if let Err(e) = w.kernel.check_invariants(&[World::root_cap()]) {
                    prop_assert!(false, "invariants after {:?}: {}", op, e);
                }
            }
        }
        prop_assert_eq!(slow.kernel.counters.fastpath_hits, 0);
    }
}

#[test]
fn the_fastpath_takes_budgeted_round_trips() {
    let (mut w, threads) = world(&[50, 60, 40, 40], true);
    let (client, server) = (threads[0], threads[1]);
    for t in [client, server] {
        w.invoke_slot(
            World::sched_control(),
            Label::SchedControlConfigure,
            &[600, 1000],
            &[World::slot(t.slot + 2)],
        )
        .unwrap();
    }
    let info = MessageInfo::new(1, 2, 0).raw();
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, 4]);
    let before = w.kernel.counters.fastpath_hits;
    for _ in 0..10 {
        w.kernel.machine.clock += 1000;
        w.syscall_as(client, Syscall::Call, [EP, info, 1, 2, 0, 0, 0]);
        assert_eq!(w.kernel.current, Some(server.tcb));
        w.kernel.machine.clock += 1000;
        w.syscall_as(server, Syscall::ReplyRecv, [EP, info, 3, 4, 0, 0, 4]);
        assert_eq!(w.kernel.current, Some(client.tcb));
    }
    assert_eq!(w.kernel.counters.fastpath_hits - before, 20);
}

#[test]
fn the_fastpath_takes_the_common_round_trip() {
    let (mut w, threads) = world(&[50, 60, 40, 40], true);
    let (client, server) = (threads[0], threads[1]);
    let info = MessageInfo::new(1, 2, 0).raw();
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, 4]);
    for _ in 0..10 {
        w.syscall_as(client, Syscall::Call, [EP, info, 1, 2, 0, 0, 0]);
        assert_eq!(w.kernel.current, Some(server.tcb));
        w.syscall_as(server, Syscall::ReplyRecv, [EP, info, 3, 4, 0, 0, 4]);
        assert_eq!(w.kernel.current, Some(client.tcb));
        assert_eq!(&w.regs(client)[2..4], &[3, 4]);
    }
    assert_eq!(w.kernel.counters.fastpath_hits, 20);
}

/// A refill that falls due at an entry the fastpath would otherwise take
/// is the general path's: it makes the refilled thread ready first.
#[test]
fn a_due_refill_is_not_skipped() {
    let mut worlds = [
        world(&[50, 50, 50, 40], true),
        world(&[50, 50, 50, 40], false),
    ];
    let threads = worlds[0].1.clone();
    let mut snapshots = Vec::new();
    for (w, _) in worlds.iter_mut() {
        let (a, b, s) = (threads[0], threads[1], threads[2]);
        w.invoke_slot(
            World::sched_control(),
            Label::SchedControlConfigure,
            &[300, 1000],
            &[World::slot(a.slot + 2)],
        )
        .unwrap();
        let recv = Op {
            thread: 2,
            kind: 3,
            label: 0,
            length: 0,
            word: 1,
        };
        apply_timed(w, s, 2, &recv, 10);
        // A runs out of budget on an entry and waits for its refill.
        let send = Op {
            thread: 0,
            kind: 4,
            label: 0,
            length: 0,
            word: 1,
        };
        apply_timed(w, a, 0, &send, 400_000);
        let sc = w.kernel.machine.tcb(a.tcb).sched_context;
        assert!(w.kernel.machine.sched_context_mut(sc).in_release_queue);
        // The refill is due when B calls the waiting server: the entry
        // makes A ready first, and A, not the server, runs next.
        let call = Op {
            thread: 1,
            kind: 0,
            label: 1,
            length: 0,
            word: 1,
        };
        apply_timed(w, b, 1, &call, 1_000_000);
        snapshots.push((snapshot(w, &threads), budgets(w, &threads)));
    }
    assert_eq!(snapshots[0], snapshots[1]);
}
