//! Property test: random sequences of capability operations, run on the
//! kernel and on a reference model, compared after every operation.
//!
//! The model keeps the derivation lists as plain vectors, decides whether a
//! capability is the last one to its object by scanning every capability
//! (the kernel only looks at its list neighbours), computes retype
//! placement from the set of live objects (the kernel uses the watermark in
//! the capability), and finalises containers recursively (the kernel
//! iteratively, through zombies). Capability contents, list order, live
//! objects and error codes must agree exactly. Independently of the model,
//! every step also checks the invariants: no capability with more rights
//! than its parent, no capability to a dead object, untyped watermarks
//! above everything made from them, finalisation exactly once (the host
//! machine panics otherwise) and no object left without a capability.

extern crate std;

use crate::{
    PhysAddr,
    cap::{Cap, FrameSize, Mapping, SlotRef},
    cspace,
    slot::{self, SLOT_BITS, Slot, SlotStore},
    testing::{World, layout},
};
use proptest::prelude::*;
use skyscope_abi::{CapRights, Error, Label, ObjectType};
use std::{
    collections::{BTreeMap, BTreeSet},
    vec,
    vec::Vec,
};

/// A slot named relative to the root CNode: directly, or through a CNode in
/// a root slot (two-level address, depth 8: radix-2 CNodes resolve fully).
#[derive(Clone, Copy, Debug)]
pub(super) enum Addr {
    Top(u64),
    Nested(u64, u64),
}

impl Addr {
    fn index_depth(self) -> (u64, u64) {
        match self {
            Addr::Top(i) => (i, 6),
            Addr::Nested(i, j) => ((i << 2) | j, 8),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Op {
    Retype {
        ut: Addr,
        ty: ObjectType,
        size: u64,
        dest: Option<u64>,
        offset: u64,
        count: u64,
    },
    Copy {
        src: Addr,
        dst: Addr,
        rights: u8,
    },
    Mint {
        src: Addr,
        dst: Addr,
        rights: u8,
        data: u64,
    },
    Move {
        src: Addr,
        dst: Addr,
    },
    Mutate {
        src: Addr,
        dst: Addr,
        data: u64,
    },
    Delete(Addr),
    Revoke(Addr),
}

fn addr() -> impl Strategy<Value = Addr> {
    prop_oneof![
        6 => (0..20u64).prop_map(Addr::Top),
        1 => (20..64u64).prop_map(Addr::Top),
        3 => (0..20u64, 0..4u64).prop_map(|(i, j)| Addr::Nested(i, j)),
    ]
}

fn object() -> impl Strategy<Value = (ObjectType, u64)> {
    prop_oneof![
        3 => (6..14u64).prop_map(|s| (ObjectType::Untyped, s)),
        3 => (1..4u64).prop_map(|r| (ObjectType::CNode, r)),
        2 => Just((ObjectType::Endpoint, 0)),
        2 => Just((ObjectType::Notification, 0)),
        2 => Just((ObjectType::Tcb, 0)),
        1 => Just((ObjectType::Frame4K, 0)),
        1 => Just((ObjectType::Reply, 0)),
        1 => Just((ObjectType::SchedContext, 0)),
        1 => Just((ObjectType::VSpace, 0)),
        1 => Just((ObjectType::GuestSpace, 0)),
        1 => Just((ObjectType::Vcpu, 0)),
        1 => Just((ObjectType::PageTable, 0)),
        1 => Just((ObjectType::Untyped, 2)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let data = prop_oneof![3 => Just(0u64), 2 => 1..4u64, 1 => Just(1u64 << 59)];
    prop_oneof![
        5 => (addr(), object(), prop::option::of(0..20u64), 0..24u64, 0..5u64).prop_map(
            |(ut, (ty, size), dest, offset, count)| Op::Retype { ut, ty, size, dest, offset, count }
        ),
        4 => (addr(), addr(), 0..16u8).prop_map(|(src, dst, rights)| Op::Copy { src, dst, rights }),
        3 => (addr(), addr(), 0..16u8, data.clone()).prop_map(|(src, dst, rights, data)| Op::Mint { src, dst, rights, data }),
        2 => (addr(), addr()).prop_map(|(src, dst)| Op::Move { src, dst }),
        1 => (addr(), addr(), data).prop_map(|(src, dst, data)| Op::Mutate { src, dst, data }),
        3 => addr().prop_map(Op::Delete),
        2 => addr().prop_map(Op::Revoke),
    ]
}

/// The reference model.
#[derive(Clone)]
pub(super) struct Model {
    slots: BTreeMap<SlotRef, Slot>,
    lists: Vec<Vec<SlotRef>>,
    objects: BTreeMap<u64, (ObjectType, u8)>,
    untyped: BTreeSet<(u64, u8)>,
    asids: BTreeSet<u16>,
}

impl SlotStore for Model {
    fn slot(&self, s: SlotRef) -> &Slot {
        &self.slots[&s]
    }
    fn slot_mut(&mut self, s: SlotRef) -> &mut Slot {
        self.slots.get_mut(&s).expect("model slot")
    }
}

fn container_slots(cap: &Cap) -> Vec<SlotRef> {
    match *cap {
        Cap::CNode { ptr, radix, .. } => (0..1u64 << radix)
            .map(|i| SlotRef(ptr.0 + (i << SLOT_BITS)))
            .collect(),
        Cap::Tcb { ptr, .. } => (0..crate::object::tcb::slots::COUNT as u64)
            .map(|i| SlotRef(ptr.0 + (i << SLOT_BITS)))
            .collect(),
        _ => vec![],
    }
}

impl Model {
    pub(super) fn new(world: &World) -> Model {
        let m = &world.kernel.machine;
        let slots = m
            .slot_addresses()
            .into_iter()
            .map(|s| (s, *m.slot(s)))
            .collect();
        Model {
            slots,
            lists: vec![
                vec![World::root_anchor()],
                vec![World::slot(layout::UNTYPED_SLOT)],
                vec![World::sched_control()],
            ],
            objects: m.objects.clone(),
            untyped: m.untyped.clone(),
            asids: BTreeSet::new(),
        }
    }

    fn resolve(&self, a: Addr) -> Result<SlotRef, Error> {
        let (index, depth) = a.index_depth();
        cspace::lookup_slot(self, &World::root_cap(), index, depth as u32)
    }

    fn position(&self, s: SlotRef) -> (usize, usize) {
        self.lists
            .iter()
            .enumerate()
            .find_map(|(l, list)| list.iter().position(|&x| x == s).map(|p| (l, p)))
            .expect("slot in a list")
    }

    fn insert_after(&mut self, parent: SlotRef, new: SlotRef) {
        let (l, p) = self.position(parent);
        self.lists[l].insert(p + 1, new);
    }

    fn live_inside(&self, base: u64, bits: u8) -> bool {
        let end = base + (1u64 << bits);
        self.objects.keys().any(|&o| o >= base && o < end)
            || self
                .untyped
                .iter()
                .any(|&(u, b)| u >= base && u < end && b < bits)
    }

    fn create(&mut self, ty: ObjectType, base: u64, bits: u8) -> Cap {
        let rights = CapRights::ALL;
        let ptr = PhysAddr(base);
        let cap = match ty {
            ObjectType::Untyped => {
                self.untyped.insert((base, bits));
                return Cap::Untyped {
                    base: ptr,
                    free_offset: 0,
                    zeroed_to: 0,
                    size_bits: bits,
                    device: false,
                };
            }
            ObjectType::CNode => Cap::CNode {
                ptr,
                radix: bits - SLOT_BITS,
                guard_bits: 0,
                guard: 0,
                rights,
            },
            ObjectType::Tcb => Cap::Tcb { ptr, rights },
            ObjectType::Endpoint => Cap::Endpoint {
                ptr,
                badge: 0,
                rights,
            },
            ObjectType::Notification => Cap::Notification {
                ptr,
                badge: 0,
                rights,
            },
            ObjectType::Reply => Cap::Reply { ptr, rights },
            ObjectType::SchedContext => Cap::SchedContext { ptr, rights },
            ObjectType::Frame4K => Cap::Frame {
                base: ptr,
                size: FrameSize::Small,
                device: false,
                rights,
                mapping: Mapping::NONE,
            },
            ObjectType::PageTable => Cap::PageTable {
                ptr,
                mapping: Mapping::NONE,
                level: 0,
            },
            ObjectType::VSpace | ObjectType::GuestSpace => {
                let asid = (1..4096u16)
                    .find(|a| !self.asids.contains(a))
                    .expect("asid");
                self.asids.insert(asid);
                if ty == ObjectType::VSpace {
                    Cap::VSpace { ptr, asid, rights }
                } else {
                    Cap::GuestSpace {
                        ptr,
                        vmid: asid,
                        rights,
                    }
                }
            }
            ObjectType::Vcpu => Cap::Vcpu { ptr, rights },
            ObjectType::Frame2M => unreachable!("not generated"),
        };
        self.objects.insert(base, (ty, bits));
        for s in container_slots(&cap) {
            self.slots.insert(s, Slot::default());
        }
        cap
    }

    fn retype(
        &mut self,
        ut: Addr,
        ty: ObjectType,
        size: u64,
        dest: Option<u64>,
        offset: u64,
        count: u64,
    ) -> Result<(), Error> {
        let ut_slot = self.resolve(ut)?;
        let Cap::Untyped {
            base,
            size_bits,
            free_offset,
            ..
        } = self.slots[&ut_slot].cap
        else {
            return Err(if self.slots[&ut_slot].cap.is_null() {
                Error::InvalidCapability
            } else {
                Error::IllegalOperation
            });
        };
        let bits = ty.object_bits(size).ok_or(match ty {
            ObjectType::Untyped | ObjectType::CNode => Error::RangeError,
            _ => Error::InvalidArgument,
        })?;
        if !(1..=256).contains(&count) {
            return Err(Error::RangeError);
        }
        if bits > size_bits {
            return Err(Error::NotEnoughMemory);
        }
        if ty == ObjectType::Untyped && bits == size_bits {
            return Err(Error::RangeError);
        }
        let node = match dest {
            None => World::root_cap(),
            Some(i) => self.slots[&self.resolve(Addr::Top(i))?].cap,
        };
        let Cap::CNode {
            ptr: node, radix, ..
        } = node
        else {
            return Err(if node.is_null() {
                Error::FailedLookup
            } else {
                Error::WrongType
            });
        };
        if offset >= 1 << radix || count > (1 << radix) - offset {
            return Err(Error::RangeError);
        }
        let dest_slot = |i: u64| SlotRef(node.0 + ((offset + i) << SLOT_BITS));
        if (0..count).any(|i| !self.slots[&dest_slot(i)].cap.is_null()) {
            return Err(Error::DeleteFirst);
        }
        let watermark = if self.live_inside(base.0, size_bits) {
            free_offset
        } else {
            0
        };
        let start = (base.0 + watermark).next_multiple_of(1 << bits);
        let end = start + (count << bits);
        if end > base.0 + (1 << size_bits) {
            return Err(Error::NotEnoughMemory);
        }
        if let Cap::Untyped { free_offset, .. } = &mut self.slot_mut(ut_slot).cap {
            *free_offset = end - base.0;
        }
        for i in 0..count {
            let cap = self.create(ty, start + (i << bits), bits);
            *self.slot_mut(dest_slot(i)) = Slot {
                cap,
                revocable: true,
                first_badged: true,
                ..Slot::default()
            };
            self.insert_after(ut_slot, dest_slot(i));
        }
        Ok(())
    }

    fn derive(
        &mut self,
        src: Addr,
        dst: Addr,
        make: impl FnOnce(Cap) -> Result<Cap, Error>,
    ) -> Result<(), Error> {
        let dst = self.resolve(dst)?;
        let src = self.resolve(src)?;
        if !self.slots[&dst].cap.is_null() {
            return Err(Error::DeleteFirst);
        }
        let source = self.slots[&src].cap;
        if source.is_null() {
            return Err(Error::FailedLookup);
        }
        let cap = make(source)?;
        let revocable = slot::is_revocable(&cap, &source);
        *self.slot_mut(dst) = Slot {
            cap,
            revocable,
            first_badged: revocable,
            ..Slot::default()
        };
        self.insert_after(src, dst);
        Ok(())
    }

    fn move_cap(&mut self, src: Addr, dst: Addr, data: Option<u64>) -> Result<(), Error> {
        let dst = self.resolve(dst)?;
        let src = self.resolve(src)?;
        if !self.slots[&dst].cap.is_null() {
            return Err(Error::DeleteFirst);
        }
        let source = self.slots[&src];
        if source.cap.is_null() {
            return Err(Error::FailedLookup);
        }
        let cap = match data {
            Some(d) => source.cap.with_data(d)?,
            None => source.cap,
        };
        if let Cap::Untyped {
            base, size_bits, ..
        } = cap
            && (base.0..base.0 + (1 << size_bits)).contains(&dst.0)
        {
            return Err(Error::IllegalOperation);
        }
        let (l, p) = self.position(src);
        self.lists[l][p] = dst;
        *self.slot_mut(dst) = Slot { cap, ..source };
        *self.slot_mut(src) = Slot::default();
        Ok(())
    }

    fn delete(&mut self, s: SlotRef) {
        let cap = self.slots[&s].cap;
        if cap.is_null() {
            return;
        }
        let last = !self
            .slots
            .iter()
            .any(|(&o, slot)| o != s && slot.cap.same_object(&cap));
        let (l, p) = self.position(s);
        self.lists[l].remove(p);
        *self.slot_mut(s) = Slot::default();
        if !last {
            return;
        }
        for inner in container_slots(&cap) {
            self.delete(inner);
        }
        for inner in container_slots(&cap) {
            let slot = self.slots.remove(&inner).expect("container slot");
            assert!(slot.cap.is_null());
        }
        match cap {
            Cap::Untyped {
                base, size_bits, ..
            } => {
                self.untyped.remove(&(base.0, size_bits));
            }
            Cap::VSpace { asid, ptr, .. }
            | Cap::GuestSpace {
                vmid: asid, ptr, ..
            } => {
                self.asids.remove(&asid);
                self.objects.remove(&ptr.0);
            }
            _ => {
                if let Some((base, _)) = cap.region() {
                    self.objects.remove(&base.0);
                }
            }
        }
    }

    fn revoke(&mut self, s: SlotRef) {
        loop {
            if !self.slots.contains_key(&s) || self.slots[&s].cap.is_null() {
                return;
            }
            let (l, p) = self.position(s);
            let Some(&next) = self.lists[l].get(p + 1) else {
                return;
            };
            if !slot::is_parent_of(&self.slots[&s], &self.slots[&next]) {
                return;
            }
            self.delete(next);
        }
    }

    pub(super) fn apply(&mut self, op: &Op) -> Result<(), Error> {
        match *op {
            Op::Retype {
                ut,
                ty,
                size,
                dest,
                offset,
                count,
            } => self.retype(ut, ty, size, dest, offset, count),
            Op::Copy { src, dst, rights } => self.derive(src, dst, |c| {
                Ok(c.derive()?.masked(CapRights::from_bits_truncate(rights)))
            }),
            Op::Mint {
                src,
                dst,
                rights,
                data,
            } => self.derive(src, dst, |c| {
                c.derive()?
                    .masked(CapRights::from_bits_truncate(rights))
                    .with_data(data)
            }),
            Op::Move { src, dst } => self.move_cap(src, dst, None),
            Op::Mutate { src, dst, data } => self.move_cap(src, dst, Some(data)),
            Op::Delete(a) => {
                let s = self.resolve(a)?;
                self.delete(s);
                Ok(())
            }
            Op::Revoke(a) => {
                let s = self.resolve(a)?;
                self.revoke(s);
                Ok(())
            }
        }
    }
}

/// Runs `op` on the kernel, as a thread's invocation would.
pub(super) fn run(world: &mut World, op: &Op) -> Result<(), Error> {
    let root = World::root_cap();
    let resolve = |w: &World, a: Addr| {
        let (index, depth) = a.index_depth();
        w.kernel.lookup_slot_arg(&root, index, depth)
    };
    let rd = |a: Addr| a.index_depth();
    match *op {
        Op::Retype {
            ut,
            ty,
            size,
            dest,
            offset,
            count,
        } => {
            let slot = resolve(world, ut)?;
            let (node_index, node_depth) = match dest {
                None => (0, 0),
                Some(i) => (i, 6),
            };
            world
                .invoke_slot(
                    slot,
                    Label::UntypedRetype,
                    &[ty as u64, size, node_index, node_depth, offset, count],
                    &[World::root_anchor()],
                )
                .map(drop)
        }
        Op::Copy { src, dst, rights } => {
            let ((di, dd), (si, sd)) = (rd(dst), rd(src));
            world
                .cnode(Label::CNodeCopy, &[di, dd, si, sd, u64::from(rights)])
                .map(drop)
        }
        Op::Mint {
            src,
            dst,
            rights,
            data,
        } => {
            let ((di, dd), (si, sd)) = (rd(dst), rd(src));
            world
                .cnode(Label::CNodeMint, &[di, dd, si, sd, u64::from(rights), data])
                .map(drop)
        }
        Op::Move { src, dst } => {
            let ((di, dd), (si, sd)) = (rd(dst), rd(src));
            world.cnode(Label::CNodeMove, &[di, dd, si, sd]).map(drop)
        }
        Op::Mutate { src, dst, data } => {
            let ((di, dd), (si, sd)) = (rd(dst), rd(src));
            world
                .cnode(Label::CNodeMutate, &[di, dd, si, sd, data])
                .map(drop)
        }
        Op::Delete(a) => {
            let (i, d) = rd(a);
            world.cnode(Label::CNodeDelete, &[i, d]).map(drop)
        }
        Op::Revoke(a) => {
            let (i, d) = rd(a);
            world.cnode(Label::CNodeRevoke, &[i, d]).map(drop)
        }
    }
}

/// `cap` with an untyped's zeroed mark cleared.
fn without_zero_mark(cap: Cap) -> Cap {
    match cap {
        Cap::Untyped {
            base,
            free_offset,
            size_bits,
            device,
            ..
        } => Cap::Untyped {
            base,
            free_offset,
            zeroed_to: 0,
            size_bits,
            device,
        },
        other => other,
    }
}

/// Compares kernel and model, and checks the invariants.
pub(super) fn check(world: &World, model: &Model) -> Result<(), TestCaseError> {
    let m = &world.kernel.machine;
    // Same slots with the same contents (links are compared via lists).
    let real: BTreeMap<SlotRef, Slot> = m
        .slot_addresses()
        .into_iter()
        .map(|s| (s, *m.slot(s)))
        .collect();
    prop_assert_eq!(
        real.keys().collect::<Vec<_>>(),
        model.slots.keys().collect::<Vec<_>>()
    );
    for (s, slot) in &real {
        let expect = &model.slots[s];
        // How much free untyped memory is known zero is the kernel's own
        // bookkeeping (the host machine checks every object is created on
        // zeroed memory); the model does not predict it.
        prop_assert_eq!(
            without_zero_mark(slot.cap),
            without_zero_mark(expect.cap),
            "slot {:#x}",
            s.0
        );
        if !slot.cap.is_null() {
            prop_assert_eq!(
                (slot.revocable, slot.first_badged),
                (expect.revocable, expect.first_badged)
            );
        }
    }
    // Same list order, well-formed links, every capability in one list.
    let mut listed = BTreeSet::new();
    for list in model.lists.iter().filter(|l| !l.is_empty()) {
        prop_assert!(
            m.slot(list[0]).prev.is_none(),
            "list head has a predecessor"
        );
        let mut at = list[0];
        for (i, &expect) in list.iter().enumerate() {
            prop_assert_eq!(at, expect, "list position {}", i);
            listed.insert(at);
            let next = m.slot(at).next;
            if !next.is_none() {
                prop_assert_eq!(m.slot(next).prev, at);
            }
            at = next;
        }
        prop_assert!(at.is_none(), "kernel list is longer than the model's");
    }
    for (s, slot) in &real {
        prop_assert_eq!(
            !slot.cap.is_null(),
            listed.contains(s),
            "slot {:#x} list membership",
            s.0
        );
    }
    // Same live objects.
    prop_assert_eq!(&m.objects, &model.objects);
    prop_assert_eq!(&m.untyped, &model.untyped);

    for list in model.lists.iter() {
        let caps: Vec<Slot> = list.iter().map(|s| real[s]).collect();
        // All capabilities to one object are adjacent.
        for (i, a) in caps.iter().enumerate() {
            let run_end = caps[i..]
                .iter()
                .position(|b| !b.cap.same_object(&a.cap))
                .map_or(caps.len(), |p| i + p);
            prop_assert!(
                !caps[run_end..].iter().any(|b| b.cap.same_object(&a.cap)),
                "object caps not adjacent"
            );
        }
        // No child has rights its parent lacks.
        for (i, a) in caps.iter().enumerate() {
            for b in caps[i + 1..]
                .iter()
                .take_while(|b| slot::is_parent_of(a, b))
            {
                if a.cap.same_object(&b.cap) {
                    prop_assert!(
                        a.cap.rights().contains(b.cap.rights()),
                        "child has more rights"
                    );
                }
            }
        }
    }
    for slot in real.values() {
        match slot.cap {
            Cap::Null => {}
            // No capability to a dead object.
            Cap::Untyped {
                base,
                size_bits,
                free_offset,
                ..
            } => {
                prop_assert!(m.untyped.contains(&(base.0, size_bits)), "dangling untyped");
                // Everything made from it lies below its watermark.
                let end = base.0 + (1u64 << size_bits);
                let below = base.0 + free_offset;
                for (&o, &(_, bits)) in m.objects.range(base.0..end) {
                    prop_assert!(
                        o + (1u64 << bits) <= below,
                        "object {:#x} above the watermark",
                        o
                    );
                }
                for &(u, bits) in m.untyped.range((base.0, 0)..(end, 0)) {
                    if bits < size_bits {
                        prop_assert!(
                            u + (1u64 << bits) <= below,
                            "untyped {:#x} above the watermark",
                            u
                        );
                    }
                }
            }
            Cap::SchedControl | Cap::IrqControl | Cap::IrqHandler { .. } | Cap::AuditLog { .. } => {
            }
            cap => {
                let (base, _) = cap.region().expect("object cap");
                prop_assert!(
                    m.objects.contains_key(&base.0),
                    "capability to dead object {:?}",
                    cap
                );
            }
        }
    }
    // No object without a capability (the boot anchor CNode excepted).
    for &base in m.objects.keys().filter(|&&b| b != layout::ANCHOR) {
        prop_assert!(
            real.values()
                .any(|s| s.cap.region().is_some_and(|(b, _)| b.0 == base)),
            "object {:#x} leaked",
            base
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 128 }, ..ProptestConfig::default() })]

    /// 128 cases of up to 200 operations: about 12,800 operations a run.
    #[test]
    fn kernel_matches_model(ops in prop::collection::vec(op(), 1..=if cfg!(miri) { 12 } else { 200 })) {
        let mut world = World::new();
        let mut model = Model::new(&world);
        for (i, op) in ops.iter().enumerate() {
            let real = run(&mut world, op);
            let expected = model.apply(op);
            prop_assert_eq!(real, expected, "op {} {:?}", i, op);
            check(&world, &model)?;
            if let Err(e) = world.kernel.check_invariants(&[World::root_cap()]) {
                prop_assert!(false, "invariant check after op {}: {}", i, e);
            }
        }
    }
}
