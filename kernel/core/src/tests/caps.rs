//! Capability operations: derivation, rights, badges, revoke, delete.

use crate::{
    PhysAddr,
    cap::Cap,
    slot::{self, SlotStore},
    testing::{World, layout},
};
use skyscope_abi::{CapRights, Error, Label, ObjectType};

const UT: u64 = layout::UNTYPED_SLOT;

#[test]
fn retype_places_original_caps_in_order() {
    let mut w = World::new();
    w.retype(UT, ObjectType::Endpoint, 0, 10, 3).unwrap();
    for (i, slot) in (10..13).enumerate() {
        match w.cap(slot) {
            Cap::Endpoint {
                ptr,
                badge: 0,
                rights,
            } => {
                assert_eq!(ptr, PhysAddr(layout::UNTYPED + 32 * i as u64));
                assert_eq!(rights, CapRights::ALL);
            }
            other => panic!("slot {slot}: {other:?}"),
        }
    }
    assert!(slot::has_children(&w.kernel.machine, World::slot(UT)));
    assert_eq!(w.kernel.counters.objects_created, 3);
}

#[test]
fn revoke_deletes_copies_of_copies_but_not_the_original() {
    let mut w = World::new();
    w.retype(UT, ObjectType::Endpoint, 0, 10, 1).unwrap();
    w.copy(10, 11, CapRights::ALL).unwrap();
    w.copy(11, 12, CapRights::READ).unwrap();
    w.mint(12, 13, CapRights::ALL, 42).unwrap();
    w.revoke(10).unwrap();
    assert!(matches!(w.cap(10), Cap::Endpoint { .. }));
    for s in 11..14 {
        assert!(
            w.cap(s).is_null(),
            "slot {s} survived revoke: {:?}",
            w.cap(s)
        );
    }
    // The object lives on through the original.
    assert_eq!(w.kernel.machine.destroyed.get(&ObjectType::Endpoint), None);
}

#[test]
fn revoking_a_badged_cap_keeps_other_badges() {
    let mut w = World::new();
    w.retype(UT, ObjectType::Endpoint, 0, 10, 1).unwrap();
    w.mint(10, 11, CapRights::ALL, 5).unwrap();
    w.mint(10, 12, CapRights::ALL, 6).unwrap();
    w.copy(11, 13, CapRights::ALL).unwrap(); // badge 5, child of 11
    w.revoke(11).unwrap();
    assert!(w.cap(13).is_null());
    assert_eq!(w.cap(12).badge(), 6);
    assert_eq!(w.cap(11).badge(), 5);
}

#[test]
fn rights_cannot_grow() {
    let mut w = World::new();
    w.retype(UT, ObjectType::Notification, 0, 10, 1).unwrap();
    w.copy(10, 11, CapRights::READ).unwrap();
    w.copy(11, 12, CapRights::ALL).unwrap();
    w.mint(12, 13, CapRights::ALL, 1).unwrap();
    for s in 11..14 {
        assert_eq!(w.cap(s).rights(), CapRights::READ, "slot {s}");
    }
}

#[test]
fn badges_cannot_change() {
    let mut w = World::new();
    w.retype(UT, ObjectType::Endpoint, 0, 10, 1).unwrap();
    w.mint(10, 11, CapRights::ALL, 7).unwrap();
    assert_eq!(
        w.mint(11, 12, CapRights::ALL, 8),
        Err(Error::IllegalOperation)
    );
    assert_eq!(w.mint(11, 12, CapRights::ALL, 7).map(|_| ()), Ok(()));
    assert_eq!(w.cap(12).badge(), 7);
}

#[test]
fn untyped_caps_cannot_be_copied_or_moved_into_their_own_memory() {
    let mut w = World::new();
    assert_eq!(w.copy(UT, 20, CapRights::ALL), Err(Error::IllegalOperation));
    // A CNode carved from the untyped: moving the untyped into it is refused.
    w.retype(UT, ObjectType::CNode, 2, 10, 1).unwrap();
    let d = u64::from(layout::ROOT_RADIX);
    assert_eq!(
        w.cnode(Label::CNodeMove, &[10 << 2, d + 2, UT, d]),
        Err(Error::IllegalOperation)
    );
    // Moving it elsewhere is fine and keeps its children.
    w.move_cap(UT, 30).unwrap();
    assert!(slot::has_children(&w.kernel.machine, World::slot(30)));
}

#[test]
fn deleting_the_last_cap_finalises_once() {
    let mut w = World::new();
    w.retype(UT, ObjectType::Endpoint, 0, 10, 1).unwrap();
    w.copy(10, 11, CapRights::ALL).unwrap();
    w.delete(10).unwrap();
    assert_eq!(w.kernel.machine.destroyed.get(&ObjectType::Endpoint), None);
    w.delete(11).unwrap();
    assert_eq!(
        w.kernel.machine.destroyed.get(&ObjectType::Endpoint),
        Some(&1)
    );
    w.delete(11).unwrap(); // deleting an empty slot is a no-op
    assert_eq!(w.kernel.counters.objects_destroyed, 1);
}

#[test]
fn untyped_memory_is_reused_after_revoke() {
    let mut w = World::new();
    w.retype(UT, ObjectType::Tcb, 0, 10, 4).unwrap();
    let first = w.cap(10);
    assert_eq!(
        w.retype(UT, ObjectType::Untyped, 19, 20, 2),
        Err(Error::NotEnoughMemory)
    );
    assert_eq!(
        w.retype(UT, ObjectType::Untyped, 20, 20, 1),
        Err(Error::RangeError)
    );
    w.revoke(UT).unwrap();
    assert!((10..14).all(|s| w.cap(s).is_null()));
    assert_eq!(w.kernel.machine.destroyed.get(&ObjectType::Tcb), Some(&4));
    w.retype(UT, ObjectType::Tcb, 0, 10, 1).unwrap();
    assert_eq!(w.cap(10), first, "the same memory is handed out again");
    w.revoke(UT).unwrap();
    w.retype(UT, ObjectType::Untyped, 19, 20, 2).unwrap();
}

#[test]
fn nested_cnodes_are_destroyed_without_recursion() {
    // A chain of 300 CNodes, each holding the only capability to the next:
    // deleting the head destroys all of them on a bounded stack.
    let mut w = World::new();
    let depth = if cfg!(miri) { 20 } else { 300u64 };
    w.retype(UT, ObjectType::Untyped, 18, 2, 1).unwrap();
    w.retype(2, ObjectType::CNode, 1, 3, 1).unwrap(); // head in root slot 3
    let d = u64::from(layout::ROOT_RADIX);
    for _ in 0..depth {
        // Make a new CNode in root slot 4, then move the current tail's
        // capability into its slot 0 and put the new one at the tail.
        w.retype(2, ObjectType::CNode, 1, 4, 1).unwrap();
        // Move slot 3 (the chain so far) into the new CNode's slot 0 ...
        w.cnode(Label::CNodeMove, &[4 << 1, d + 1, 3, d]).unwrap();
        // ... and the new CNode becomes the head.
        w.move_cap(4, 3).unwrap();
    }
    let before = w.kernel.machine.objects.len();
    w.delete(3).unwrap();
    assert_eq!(w.kernel.machine.objects.len(), before - depth as usize - 1);
    assert_eq!(
        w.kernel.machine.destroyed.get(&ObjectType::CNode),
        Some(&(depth + 1))
    );
}

#[test]
fn a_cnode_holding_its_own_cap_is_destroyed_when_the_last_outside_cap_goes() {
    let mut w = World::new();
    w.retype(UT, ObjectType::CNode, 2, 10, 1).unwrap();
    let d = u64::from(layout::ROOT_RADIX);
    // Copy the CNode cap into the CNode itself, then delete the outside cap.
    w.cnode(Label::CNodeCopy, &[10 << 2, d + 2, 10, d, 0xf])
        .unwrap();
    w.delete(10).unwrap();
    // A cycle: the CNode keeps itself alive (as in seL4); revoking the
    // untyped reclaims it.
    assert_eq!(w.kernel.machine.destroyed.get(&ObjectType::CNode), None);
    w.revoke(UT).unwrap();
    assert_eq!(w.kernel.machine.destroyed.get(&ObjectType::CNode), Some(&1));
    assert_eq!(
        w.kernel.machine.objects.len(),
        2,
        "only the boot CNodes remain"
    );
}

#[test]
fn mdb_links_stay_consistent_through_moves() {
    let mut w = World::new();
    w.retype(UT, ObjectType::Endpoint, 0, 10, 1).unwrap();
    w.copy(10, 11, CapRights::ALL).unwrap();
    w.move_cap(10, 40).unwrap();
    w.move_cap(11, 41).unwrap();
    let m = &w.kernel.machine;
    let a = m.slot(World::slot(40));
    assert_eq!(a.next, World::slot(41));
    assert_eq!(m.slot(World::slot(41)).prev, World::slot(40));
    assert_eq!(a.prev, World::slot(UT));
    w.revoke(40).unwrap();
    assert!(w.cap(41).is_null());
}
