//! Host test support: a [`Machine`] over typed maps that checks every
//! access, and a small "world" (root CNode, root untyped) to drive the
//! kernel with invocations as a thread would.

extern crate std;

use crate::{
    PhysAddr,
    addr::RamRange,
    cap::{Cap, FrameSize, SlotRef},
    kernel::{Invocation, Kernel, Reply},
    machine::{
        Access, AddressSpace, Clock, Interrupts, MapError, ObjectMemory, Platform, TableEntry,
        ThreadContext, Translation, VcpuState,
    },
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
    fn skip_instruction(&mut self) {
        self.0[skyscope_abi::invocation::REG_PC] += 4;
    }
    fn restart_syscall(&mut self) {
        self.0[skyscope_abi::invocation::REG_PC] -= 4;
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
#[derive(Clone, Default)]
pub struct HostMachine {
    slots: BTreeMap<u64, Slot>,
    tcbs: BTreeMap<u64, Tcb<TestContext>>,
    endpoints: BTreeMap<u64, Endpoint>,
    notifications: BTreeMap<u64, Notification>,
    replies: BTreeMap<u64, crate::object::reply::Reply>,
    sched_contexts: BTreeMap<u64, crate::object::sched_context::SchedContext>,
    /// Vcpus: the neutral head and a small register file.
    vcpus: BTreeMap<u64, (crate::object::vcpu::Vcpu, [u64; HOST_VCPU_REGISTERS])>,
    /// Virtual interrupts pending per Vcpu (a model of the vGIC: edges and
    /// high level lines, never taken by a guest).
    pub vcpu_irqs: BTreeMap<u64, std::collections::BTreeSet<u32>>,
    /// Words of RAM written through `write_words` (IPC buffers).
    pub memory: BTreeMap<u64, u64>,
    /// The counter `now()` returns; tests advance it.
    pub clock: u64,
    /// Live objects: base -> (type, log2 size). Untyped regions are kept
    /// apart in `untyped`, since objects live inside them.
    pub objects: BTreeMap<u64, (ObjectType, u8)>,
    /// Live untyped regions made by retype: (base, log2 size).
    pub untyped: BTreeSet<(u64, u8)>,
    /// Translation tables by identity (the table's own address, as the
    /// hardware walks them): table -> index -> entry. VSpaces, GuestSpaces
    /// and page tables each own one, created empty with the object.
    tables: BTreeMap<u64, BTreeMap<usize, Entry>>,
    /// Simulated interrupts: `preemption_pending` answers `true` every
    /// this many calls (tests of restartable operations).
    pub preempt_every: Option<u32>,
    preempt_countdown: u32,
    /// Enabled interrupt lines.
    pub irqs_enabled: BTreeSet<u16>,
    /// How many objects were destroyed, by type.
    pub destroyed: BTreeMap<ObjectType, u64>,
    /// Bytes the core zeroed before creating objects.
    pub zeroed_bytes: u64,
    /// Steps of [`Translation::empty_table`] taken.
    pub table_steps: u64,
    /// What threads wrote to the console.
    pub console: Vec<u8>,
    /// Console input not yet read (tests type into it).
    pub console_input: std::collections::VecDeque<u8>,
    /// Guest SErrors simulated through the debug syscall.
    pub simulated_serrors: u64,
}

const VA_LIMIT: u64 = 1 << 39;
/// Registers of a host-model Vcpu (indices beyond are invalid).
pub const HOST_VCPU_REGISTERS: usize = 8;

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

    /// The frame mapped at `vaddr` in the space whose top-level table is
    /// `root`, if any (walking the tables as the MMU does).
    pub fn translate(&self, root: PhysAddr, vaddr: u64) -> Option<PhysAddr> {
        let mut table = root.0;
        for level in 1..=3u8 {
            match self.tables.get(&table)?.get(&index_at(vaddr, level)) {
                Some(&Entry::Frame(f, _)) => {
                    return Some(PhysAddr(f.0 + (vaddr & ((1 << level_shift(level)) - 1))));
                }
                Some(&Entry::Table(t)) => table = t.0,
                None => return None,
            }
        }
        None
    }

    /// Number of frame mappings in all tables.
    pub fn frame_mappings(&self) -> usize {
        self.tables
            .values()
            .flat_map(|t| t.values())
            .filter(|e| matches!(e, Entry::Frame(..)))
            .count()
    }

    /// Writes words of RAM at `pa` directly (test set-up of IPC buffers).
    pub fn poke(&mut self, pa: PhysAddr, words: &[u64]) {
        for (i, &w) in words.iter().enumerate() {
            self.memory.insert(pa.0 + 8 * i as u64, w);
        }
    }

    /// Reads words of RAM at `pa` directly.
    pub fn peek(&self, pa: PhysAddr, out: &mut [u64]) {
        for (i, w) in out.iter_mut().enumerate() {
            *w = self
                .memory
                .get(&(pa.0 + 8 * i as u64))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Every translation table and its valid entries.
    pub fn table_contents(&self) -> BTreeMap<u64, BTreeMap<usize, TableEntry>> {
        self.tables
            .iter()
            .map(|(&t, entries)| {
                let decoded = entries
                    .iter()
                    .map(|(&i, &e)| {
                        let e = match e {
                            Entry::Table(t) => TableEntry::Table(t),
                            Entry::Frame(f, size) => TableEntry::Frame(f, size),
                        };
                        (i, e)
                    })
                    .collect();
                (t, decoded)
            })
            .collect()
    }

    /// Number of valid entries in the table at `table`.
    pub fn table_len(&self, table: PhysAddr) -> usize {
        self.tables.get(&table.0).map_or(0, BTreeMap::len)
    }

    /// The table at `level` on `vaddr`'s walk from `root`, following only
    /// table entries; `Err` tells what stopped the walk.
    fn walk(&self, root: PhysAddr, vaddr: u64, level: u8) -> Result<u64, MapError> {
        let mut table = root.0;
        for l in 1..level {
            match self.tables[&table].get(&index_at(vaddr, l)) {
                Some(&Entry::Table(t)) => table = t.0,
                Some(&Entry::Frame(..)) => return Err(MapError::AlreadyMapped),
                None => return Err(MapError::MissingTable),
            }
        }
        Ok(table)
    }

    fn table_mut(&mut self, table: u64) -> &mut BTreeMap<usize, Entry> {
        self.tables
            .get_mut(&table)
            .unwrap_or_else(|| panic!("access to nonexistent translation table {table:#x}"))
    }
}

/// Index of `vaddr` in a table serving `level`.
fn index_at(vaddr: u64, level: u8) -> usize {
    ((vaddr >> level_shift(level)) & 0x1ff) as usize
}

impl ObjectMemory for HostMachine {
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

    fn create_object(&mut self, ty: ObjectType, base: PhysAddr, bits: u8, device: bool) {
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
            ObjectType::Reply => {
                self.replies.insert(base.0, Default::default());
            }
            ObjectType::SchedContext => {
                self.sched_contexts.insert(base.0, Default::default());
            }
            ObjectType::Vcpu => {
                self.vcpus.insert(base.0, Default::default());
            }
            _ => {}
        }
        if matches!(
            ty,
            ObjectType::PageTable | ObjectType::VSpace | ObjectType::GuestSpace
        ) {
            self.tables.insert(base.0, BTreeMap::new());
        }
        // The core zeroed the memory before creating the object.
        if !device {
            let end = base.0 + (1u64 << bits);
            assert!(
                self.memory.range(base.0..end).next().is_none(),
                "{ty:?} at {base:?} created on memory that was not zeroed"
            );
        }
    }

    fn zero_memory(&mut self, range: RamRange) {
        let end = range.base().0 + range.len();
        let stale: Vec<u64> = self
            .memory
            .range(range.base().0..end)
            .map(|(&a, _)| a)
            .collect();
        for a in stale {
            self.memory.remove(&a);
        }
        self.zeroed_bytes += range.len();
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
                let e = self.endpoints.remove(&base.0).expect("endpoint");
                assert_eq!(e.head.0, 0, "endpoint destroyed with threads queued");
            }
            ObjectType::Notification => {
                let n = self.notifications.remove(&base.0).expect("notification");
                assert_eq!(
                    (n.head.0, n.bound_tcb.0),
                    (0, 0),
                    "notification destroyed with waiters or a bound TCB"
                );
            }
            ObjectType::Reply => {
                let r = self.replies.remove(&base.0).expect("reply");
                assert_eq!(
                    (r.caller.0, r.receiver.0),
                    (0, 0),
                    "reply destroyed while in use"
                );
            }
            ObjectType::SchedContext => {
                let sc = self.sched_contexts.remove(&base.0).expect("sched context");
                assert!(
                    sc.tcb.0 == 0 && !sc.in_release_queue,
                    "sched context destroyed while bound"
                );
            }
            ObjectType::VSpace | ObjectType::GuestSpace => {
                let t = self.tables.remove(&base.0).expect("top-level table");
                assert!(t.is_empty(), "{ty:?} destroyed holding entries {t:?}");
            }
            ObjectType::Vcpu => {
                let (v, _) = self.vcpus.remove(&base.0).expect("vcpu");
                self.vcpu_irqs.remove(&base.0);
                assert_eq!(v.tcb.0, 0, "vcpu destroyed while bound");
            }
            ObjectType::PageTable => {
                let t = self.tables.remove(&base.0).expect("page table");
                assert!(t.is_empty(), "page table destroyed holding entries {t:?}");
                let installed = self
                    .tables
                    .values()
                    .flat_map(|t| t.values())
                    .any(|e| *e == Entry::Table(base));
                assert!(!installed, "page table destroyed while installed");
            }
            _ => {}
        }
        *self.destroyed.entry(ty).or_default() += 1;
    }

    fn read_words(&self, from: RamRange, out: &mut [u64]) {
        for (i, w) in out.iter_mut().enumerate() {
            *w = if i < from.words() {
                self.memory
                    .get(&(from.base().0 + 8 * i as u64))
                    .copied()
                    .unwrap_or(0)
            } else {
                0
            };
        }
    }

    fn write_words(&mut self, to: RamRange, words: &[u64]) {
        for (i, &w) in words.iter().take(to.words()).enumerate() {
            self.memory.insert(to.base().0 + 8 * i as u64, w);
        }
    }

    fn vcpu_mut(&mut self, p: PhysAddr) -> &mut crate::object::vcpu::Vcpu {
        &mut self
            .vcpus
            .get_mut(&p.0)
            .unwrap_or_else(|| panic!("access to nonexistent vcpu {p:?}"))
            .0
    }

    fn reply_mut(&mut self, p: PhysAddr) -> &mut crate::object::reply::Reply {
        self.replies
            .get_mut(&p.0)
            .unwrap_or_else(|| panic!("access to nonexistent reply {p:?}"))
    }

    fn sched_context_mut(
        &mut self,
        p: PhysAddr,
    ) -> &mut crate::object::sched_context::SchedContext {
        self.sched_contexts
            .get_mut(&p.0)
            .unwrap_or_else(|| panic!("access to nonexistent sched context {p:?}"))
    }
}

impl Translation for HostMachine {
    fn map_frame(
        &mut self,
        space: AddressSpace,
        vaddr: u64,
        frame: PhysAddr,
        size: FrameSize,
        _access: Access,
    ) -> Result<(), MapError> {
        if vaddr >= VA_LIMIT || !vaddr.is_multiple_of(size.bytes()) {
            return Err(MapError::BadAddress);
        }
        let leaf = if size == FrameSize::Small { 3 } else { 2 };
        let table = self.walk(space.root, vaddr, leaf)?;
        let index = index_at(vaddr, leaf);
        let entries = self.table_mut(table);
        if entries.contains_key(&index) {
            return Err(MapError::AlreadyMapped);
        }
        entries.insert(index, Entry::Frame(frame, size));
        Ok(())
    }

    fn unmap_frame(&mut self, space: AddressSpace, vaddr: u64, frame: PhysAddr, size: FrameSize) {
        let leaf = if size == FrameSize::Small { 3 } else { 2 };
        if let Ok(table) = self.walk(space.root, vaddr, leaf) {
            let entries = self.table_mut(table);
            let index = index_at(vaddr, leaf);
            if entries.get(&index) == Some(&Entry::Frame(frame, size)) {
                entries.remove(&index);
            }
        }
    }

    fn map_table(
        &mut self,
        space: AddressSpace,
        vaddr: u64,
        table: PhysAddr,
    ) -> Result<u8, MapError> {
        if vaddr >= VA_LIMIT {
            return Err(MapError::BadAddress);
        }
        assert!(
            self.tables.contains_key(&table.0),
            "installing {table:?}, which is not a live table"
        );
        let mut at = space.root.0;
        for level in 1..=2u8 {
            let index = index_at(vaddr, level);
            match self.tables[&at].get(&index) {
                Some(&Entry::Table(t)) => at = t.0,
                Some(&Entry::Frame(..)) => return Err(MapError::AlreadyMapped),
                None => {
                    self.table_mut(at).insert(index, Entry::Table(table));
                    return Ok(level + 1);
                }
            }
        }
        Err(MapError::AlreadyMapped)
    }

    fn unmap_table(&mut self, space: AddressSpace, vaddr: u64, level: u8, table: PhysAddr) {
        if !(2..=3).contains(&level) {
            return;
        }
        if let Ok(parent) = self.walk(space.root, vaddr, level - 1) {
            let index = index_at(vaddr, level - 1);
            let entries = self.table_mut(parent);
            if entries.get(&index) == Some(&Entry::Table(table)) {
                entries.remove(&index);
            }
        }
    }

    fn empty_table(&mut self, _space: Option<AddressSpace>, table: PhysAddr, level: u8) -> bool {
        // One step: every frame entry of the table, and either one child
        // table's step (while it holds entries) or the entry of one empty
        // child table.
        let entries = self.table_mut(table.0);
        entries.retain(|_, e| matches!(e, Entry::Table(_)));
        let child = entries.iter().next().map(|(&i, &e)| (i, e));
        if let Some((index, Entry::Table(child))) = child {
            if level < 3 && self.table_len(child) > 0 {
                self.empty_table(None, child, level + 1);
            } else {
                self.table_mut(table.0).remove(&index);
            }
        }
        self.table_steps += 1;
        self.table_len(table) == 0
    }

    fn read_user(&self, space: AddressSpace, va: u64, out: &mut [u8]) -> Result<(), Error> {
        // Through the simulated tables, word by word (host memory holds
        // words); every byte's page must be mapped.
        for (i, byte) in out.iter_mut().enumerate() {
            let at = va.checked_add(i as u64).ok_or(Error::InvalidUserBuffer)?;
            let pa = self
                .translate(space.root, at)
                .ok_or(Error::InvalidUserBuffer)?;
            let word = self.memory.get(&(pa.0 & !7)).copied().unwrap_or(0);
            *byte = word.to_le_bytes()[(pa.0 & 7) as usize];
        }
        Ok(())
    }

    fn table_entry(&self, table: PhysAddr, _level: u8, index: usize) -> TableEntry {
        match self.tables.get(&table.0).and_then(|t| t.get(&index)) {
            Some(&Entry::Table(t)) => TableEntry::Table(t),
            Some(&Entry::Frame(f, size)) => TableEntry::Frame(f, size),
            None => TableEntry::Invalid,
        }
    }

    fn flush_space(&mut self, _space: AddressSpace) {}
}

impl Platform for HostMachine {
    fn console_write(&mut self, bytes: &[u8]) {
        self.console.extend_from_slice(bytes);
    }

    fn console_waiting(&self) -> usize {
        self.console_input.len()
    }

    fn console_read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.console_input.len());
        for (byte, input) in out.iter_mut().zip(self.console_input.drain(..n)) {
            *byte = input;
        }
        n
    }

    fn timer_ticks(&self) -> u64 {
        self.clock / 10_000_000
    }

    fn check_hardware_invariants(&self) -> Result<(), &'static str> {
        Ok(())
    }

    fn simulate_guest_serror(&mut self) {
        self.simulated_serrors += 1;
    }
}

impl Interrupts for HostMachine {
    fn preemption_pending(&mut self) -> bool {
        let Some(every) = self.preempt_every else {
            return false;
        };
        if self.preempt_countdown == 0 {
            self.preempt_countdown = every;
            return true;
        }
        self.preempt_countdown -= 1;
        false
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
}

impl Clock for HostMachine {
    fn now(&self) -> u64 {
        self.clock
    }

    fn counter_frequency(&self) -> u64 {
        1_000_000_000
    }
}

impl VcpuState for HostMachine {
    fn vcpu_register(
        &mut self,
        p: PhysAddr,
        _bound: Option<PhysAddr>,
        index: u64,
        value: Option<u64>,
    ) -> Result<u64, Error> {
        let (_, registers) = self
            .vcpus
            .get_mut(&p.0)
            .unwrap_or_else(|| panic!("access to nonexistent vcpu {p:?}"));
        let register = usize::try_from(index)
            .ok()
            .and_then(|i| registers.get_mut(i))
            .ok_or(Error::InvalidArgument)?;
        if let Some(v) = value {
            *register = v;
        }
        Ok(*register)
    }

    fn vcpu_set_irq(&mut self, p: PhysAddr, intid: u32, _priority: u8, flags: u64) -> bool {
        use skyscope_abi::vcpu::irq::{HIGH, LEVEL};
        assert!(
            self.vcpus.contains_key(&p.0),
            "set_irq on nonexistent vcpu {p:?}"
        );
        let pending = self.vcpu_irqs.entry(p.0).or_default();
        if flags & HIGH != 0 {
            pending.insert(intid);
        } else if flags & LEVEL != 0 {
            pending.remove(&intid);
        }
        !pending.is_empty()
    }
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
#[derive(Clone)]
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
            free_offset: 0,
            zeroed_to: 0,
            size_bits: layout::UNTYPED_BITS,
            device: false,
        };
        kernel.install_original(SlotRef::NONE, Self::slot(layout::UNTYPED_SLOT), ut);
        kernel.install_original(SlotRef::NONE, Self::sched_control(), Cap::SchedControl);
        World { kernel }
    }

    /// Anchor slot holding the scheduling-control capability.
    pub fn sched_control() -> SlotRef {
        SlotRef(layout::ANCHOR + (2 << SLOT_BITS))
    }

    /// Gives the TCB in root slot `tcb` a scheduling context (made in root
    /// slot `sc` from the root untyped) with `budget_us` per `period_us`.
    pub fn give_sched_context(&mut self, tcb: u64, sc: u64, budget_us: u64, period_us: u64) {
        self.retype(layout::UNTYPED_SLOT, ObjectType::SchedContext, 0, sc, 1)
            .expect("retype sched context");
        self.invoke_slot(
            Self::sched_control(),
            Label::SchedControlConfigure,
            &[budget_us, period_us],
            &[Self::slot(sc)],
        )
        .expect("configure sched context");
        self.invoke_slot(
            Self::slot(sc),
            Label::SchedContextBind,
            &[],
            &[Self::slot(tcb)],
        )
        .expect("bind");
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

/// A thread of a [`World`]: its TCB slot and TCB address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thread {
    /// Root slot of its TCB capability.
    pub slot: u64,
    /// The TCB.
    pub tcb: PhysAddr,
    /// Physical address of its IPC buffer.
    pub buffer: PhysAddr,
}

impl World {
    /// Makes a runnable thread at `priority` whose CSpace is the root CNode
    /// (a capability pointer is a root slot index), with an IPC buffer and
    /// a full scheduling context. Uses root slots `slot..slot + 3` and the
    /// shared VSpace in slot 60.
    pub fn thread(&mut self, slot: u64, priority: u8) -> Thread {
        if self.cap(60).is_null() {
            self.retype(layout::UNTYPED_SLOT, ObjectType::VSpace, 0, 60, 1)
                .expect("vspace");
        }
        self.retype(layout::UNTYPED_SLOT, ObjectType::Tcb, 0, slot, 1)
            .expect("tcb");
        self.retype(layout::UNTYPED_SLOT, ObjectType::Frame4K, 0, slot + 1, 1)
            .expect("ipc buffer");
        let guard = skyscope_abi::invocation::guard_word(0, 64 - layout::ROOT_RADIX);
        self.invoke_slot(
            Self::slot(slot),
            Label::TcbConfigure,
            &[0, u64::from(priority), guard, 0x1000],
            &[Self::root_anchor(), Self::slot(60), Self::slot(slot + 1)],
        )
        .expect("configure");
        self.give_sched_context(slot, slot + 2, 1000, 1000);
        self.invoke_slot(Self::slot(slot), Label::TcbResume, &[], &[])
            .expect("resume");
        let Cap::Tcb { ptr, .. } = self.cap(slot) else {
            unreachable!()
        };
        let Cap::Frame { base, .. } = self.cap(slot + 1) else {
            unreachable!()
        };
        Thread {
            slot,
            tcb: ptr,
            buffer: base,
        }
    }

    /// Runs syscall `number` as thread `t` with registers `x0..x6`, then
    /// lets the scheduler choose; returns `t`'s registers afterwards.
    pub fn syscall_as(
        &mut self,
        t: Thread,
        number: skyscope_abi::Syscall,
        regs: [u64; 7],
    ) -> [u64; 7] {
        self.kernel.current = Some(t.tcb);
        self.kernel
            .scheduler
            .remove(&mut self.kernel.machine, t.tcb);
        for (i, &r) in regs.iter().enumerate() {
            self.kernel.machine.tcb_mut(t.tcb).context.set_arg(i, r);
        }
        // As the kernel's exception entry does: the fastpath once, then
        // (if it does not apply) the general path.
        if !self.kernel.fastpath(number as u64) {
            let outcome = self.kernel.syscall(number as u64);
            assert_eq!(outcome, crate::syscall::SyscallOutcome::Done);
        }
        self.kernel.schedule();
        self.regs(t)
    }

    /// Thread `t`'s registers `x0..x6`.
    pub fn regs(&self, t: Thread) -> [u64; 7] {
        let c = self.kernel.machine.tcb(t.tcb).context;
        core::array::from_fn(|i| c.arg(i))
    }

    /// Asserts the kernel invariants over everything the root CNode reaches.
    pub fn invariants(&mut self) {
        if let Err(e) = self.kernel.check_invariants(&[Self::root_cap()]) {
            panic!("invariant violated: {e}");
        }
    }

    /// Thread `t`'s run state.
    pub fn state(&self, t: Thread) -> crate::object::tcb::ThreadState {
        self.kernel.machine.tcb(t.tcb).state
    }
}
