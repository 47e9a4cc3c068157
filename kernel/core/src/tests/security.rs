//! Host tests of the isolation fixes: page tables map once and leave their
//! space empty, IPC buffers are RAM, destruction cycles end, and every
//! long operation restarted after preemption ends as it would have without.

use crate::{
    PhysAddr,
    cap::{Cap, SlotRef},
    testing::{World, layout},
};
use skyscope_abi::{CapRights, Error, Label, ObjectType};

const UT: u64 = layout::UNTYPED_SLOT;

fn map_table(w: &mut World, pt: u64, space: u64, va: u64) -> Result<(), Error> {
    w.invoke_slot(
        World::slot(pt),
        Label::PageTableMap,
        &[va],
        &[World::slot(space)],
    )
    .map(drop)
}

fn map_frame(w: &mut World, frame: u64, space: u64, va: u64) -> Result<(), Error> {
    w.invoke_slot(
        World::slot(frame),
        Label::FrameMap,
        &[va, u64::from(CapRights::ALL.bits()), 0],
        &[World::slot(space)],
    )
    .map(drop)
}

fn ptr_of(w: &World, slot: u64) -> PhysAddr {
    w.cap(slot).region().expect("object").0
}

/// Runs `op` until it is not preempted; returns its result and how many
/// times it was restarted.
fn until_done(
    w: &mut World,
    mut op: impl FnMut(&mut World) -> Result<(), Error>,
) -> (Result<(), Error>, u32) {
    let mut restarts = 0;
    loop {
        match op(w) {
            Err(Error::Preempted) => restarts += 1,
            other => return (other, restarts),
        }
        assert!(restarts < 1_000_000, "no progress");
    }
}

#[test]
fn page_table_capabilities_cannot_be_copied_or_minted() {
    let mut w = World::new();
    w.retype(UT, ObjectType::VSpace, 0, 10, 1).unwrap();
    w.retype(UT, ObjectType::PageTable, 0, 11, 1).unwrap();
    assert_eq!(w.copy(11, 12, CapRights::ALL), Err(Error::IllegalOperation));
    assert_eq!(
        w.mint(11, 12, CapRights::ALL, 0),
        Err(Error::IllegalOperation)
    );
    map_table(&mut w, 11, 10, 0x40_0000).unwrap();
    assert_eq!(w.copy(11, 12, CapRights::ALL), Err(Error::IllegalOperation));
    // Moving keeps the one capability (and its mapping).
    w.move_cap(11, 12).unwrap();
    assert!(matches!(w.cap(12), Cap::PageTable { level: 2, .. }));
}

/// VSpace 10, a level-2 table 11 and a level-3 table 12 under it, frame 13
/// mapped at `VA` through them.
const VA: u64 = 0x40_0000;
fn mapped_world() -> World {
    let mut w = World::new();
    w.retype(UT, ObjectType::VSpace, 0, 10, 1).unwrap();
    w.retype(UT, ObjectType::PageTable, 0, 11, 2).unwrap();
    w.retype(UT, ObjectType::Frame4K, 0, 13, 1).unwrap();
    map_table(&mut w, 11, 10, VA).unwrap();
    map_table(&mut w, 12, 10, VA).unwrap();
    map_frame(&mut w, 13, 10, VA).unwrap();
    w
}

#[test]
fn an_unmapped_table_is_empty_and_brings_nothing_back() {
    let mut w = mapped_world();
    let (l2, l3, root) = (ptr_of(&w, 11), ptr_of(&w, 12), ptr_of(&w, 10));
    assert_eq!(w.kernel.machine.table_len(l3), 1);
    // Unmapping the level-2 table empties it and the table below it.
    w.invoke_slot(World::slot(11), Label::PageTableUnmap, &[], &[])
        .unwrap();
    assert_eq!(w.kernel.machine.table_len(l2), 0);
    assert_eq!(w.kernel.machine.table_len(l3), 0);
    // The frame's memory goes back to the untyped and becomes a CNode...
    w.delete(13).unwrap();
    // ...and mapping the tables again finds them empty: no way to the CNode.
    map_table(&mut w, 11, 10, VA).unwrap();
    w.invoke_slot(World::slot(12), Label::PageTableUnmap, &[], &[])
        .unwrap();
    map_table(&mut w, 12, 10, VA).unwrap();
    assert_eq!(w.kernel.machine.translate(root, VA), None);
    w.kernel.check_invariants(&[World::root_cap()]).unwrap();
}

#[test]
fn deleting_a_space_empties_its_tables() {
    let mut w = mapped_world();
    let (l2, l3) = (ptr_of(&w, 11), ptr_of(&w, 12));
    w.delete(10).unwrap();
    assert_eq!(w.kernel.machine.table_len(l2), 0);
    assert_eq!(w.kernel.machine.table_len(l3), 0);
    // The tables' capabilities still name the dead space; unmapping them
    // is harmless, and they can be used again.
    w.retype(UT, ObjectType::VSpace, 0, 20, 1).unwrap();
    for pt in [11, 12] {
        w.invoke_slot(World::slot(pt), Label::PageTableUnmap, &[], &[])
            .unwrap();
    }
    map_table(&mut w, 11, 20, VA).unwrap();
    assert_eq!(w.kernel.machine.translate(ptr_of(&w, 20), VA), None);
    w.kernel.check_invariants(&[World::root_cap()]).unwrap();
}

#[test]
fn device_frames_are_never_ipc_buffers() {
    let mut w = World::new();
    // A device untyped, as the boot code hands out for MMIO.
    let device = Cap::Untyped {
        base: PhysAddr(0x0900_0000),
        free_offset: 0,
        zeroed_to: 1 << 16,
        size_bits: 16,
        device: true,
    };
    w.kernel
        .install_original(SlotRef::NONE, World::slot(30), device);
    w.retype(30, ObjectType::Frame4K, 0, 31, 1).unwrap();
    w.retype(UT, ObjectType::Tcb, 0, 32, 1).unwrap();
    w.retype(UT, ObjectType::VSpace, 0, 33, 1).unwrap();
    let guard = skyscope_abi::invocation::guard_word(0, 64 - layout::ROOT_RADIX);
    let configure = |w: &mut World, buffer: u64| {
        w.invoke_slot(
            World::slot(32),
            Label::TcbConfigure,
            &[0, 10, guard, 0x1000],
            &[World::root_anchor(), World::slot(33), World::slot(buffer)],
        )
        .map(drop)
    };
    assert_eq!(configure(&mut w, 31), Err(Error::InvalidArgument));
    w.retype(UT, ObjectType::Frame4K, 0, 34, 1).unwrap();
    configure(&mut w, 34).unwrap();
}

#[test]
fn a_thread_holding_the_last_capability_to_its_own_cspace_is_reclaimed() {
    // TCB 10 whose CSpace is CNode 11; the CNode holds the only other
    // capability to the TCB, and the TCB's CSpace slot the only other one
    // to the CNode: once the outside capabilities go, a cycle.
    let mut w = World::new();
    w.retype(UT, ObjectType::Tcb, 0, 10, 1).unwrap();
    w.retype(UT, ObjectType::CNode, 2, 11, 1).unwrap();
    w.retype(UT, ObjectType::VSpace, 0, 12, 1).unwrap();
    w.invoke_slot(
        World::slot(10),
        Label::TcbConfigure,
        &[0, 10, 0, 0],
        &[World::slot(11), World::slot(12)],
    )
    .unwrap();
    let d = u64::from(layout::ROOT_RADIX);
    w.cnode(Label::CNodeCopy, &[11 << 2, d + 2, 10, d, 0xf])
        .unwrap();
    w.delete(10).unwrap();
    w.delete(11).unwrap();
    assert_eq!(w.kernel.machine.destroyed.get(&ObjectType::Tcb), None);
    // Revoking the untyped resolves the cycle, with and without interrupts.
    for preempt in [None, Some(1)] {
        let mut v = w.clone();
        v.kernel.machine.preempt_every = preempt;
        let (result, _) = until_done(&mut v, |v| v.revoke(UT).map(drop));
        result.unwrap();
        assert_eq!(v.kernel.machine.destroyed.get(&ObjectType::Tcb), Some(&1));
        assert_eq!(v.kernel.machine.destroyed.get(&ObjectType::CNode), Some(&1));
        assert_eq!(v.kernel.machine.objects.len(), 2, "only the boot CNodes");
        v.kernel.check_invariants(&[World::root_cap()]).unwrap();
    }
}

#[test]
fn a_long_chain_of_cnodes_is_destroyed_under_constant_preemption() {
    // CNode i holds the last capability to CNode i + 1.
    let mut w = World::new();
    let d = u64::from(layout::ROOT_RADIX);
    w.retype(UT, ObjectType::CNode, 1, 10, 1).unwrap();
    for i in 0..40u64 {
        w.retype(UT, ObjectType::CNode, 1, 11, 1).unwrap();
        // The new CNode takes the chain's head into its slot 0 and
        // becomes the head.
        w.cnode(Label::CNodeMove, &[11 << 1, d + 1, 10, d]).unwrap();
        w.move_cap(11, 10).unwrap();
        assert!(!w.cap(10).is_null(), "step {i}");
    }
    let mut quiet = w.clone();
    quiet.delete(10).unwrap();
    w.kernel.machine.preempt_every = Some(0);
    let (result, restarts) = until_done(&mut w, |w| w.delete(10).map(drop));
    result.unwrap();
    assert!(
        restarts >= 40,
        "{restarts} restarts: one per container at least"
    );
    assert_eq!(
        w.kernel.machine.destroyed.get(&ObjectType::CNode),
        quiet.kernel.machine.destroyed.get(&ObjectType::CNode)
    );
    assert_eq!(w.kernel.machine.objects, quiet.kernel.machine.objects);
    w.kernel.check_invariants(&[World::root_cap()]).unwrap();
}

#[test]
fn retype_zeroes_preemptibly_and_reused_memory_is_zeroed_again() {
    let mut w = World::new();
    w.kernel.machine.preempt_every = Some(0);
    // 256 KiB of frames: several zeroing chunks, each followed by a
    // preemption point.
    let (result, restarts) = until_done(&mut w, |w| {
        w.retype(UT, ObjectType::Frame4K, 0, 10, 40).map(drop)
    });
    result.unwrap();
    assert!(restarts >= 2, "{restarts} restarts");
    let zeroed = w.kernel.machine.zeroed_bytes;
    assert_eq!(zeroed, 40 * 4096, "each byte zeroed once");
    // Dirty a frame's memory, free everything, and retype over it: the
    // host machine refuses to create an object on memory not zeroed.
    let base = ptr_of(&w, 10);
    w.kernel.machine.poke(base, &[0xdead_beef; 8]);
    let (result, _) = until_done(&mut w, |w| w.revoke(UT).map(drop));
    result.unwrap();
    let (result, _) = until_done(&mut w, |w| {
        w.retype(UT, ObjectType::Endpoint, 0, 10, 1).map(drop)
    });
    result.unwrap();
    w.kernel.check_invariants(&[World::root_cap()]).unwrap();
}

#[test]
fn untyped_children_inherit_what_is_known_zero() {
    let mut w = World::new();
    w.retype(UT, ObjectType::Frame4K, 0, 10, 1).unwrap();
    let before = w.kernel.machine.zeroed_bytes;
    // A child untyped: nothing zeroed for it.
    w.retype(UT, ObjectType::Untyped, 16, 11, 1).unwrap();
    assert_eq!(w.kernel.machine.zeroed_bytes, before);
    let Cap::Untyped { zeroed_to, .. } = w.cap(11) else {
        panic!()
    };
    assert_eq!(zeroed_to, 0, "nothing of the child was zeroed yet");
    // Objects from the child are zeroed when made.
    w.retype(11, ObjectType::Frame4K, 0, 12, 2).unwrap();
    assert_eq!(w.kernel.machine.zeroed_bytes, before + 2 * 4096);
}
