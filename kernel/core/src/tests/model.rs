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
    cap::{Cap, Derivation, FrameSize, Mapping, SlotRef},
    cspace,
    machine::TableEntry,
    slot::{self, SLOT_BITS, Slot, SlotStore},
    testing::{World, layout},
};
use proptest::prelude::*;
use skyscope_abi::{CapRights, Error, Label, ObjectType};
use std::{
    collections::{BTreeMap, BTreeSet},
    format, vec,
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
    MapTable {
        table: Addr,
        space: Addr,
        va: u64,
    },
    UnmapTable(Addr),
    MapFrame {
        frame: Addr,
        space: Addr,
        va: u64,
        rights: u8,
    },
    UnmapFrame(Addr),
}

/// Addresses the mapping operations use: a few that share tables, one
/// that does not, and one beyond the 39-bit range.
const VAS: [u64; 5] = [0x40_0000, 0x40_1000, 0x60_0000, 0x4000_0000, 1 << 39];

fn addr() -> impl Strategy<Value = Addr> {
    prop_oneof![
        6 => (0..20u64).prop_map(Addr::Top),
        1 => (20..64u64).prop_map(Addr::Top),
        3 => (0..20u64, 0..4u64).prop_map(|(i, j)| Addr::Nested(i, j)),
    ]
}

/// Where retype finds its untyped: mostly the root untyped (slot 1), else
/// anywhere (untyped children, or nothing).
fn untyped_addr() -> impl Strategy<Value = Addr> {
    prop_oneof![3 => Just(Addr::Top(layout::UNTYPED_SLOT)), 2 => addr()]
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
        5 => (untyped_addr(), object(), prop::option::of(0..20u64), 0..24u64, 0..5u64).prop_map(
            |(ut, (ty, size), dest, offset, count)| Op::Retype { ut, ty, size, dest, offset, count }
        ),
        4 => (addr(), addr(), 0..16u8).prop_map(|(src, dst, rights)| Op::Copy { src, dst, rights }),
        3 => (addr(), addr(), 0..16u8, data.clone()).prop_map(|(src, dst, rights, data)| Op::Mint { src, dst, rights, data }),
        2 => (addr(), addr()).prop_map(|(src, dst)| Op::Move { src, dst }),
        1 => (addr(), addr(), data).prop_map(|(src, dst, data)| Op::Mutate { src, dst, data }),
        3 => addr().prop_map(Op::Delete),
        2 => addr().prop_map(Op::Revoke),
        2 => (addr(), addr(), 0..VAS.len()).prop_map(|(table, space, v)| Op::MapTable { table, space, va: VAS[v] }),
        1 => addr().prop_map(Op::UnmapTable),
        2 => (addr(), addr(), 0..VAS.len(), 0..16u8).prop_map(|(frame, space, v, rights)| Op::MapFrame { frame, space, va: VAS[v], rights }),
        1 => addr().prop_map(Op::UnmapFrame),
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
    /// Live spaces: identifier -> top-level table.
    spaces: BTreeMap<u16, u64>,
    /// Translation tables by identity: table -> index -> entry.
    tables: BTreeMap<u64, BTreeMap<usize, TableEntry>>,
}

/// The model's own statement of the derivation rules (the kernel's is
/// `cap::DERIVATION_TABLE`): what copying, minting or moving `cap` gives.
pub(super) fn model_derive(cap: Cap, op: Derivation) -> Result<Cap, Error> {
    let copying = op != Derivation::Move;
    match cap {
        Cap::Null => Err(Error::FailedLookup),
        // Only deleting a zombie is possible.
        Cap::Zombie { .. } => Err(Error::IllegalOperation),
        // One capability each: untyped (its watermark), reply objects,
        // IRQ control, and page tables (a second could map the table twice).
        Cap::Untyped { .. } | Cap::Reply { .. } | Cap::IrqControl | Cap::PageTable { .. }
            if copying =>
        {
            Err(Error::IllegalOperation)
        }
        // A copy of a frame starts unmapped: one mapping per capability.
        Cap::Frame {
            base,
            size,
            device,
            rights,
            ..
        } if copying => Ok(Cap::Frame {
            base,
            size,
            device,
            rights,
            mapping: Mapping::NONE,
        }),
        other => Ok(other),
    }
}

impl SlotStore for Model {
    fn slot(&self, s: SlotRef) -> &Slot {
        &self.slots[&s]
    }
    fn slot_mut(&mut self, s: SlotRef) -> &mut Slot {
        self.slots.get_mut(&s).expect("model slot")
    }
}

/// Index of `va` in a table serving `level`.
fn index(va: u64, level: u8) -> usize {
    ((va >> (12 + 9 * (3 - u32::from(level)))) & 0x1ff) as usize
}

/// What invoking `cap` with another object's label gives.
fn not_this_type(cap: Cap) -> Error {
    if matches!(cap, Cap::Null | Cap::Zombie { .. }) {
        Error::InvalidCapability
    } else {
        Error::IllegalOperation
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
            spaces: BTreeMap::new(),
            tables: BTreeMap::new(),
        }
    }

    // ---- translation tables ---------------------------------------------

    fn space_cap(&self, s: SlotRef) -> Result<(u64, u16, bool), Error> {
        let (ptr, id, rights, guest) = match self.slots[&s].cap {
            Cap::VSpace { ptr, asid, rights } => (ptr, asid, rights, false),
            Cap::GuestSpace { ptr, vmid, rights } => (ptr, vmid, rights, true),
            Cap::Null => return Err(Error::InvalidCapability),
            _ => return Err(Error::WrongType),
        };
        if !rights.contains(CapRights::WRITE) {
            return Err(Error::InsufficientRights);
        }
        match self.spaces.get(&id) {
            Some(&root) if root == ptr.0 => Ok((root, id, guest)),
            _ => Err(Error::InvalidCapability),
        }
    }

    fn walk(&self, root: u64, va: u64, level: u8) -> Result<u64, Error> {
        let mut table = root;
        for l in 1..level {
            match self.tables[&table].get(&index(va, l)) {
                Some(TableEntry::Table(t)) => table = t.0,
                Some(_) => return Err(Error::DeleteFirst),
                None => return Err(Error::FailedLookup),
            }
        }
        Ok(table)
    }

    /// Removes every entry under `table`, deepest first.
    fn empty(&mut self, table: u64) {
        let entries = core::mem::take(self.tables.get_mut(&table).expect("table"));
        for e in entries.values() {
            if let TableEntry::Table(t) = e {
                self.empty(t.0);
            }
        }
    }

    fn take_table_out(&mut self, ptr: PhysAddr, mapping: Mapping, level: u8) {
        let Some((id, va)) = mapping.get() else {
            return;
        };
        self.empty(ptr.0);
        if let Some(&root) = self.spaces.get(&id)
            && let Ok(parent) = self.walk(root, va, level - 1)
        {
            let at = index(va, level - 1);
            if self.tables[&parent].get(&at) == Some(&TableEntry::Table(ptr)) {
                self.tables.get_mut(&parent).expect("table").remove(&at);
            }
        }
    }

    fn unmap_frame(&mut self, cap: Cap) {
        let Cap::Frame {
            base,
            size,
            mapping,
            ..
        } = cap
        else {
            return;
        };
        if let Some((id, va)) = mapping.get()
            && let Some(&root) = self.spaces.get(&id)
            && let Ok(table) = self.walk(root, va, 3)
        {
            let at = index(va, 3);
            if self.tables[&table].get(&at) == Some(&TableEntry::Frame(base, size)) {
                self.tables.get_mut(&table).expect("table").remove(&at);
            }
        }
    }

    fn map_table(&mut self, table: Addr, space: Addr, va: u64) -> Result<(), Error> {
        let s = self.resolve(table)?;
        let space = self.resolve(space)?;
        let cap = self.slots[&s].cap;
        let Cap::PageTable { ptr, mapping, .. } = cap else {
            return Err(not_this_type(cap));
        };
        let va = va & !0xfff;
        if mapping != Mapping::NONE {
            return Err(Error::IllegalOperation);
        }
        let (root, id, _) = self.space_cap(space)?;
        if va >= 1 << 39 {
            return Err(Error::InvalidArgument);
        }
        let mut at = root;
        for level in 1..=2u8 {
            match self.tables[&at].get(&index(va, level)) {
                Some(TableEntry::Table(t)) => at = t.0,
                Some(_) => return Err(Error::DeleteFirst),
                None => {
                    self.tables
                        .get_mut(&at)
                        .expect("table")
                        .insert(index(va, level), TableEntry::Table(ptr));
                    self.slot_mut(s).cap = Cap::PageTable {
                        ptr,
                        mapping: Mapping::new(id, va),
                        level: level + 1,
                    };
                    return Ok(());
                }
            }
        }
        Err(Error::DeleteFirst)
    }

    fn map_frame(&mut self, frame: Addr, space: Addr, va: u64, rights: u8) -> Result<(), Error> {
        let s = self.resolve(frame)?;
        let space = self.resolve(space)?;
        let cap = self.slots[&s].cap;
        let Cap::Frame {
            base,
            size,
            rights: have,
            mapping,
            ..
        } = cap
        else {
            return Err(not_this_type(cap));
        };
        if mapping != Mapping::NONE {
            return Err(Error::IllegalOperation);
        }
        let (root, id, _) = self.space_cap(space)?;
        let requested = CapRights::from_bits_truncate(rights);
        if !have.contains(CapRights::READ) || !requested.contains(CapRights::READ) {
            return Err(Error::InsufficientRights);
        }
        if va >= 1 << 39 {
            return Err(Error::InvalidArgument);
        }
        let table = self.walk(root, va, 3)?;
        let entries = self.tables.get_mut(&table).expect("table");
        if entries.contains_key(&index(va, 3)) {
            return Err(Error::DeleteFirst);
        }
        entries.insert(index(va, 3), TableEntry::Frame(base, size));
        if let Cap::Frame { mapping, .. } = &mut self.slot_mut(s).cap {
            *mapping = Mapping::new(id, va);
        }
        Ok(())
    }

    fn unmap(&mut self, a: Addr, label: Label) -> Result<(), Error> {
        let s = self.resolve(a)?;
        let cap = self.slots[&s].cap;
        match (cap, label) {
            (
                Cap::PageTable {
                    ptr,
                    mapping,
                    level,
                },
                Label::PageTableUnmap,
            ) => {
                self.take_table_out(ptr, mapping, level);
                self.slot_mut(s).cap = Cap::PageTable {
                    ptr,
                    mapping: Mapping::NONE,
                    level: 0,
                };
                Ok(())
            }
            (Cap::Frame { .. }, Label::FrameUnmap) => {
                self.unmap_frame(cap);
                if let Cap::Frame { mapping, .. } = &mut self.slot_mut(s).cap {
                    *mapping = Mapping::NONE;
                }
                Ok(())
            }
            _ => Err(not_this_type(cap)),
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
        match cap {
            Cap::VSpace { asid: id, .. } | Cap::GuestSpace { vmid: id, .. } => {
                self.spaces.insert(id, base);
                self.tables.insert(base, BTreeMap::new());
            }
            Cap::PageTable { .. } => {
                self.tables.insert(base, BTreeMap::new());
            }
            _ => {}
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
        let cap = model_derive(source.cap, Derivation::Move)?;
        let cap = match data {
            Some(d) => cap.mutated(d)?,
            None => cap,
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
        match cap {
            Cap::Frame { .. } => self.unmap_frame(cap),
            Cap::PageTable {
                ptr,
                mapping,
                level,
            } => self.take_table_out(ptr, mapping, level),
            Cap::VSpace { ptr, .. } | Cap::GuestSpace { ptr, .. } if last => self.empty(ptr.0),
            _ => {}
        }
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
                self.spaces.remove(&asid);
                self.objects.remove(&ptr.0);
                let t = self.tables.remove(&ptr.0).expect("top-level table");
                assert!(t.is_empty(), "space destroyed holding entries");
            }
            Cap::PageTable { ptr, .. } => {
                self.objects.remove(&ptr.0);
                let t = self.tables.remove(&ptr.0).expect("table");
                assert!(t.is_empty(), "table destroyed holding entries");
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
            Op::Copy { src, dst, rights } => {
                self.derive(src, dst, |c| {
                    Ok(model_derive(c, Derivation::Copy)?
                        .masked(CapRights::from_bits_truncate(rights)))
                })
            }
            Op::Mint {
                src,
                dst,
                rights,
                data,
            } => self.derive(src, dst, |c| {
                model_derive(c, Derivation::Mint)?
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
            Op::MapTable { table, space, va } => self.map_table(table, space, va),
            Op::UnmapTable(a) => self.unmap(a, Label::PageTableUnmap),
            Op::MapFrame {
                frame,
                space,
                va,
                rights,
            } => self.map_frame(frame, space, va, rights),
            Op::UnmapFrame(a) => self.unmap(a, Label::FrameUnmap),
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
        Op::MapTable { table, space, va } => {
            let (t, s) = (resolve(world, table)?, resolve(world, space)?);
            world
                .invoke_slot(t, Label::PageTableMap, &[va], &[s])
                .map(drop)
        }
        Op::UnmapTable(a) => {
            let t = resolve(world, a)?;
            world
                .invoke_slot(t, Label::PageTableUnmap, &[], &[])
                .map(drop)
        }
        Op::MapFrame {
            frame,
            space,
            va,
            rights,
        } => {
            let (f, s) = (resolve(world, frame)?, resolve(world, space)?);
            world
                .invoke_slot(f, Label::FrameMap, &[va, u64::from(rights), 0], &[s])
                .map(drop)
        }
        Op::UnmapFrame(a) => {
            let f = resolve(world, a)?;
            world.invoke_slot(f, Label::FrameUnmap, &[], &[]).map(drop)
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
    // Same live objects, same translation tables with the same entries.
    prop_assert_eq!(&m.objects, &model.objects);
    prop_assert_eq!(&m.untyped, &model.untyped);
    prop_assert_eq!(&m.table_contents(), &model.tables);

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

/// Slots the translation test works in.
const SPACE_SLOTS: core::ops::Range<u64> = 20..44;

/// The set-up of the translation test: a VSpace (20), a GuestSpace (21),
/// six page tables (22..28, the first four installed along 0x40_0000 in
/// each space) and eight frames (28..36), all from the root untyped;
/// slots 36..44 start empty.
fn translation_setup() -> Vec<Op> {
    let retype = |ty, offset, count| Op::Retype {
        ut: Addr::Top(layout::UNTYPED_SLOT),
        ty,
        size: 0,
        dest: None,
        offset,
        count,
    };
    vec![
        retype(ObjectType::VSpace, 20, 1),
        retype(ObjectType::GuestSpace, 21, 1),
        retype(ObjectType::PageTable, 22, 6),
        retype(ObjectType::Frame4K, 28, 8),
        Op::MapTable {
            table: Addr::Top(22),
            space: Addr::Top(20),
            va: VAS[0],
        },
        Op::MapTable {
            table: Addr::Top(23),
            space: Addr::Top(20),
            va: VAS[0],
        },
        Op::MapTable {
            table: Addr::Top(24),
            space: Addr::Top(21),
            va: VAS[0],
        },
        Op::MapTable {
            table: Addr::Top(25),
            space: Addr::Top(21),
            va: VAS[0],
        },
    ]
}

/// Operations on the translation set-up: mostly mapping and unmapping,
/// with copies, moves, deletions, revocations and new objects in between.
fn translation_op() -> impl Strategy<Value = Op> {
    let slot = || SPACE_SLOTS.prop_map(Addr::Top);
    let space = || (20..22u64).prop_map(Addr::Top);
    let va = || 0..VAS.len();
    prop_oneof![
        4 => (slot(), space(), va()).prop_map(|(table, space, v)| Op::MapTable { table, space, va: VAS[v] }),
        2 => slot().prop_map(Op::UnmapTable),
        5 => ((28..36u64).prop_map(Addr::Top), space(), va(), 0..16u8).prop_map(|(frame, space, v, rights)| Op::MapFrame { frame, space, va: VAS[v], rights }),
        1 => (slot(), space(), va(), 0..16u8).prop_map(|(frame, space, v, rights)| Op::MapFrame { frame, space, va: VAS[v], rights }),
        2 => slot().prop_map(Op::UnmapFrame),
        2 => (slot(), (36..44u64).prop_map(Addr::Top), 0..16u8).prop_map(|(src, dst, rights)| Op::Copy { src, dst, rights }),
        1 => (slot(), (36..44u64).prop_map(Addr::Top)).prop_map(|(src, dst)| Op::Move { src, dst }),
        1 => slot().prop_map(Op::Delete),
        1 => prop_oneof![20 => slot(), 1 => Just(Addr::Top(layout::UNTYPED_SLOT))].prop_map(Op::Revoke),
        1 => (prop_oneof![Just(ObjectType::PageTable), Just(ObjectType::Frame4K), Just(ObjectType::VSpace)], 36..44u64)
            .prop_map(|(ty, offset)| Op::Retype { ut: Addr::Top(layout::UNTYPED_SLOT), ty, size: 0, dest: None, offset, count: 1 }),
    ]
}

/// Runs `ops` on the kernel and the model, comparing after each; with
/// `preempt_every`, the kernel stops at (simulated) interrupts and each
/// operation is restarted until it completes, as the syscall layer does:
/// it must end exactly where the uninterrupted run ends.
fn compare(ops: &[Op], preempt_every: Option<u32>) -> Result<(), TestCaseError> {
    let mut world = World::new();
    let mut model = Model::new(&world);
    world.kernel.machine.preempt_every = preempt_every;
    for (i, op) in ops.iter().enumerate() {
        let mut real = run(&mut world, op);
        let mut restarts = 0;
        while real == Err(Error::Preempted) {
            restarts += 1;
            prop_assert!(restarts < 100_000, "op {} {:?} makes no progress", i, op);
            real = run(&mut world, op);
        }
        let expected = model.apply(op);
        prop_assert_eq!(real, expected, "op {} {:?}", i, op);
        check(&world, &model)?;
        if let Err(e) = world.kernel.check_invariants(&[World::root_cap()]) {
            prop_assert!(false, "invariant check after op {}: {}", i, e);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 128 }, ..ProptestConfig::default() })]

    /// 128 cases of up to 200 operations: about 12,800 operations a run.
    #[test]
    fn kernel_matches_model(ops in prop::collection::vec(op(), 1..=if cfg!(miri) { 12 } else { 200 })) {
        compare(&ops, None)?;
    }

    /// The same with an interrupt every few preemption points.
    #[test]
    fn kernel_matches_model_when_preempted(
        ops in prop::collection::vec(op(), 1..=if cfg!(miri) { 12 } else { 200 }),
        every in 0..4u32,
    ) {
        compare(&ops, Some(every))?;
    }

    /// Mapping and unmapping frames and tables in a VSpace and a
    /// GuestSpace, against the model's tables (kept by identity).
    #[test]
    fn translation_matches_model(
        ops in prop::collection::vec(translation_op(), 1..=if cfg!(miri) { 12 } else { 150 }),
        preempt in prop::option::of(0..4u32),
    ) {
        let mut all = translation_setup();
        all.extend(ops);
        compare(&all, preempt)?;
    }
}

#[test]
fn derivation_table_matches_the_model() {
    use crate::cap::ContainerKind;
    use crate::cap::{CapClass, DERIVATION_TABLE, Rule, derivation_rule};
    let p = PhysAddr(0x4000);
    let rights = CapRights::ALL;
    let mapped = Mapping::new(1, 0x40_0000);
    let samples = [
        Cap::Untyped {
            base: p,
            free_offset: 0,
            zeroed_to: 0,
            size_bits: 12,
            device: false,
        },
        Cap::CNode {
            ptr: p,
            radix: 2,
            guard_bits: 0,
            guard: 0,
            rights,
        },
        Cap::Tcb { ptr: p, rights },
        Cap::Endpoint {
            ptr: p,
            badge: 0,
            rights,
        },
        Cap::Notification {
            ptr: p,
            badge: 0,
            rights,
        },
        Cap::Reply { ptr: p, rights },
        Cap::SchedContext { ptr: p, rights },
        Cap::Frame {
            base: p,
            size: FrameSize::Small,
            device: false,
            rights,
            mapping: Mapping::NONE,
        },
        Cap::Frame {
            base: p,
            size: FrameSize::Small,
            device: false,
            rights,
            mapping: mapped,
        },
        Cap::PageTable {
            ptr: p,
            mapping: Mapping::NONE,
            level: 0,
        },
        Cap::PageTable {
            ptr: p,
            mapping: mapped,
            level: 3,
        },
        Cap::VSpace {
            ptr: p,
            asid: 1,
            rights,
        },
        Cap::GuestSpace {
            ptr: p,
            vmid: 2,
            rights,
        },
        Cap::Vcpu { ptr: p, rights },
        Cap::IrqControl,
        Cap::IrqHandler { irq: 40 },
        Cap::SchedControl,
        Cap::AuditLog { rights },
        Cap::Console { rights },
        Cap::PowerControl,
        Cap::Debug,
        Cap::Zombie {
            ptr: p,
            back: SlotRef::NONE,
            cursor: 0,
            kind: ContainerKind::Tcb,
        },
    ];
    let mut classes_seen = BTreeSet::new();
    for cap in samples {
        let class = CapClass::of(&cap).unwrap();
        classes_seen.insert(format!("{class:?}"));
        for op in [Derivation::Copy, Derivation::Mint, Derivation::Move] {
            assert_eq!(cap.derive_for(op), model_derive(cap, op), "{cap:?} {op:?}");
            let is_mapped = matches!(cap, Cap::Frame { mapping, .. } | Cap::PageTable { mapping, .. } if mapping != Mapping::NONE);
            let rule = derivation_rule(class, is_mapped, op);
            assert_eq!(
                matches!(rule, Rule::Refuse(_)),
                model_derive(cap, op).is_err()
            );
        }
    }
    assert_eq!(
        classes_seen.len(),
        DERIVATION_TABLE.len(),
        "every class sampled"
    );
}
