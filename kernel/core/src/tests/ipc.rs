//! IPC, notifications, faults and budgets, driven through the syscall layer.

use crate::{
    PhysAddr,
    cap::Cap,
    machine::prelude::*,
    object::tcb::ThreadState,
    testing::{Thread, World, layout},
};
use skyscope_abi::{
    CapRights, Error, Label, MessageInfo, ObjectType, Syscall,
    invocation::{IPC_BUFFER_CAPS_OFFSET, IPC_BUFFER_MSG_OFFSET},
};

const UT: u64 = layout::UNTYPED_SLOT;
const EP: u64 = 2;
const REPLY: u64 = 3;

fn info(label: u64, length: usize, caps: usize) -> u64 {
    MessageInfo::new(label, length, caps).raw()
}

/// A server (slots 10..13) and a client (slots 20..23) of equal priority,
/// an endpoint in slot 2 and a reply object in slot 3.
fn pair() -> (World, Thread, Thread) {
    let mut w = World::new();
    w.retype(UT, ObjectType::Endpoint, 0, EP, 1).unwrap();
    w.retype(UT, ObjectType::Reply, 0, REPLY, 1).unwrap();
    let server = w.thread(10, 100);
    let client = w.thread(20, 100);
    (w, server, client)
}

#[test]
fn call_reply_roundtrip() {
    let (mut w, server, client) = pair();
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, REPLY]);
    assert_eq!(w.state(server), ThreadState::BlockedOnReceive);
    let r = w.syscall_as(client, Syscall::Call, [EP, info(7, 2, 0), 11, 22, 0, 0, 0]);
    assert_eq!(w.state(client), ThreadState::BlockedOnReply);
    let _ = r;
    let got = w.regs(server);
    assert_eq!(MessageInfo::from_raw(got[1]).label(), 7);
    assert_eq!(&got[2..4], &[11, 22]);
    assert_eq!(got[6], 0);
    assert_eq!(w.state(server), ThreadState::Runnable);
    w.syscall_as(
        server,
        Syscall::ReplyRecv,
        [EP, info(9, 1, 0), 42, 0, 0, 0, REPLY],
    );
    let back = w.regs(client);
    assert_eq!(w.state(client), ThreadState::Runnable);
    assert_eq!(
        (MessageInfo::from_raw(back[1]).label(), back[2], back[6]),
        (9, 42, 0)
    );
    assert_eq!(w.state(server), ThreadState::BlockedOnReceive);
}

#[test]
fn badges_identify_senders() {
    let (mut w, server, client) = pair();
    w.mint(EP, 4, CapRights::ALL, 0xaa).unwrap();
    w.mint(EP, 5, CapRights::ALL, 0xbb).unwrap();
    let other = w.thread(30, 100);
    w.syscall_as(client, Syscall::Send, [4, info(1, 0, 0), 0, 0, 0, 0, 0]);
    w.syscall_as(other, Syscall::Send, [5, info(2, 0, 0), 0, 0, 0, 0, 0]);
    assert_eq!(w.state(client), ThreadState::BlockedOnSend);
    assert_eq!(
        w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, 0])[0],
        0xaa
    );
    assert_eq!(
        w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, 0])[0],
        0xbb
    );
    assert_eq!(w.state(client), ThreadState::Runnable);
    assert_eq!(w.state(other), ThreadState::Runnable);
}

#[test]
fn long_messages_travel_in_the_ipc_buffer() {
    let (mut w, server, client) = pair();
    let words: [u64; 10] = core::array::from_fn(|i| 100 + i as u64);
    w.kernel.machine.poke(
        PhysAddr(client.buffer.0 + IPC_BUFFER_MSG_OFFSET as u64 + 32),
        &words[4..],
    );
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, REPLY]);
    w.syscall_as(
        client,
        Syscall::Send,
        [EP, info(3, 10, 0), 100, 101, 102, 103, 0],
    );
    let got = w.regs(server);
    assert_eq!(MessageInfo::from_raw(got[1]).length(), 10);
    let mut rest = [0u64; 6];
    w.kernel.machine.peek(
        PhysAddr(server.buffer.0 + IPC_BUFFER_MSG_OFFSET as u64 + 32),
        &mut rest,
    );
    assert_eq!(&rest, &words[4..]);
    assert_eq!(&got[2..6], &words[..4]);
}

#[test]
fn capability_transfer_requires_grant() {
    let (mut w, server, client) = pair();
    w.retype(UT, ObjectType::Notification, 0, 40, 1).unwrap();
    // Receive slot: root slot 41, named through the CNode capability in
    // slot 44 with all 64 address bits.
    let set_receive = |w: &mut World| {
        let at = PhysAddr(server.buffer.0 + IPC_BUFFER_CAPS_OFFSET as u64 + 24);
        w.kernel.machine.poke(at, &[44, 41, 64]);
    };
    // Slot 44: a CNode capability naming the root CNode (guard 58: resolves
    // with 64 bits), used as the receive CNode.
    let guarded = Cap::CNode {
        ptr: PhysAddr(layout::ROOT),
        radix: layout::ROOT_RADIX,
        guard_bits: 58,
        guard: 0,
        rights: CapRights::ALL,
    };
    w.kernel
        .install_original(crate::cap::SlotRef::NONE, World::slot(44), guarded);
    set_receive(&mut w);
    w.kernel.machine.poke(
        PhysAddr(client.buffer.0 + IPC_BUFFER_CAPS_OFFSET as u64),
        &[40],
    );
    // Without GRANT the capability stays behind; the message still arrives.
    w.copy(
        EP,
        6,
        CapRights::READ | CapRights::WRITE | CapRights::GRANT_REPLY,
    )
    .unwrap();
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, 0]);
    w.syscall_as(client, Syscall::Send, [6, info(1, 0, 1), 0, 0, 0, 0, 0]);
    assert_eq!(MessageInfo::from_raw(w.regs(server)[1]).extra_caps(), 0);
    assert!(w.cap(41).is_null());
    // With GRANT it arrives in the receive slot, derived from the original.
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, 0]);
    w.syscall_as(client, Syscall::Send, [EP, info(1, 0, 1), 0, 0, 0, 0, 0]);
    assert_eq!(MessageInfo::from_raw(w.regs(server)[1]).extra_caps(), 1);
    assert!(w.cap(41).same_object(&w.cap(40)));
    w.revoke(40).unwrap();
    assert!(
        w.cap(41).is_null(),
        "the transferred capability is a child of the sent one"
    );
}

#[test]
fn notifications_or_badges_and_wake_waiters() {
    let (mut w, server, client) = pair();
    w.retype(UT, ObjectType::Notification, 0, 40, 1).unwrap();
    w.mint(40, 41, CapRights::ALL, 0b01).unwrap();
    w.mint(40, 42, CapRights::ALL, 0b10).unwrap();
    w.syscall_as(client, Syscall::Send, [41, 0, 0, 0, 0, 0, 0]);
    w.syscall_as(client, Syscall::Send, [42, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        w.syscall_as(server, Syscall::Recv, [40, 0, 0, 0, 0, 0, 0])[0],
        0b11
    );
    assert_eq!(
        w.syscall_as(server, Syscall::NBRecv, [40, 0, 0, 0, 0, 0, 0])[6],
        Error::WouldBlock.code()
    );
    w.syscall_as(server, Syscall::Recv, [40, 0, 0, 0, 0, 0, 0]);
    assert_eq!(w.state(server), ThreadState::BlockedOnNotification);
    w.syscall_as(client, Syscall::Send, [42, 0, 0, 0, 0, 0, 0]);
    assert_eq!(w.state(server), ThreadState::Runnable);
    assert_eq!(w.regs(server)[0], 0b10);
}

#[test]
fn bound_notification_wakes_a_receiver() {
    let (mut w, server, client) = pair();
    w.retype(UT, ObjectType::Notification, 0, 40, 1).unwrap();
    w.mint(40, 41, CapRights::ALL, 0x4).unwrap();
    w.invoke_slot(
        World::slot(server.slot),
        Label::TcbBindNotification,
        &[],
        &[World::slot(40)],
    )
    .unwrap();
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, REPLY]);
    assert_eq!(w.state(server), ThreadState::BlockedOnReceive);
    w.syscall_as(client, Syscall::Send, [41, 0, 0, 0, 0, 0, 0]);
    assert_eq!(w.state(server), ThreadState::Runnable);
    assert_eq!(w.regs(server)[0], 0x4);
    assert_eq!(
        w.kernel
            .machine
            .endpoint_mut(match w.cap(EP) {
                Cap::Endpoint { ptr, .. } => ptr,
                _ => unreachable!(),
            })
            .head,
        PhysAddr(0)
    );
    // Another thread cannot wait on a bound notification.
    assert_eq!(
        w.syscall_as(client, Syscall::Recv, [40, 0, 0, 0, 0, 0, 0])[6],
        Error::IllegalOperation.code()
    );
}

#[test]
fn faults_are_delivered_and_restarted_by_reply() {
    let (mut w, server, client) = pair();
    // Client's fault handler: the endpoint (copied into its TCB by configure).
    let guard = skyscope_abi::invocation::guard_word(0, 64 - layout::ROOT_RADIX);
    w.kernel.current = Some(client.tcb); // fault endpoint is looked up in the caller's CSpace
    w.invoke_slot(
        World::slot(client.slot),
        Label::TcbConfigure,
        &[EP, 100, guard, 0x1000],
        &[
            World::root_anchor(),
            World::slot(60),
            World::slot(client.slot + 1),
        ],
    )
    .unwrap();
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, REPLY]);
    assert!(w.kernel.deliver_fault(
        client.tcb,
        skyscope_abi::fault::VM_FAULT,
        [0x400000, 0xdead, 2, 0x92]
    ));
    assert_eq!(w.state(client), ThreadState::BlockedOnReply);
    let got = w.regs(server);
    assert_eq!(
        MessageInfo::from_raw(got[1]).label(),
        skyscope_abi::fault::VM_FAULT
    );
    assert_eq!(&got[2..6], &[0x400000, 0xdead, 2, 0x92]);
    w.syscall_as(server, Syscall::Reply, [0, 0, 0, 0, 0, 0, REPLY]);
    assert_eq!(w.state(client), ThreadState::Runnable);
    // Without a handler the thread just stops.
    let lone = w.thread(30, 100);
    assert!(
        !w.kernel
            .deliver_fault(lone.tcb, skyscope_abi::fault::VM_FAULT, [0; 4])
    );
    assert_eq!(w.state(lone), ThreadState::Inactive);
}

#[test]
fn a_fault_reply_can_skip_the_instruction_and_set_a_register() {
    use crate::machine::ThreadContext;
    use skyscope_abi::{
        fault,
        invocation::{REG_PC, REG_X0},
    };
    let (mut w, server, client) = pair();
    let guard = skyscope_abi::invocation::guard_word(0, 64 - layout::ROOT_RADIX);
    w.kernel.current = Some(client.tcb);
    w.invoke_slot(
        World::slot(client.slot),
        Label::TcbConfigure,
        &[EP, 100, guard, 0x1000],
        &[
            World::root_anchor(),
            World::slot(60),
            World::slot(client.slot + 1),
        ],
    )
    .unwrap();
    let context = |w: &World| w.kernel.machine.tcb(client.tcb).context;
    w.kernel
        .machine
        .tcb_mut(client.tcb)
        .context
        .set_register(REG_PC, 0x40_0000);
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, REPLY]);
    assert!(
        w.kernel
            .deliver_fault(client.tcb, fault::GUEST_EXIT, [0x40_0000, 0, 0, 0])
    );
    let flags = fault::REPLY_SKIP_INSTRUCTION | fault::REPLY_SET_REGISTER;
    let reg = (REG_X0 + 3) as u64;
    w.syscall_as(
        server,
        Syscall::Reply,
        [0, info(0, 3, 0), flags, reg, 42, 0, REPLY],
    );
    assert_eq!(w.state(client), ThreadState::Runnable);
    assert_eq!(context(&w).register(REG_PC), 0x40_0004);
    assert_eq!(context(&w).register(REG_X0 + 3), 42);

    // Setting a register takes three words; an out-of-range register is ignored.
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, REPLY]);
    assert!(w.kernel.deliver_fault(client.tcb, fault::VM_FAULT, [0; 4]));
    w.syscall_as(
        server,
        Syscall::Reply,
        [
            0,
            info(0, 1, 0),
            fault::REPLY_SET_REGISTER,
            1 << 40,
            7,
            0,
            REPLY,
        ],
    );
    assert_eq!(context(&w).register(REG_PC), 0x40_0004);
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, REPLY]);
    assert!(w.kernel.deliver_fault(client.tcb, fault::VM_FAULT, [0; 4]));
    w.syscall_as(
        server,
        Syscall::Reply,
        [
            0,
            info(0, 3, 0),
            fault::REPLY_SET_REGISTER,
            1 << 40,
            7,
            0,
            REPLY,
        ],
    );
    assert_eq!(w.state(client), ThreadState::Runnable);
    assert_eq!(context(&w).register(REG_PC), 0x40_0004);
}

#[test]
fn deleting_an_endpoint_cancels_waiters() {
    let (mut w, _server, client) = pair();
    w.syscall_as(client, Syscall::Send, [EP, info(1, 0, 0), 0, 0, 0, 0, 0]);
    assert_eq!(w.state(client), ThreadState::BlockedOnSend);
    w.delete(EP).unwrap();
    assert_eq!(w.state(client), ThreadState::Runnable);
    assert_eq!(w.regs(client)[6], Error::Cancelled.code());
}

#[test]
fn suspend_cancels_a_blocked_call_and_the_reply_object_forgets_it() {
    let (mut w, server, client) = pair();
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, REPLY]);
    w.syscall_as(client, Syscall::Call, [EP, info(1, 0, 0), 0, 0, 0, 0, 0]);
    assert_eq!(w.state(client), ThreadState::BlockedOnReply);
    w.invoke_slot(World::slot(client.slot), Label::TcbSuspend, &[], &[])
        .unwrap();
    assert_eq!(w.state(client), ThreadState::Inactive);
    assert_eq!(w.regs(client)[6], Error::Cancelled.code());
    // Replying now reaches nobody.
    w.syscall_as(server, Syscall::Reply, [0, 0, 0, 0, 0, 0, REPLY]);
    assert_eq!(w.state(client), ThreadState::Inactive);
    // Deleting a thread blocked in Recv leaves the endpoint consistent.
    w.syscall_as(server, Syscall::Recv, [EP, 0, 0, 0, 0, 0, REPLY]);
    w.delete(server.slot).unwrap();
    w.delete(EP).unwrap();
    w.delete(REPLY).unwrap();
}

#[test]
fn budgets_throttle_and_refill() {
    let mut w = World::new();
    let t = w.thread(10, 100);
    // Replace its full context with 2 ms per 10 ms.
    w.invoke_slot(
        World::sched_control(),
        Label::SchedControlConfigure,
        &[2_000, 10_000],
        &[World::slot(12)],
    )
    .unwrap();
    w.kernel.machine.clock = 0;
    w.kernel.release_due(0);
    assert_eq!(w.kernel.schedule(), Some(t.tcb));
    w.kernel.charge(0);
    assert_eq!(w.kernel.next_budget_event(0), Some(2_000_000));
    w.kernel.machine.clock = 2_000_000;
    w.kernel.charge(2_000_000);
    assert_eq!(w.kernel.current, None, "out of budget");
    assert_eq!(w.kernel.schedule(), None);
    assert_eq!(w.kernel.counters.budget_depletions, 1);
    let refill = w.kernel.next_budget_event(2_000_000).unwrap();
    assert!(
        refill > 2_000_000 && refill <= 10_000_000,
        "refill at {refill}"
    );
    w.kernel.machine.clock = refill;
    w.kernel.release_due(refill);
    assert_eq!(w.kernel.schedule(), Some(t.tcb));
    assert!(matches!(w.cap(12), Cap::SchedContext { .. }));
    assert_eq!(
        w.invoke_slot(
            World::sched_control(),
            Label::SchedControlConfigure,
            &[50, 10_000],
            &[World::slot(12)]
        ),
        Err(Error::RangeError)
    );
}
