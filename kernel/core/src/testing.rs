//! Host test support: a [`Machine`] over typed maps that checks every
//! access, and a small "world" (root CNode, root untyped) to drive the
//! kernel with invocations as a thread would.

extern crate std;

use crate::{
    PhysAddr,
    cap::{Asid, Cap, FrameSize, SlotRef},
    kernel::{Invocation, Kernel, Reply},
    machine::{Access, Machine, MapError, ThreadContext},
    object::{endpoint::Endpoint, notification::Notification, tcb::Tcb},
    slot::{SLOT_BITS, Slot, SlotStore},
};
use skyscope_abi::{CapRights, Error, Label, ObjectType, invocation::REGISTER_COUNT};
use std::{
    collections::{BTreeMap, BTreeSet},
    vec::Vec,
};

/// Registers of a test thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestContext(pub [u64; REGISTER_COUNT]);

impl Default for TestContext {
    fn default() -> Self {
        TestContext([0; REGISTER_COUNT])
    }
}

impl ThreadContext for TestContext {
    fn register(&self, index: usize) -> u64 {
        self.0[index]
    }
    fn set_register(&mut self, index: usize, value: u64) {
        self.0[index] = value;
    }
}

/// A translation-table entry in the simulated MMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Table(PhysAddr),
    Frame(PhysAddr, FrameSize),
}

/// Object memory as typed maps, plus a simulated three-level MMU.
///
/// Accessing a slot or object that does not exist (never created, or
/// destroyed) panics, as does destroying an object twice or destroying a
/// container that still holds capabilities.
#[derive(Default)]
pub struct HostMachine {
    slots: BTreeMap<u64, Slot>,
    tcbs: BTreeMap<u64, Tcb<TestContext>>,
    endpoints: BTreeMap<u64, Endpoint>,
    notifications: BTreeMap<u64, Notification>,
    /// Live objects: base -> (type, log2 size). Untyped regions are kept
    /// apart in `untyped`, since objects live inside them.
    pub objects: BTreeMap<u64, (ObjectType, u8)>,
    /// Live untyped regions made by retype: (base, log2 size).
    pub untyped: BTreeSet<(u64, u8)>,
    /// MMU entries: (vspace, level, index-address) -> entry. Level 1 entries
    /// cover 1 GiB, level 2 entries 2 MiB, level 3 entries 4 KiB.
    entries: BTreeMap<(u64, u8, u64), Entry>,
    /// Tables installed (table -> (vspace, level it serves, base address)).
    tables: BTreeMap<u64, (u64, u8, u64)>,
    /// Enabled interrupt lines.
    pub irqs_enabled: BTreeSet<u16>,
    /// How many objects were destroyed, by type.
    pub destroyed: BTreeMap<ObjectType, u64>,
}

const VA_LIMIT: u64 = 1 << 39;

fn level_shift(level: u8) -> u32 {
    12 + 9 * (3 - u32::from(level))
}

impl SlotStore for HostMachine {
    fn slot(&self, s: SlotRef) -> &Slot {
        self.slots
            .get(&s.0)
            .unwrap_or_else(|| panic!("access to nonexistent slot {:#x}", s.0))
    }
    fn slot_mut(&mut self, s: SlotRef) -> &mut Slot {
        self.slots
            .get_mut(&s.0)
            .unwrap_or_else(|| panic!("access to nonexistent slot {:#x}", s.0))
    }
}

impl HostMachine {
    fn slot_range(ty: ObjectType, base: PhysAddr, bits: u8) -> core::ops::Range<u64> {
        let len = match ty {
            ObjectType::CNode => 1u64 << bits,
            ObjectType::Tcb => (crate::object::tcb::slots::COUNT as u64) << SLOT_BITS,
            _ => 0,
        };
        base.0..base.0 + len
    }

    /// Every live slot address.
    pub fn slot_addresses(&self) -> Vec<SlotRef> {
        self.slots.keys().map(|&a| SlotRef(a)).collect()
    }

    /// The frame mapped at `vaddr` in `vspace`, if any.
    pub fn translate(&self, vspace: PhysAddr, vaddr: u64) -> Option<PhysAddr> {
        for level in 1..=3u8 {
            let key = (vspace.0, level, vaddr >> level_shift(level));
            match self.entries.get(&key) {
                Some(Entry::Frame(f, _)) => {
                    return Some(PhysAddr(f.0 + (vaddr & ((1 << level_shift(level)) - 1))));
                }
                Some(Entry::Table(_)) => continue,
                None => return None,
            }
        }
        None
    }

    /// Number of frame mappings in the simulated MMU.
    pub fn frame_mappings(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e, Entry::Frame(..)))
            .count()
    }

    fn remove_entries_of_vspace(&mut self, vspace: u64) {
        self.entries.retain(|(v, _, _), _| *v != vspace);
        self.tables.retain(|_, (v, _, _)| *v != vspace);
    }

    fn remove_subtree(&mut self, vspace: u64, level: u8, base: u64) {
        // Entries at deeper levels whose address lies in [base, base + span).
        let span = 1u64 << level_shift(level - 1);
        self.entries.retain(|(v, l, idx), _| {
            !(*v == vspace && *l >= level && {
                let addr = idx << level_shift(*l);
                addr >= base && addr < base + span
            })
        });
    }
}

impl Machine for HostMachine {
    type Context = TestContext;

    fn tcb(&self, p: PhysAddr) -> &Tcb<TestContext> {
        self.tcbs
            .get(&p.0)
            .unwrap_or_else(|| panic!("access to nonexistent TCB {p:?}"))
    }
    fn tcb_mut(&mut self, p: PhysAddr) -> &mut Tcb<TestContext> {
        self.tcbs
            .get_mut(&p.0)
            .unwrap_or_else(|| panic!("access to nonexistent TCB {p:?}"))
    }
    fn endpoint_mut(&mut self, p: PhysAddr) -> &mut Endpoint {
        self.endpoints
            .get_mut(&p.0)
            .unwrap_or_else(|| panic!("access to nonexistent endpoint {p:?}"))
    }
    fn notification_mut(&mut self, p: PhysAddr) -> &mut Notification {
        self.notifications
            .get_mut(&p.0)
            .unwrap_or_else(|| panic!("access to nonexistent notification {p:?}"))
    }

    fn create_object(&mut self, ty: ObjectType, base: PhysAddr, bits: u8, _device: bool) {
        assert!(
            base.is_aligned(1 << bits),
            "{ty:?} at {base:?} misaligned for {bits} bits"
        );
        if ty == ObjectType::Untyped {
            assert!(
                self.untyped.insert((base.0, bits)),
                "untyped {base:?} created twice"
            );
            return;
        }
        let end = base.0 + (1u64 << bits);
        if let Some((&other, &(oty, obits))) = self.objects.range(..end).next_back() {
            assert!(
                other + (1u64 << obits) <= base.0,
                "{ty:?} at {base:?} overlaps live {oty:?} at {other:#x}"
            );
        }
        self.objects.insert(base.0, (ty, bits));
        for s in Self::slot_range(ty, base, bits).step_by(1 << SLOT_BITS) {
            self.slots.insert(s, Slot::default());
        }
        match ty {
            ObjectType::Tcb => {
                self.tcbs.insert(base.0, Tcb::default());
            }
            ObjectType::Endpoint => {
                self.endpoints.insert(base.0, Endpoint::default());
            }
            ObjectType::Notification => {
                self.notifications.insert(base.0, Notification::default());
            }
            _ => {}
        }
    }

    fn destroy_object(&mut self, ty: ObjectType, base: PhysAddr, bits: u8) {
        if ty == ObjectType::Untyped {
            assert!(
                self.untyped.remove(&(base.0, bits)),
                "untyped {base:?} destroyed but not live"
            );
            *self.destroyed.entry(ty).or_default() += 1;
            return;
        }
        assert_eq!(
            self.objects.remove(&base.0),
            Some((ty, bits)),
            "destroying {ty:?} at {base:?} that is not live"
        );
        for s in Self::slot_range(ty, base, bits).step_by(1 << SLOT_BITS) {
            let slot = self.slots.remove(&s).expect("container slot");
            assert!(
                slot.cap.is_null(),
                "{ty:?} at {base:?} destroyed holding {:?}",
                slot.cap
            );
        }
        match ty {
            ObjectType::Tcb => {
                let t = self.tcbs.remove(&base.0).expect("tcb");
                assert!(!t.queued, "destroyed TCB still in a ready queue");
            }
            ObjectType::Endpoint => {
                self.endpoints.remove(&base.0);
            }
            ObjectType::Notification => {
                self.notifications.remove(&base.0);
            }
            ObjectType::VSpace => self.remove_entries_of_vspace(base.0),
            ObjectType::PageTable => {
                assert!(
                    !self.tables.contains_key(&base.0),
                    "page table destroyed while installed"
                );
            }
            _ => {}
        }
        *self.destroyed.entry(ty).or_default() += 1;
    }

    fn map_frame(
        &mut self,
        vspace: PhysAddr,
        _asid: Asid,
        vaddr: u64,
        frame: PhysAddr,
        size: FrameSize,
        _access: Access,
    ) -> Result<(), MapError> {
        if vaddr >= VA_LIMIT || !vaddr.is_multiple_of(size.bytes()) {
            return Err(MapError::BadAddress);
        }
        let leaf = if size == FrameSize::Small { 3 } else { 2 };
        for level in 1..leaf {
            match self
                .entries
                .get(&(vspace.0, level, vaddr >> level_shift(level)))
            {
                Some(Entry::Table(_)) => {}
                Some(Entry::Frame(..)) => return Err(MapError::AlreadyMapped),
                None => return Err(MapError::MissingTable),
            }
        }
        let key = (vspace.0, leaf, vaddr >> level_shift(leaf));
        if self.entries.contains_key(&key) {
            return Err(MapError::AlreadyMapped);
        }
        self.entries.insert(key, Entry::Frame(frame, size));
        Ok(())
    }

    fn unmap_frame(
        &mut self,
        vspace: PhysAddr,
        _asid: Asid,
        vaddr: u64,
        frame: PhysAddr,
        size: FrameSize,
    ) {
        let leaf = if size == FrameSize::Small { 3 } else { 2 };
        let key = (vspace.0, leaf, vaddr >> level_shift(leaf));
        if self.entries.get(&key) == Some(&Entry::Frame(frame, size)) {
            self.entries.remove(&key);
        }
    }

    fn map_table(&mut self, vspace: PhysAddr, vaddr: u64, table: PhysAddr) -> Result<u8, MapError> {
        if vaddr >= VA_LIMIT {
            return Err(MapError::BadAddress);
        }
        for level in 1..=2u8 {
            let key = (vspace.0, level, vaddr >> level_shift(level));
            match self.entries.get(&key) {
                Some(Entry::Table(_)) => continue,
                Some(Entry::Frame(..)) => return Err(MapError::AlreadyMapped),
                None => {
                    self.entries.insert(key, Entry::Table(table));
                    let base = vaddr & !((1u64 << level_shift(level)) - 1);
                    self.tables.insert(table.0, (vspace.0, level + 1, base));
                    return Ok(level + 1);
                }
            }
        }
        Err(MapError::AlreadyMapped)
    }

    fn unmap_table(
        &mut self,
        vspace: PhysAddr,
        _asid: Asid,
        vaddr: u64,
        level: u8,
        table: PhysAddr,
    ) {
        let key = (vspace.0, level - 1, vaddr >> level_shift(level - 1));
        if self.entries.get(&key) == Some(&Entry::Table(table)) {
            self.entries.remove(&key);
            self.tables.remove(&table.0);
            let base = vaddr & !((1u64 << level_shift(level - 1)) - 1);
            self.remove_subtree(vspace.0, level, base);
        }
    }

    fn irq_reserved(&self, irq: u16) -> bool {
        irq < 32 // SGIs and PPIs stay with the kernel, as on the GIC
    }

    fn set_irq_enabled(&mut self, irq: u16, enabled: bool) {
        if enabled {
            self.irqs_enabled.insert(irq);
        } else {
            self.irqs_enabled.remove(&irq);
        }
    }

    fn flush_asid(&mut self, _asid: Asid) {}
}

/// Where test worlds put things.
pub mod layout {
    /// The boot CNode holding the anchors.
    pub const ANCHOR: u64 = 0x8000;
    /// The root CNode (radix [`ROOT_RADIX`]).
    pub const ROOT: u64 = 0x1_0000;
    /// log2 of the root CNode's slot count.
    pub const ROOT_RADIX: u8 = 6;
    /// The root untyped region.
    pub const UNTYPED: u64 = 0x10_0000;
    /// log2 of its size.
    pub const UNTYPED_BITS: u8 = 20;
    /// Root-CNode slot the root untyped is moved to.
    pub const UNTYPED_SLOT: u64 = 1;
}

/// A kernel with a root CNode and a root untyped, driven as a thread would
/// drive it (but without a thread: capability addresses are resolved
/// against the root CNode).
pub struct World {
    /// The kernel under test.
    pub kernel: Kernel<HostMachine>,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// Anchor slot holding the root CNode capability (guard 0, for slot args).
    pub fn root_anchor() -> SlotRef {
        SlotRef(layout::ANCHOR)
    }

    /// The root CNode capability used to resolve slot arguments.
    pub fn root_cap() -> Cap {
        Cap::CNode {
            ptr: PhysAddr(layout::ROOT),
            radix: layout::ROOT_RADIX,
            guard_bits: 0,
            guard: 0,
            rights: CapRights::ALL,
        }
    }

    /// A fresh world: root CNode anchored outside itself, root untyped in
    /// root slot 1.
    pub fn new() -> World {
        let mut m = HostMachine::default();
        m.create_object(
            ObjectType::CNode,
            PhysAddr(layout::ANCHOR),
            2 + SLOT_BITS,
            false,
        );
        m.create_object(
            ObjectType::CNode,
            PhysAddr(layout::ROOT),
            layout::ROOT_RADIX + SLOT_BITS,
            false,
        );
        m.create_object(
            ObjectType::Untyped,
            PhysAddr(layout::UNTYPED),
            layout::UNTYPED_BITS,
            false,
        );
        let mut kernel = Kernel::new(m);
        kernel.install_original(SlotRef::NONE, Self::root_anchor(), Self::root_cap());
        let ut = Cap::Untyped {
            base: PhysAddr(layout::UNTYPED),
            size_bits: layout::UNTYPED_BITS,
            device: false,
            free_offset: 0,
        };
        kernel.install_original(SlotRef::NONE, Self::slot(layout::UNTYPED_SLOT), ut);
        World { kernel }
    }

    /// Root-CNode slot `i`.
    pub fn slot(i: u64) -> SlotRef {
        SlotRef(layout::ROOT + (i << SLOT_BITS))
    }

    /// The capability in root slot `i`.
    pub fn cap(&self, i: u64) -> Cap {
        self.kernel.machine.slot(Self::slot(i)).cap
    }

    /// Invokes the capability in `slot` with `label`, `args` and extra
    /// capabilities taken from `extra` slots.
    pub fn invoke_slot(
        &mut self,
        slot: SlotRef,
        label: Label,
        args: &[u64],
        extra: &[SlotRef],
    ) -> Result<Reply, Error> {
        let caps: Vec<(Cap, SlotRef)> = extra
            .iter()
            .map(|&s| (self.kernel.machine.slot(s).cap, s))
            .collect();
        self.kernel.invoke(
            slot,
            &Invocation {
                label: label as u64,
                args,
                extra_caps: &caps,
            },
        )
    }

    /// A CNode operation on the root CNode.
    pub fn cnode(&mut self, label: Label, args: &[u64]) -> Result<Reply, Error> {
        self.invoke_slot(Self::root_anchor(), label, args, &[Self::root_anchor()])
    }

    /// Copies root slot `src` to root slot `dst` with `rights`.
    pub fn copy(&mut self, src: u64, dst: u64, rights: CapRights) -> Result<Reply, Error> {
        let d = u64::from(layout::ROOT_RADIX);
        self.cnode(
            Label::CNodeCopy,
            &[dst, d, src, d, u64::from(rights.bits())],
        )
    }

    /// Mints root slot `src` into `dst` with `rights` and `data`.
    pub fn mint(
        &mut self,
        src: u64,
        dst: u64,
        rights: CapRights,
        data: u64,
    ) -> Result<Reply, Error> {
        let d = u64::from(layout::ROOT_RADIX);
        self.cnode(
            Label::CNodeMint,
            &[dst, d, src, d, u64::from(rights.bits()), data],
        )
    }

    /// Deletes root slot `i`.
    pub fn delete(&mut self, i: u64) -> Result<Reply, Error> {
        self.cnode(Label::CNodeDelete, &[i, u64::from(layout::ROOT_RADIX)])
    }

    /// Revokes root slot `i`.
    pub fn revoke(&mut self, i: u64) -> Result<Reply, Error> {
        self.cnode(Label::CNodeRevoke, &[i, u64::from(layout::ROOT_RADIX)])
    }

    /// Moves root slot `src` to root slot `dst`.
    pub fn move_cap(&mut self, src: u64, dst: u64) -> Result<Reply, Error> {
        let d = u64::from(layout::ROOT_RADIX);
        self.cnode(Label::CNodeMove, &[dst, d, src, d])
    }

    /// Retypes from the untyped in root slot `ut` into root slots `dst..`.
    pub fn retype(
        &mut self,
        ut: u64,
        ty: ObjectType,
        size: u64,
        dst: u64,
        count: u64,
    ) -> Result<Reply, Error> {
        self.invoke_slot(
            Self::slot(ut),
            Label::UntypedRetype,
            &[ty as u64, size, 0, 0, dst, count],
            &[Self::root_anchor()],
        )
    }
}
