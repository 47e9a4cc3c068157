//! Vcpus and GuestSpaces: binding, address-space kinds, mapping rules,
//! register access and clean-up.

use crate::{
    cap::Cap,
    machine::{SpaceKind, prelude::*},
    object::tcb::ThreadState,
    testing::{World, layout},
};
use skyscope_abi::{
    CapRights, Error, Label, ObjectType,
    invocation::{MAP_EXECUTE, guard_word},
};

const UT: u64 = layout::UNTYPED_SLOT;
const TCB: u64 = 10;
const GUEST_SPACE: u64 = 11;
const VCPU: u64 = 12;
const VSPACE: u64 = 13;
const FRAME: u64 = 14;
const TABLE: u64 = 15;
const SC: u64 = 16;
const VCPU2: u64 = 17;
const RW: u64 = 0b11;

/// A TCB configured with a GuestSpace (slots as above), a Vcpu, a VSpace,
/// a frame and a page table; nothing bound yet.
fn guest_world() -> World {
    let mut w = World::new();
    w.retype(UT, ObjectType::Tcb, 0, TCB, 1).unwrap();
    w.retype(UT, ObjectType::GuestSpace, 0, GUEST_SPACE, 1)
        .unwrap();
    w.retype(UT, ObjectType::Vcpu, 0, VCPU, 1).unwrap();
    w.retype(UT, ObjectType::VSpace, 0, VSPACE, 1).unwrap();
    w.retype(UT, ObjectType::Frame4K, 0, FRAME, 1).unwrap();
    w.retype(UT, ObjectType::PageTable, 0, TABLE, 1).unwrap();
    w.retype(UT, ObjectType::Vcpu, 0, VCPU2, 1).unwrap();
    configure(&mut w, GUEST_SPACE);
    w.give_sched_context(TCB, SC, 1000, 1000);
    w
}

/// Configures the TCB with the root CNode as its CSpace (guarded to
/// resolve all 64 bits) and the space in slot `space`.
fn configure(w: &mut World, space: u64) {
    let guard = guard_word(0, 64 - layout::ROOT_RADIX);
    w.invoke_slot(
        World::slot(TCB),
        Label::TcbConfigure,
        &[0, 100, guard, 0],
        &[World::root_anchor(), World::slot(space)],
    )
    .unwrap();
}

fn tcb(w: &World) -> crate::PhysAddr {
    let Cap::Tcb { ptr, .. } = w.cap(TCB) else {
        panic!()
    };
    ptr
}

fn bind(w: &mut World, vcpu: u64) -> Result<(), Error> {
    w.invoke_slot(
        World::slot(vcpu),
        Label::VcpuSetTcb,
        &[],
        &[World::slot(TCB)],
    )
    .map(|_| ())
}

fn resume(w: &mut World) -> Result<(), Error> {
    w.invoke_slot(World::slot(TCB), Label::TcbResume, &[], &[])
        .map(|_| ())
}

#[test]
fn a_guest_thread_needs_a_vcpu_and_a_guest_space() {
    let mut w = guest_world();
    // A GuestSpace without a Vcpu: cannot run.
    assert_eq!(resume(&mut w), Err(Error::IllegalOperation));
    bind(&mut w, VCPU).unwrap();
    let space = w.kernel.thread_space(tcb(&w)).unwrap();
    assert_eq!(space.kind, SpaceKind::Guest);
    let Cap::GuestSpace { ptr, vmid, .. } = w.cap(GUEST_SPACE) else {
        panic!()
    };
    assert_eq!((space.root, space.id), (ptr, vmid));
    resume(&mut w).unwrap();
    assert_eq!(w.kernel.machine.tcb(tcb(&w)).state, ThreadState::Runnable);

    // The same thread given a VSpace while it has a Vcpu cannot run either.
    configure(&mut w, VSPACE);
    assert_eq!(w.kernel.thread_space(tcb(&w)), Err(Error::IllegalOperation));
}

#[test]
fn binding_is_one_to_one_and_moves() {
    let mut w = guest_world();
    bind(&mut w, VCPU).unwrap();
    resume(&mut w).unwrap();
    let vcpu = |w: &World, i| match w.cap(i) {
        Cap::Vcpu { ptr, .. } => ptr,
        _ => panic!(),
    };
    // Binding another Vcpu to the thread releases the first one; the
    // thread keeps running as the new one.
    bind(&mut w, VCPU2).unwrap();
    let (v1, v2) = (vcpu(&w, VCPU), vcpu(&w, VCPU2));
    assert_eq!(w.kernel.machine.vcpu_mut(v1).tcb.0, 0);
    let t = tcb(&w);
    assert_eq!(w.kernel.machine.vcpu_mut(v2).tcb, t);
    assert_eq!(w.kernel.machine.tcb(tcb(&w)).vcpu, v2);
    assert_eq!(w.kernel.machine.tcb(tcb(&w)).state, ThreadState::Runnable);
    // Binding needs WRITE on the Vcpu and the TCB, and a TCB.
    w.copy(VCPU, 30, CapRights::READ).unwrap();
    assert_eq!(bind(&mut w, 30), Err(Error::InsufficientRights));
    assert_eq!(
        w.invoke_slot(
            World::slot(VCPU),
            Label::VcpuSetTcb,
            &[],
            &[World::slot(FRAME)]
        )
        .map(|_| ()),
        Err(Error::WrongType)
    );
    w.invariants();
}

#[test]
fn deleting_the_vcpu_stops_its_thread_and_deleting_the_thread_frees_the_vcpu() {
    let mut w = guest_world();
    bind(&mut w, VCPU).unwrap();
    resume(&mut w).unwrap();
    w.delete(VCPU).unwrap();
    assert_eq!(w.kernel.machine.tcb(tcb(&w)).vcpu.0, 0);
    assert_eq!(w.kernel.machine.tcb(tcb(&w)).state, ThreadState::Inactive);
    assert_eq!(resume(&mut w), Err(Error::IllegalOperation));
    w.invariants();
    // The other way round: the host machine panics if a bound Vcpu is
    // destroyed, so deleting it after its thread proves the unbinding.
    bind(&mut w, VCPU2).unwrap();
    w.delete(TCB).unwrap();
    w.delete(VCPU2).unwrap();
    w.invariants();
}

#[test]
fn guest_memory_may_be_writable_and_executable_native_memory_may_not() {
    let mut w = guest_world();
    let map = |w: &mut World, space: u64| {
        w.invoke_slot(
            World::slot(FRAME),
            Label::FrameMap,
            &[0x4000_0000, RW, MAP_EXECUTE],
            &[World::slot(space)],
        )
        .map(|_| ())
    };
    assert_eq!(map(&mut w, VSPACE), Err(Error::InvalidArgument));
    assert_eq!(map(&mut w, GUEST_SPACE), Err(Error::FailedLookup)); // no table yet
    w.invoke_slot(
        World::slot(TABLE),
        Label::PageTableMap,
        &[0x4000_0000],
        &[World::slot(GUEST_SPACE)],
    )
    .unwrap();
    w.retype(UT, ObjectType::PageTable, 0, 18, 1).unwrap();
    w.invoke_slot(
        World::slot(18),
        Label::PageTableMap,
        &[0x4000_0000],
        &[World::slot(GUEST_SPACE)],
    )
    .unwrap();
    map(&mut w, GUEST_SPACE).unwrap();
    let Cap::GuestSpace { ptr, .. } = w.cap(GUEST_SPACE) else {
        panic!()
    };
    let Cap::Frame { base, .. } = w.cap(FRAME) else {
        panic!()
    };
    assert_eq!(
        w.kernel.machine.translate(ptr, 0x4000_0123),
        Some(crate::PhysAddr(base.0 + 0x123))
    );
    // A GuestSpace cap without WRITE cannot be mapped into; a GuestSpace
    // is not invocable itself.
    w.copy(GUEST_SPACE, 31, CapRights::READ).unwrap();
    w.retype(UT, ObjectType::Frame4K, 0, 19, 1).unwrap();
    assert_eq!(
        w.invoke_slot(
            World::slot(19),
            Label::FrameMap,
            &[0x4000_1000, RW, 0],
            &[World::slot(31)]
        )
        .map(|_| ()),
        Err(Error::InsufficientRights)
    );
    assert_eq!(
        w.invoke_slot(World::slot(GUEST_SPACE), Label::FrameMap, &[0, RW, 0], &[])
            .map(|_| ()),
        Err(Error::IllegalOperation)
    );
    // Deleting the GuestSpace frees its VMID and forgets the mappings.
    let free = w.kernel.free_asids();
    w.delete(31).unwrap();
    w.delete(GUEST_SPACE).unwrap();
    assert_eq!(w.kernel.free_asids(), free); // the TCB still holds a copy
    w.delete(TCB).unwrap();
    assert_eq!(w.kernel.free_asids(), free + 1);
    w.delete(FRAME).unwrap();
    w.invariants();
}

#[test]
fn vcpu_registers_need_rights_and_a_valid_index() {
    let mut w = guest_world();
    let read = |w: &mut World, slot: u64, index: u64| {
        w.invoke_slot(World::slot(slot), Label::VcpuReadRegister, &[index], &[])
            .map(|r| r.words()[0])
    };
    w.invoke_slot(
        World::slot(VCPU),
        Label::VcpuWriteRegister,
        &[3, 0x1234],
        &[],
    )
    .unwrap();
    assert_eq!(read(&mut w, VCPU, 3), Ok(0x1234));
    assert_eq!(read(&mut w, VCPU, 1 << 20), Err(Error::InvalidArgument));
    w.copy(VCPU, 30, CapRights::READ).unwrap();
    assert_eq!(read(&mut w, 30, 3), Ok(0x1234));
    assert_eq!(
        w.invoke_slot(World::slot(30), Label::VcpuWriteRegister, &[3, 0], &[])
            .map(|_| ()),
        Err(Error::InsufficientRights)
    );
    assert_eq!(
        w.invoke_slot(World::slot(VCPU), Label::VcpuWriteRegister, &[3], &[])
            .map(|_| ()),
        Err(Error::TruncatedMessage)
    );
    // A thread cannot change the Vcpu it runs as.
    bind(&mut w, VCPU).unwrap();
    w.kernel.current = Some(tcb(&w));
    assert_eq!(read(&mut w, VCPU, 3), Err(Error::IllegalOperation));
}

#[test]
fn an_idle_guest_thread_waits_for_an_interrupt() {
    use skyscope_abi::vcpu::irq::{GROUP1, HIGH, LEVEL};
    let mut w = guest_world();
    bind(&mut w, VCPU).unwrap();
    resume(&mut w).unwrap();
    let t = tcb(&w);
    let set_irq = |w: &mut World, slot: u64, args: &[u64]| {
        w.invoke_slot(World::slot(slot), Label::VcpuSetIrq, args, &[])
            .map(|_| ())
    };
    // The guest executed `wfi` with nothing pending: off the CPU.
    assert_eq!(w.kernel.schedule(), Some(t));
    w.kernel.idle_in_guest(t);
    assert_eq!(w.kernel.machine.tcb(t).state, ThreadState::IdleInGuest);
    assert_eq!(w.kernel.schedule(), None, "an idle guest uses no CPU");
    w.kernel.check_scheduler().unwrap();
    // Bad requests change nothing.
    for bad in [[1020, 0, HIGH], [27, 256, HIGH], [27, 0, 1 << 3]] {
        assert_eq!(set_irq(&mut w, VCPU, &bad), Err(Error::InvalidArgument));
    }
    assert_eq!(
        set_irq(&mut w, VCPU, &[27, 0]),
        Err(Error::TruncatedMessage)
    );
    w.copy(VCPU, 30, CapRights::READ).unwrap();
    assert_eq!(
        set_irq(&mut w, 30, &[27, 0xa0, LEVEL | HIGH]),
        Err(Error::InsufficientRights)
    );
    // A line going low, or an interrupt for another Vcpu, does not wake it.
    set_irq(&mut w, VCPU, &[33, 0xa0, LEVEL | GROUP1]).unwrap();
    set_irq(&mut w, VCPU2, &[33, 0xa0, HIGH | GROUP1]).unwrap();
    assert_eq!(w.kernel.machine.tcb(t).state, ThreadState::IdleInGuest);
    // An interrupt for its Vcpu does.
    set_irq(&mut w, VCPU, &[33, 0xa0, LEVEL | HIGH | GROUP1]).unwrap();
    assert_eq!(w.kernel.machine.tcb(t).state, ThreadState::Runnable);
    assert_eq!(w.kernel.schedule(), Some(t));
    // A suspended thread stays suspended whatever is injected.
    w.kernel.idle_in_guest(t);
    w.invoke_slot(World::slot(TCB), Label::TcbSuspend, &[], &[])
        .unwrap();
    set_irq(&mut w, VCPU, &[34, 0, HIGH]).unwrap();
    assert_eq!(w.kernel.machine.tcb(t).state, ThreadState::Inactive);
    w.kernel.check_scheduler().unwrap();
}

/// The space the fastpath's switch remembers for a thread (see
/// `SpaceCache`) holds only until something could change it: binding or
/// unbinding a Vcpu, a VSpace capability leaving any slot (the thread's or
/// not), configuring the thread; looking it up again finds the new answer.
#[test]
fn a_remembered_space_goes_stale_with_every_change_that_could_move_it() {
    let mut w = guest_world();
    let t = tcb(&w);
    let vspace = |w: &World, slot: u64| {
        let Cap::VSpace { ptr, asid, .. } = w.cap(slot) else {
            panic!("no VSpace in slot {slot}")
        };
        Some((ptr, asid))
    };
    // As the general switch does: remember what `thread_space` finds.
    let remember = |w: &mut World| {
        if let Ok(space) = w.kernel.thread_space(t) {
            w.kernel.remember_space(t, space);
        }
    };
    // What is remembered now; then the invariant check, which compares
    // it with a fresh lookup (and remembers afresh).
    let remembered = |w: &mut World| {
        let space = w.kernel.native_space(t).map(|s| (s.root, s.id));
        w.invariants();
        space
    };
    // A GuestSpace thread has no native space to remember.
    remember(&mut w);
    assert_eq!(remembered(&mut w), None);

    configure(&mut w, VSPACE);
    assert_eq!(remembered(&mut w), None, "configuring the thread");
    remember(&mut w);
    assert_eq!(remembered(&mut w), vspace(&w, VSPACE));

    // A Vcpu bound, then unbound (by deleting it).
    bind(&mut w, VCPU).unwrap();
    assert_eq!(remembered(&mut w), None, "binding a Vcpu");
    remember(&mut w);
    assert_eq!(
        remembered(&mut w),
        None,
        "a Vcpu's thread has no native space"
    );
    w.delete(VCPU).unwrap();
    remember(&mut w);
    assert_eq!(remembered(&mut w), vspace(&w, VSPACE));

    // Any VSpace capability leaving any slot.
    const COPY: u64 = 18;
    w.copy(VSPACE, COPY, CapRights::all()).unwrap();
    assert_eq!(
        remembered(&mut w),
        vspace(&w, VSPACE),
        "a copy made elsewhere"
    );
    w.delete(COPY).unwrap();
    assert_eq!(remembered(&mut w), None, "a VSpace copy deleted");

    // Another VSpace configured in.
    const VSPACE2: u64 = 19;
    w.retype(UT, ObjectType::VSpace, 0, VSPACE2, 1).unwrap();
    assert_eq!(
        remembered(&mut w),
        None,
        "a new VSpace's identifier assigned"
    );
    remember(&mut w);
    configure(&mut w, VSPACE2);
    assert_eq!(remembered(&mut w), None, "another VSpace configured");
    remember(&mut w);
    assert_eq!(remembered(&mut w), vspace(&w, VSPACE2));

    // The thread's copy revoked away: nothing to remember any more.
    w.revoke(VSPACE2).unwrap();
    assert_eq!(remembered(&mut w), None, "the thread's VSpace revoked");
    remember(&mut w);
    assert_eq!(remembered(&mut w), None);
}
