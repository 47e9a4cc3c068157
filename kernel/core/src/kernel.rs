//! The kernel's state and the one invocation dispatcher.

use crate::{
    PhysAddr,
    cap::{ASID_COUNT, Cap, ContainerKind, SlotRef},
    cspace,
    machine::Machine,
    object::tcb,
    sched::Scheduler,
    slot::{self, SLOT_BITS, Slot},
};
use skyscope_abi::{Error, ObjectType};

/// Most words an invocation reply carries.
pub const MAX_REPLY_WORDS: usize = 40;
/// Interrupt lines the kernel tracks handler capabilities for.
pub const MAX_IRQS: usize = 1024;

/// An invocation as decoded from a syscall: label, argument words and the
/// extra capabilities (already looked up) with their slots.
pub struct Invocation<'a> {
    /// Operation selector (a [`skyscope_abi::Label`] value).
    pub label: u64,
    /// Argument words.
    pub args: &'a [u64],
    /// Extra capabilities and the slots they were found in.
    pub extra_caps: &'a [(Cap, SlotRef)],
}

impl Invocation<'_> {
    /// Argument `i`, or `TruncatedMessage`.
    pub fn arg(&self, i: usize) -> Result<u64, Error> {
        self.args.get(i).copied().ok_or(Error::TruncatedMessage)
    }

    /// Extra capability `i`, or `TruncatedMessage`.
    pub fn extra_cap(&self, i: usize) -> Result<(Cap, SlotRef), Error> {
        self.extra_caps
            .get(i)
            .copied()
            .ok_or(Error::TruncatedMessage)
    }
}

/// The words an invocation answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    words: [u64; MAX_REPLY_WORDS],
    len: usize,
}

impl Reply {
    /// No words.
    pub const fn empty() -> Reply {
        Reply {
            words: [0; MAX_REPLY_WORDS],
            len: 0,
        }
    }

    /// One word.
    pub fn word(w: u64) -> Reply {
        let mut r = Reply::empty();
        r.push(w);
        r
    }

    /// Appends a word (ignored beyond the maximum, which no invocation reaches).
    pub fn push(&mut self, w: u64) {
        if self.len < MAX_REPLY_WORDS {
            self.words[self.len] = w;
            self.len += 1;
        }
    }

    /// The words.
    pub fn words(&self) -> &[u64] {
        &self.words[..self.len]
    }
}

/// Counters for invariant checks and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Objects created by retype.
    pub objects_created: u64,
    /// Objects destroyed (finalised).
    pub objects_destroyed: u64,
    /// Times a thread used up its budget.
    pub budget_depletions: u64,
    /// Syscalls completed by the IPC fastpath.
    pub fastpath_hits: u64,
    /// Long operations stopped at a preemption point (and restarted).
    pub preemptions: u64,
}

/// Longest chain of zombies followed when looking for a cycle: as many
/// containers as fit in the largest memory the kernel supports.
const MAX_ZOMBIE_DEPTH: usize = 1 << 24;

/// Slots an operation holds on to across deletions, which may destroy the
/// containers they live in (seL4 re-checks such slots the same way).
const WATCH_SLOTS: usize = 5;

/// The kernel: object memory and hardware behind `M`, plus the few global
/// tables that are not objects.
///
/// In declaration order (`repr(C)`), what the IPC fastpath touches first:
/// its fields, the machine's and the scheduler's then lie within a few
/// KiB of the start, where the kernel reaches each with one load at an
/// offset from one register (the large tables come last).
#[derive(Clone)]
#[repr(C)]
pub struct Kernel<M: Machine> {
    /// The running thread.
    pub current: Option<PhysAddr>,
    /// Whether the IPC fastpath is used (tests compare both paths).
    pub fastpath_enabled: bool,
    /// Advanced by every event that may change which user address space
    /// a thread runs in (see [`crate::object::tcb::SpaceCache`]).
    pub space_generation: u64,
    /// Scheduling contexts waiting for their next period, earliest first.
    pub(crate) release_head: PhysAddr,
    /// Counter value at the last budget charge.
    pub(crate) last_charge: u64,
    /// Object counters.
    pub counters: Counters,
    /// Memory and hardware.
    pub machine: M,
    /// Ready queues.
    pub scheduler: Scheduler,
    /// Top-level table per address-space identifier (0 = free), with the
    /// low bit set for a GuestSpace's (see `object::vspace`).
    pub(crate) asids: [PhysAddr; ASID_COUNT],
    /// Bit per IRQ line: a handler capability exists.
    pub(crate) irq_issued: [u64; MAX_IRQS / 64],
    watched: [SlotRef; WATCH_SLOTS],
    watched_dead: [bool; WATCH_SLOTS],
    /// The thread whose invocation is in progress (its TCB may be destroyed by it).
    pub(crate) caller: Option<PhysAddr>,
    /// Set when `caller`'s TCB was destroyed.
    pub(crate) caller_destroyed: bool,
    /// Notification (and badge) signalled by each IRQ line.
    pub(crate) irq_notifications: [(PhysAddr, u64); MAX_IRQS],
    /// Notification (and badge) signalled when console input arrives.
    pub(crate) console_listener: (PhysAddr, u64),
    /// The audit stream.
    pub audit: crate::audit::AuditLog,
}

impl<M: Machine> Kernel<M> {
    /// A kernel with no objects yet.
    pub fn new(machine: M) -> Kernel<M> {
        Kernel {
            machine,
            scheduler: Scheduler::new(),
            current: None,
            asids: [PhysAddr(0); ASID_COUNT],
            irq_issued: [0; MAX_IRQS / 64],
            watched: [SlotRef::NONE; WATCH_SLOTS],
            watched_dead: [false; WATCH_SLOTS],
            counters: Counters::default(),
            caller: None,
            caller_destroyed: false,
            last_charge: 0,
            release_head: PhysAddr(0),
            irq_notifications: [(PhysAddr(0), 0); MAX_IRQS],
            console_listener: (PhysAddr(0), 0),
            fastpath_enabled: true,
            space_generation: 1,
            audit: crate::audit::AuditLog::new(),
        }
    }

    /// The CSpace root capability of the running thread.
    pub fn current_cspace(&self) -> Result<Cap, Error> {
        let t = self.current.ok_or(Error::IllegalOperation)?;
        Ok(self.machine.slot(tcb::slot_ref(t, tcb::slots::CSPACE)).cap)
    }

    /// Resolves `cptr` (all 64 bits) in the running thread's CSpace.
    pub fn lookup_slot_of_current(&self, cptr: u64) -> Result<SlotRef, Error> {
        let t = self.current.ok_or(Error::IllegalOperation)?;
        let root = &self.machine.slot(tcb::slot_ref(t, tcb::slots::CSPACE)).cap;
        cspace::lookup_cap_slot(&self.machine, root, cptr)
    }

    /// Resolves a slot argument `(index, depth)` relative to the CNode
    /// capability `root`, consuming exactly `depth` bits (1..=64).
    pub fn lookup_slot_arg(&self, root: &Cap, index: u64, depth: u64) -> Result<SlotRef, Error> {
        let depth = u32::try_from(depth).map_err(|_| Error::RangeError)?;
        cspace::lookup_slot(&self.machine, root, index, depth)
    }

    /// Dispatches an invocation of the capability in `slot`.
    pub fn invoke(&mut self, slot: SlotRef, inv: &Invocation<'_>) -> Result<Reply, Error> {
        let cap = self.machine.slot(slot).cap;
        match cap {
            Cap::Null | Cap::Zombie { .. } => Err(Error::InvalidCapability),
            // Used through their own syscalls, by holders of the capability.
            Cap::Console { .. } | Cap::PowerControl | Cap::Debug => Err(Error::IllegalOperation),
            Cap::Untyped { .. } => self.invoke_untyped(slot, inv),
            Cap::CNode { .. } => self.invoke_cnode(&cap, inv),
            Cap::Tcb { ptr, rights } => self.invoke_tcb(ptr, rights, inv),
            Cap::Frame { .. } => self.invoke_frame(slot, inv),
            Cap::PageTable { .. } => self.invoke_page_table(slot, inv),
            Cap::IrqControl => self.invoke_irq_control(slot, inv),
            Cap::IrqHandler { irq } => self.invoke_irq_handler(irq, inv),
            Cap::SchedControl => self.invoke_sched_control(inv),
            Cap::AuditLog { rights } => self.invoke_audit_log(rights, inv),
            Cap::SchedContext { ptr, rights } => self.invoke_sched_context(ptr, rights, inv),
            Cap::Vcpu { ptr, rights } => self.invoke_vcpu(ptr, rights, inv),
            // Endpoints, notifications and replies are used through the
            // IPC syscalls; VSpaces and GuestSpaces are only ever targets
            // of `Map`.
            Cap::Endpoint { .. }
            | Cap::Notification { .. }
            | Cap::Reply { .. }
            | Cap::VSpace { .. }
            | Cap::GuestSpace { .. } => Err(Error::IllegalOperation),
        }
    }

    /// Writes `cap`, derived from the capability in `src`, into the empty
    /// slot `dst` and links it after `src` in the MDB.
    pub fn install_derived(&mut self, src: SlotRef, dst: SlotRef, cap: Cap) {
        let revocable = slot::is_revocable(&cap, &self.machine.slot(src).cap);
        *self.machine.slot_mut(dst) = Slot {
            cap,
            revocable,
            first_badged: revocable,
            ..Slot::default()
        };
        slot::insert_after(&mut self.machine, src, dst);
    }

    /// Writes a new original capability (from retype or boot) into the
    /// empty slot `dst`, after `parent` in the MDB (or unlinked if NONE).
    pub fn install_original(&mut self, parent: SlotRef, dst: SlotRef, cap: Cap) {
        *self.machine.slot_mut(dst) = Slot {
            cap,
            revocable: true,
            first_badged: true,
            ..Slot::default()
        };
        if !parent.is_none() {
            slot::insert_after(&mut self.machine, parent, dst);
        }
    }

    // ---- deletion -------------------------------------------------------

    /// Remembers `slots` so the deletion engine can report whether the
    /// containers holding them were destroyed.
    pub(crate) fn watch(&mut self, slots: &[SlotRef]) {
        self.watched = [SlotRef::NONE; WATCH_SLOTS];
        self.watched[..slots.len()].copy_from_slice(slots);
        self.watched_dead = [false; WATCH_SLOTS];
    }

    /// Whether watched slot `i` still exists (its container was not destroyed).
    pub(crate) fn watched_alive(&self, i: usize) -> bool {
        !self.watched_dead[i]
    }

    pub(crate) fn unwatch(&mut self) {
        self.watched = [SlotRef::NONE; WATCH_SLOTS];
    }

    /// Deletes the capability in `s`. If it was the last capability to its
    /// object, the object is finalised; a CNode or TCB is destroyed
    /// together with every capability it holds, iteratively (no recursion,
    /// however deeply containers hold the last capabilities to others).
    ///
    /// Long work stops at preemption points with [`Error::Preempted`],
    /// leaving a state from which deleting `s` again continues: a
    /// container being destroyed stays in `s` as a zombie.
    pub fn delete(&mut self, s: SlotRef) -> Result<(), Error> {
        match self.machine.slot(s).cap {
            Cap::Null => Ok(()),
            Cap::Zombie { .. } => self.finish_zombie(s),
            _ => {
                if self.delete_one(s, SlotRef::NONE)? {
                    self.finish_zombie(s)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Deletes the live capability in `s`, finalising its object if it was
    /// the last capability. The last capability to a container becomes a
    /// zombie (enclosed by the zombie in `back`, if any) whose contents
    /// [`Kernel::finish_zombie`] destroys: returns `true` then. Otherwise
    /// `s` is left empty. A preempted finalisation changes nothing in `s`.
    fn delete_one(&mut self, s: SlotRef, back: SlotRef) -> Result<bool, Error> {
        let old = *self.machine.slot(s);
        let last = slot::is_final(&self.machine, s);
        self.release(&old.cap, last)?;
        if last {
            let container = match old.cap {
                Cap::CNode { ptr, radix, .. } => Some((ptr, ContainerKind::CNode { radix })),
                Cap::Tcb { ptr, .. } => Some((ptr, ContainerKind::Tcb)),
                _ => None,
            };
            if let Some((ptr, kind)) = container {
                // The zombie keeps the slot's place in the derivation list:
                // the untyped the container came from must not be reused
                // before the zombie is gone.
                self.machine.slot_mut(s).cap = Cap::Zombie {
                    ptr,
                    back,
                    cursor: 0,
                    kind,
                };
                return Ok(true);
            }
        }
        slot::unlink(&mut self.machine, s);
        *self.machine.slot_mut(s) = Slot::default();
        Ok(false)
    }

    /// Returns [`Error::Preempted`] if an interrupt is waiting.
    pub(crate) fn preemption_point(&mut self) -> Result<(), Error> {
        if self.machine.preemption_pending() {
            self.counters.preemptions += 1;
            Err(Error::Preempted)
        } else {
            Ok(())
        }
    }

    /// Per-capability clean-up before a capability leaves its slot; with
    /// `last`, also the finalisation of its object (containers excepted).
    /// Only emptying translation tables can be preempted, before anything
    /// else changes.
    fn release(&mut self, cap: &Cap, last: bool) -> Result<(), Error> {
        match *cap {
            Cap::Frame {
                base,
                size,
                mapping,
                ..
            } => {
                if let Some((id, vaddr)) = mapping.get()
                    && let Some(space) = self.space_of(id)
                {
                    self.machine.unmap_frame(space, vaddr, base, size);
                }
            }
            // Page-table capabilities are never copied: this is the last.
            Cap::PageTable {
                ptr,
                mapping,
                level,
            } => self.take_table_out(ptr, mapping, level)?,
            Cap::VSpace { ptr, asid: id, .. } | Cap::GuestSpace { ptr, vmid: id, .. } => {
                if last {
                    self.empty_space(ptr, id)?;
                    self.release_space(id);
                }
                // The slot may be a thread's VSpace slot.
                self.spaces_changed();
            }
            Cap::Vcpu { ptr, .. } if last => self.retire_vcpu(ptr),
            Cap::IrqHandler { irq } if last => self.release_irq(irq),
            Cap::Tcb { ptr, .. } if last => self.retire_thread(ptr),
            Cap::Endpoint { ptr, .. } if last => self.cancel_endpoint(ptr),
            Cap::Notification { ptr, .. } if last => self.cancel_notification(ptr),
            Cap::Reply { ptr, .. } if last => self.cancel_reply(ptr),
            Cap::SchedContext { ptr, .. } if last => self.unbind_sched_context(ptr),
            _ => {}
        }
        if last && let (Some(ty), Some((base, _))) = (cap.object_type(), cap.region()) {
            let thread = self.current.unwrap_or(PhysAddr(0));
            self.audit.record(
                crate::audit::AuditKind::Finalised,
                self.machine.now(),
                thread,
                base.0,
                ty as u64,
                0,
            );
        }
        if last && !matches!(cap, Cap::CNode { .. } | Cap::Tcb { .. }) {
            self.destroy_object_of(cap);
        }
        Ok(())
    }

    fn destroy_object_of(&mut self, cap: &Cap) {
        // Untyped regions and frames hold no kernel state, but the machine
        // still learns of their end (the host model tracks them; a hardened
        // kernel may scrub them).
        if let (Some(ty), Some((base, bits))) = (cap.object_type(), cap.region()) {
            self.machine.destroy_object(ty, base, bits);
            self.counters.objects_destroyed += 1;
        }
    }

    /// How many container slots [`Kernel::finish_zombie`] scans between
    /// preemption points when they are empty.
    const SCAN_BATCH: u64 = 512;

    /// Destroys the contents of the container whose zombie is in `top`,
    /// then the container, and empties the zombie's slot.
    ///
    /// Depth-first over containers whose last capability lies inside the
    /// one being emptied: such a capability becomes a zombie in its slot,
    /// linked back to the enclosing zombie, and each zombie's cursor
    /// records how far its container has been emptied, so the traversal
    /// stack lives in the dying objects themselves and a preempted
    /// destruction resumes from `top` without repeating work.
    ///
    /// A cycle (the first zombie's slot lies inside a container it holds,
    /// directly or through others: a TCB whose CSpace holds the last
    /// capability to the TCB) is broken by swapping zombies until each sits
    /// inside its own container, where emptying that container skips it.
    pub(crate) fn finish_zombie(&mut self, top: SlotRef) -> Result<(), Error> {
        let Cap::Zombie {
            ptr: top_object, ..
        } = self.machine.slot(top).cap
        else {
            return Ok(());
        };
        let mut z = top;
        loop {
            let Cap::Zombie {
                ptr,
                back,
                cursor,
                kind,
            } = self.machine.slot(z).cap
            else {
                return Ok(()); // finished meanwhile
            };
            let (base, count) = Self::container_slots(ptr, kind);
            let limit = count.min(cursor.saturating_add(Self::SCAN_BATCH));
            let found = (cursor..limit)
                .map(|i| (SlotRef(base + (i << SLOT_BITS)), i))
                .find(|&(s, _)| s != z && !self.machine.slot(s).cap.is_null());
            match found {
                Some((s, index)) => {
                    self.set_zombie_cursor(z, index);
                    if let Cap::Zombie { .. } = self.machine.slot(s).cap {
                        if let Some(inner) = self.enclosed_by(z, s) {
                            // An enclosing zombie sits in this container:
                            // move it up into the slot this container's
                            // zombie held, and this zombie down into its
                            // own container; the zombie it directly
                            // enclosed follows it.
                            slot::swap(&mut self.machine, z, s);
                            let inner = if inner == z { s } else { inner };
                            if let Cap::Zombie { back, .. } = &mut self.machine.slot_mut(inner).cap
                            {
                                *back = z;
                            }
                            z = s;
                            continue;
                        }
                        // A container being destroyed inside this one
                        // (preempted earlier, or started by another
                        // deletion): finish it first.
                        if let Cap::Zombie { back, .. } = &mut self.machine.slot_mut(s).cap {
                            *back = z;
                        }
                        z = s;
                        continue;
                    }
                    if self.delete_one(s, z)? {
                        z = s;
                        continue;
                    }
                }
                None if limit < count => self.set_zombie_cursor(z, limit),
                None => {
                    self.destroy_container(z, ptr, kind);
                    if ptr == top_object || back.is_none() {
                        return Ok(());
                    }
                    z = back;
                }
            }
            self.preemption_point()?;
        }
    }

    /// If the zombie in `s` encloses the zombie in `z` (is on the chain
    /// of `back` links from it), the zombie on that chain it directly
    /// encloses.
    fn enclosed_by(&self, z: SlotRef, s: SlotRef) -> Option<SlotRef> {
        let mut at = z;
        for _ in 0..MAX_ZOMBIE_DEPTH {
            let Cap::Zombie { back, .. } = self.machine.slot(at).cap else {
                return None;
            };
            if back.is_none() {
                return None;
            }
            if back == s {
                return Some(at);
            }
            at = back;
        }
        None
    }

    fn set_zombie_cursor(&mut self, z: SlotRef, index: u64) {
        if let Cap::Zombie { cursor, .. } = &mut self.machine.slot_mut(z).cap {
            *cursor = index;
        }
    }

    fn container_slots(ptr: PhysAddr, kind: ContainerKind) -> (u64, u64) {
        match kind {
            ContainerKind::CNode { radix } => (ptr.0, 1 << radix),
            ContainerKind::Tcb => (ptr.0, tcb::slots::COUNT as u64),
        }
    }

    /// The container of the zombie in `z` is empty: finalise it and free
    /// the zombie's slot.
    fn destroy_container(&mut self, z: SlotRef, ptr: PhysAddr, kind: ContainerKind) {
        let (ty, bits) = match kind {
            ContainerKind::CNode { .. } => (ObjectType::CNode, kind.object_bits()),
            ContainerKind::Tcb => (ObjectType::Tcb, kind.object_bits()),
        };
        // The zombie's slot may lie inside the container itself.
        slot::unlink(&mut self.machine, z);
        *self.machine.slot_mut(z) = Slot::default();
        self.note_destroyed_range(ptr, bits);
        self.machine.destroy_object(ty, ptr, bits);
        self.counters.objects_destroyed += 1;
    }

    fn note_destroyed_range(&mut self, ptr: PhysAddr, bits: u8) {
        let end = ptr.0 + (1u64 << bits);
        for (w, dead) in self.watched.iter().zip(self.watched_dead.iter_mut()) {
            if !w.is_none() && (ptr.0..end).contains(&w.0) {
                *dead = true;
            }
        }
        if let Some(c) = self.current
            && (ptr.0..end).contains(&c.0)
        {
            self.current = None;
        }
        if let Some(c) = self.caller
            && (ptr.0..end).contains(&c.0)
        {
            self.caller_destroyed = true;
        }
    }

    /// Deletes every capability derived from the one in `s`, stopping at
    /// preemption points between (and inside) deletions; revoking again
    /// continues.
    pub fn revoke(&mut self, s: SlotRef) -> Result<(), Error> {
        self.watch(&[s]);
        let result = self.revoke_children(s);
        self.unwatch();
        result
    }

    fn revoke_children(&mut self, s: SlotRef) -> Result<(), Error> {
        loop {
            if !self.watched_alive(0) {
                return Ok(());
            }
            let here = *self.machine.slot(s);
            if here.cap.is_null()
                || here.next.is_none()
                || !slot::is_parent_of(&here, self.machine.slot(here.next))
            {
                return Ok(());
            }
            self.delete(here.next)?;
            self.preemption_point()?;
        }
    }

    // ---- scheduling -------------------------------------------------------

    /// Chooses the thread to run: the current one unless it stopped or a
    /// higher-priority thread is ready. Returns it.
    pub fn schedule(&mut self) -> Option<PhysAddr> {
        if let Some(c) = self.current {
            if !self.schedulable(c) {
                self.current = None;
                self.make_ready(c); // into the release queue if out of budget
            } else {
                let priority = self.machine.tcb(c).priority;
                match self.scheduler.highest_priority() {
                    Some(p) if p > priority => {
                        self.scheduler.enqueue(&mut self.machine, c);
                        self.current = None;
                    }
                    _ => {
                        // A deferred enqueue lives no longer than this
                        // decision.
                        self.scheduler.flush(&mut self.machine);
                        return Some(c);
                    }
                }
            }
        }
        let next = self.scheduler.peek()?;
        self.scheduler.remove(&mut self.machine, next);
        self.current = Some(next);
        Some(next)
    }

    /// Puts the current thread at the back of its priority's queue, so that
    /// equal-priority threads take turns (yield and the timer tick).
    pub fn rotate_current(&mut self) {
        if let Some(c) = self.current
            && self.schedulable(c)
        {
            // Alone at its priority and above: it would be picked again at
            // once, so it simply stays (the queues end up the same).
            if !self
                .scheduler
                .any_ready_at_or_above(self.machine.tcb(c).priority)
            {
                return;
            }
            self.scheduler.enqueue(&mut self.machine, c);
            self.current = None;
        }
    }
}
