//! Host test support: a [`Machine`] over typed maps that checks every
//! access, and a small "world" (root CNode, root untyped) to drive the
//! kernel with invocations as a thread would.

extern crate std;

use crate::{
    PhysAddr,
    cap::{Cap, FrameSize, SlotRef},
    kernel::{Invocation, Kernel, Reply},
    machine::{Access, AddressSpace, Machine, MapError, ThreadContext},
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
    /// Words of RAM written through `write_words` (IPC buffers).
    pub memory: BTreeMap<u64, u64>,
    /// The counter `now()` returns; tests advance it.
    pub clock: u64,
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
        // Fresh objects and frames are zeroed.
        let end = base.0 + (1u64 << bits);
        let stale: Vec<u64> = self.memory.range(base.0..end).map(|(&a, _)| a).collect();
        for a in stale {
            self.memory.remove(&a);
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
            ObjectType::VSpace | ObjectType::GuestSpace => self.remove_entries_of_vspace(base.0),
            ObjectType::Vcpu => {
                let (v, _) = self.vcpus.remove(&base.0).expect("vcpu");
                assert_eq!(v.tcb.0, 0, "vcpu destroyed while bound");
            }
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
        space: AddressSpace,
        vaddr: u64,
        frame: PhysAddr,
        size: FrameSize,
        _access: Access,
    ) -> Result<(), MapError> {
        let vspace = space.root;
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

    fn unmap_frame(&mut self, space: AddressSpace, vaddr: u64, frame: PhysAddr, size: FrameSize) {
        let vspace = space.root;
        let leaf = if size == FrameSize::Small { 3 } else { 2 };
        let key = (vspace.0, leaf, vaddr >> level_shift(leaf));
        if self.entries.get(&key) == Some(&Entry::Frame(frame, size)) {
            self.entries.remove(&key);
        }
    }

    fn map_table(
        &mut self,
        space: AddressSpace,
        vaddr: u64,
        table: PhysAddr,
    ) -> Result<u8, MapError> {
        let vspace = space.root;
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

    fn unmap_table(&mut self, space: AddressSpace, vaddr: u64, level: u8, table: PhysAddr) {
        let vspace = space.root;
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

    fn flush_space(&mut self, _space: AddressSpace) {}

    fn read_words(&self, pa: PhysAddr, out: &mut [u64]) {
        for (i, w) in out.iter_mut().enumerate() {
            *w = self
                .memory
                .get(&(pa.0 + 8 * i as u64))
                .copied()
                .unwrap_or(0);
        }
    }

    fn write_words(&mut self, pa: PhysAddr, words: &[u64]) {
        for (i, &w) in words.iter().enumerate() {
            self.memory.insert(pa.0 + 8 * i as u64, w);
        }
    }

    fn now(&self) -> u64 {
        self.clock
    }

    fn counter_frequency(&self) -> u64 {
        1_000_000_000
    }

    fn vcpu_mut(&mut self, p: PhysAddr) -> &mut crate::object::vcpu::Vcpu {
        &mut self
            .vcpus
            .get_mut(&p.0)
            .unwrap_or_else(|| panic!("access to nonexistent vcpu {p:?}"))
            .0
    }

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
            size_bits: layout::UNTYPED_BITS,
            device: false,
            free_offset: 0,
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
        assert!(self.kernel.syscall(number as u64), "not a core syscall");
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
