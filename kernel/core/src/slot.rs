//! Capability slots and the mapping database (MDB) that links them.
//!
//! As in seL4, every non-empty slot sits in one doubly linked list in
//! derivation order: a derived capability is inserted right after its
//! source, so all capabilities to one object are adjacent and an object's
//! last capability is recognised in O(1) by looking at its neighbours. The
//! derivation tree is implicit: `b` (after `a` in the list) is a child of
//! `a` when `a` is *revocable* (created by retype, badged by mint, or issued
//! by IRQ control) and `a` covers `b` (see [`is_parent_of`]). Revoking `a`
//! deletes the run of children that follows it.

use crate::cap::{Cap, SlotRef};

/// One capability slot (64 bytes in kernel memory). All-zero bytes are an
/// empty slot (`FromZeros`), so zeroed memory is an empty CNode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, zerocopy::FromZeros)]
#[repr(C, align(64))]
pub struct Slot {
    /// The capability (Null when empty).
    pub cap: Cap,
    /// Previous slot in the MDB list.
    pub prev: SlotRef,
    /// Next slot in the MDB list.
    pub next: SlotRef,
    /// This capability may have derived children (see module docs).
    pub revocable: bool,
    /// This capability was the first to carry its badge (it is not a child
    /// of other capabilities with the same badge).
    pub first_badged: bool,
}

/// log2 of the slot size in kernel memory.
pub const SLOT_BITS: u8 = skyscope_abi::object::SLOT_BITS;
const _: () = assert!(core::mem::size_of::<Slot>() == 1 << SLOT_BITS);

/// Read and write access to slots, wherever they live.
pub trait SlotStore {
    /// The slot at `s`.
    fn slot(&self, s: SlotRef) -> &Slot;
    /// The slot at `s`, mutably.
    fn slot_mut(&mut self, s: SlotRef) -> &mut Slot;
}

/// Whether the capability in `parent` has the one in `child` as a child,
/// judged from their contents (seL4's `isMDBParentOf`).
pub fn is_parent_of(parent: &Slot, child: &Slot) -> bool {
    if !parent.revocable || !parent.cap.covers(&child.cap) {
        return false;
    }
    match parent.cap {
        Cap::Endpoint { badge, .. } | Cap::Notification { badge, .. } if badge != 0 => {
            child.cap.badge() == badge && !child.first_badged
        }
        _ => true,
    }
}

/// Whether a capability derived from `source` as `derived` starts a new
/// subtree (may have children of its own).
pub fn is_revocable(derived: &Cap, source: &Cap) -> bool {
    match derived {
        Cap::Endpoint { .. } | Cap::Notification { .. } => {
            derived.badge() != 0 && derived.badge() != source.badge()
        }
        Cap::Untyped { .. } => true,
        Cap::IrqHandler { .. } => matches!(source, Cap::IrqControl),
        _ => false,
    }
}

/// Links the (empty-linked) slot `new`, holding a capability derived from
/// the one in `parent`, into the list right after `parent`.
pub fn insert_after<S: SlotStore + ?Sized>(store: &mut S, parent: SlotRef, new: SlotRef) {
    let next = store.slot(parent).next;
    {
        let n = store.slot_mut(new);
        n.prev = parent;
        n.next = next;
    }
    store.slot_mut(parent).next = new;
    if !next.is_none() {
        store.slot_mut(next).prev = new;
    }
}

/// Unlinks `s` from the list (its neighbours become adjacent; its children,
/// if any, become children of its parent).
pub fn unlink<S: SlotStore + ?Sized>(store: &mut S, s: SlotRef) {
    let (prev, next) = {
        let slot = store.slot(s);
        (slot.prev, slot.next)
    };
    if !prev.is_none() {
        store.slot_mut(prev).next = next;
    }
    if !next.is_none() {
        store.slot_mut(next).prev = prev;
    }
    let slot = store.slot_mut(s);
    slot.prev = SlotRef::NONE;
    slot.next = SlotRef::NONE;
}

/// Moves the slot contents (capability and list position) from `from` to
/// the empty slot `to`.
pub fn move_slot<S: SlotStore + ?Sized>(store: &mut S, from: SlotRef, to: SlotRef) {
    let slot = *store.slot(from);
    *store.slot_mut(to) = slot;
    *store.slot_mut(from) = Slot::default();
    if !slot.prev.is_none() {
        store.slot_mut(slot.prev).next = to;
    }
    if !slot.next.is_none() {
        store.slot_mut(slot.next).prev = to;
    }
}

/// Exchanges the contents (capability and list position) of two non-empty
/// slots: each capability keeps its place in derivation order.
pub fn swap<S: SlotStore + ?Sized>(store: &mut S, a: SlotRef, b: SlotRef) {
    if a == b {
        return;
    }
    let (sa, sb) = (*store.slot(a), *store.slot(b));
    let other = |x: SlotRef| {
        if x == a {
            b
        } else if x == b {
            a
        } else {
            x
        }
    };
    let new_a = Slot {
        prev: other(sb.prev),
        next: other(sb.next),
        ..sb
    };
    let new_b = Slot {
        prev: other(sa.prev),
        next: other(sa.next),
        ..sa
    };
    *store.slot_mut(a) = new_a;
    *store.slot_mut(b) = new_b;
    for (at, node) in [(a, new_a), (b, new_b)] {
        if !node.prev.is_none() && node.prev != a && node.prev != b {
            store.slot_mut(node.prev).next = at;
        }
        if !node.next.is_none() && node.next != a && node.next != b {
            store.slot_mut(node.next).prev = at;
        }
    }
}

/// Whether the capability in `s` is the last one to its object.
pub fn is_final<S: SlotStore + ?Sized>(store: &S, s: SlotRef) -> bool {
    let slot = store.slot(s);
    let same = |n: SlotRef| !n.is_none() && store.slot(n).cap.same_object(&slot.cap);
    !same(slot.prev) && !same(slot.next)
}

/// Whether the capability in `s` has at least one child.
pub fn has_children<S: SlotStore + ?Sized>(store: &S, s: SlotRef) -> bool {
    let slot = store.slot(s);
    !slot.next.is_none() && is_parent_of(slot, store.slot(slot.next))
}
