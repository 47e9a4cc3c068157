//! The fastpath leaves exactly the state the general path leaves.

use crate::{
    cap::Cap,
    machine::prelude::*,
    object::tcb::ThreadState,
    testing::{Thread, World, layout},
};
use proptest::prelude::*;
use skyscope_abi::{CapRights, MessageInfo, ObjectType, Syscall};
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
    (0..4usize, 0..6u8, 0..50u64, 0..7usize, any::<u64>()).prop_map(
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
    let threads = (0..4)
        .map(|i| w.thread(10 + 10 * i as u64, priorities[i]))
        .collect();
    w.kernel.fastpath_enabled = fastpath;
    (w, threads)
}

fn apply(w: &mut World, t: Thread, i: usize, op: &Op) {
    let info = MessageInfo::new(op.label, op.length, 0).raw();
    let words = [op.word, op.word.rotate_left(7), !op.word, op.word >> 3];
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
    w.syscall_as(t, number, regs);
}

fn snapshot(w: &World, threads: &[Thread]) -> Vec<u64> {
    let mut s = Vec::new();
    for &t in threads {
        s.push(w.state(t) as u64);
        s.extend(w.regs(t));
        let tcb = w.kernel.machine.tcb(t.tcb);
        s.extend([
            tcb.blocked_on.0,
            tcb.recv_reply.0,
            tcb.queue_next.0,
            tcb.queue_prev.0,
            u64::from(tcb.ipc_flags),
        ]);
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
