//! A check of the kernel's structural invariants, for tests and fuzzing.
//!
//! Walks the capability spaces reachable from given root CNodes (bounded:
//! it allocates nothing) and verifies that derivation links are mutual,
//! that everything made from an untyped lies below its watermark, that
//! endpoint and notification queues are well formed and hold exactly the
//! threads blocked on them, that every thread's state matches where it is
//! queued, that Vcpu and thread bindings are mutual, and that the ready and
//! release queues are consistent.

use crate::{
    PhysAddr,
    cap::{Cap, Mapping, SlotRef},
    kernel::Kernel,
    machine::{Machine, TABLE_ENTRIES, TableEntry},
    object::{
        endpoint::EndpointState,
        tcb::{self, ThreadState},
    },
    sched::PRIORITIES,
    slot::{self, SLOT_BITS},
};

/// Index of `va` in a table serving `level`.
fn index_at(va: u64, level: u8) -> usize {
    ((va >> (12 + 9 * (3 - u32::from(level)))) & 0x1ff) as usize
}

/// Most CNodes one check visits (and remembers, to handle cycles).
const MAX_CNODES: usize = 512;
/// Most queue entries followed before a queue is declared cyclic.
const MAX_QUEUE: usize = 1 << 16;

/// What a passing check looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Non-empty slots visited.
    pub slots: u64,
    /// CNodes visited.
    pub cnodes: u64,
    /// Threads checked.
    pub threads: u64,
}

impl<M: Machine> Kernel<M> {
    /// Checks the invariants over everything reachable from the CNodes
    /// `roots`; returns what it checked, or the first violation found.
    pub fn check_invariants(&mut self, roots: &[Cap]) -> Result<Checked, &'static str> {
        self.check_scheduler()?;
        let mut seen = [(PhysAddr(0), 0u8); MAX_CNODES];
        let mut seen_count = 0;
        let mut stack = [(PhysAddr(0), 0u8); MAX_CNODES];
        let mut depth = 0;
        let mut checked = Checked::default();
        for root in roots {
            if let Cap::CNode { ptr, radix, .. } = *root
                && !seen[..seen_count].iter().any(|&(p, _)| p == ptr)
                && seen_count < MAX_CNODES
            {
                seen[seen_count] = (ptr, radix);
                seen_count += 1;
                stack[depth] = (ptr, radix);
                depth += 1;
            }
        }
        while depth > 0 {
            depth -= 1;
            let (cnode, radix) = stack[depth];
            checked.cnodes += 1;
            for i in 0..1u64 << radix {
                let s = SlotRef(cnode.0 + (i << SLOT_BITS));
                let cap = self.machine.slot(s).cap;
                if cap.is_null() {
                    continue;
                }
                checked.slots += 1;
                self.check_slot(s)?;
                let mut containers = [None, None];
                match cap {
                    Cap::CNode { ptr, radix, .. } => containers[0] = Some((ptr, radix)),
                    Cap::Tcb { ptr, .. } => {
                        checked.threads += 1;
                        self.check_thread(ptr)?;
                        // A thread's CSpace may hold capabilities nothing else reaches.
                        if let Cap::CNode { ptr, radix, .. } = self
                            .machine
                            .slot(tcb::slot_ref(ptr, tcb::slots::CSPACE))
                            .cap
                        {
                            containers[1] = Some((ptr, radix));
                        }
                    }
                    Cap::Endpoint { ptr, .. } => self.check_endpoint(ptr)?,
                    Cap::Notification { ptr, .. } => self.check_notification(ptr)?,
                    Cap::Vcpu { ptr, .. } => {
                        let t = self.machine.vcpu_mut(ptr).tcb;
                        if t.0 != 0 && self.machine.tcb(t).vcpu != ptr {
                            return Err("a Vcpu's thread is bound to another Vcpu");
                        }
                    }
                    _ => {}
                }
                for (ptr, radix) in containers.into_iter().flatten() {
                    if !seen[..seen_count].iter().any(|&(p, _)| p == ptr) && seen_count < MAX_CNODES
                    {
                        seen[seen_count] = (ptr, radix);
                        seen_count += 1;
                        stack[depth] = (ptr, radix);
                        depth += 1;
                    }
                }
            }
        }
        self.check_translation(&seen[..seen_count])?;
        Ok(checked)
    }

    /// Every capability in the CNodes `cnodes`, with its slot.
    fn caps_in<'a>(&'a self, cnodes: &'a [(PhysAddr, u8)]) -> impl Iterator<Item = Cap> + 'a {
        cnodes.iter().flat_map(move |&(cnode, radix)| {
            (0..1u64 << radix)
                .map(move |i| self.machine.slot(SlotRef(cnode.0 + (i << SLOT_BITS))).cap)
        })
    }

    /// No translation entry outlives what it points to: every valid entry
    /// of every table of a live space leads to a frame or table whose
    /// capability (in `cnodes`) records that very mapping, and a table
    /// not installed where its capability says is empty.
    fn check_translation(&self, cnodes: &[(PhysAddr, u8)]) -> Result<(), &'static str> {
        for cap in self.caps_in(cnodes) {
            match cap {
                Cap::VSpace { ptr, asid: id, .. } | Cap::GuestSpace { ptr, vmid: id, .. }
                    if self.space_of(id).is_some_and(|s| s.root == ptr) =>
                {
                    self.check_table(cnodes, ptr, 1, 0, id)?;
                }
                Cap::PageTable {
                    ptr,
                    mapping,
                    level,
                } => {
                    let installed = mapping.get().is_some_and(|(id, va)| {
                        self.space_of(id)
                            .is_some_and(|s| self.table_at(s.root, va, level) == Some(ptr))
                    });
                    if !installed
                        && (0..TABLE_ENTRIES).any(|i| {
                            self.machine.table_entry(ptr, level.max(1), i) != TableEntry::Invalid
                        })
                    {
                        return Err("a page table outside its space still holds entries");
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The table installed at `level` on `va`'s walk from `root`.
    fn table_at(&self, root: PhysAddr, va: u64, level: u8) -> Option<PhysAddr> {
        let mut table = root;
        for l in 1..level {
            match self.machine.table_entry(table, l, index_at(va, l)) {
                TableEntry::Table(t) => table = t,
                _ => return None,
            }
        }
        Some(table)
    }

    fn check_table(
        &self,
        cnodes: &[(PhysAddr, u8)],
        table: PhysAddr,
        level: u8,
        base: u64,
        id: crate::cap::Asid,
    ) -> Result<(), &'static str> {
        let span = 1u64 << (12 + 9 * (3 - u32::from(level)));
        for i in 0..TABLE_ENTRIES {
            let va = base + i as u64 * span;
            match self.machine.table_entry(table, level, i) {
                TableEntry::Invalid => {}
                TableEntry::Table(t) => {
                    // A table's capability records the address it was
                    // mapped at: any address in the range the entry covers.
                    let recorded = self.caps_in(cnodes).any(|c| {
                        matches!(c, Cap::PageTable { ptr, mapping, level: l }
                        if ptr == t && l == level + 1
                            && mapping.get().is_some_and(|(m_id, m_va)| {
                                m_id == id && m_va & !(span - 1) == va
                            }))
                    });
                    if !recorded {
                        return Err("a table entry leads to a table no capability records there");
                    }
                    self.check_table(cnodes, t, level + 1, va, id)?;
                }
                TableEntry::Frame(f, size) => {
                    let recorded = self.caps_in(cnodes).any(|c| {
                        matches!(c, Cap::Frame { base, size: s, mapping, .. }
                            if base == f && s == size && mapping == Mapping::new(id, va))
                    });
                    if !recorded {
                        return Err(
                            "a translation entry leads to a frame no capability records there",
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn check_slot(&self, s: SlotRef) -> Result<(), &'static str> {
        let here = *self.machine.slot(s);
        if !here.next.is_none() {
            let next = self.machine.slot(here.next);
            if next.prev != s || next.cap.is_null() {
                return Err("derivation list: next slot does not link back");
            }
        }
        if !here.prev.is_none() {
            let prev = self.machine.slot(here.prev);
            if prev.next != s || prev.cap.is_null() {
                return Err("derivation list: previous slot does not link forward");
            }
        }
        if let Cap::Untyped {
            base,
            size_bits,
            free_offset,
            zeroed_to,
            ..
        } = here.cap
        {
            if free_offset > 1u64 << size_bits {
                return Err("untyped watermark beyond its region");
            }
            if zeroed_to < free_offset || zeroed_to > 1u64 << size_bits {
                return Err("untyped zeroed mark below its watermark or beyond its region");
            }
            let (start, end) = (base.0, base.0 + free_offset);
            let mut at = here.next;
            let mut steps = 0;
            while !at.is_none() && steps < MAX_QUEUE {
                let child = *self.machine.slot(at);
                if !slot::is_parent_of(&here, &child) {
                    break;
                }
                if let Some((b, bits)) = child.cap.region()
                    && (b.0 < start || b.0 + (1u64 << bits) > end)
                {
                    return Err("object made from an untyped lies above its watermark");
                }
                at = child.next;
                steps += 1;
            }
        }
        Ok(())
    }

    fn check_thread(&mut self, t: PhysAddr) -> Result<(), &'static str> {
        let tcb = self.machine.tcb(t);
        let (state, on, queued, vcpu) = (tcb.state, tcb.blocked_on, tcb.queued, tcb.vcpu);
        if vcpu.0 != 0 && self.machine.vcpu_mut(vcpu).tcb != t {
            return Err("a thread's Vcpu is bound to another thread");
        }
        if queued && (state != ThreadState::Runnable || self.current == Some(t)) {
            return Err("a queued thread is not runnable, or is the running thread");
        }
        if !self.sched_context_flag_agrees(t) {
            return Err("a thread's `unlimited_budget` disagrees with its scheduling context");
        }
        if !self.space_cache_agrees(t) {
            return Err("a thread's remembered address space differs from its VSpace");
        }
        // Remembered now, so that the next check catches an event that
        // changes the thread's space without advancing the generation.
        if let Ok(space) = self.thread_space(t) {
            self.remember_space(t, space);
        }
        match state {
            ThreadState::Inactive | ThreadState::Runnable => {
                if on.0 != 0 {
                    return Err("a thread that waits for nothing names an object it waits on");
                }
            }
            ThreadState::BlockedOnSend | ThreadState::BlockedOnReceive => {
                let head = self.machine.endpoint_mut(on).head;
                if !self.queue_contains(head, t) {
                    return Err("a thread blocked on an endpoint is not in its queue");
                }
            }
            ThreadState::BlockedOnNotification => {
                let head = self.machine.notification_mut(on).head;
                if !self.queue_contains(head, t) {
                    return Err("a thread waiting on a notification is not in its queue");
                }
            }
            ThreadState::BlockedOnReply => {
                if on.0 != 0 && self.machine.reply_mut(on).caller != t {
                    return Err("a thread waiting for a reply is not its reply object's caller");
                }
            }
            ThreadState::IdleInGuest => {
                if vcpu.0 == 0 || on.0 != 0 {
                    return Err("a thread idle in a guest has no Vcpu, or waits on an object");
                }
            }
        }
        Ok(())
    }

    fn queue_contains(&self, head: PhysAddr, t: PhysAddr) -> bool {
        let (mut at, mut steps) = (head, 0);
        while at.0 != 0 && steps < MAX_QUEUE {
            if at == t {
                return true;
            }
            at = self.machine.tcb(at).queue_next;
            steps += 1;
        }
        false
    }

    fn check_queue(
        &self,
        head: PhysAddr,
        tail: PhysAddr,
        want: ThreadState,
    ) -> Result<(), &'static str> {
        let (mut at, mut prev, mut steps) = (head, PhysAddr(0), 0);
        while at.0 != 0 {
            let t = self.machine.tcb(at);
            if t.queue_prev != prev {
                return Err("wait queue: previous link broken");
            }
            if t.state != want {
                return Err("wait queue: a member is not in the matching blocked state");
            }
            prev = at;
            at = t.queue_next;
            steps += 1;
            if steps > MAX_QUEUE {
                return Err("wait queue: cycle");
            }
        }
        if prev != tail {
            return Err("wait queue: tail is not the last member");
        }
        Ok(())
    }

    fn check_endpoint(&mut self, ep: PhysAddr) -> Result<(), &'static str> {
        let e = *self.machine.endpoint_mut(ep);
        let want = match e.state {
            EndpointState::Idle => {
                return if e.head.0 == 0 && e.tail.0 == 0 {
                    Ok(())
                } else {
                    Err("idle endpoint with a queue")
                };
            }
            EndpointState::Sending => ThreadState::BlockedOnSend,
            EndpointState::Receiving => ThreadState::BlockedOnReceive,
        };
        if e.head.0 == 0 {
            return Err("busy endpoint with an empty queue");
        }
        self.check_queue(e.head, e.tail, want)
    }

    fn check_notification(&mut self, n: PhysAddr) -> Result<(), &'static str> {
        let obj = *self.machine.notification_mut(n);
        if obj.bound_tcb.0 != 0 && self.machine.tcb(obj.bound_tcb).bound_notification != n {
            return Err("notification bound to a thread that is not bound to it");
        }
        self.check_queue(obj.head, obj.tail, ThreadState::BlockedOnNotification)
    }

    /// Whether thread `t`'s remembered address space, if it still holds,
    /// is what looking it up again finds.
    fn space_cache_agrees(&self, t: PhysAddr) -> bool {
        match self.native_space(t) {
            Some(cached) => self.thread_space(t) == Ok(cached),
            None => true,
        }
    }

    /// Whether thread `t`'s `unlimited_budget` says what its scheduling
    /// context's budget and period call for.
    fn sched_context_flag_agrees(&mut self, t: PhysAddr) -> bool {
        let (sc, flag) = {
            let tcb = self.machine.tcb(t);
            (tcb.sched_context, tcb.unlimited_budget)
        };
        let unlimited = sc.0 != 0 && self.machine.sched_context_mut(sc).unlimited();
        flag == unlimited
    }

    /// The ready and release queues, and the running thread.
    pub fn check_scheduler(&mut self) -> Result<(), &'static str> {
        if let Some(c) = self.current
            && self.machine.tcb(c).queued
        {
            return Err("the running thread is also queued");
        }
        if let Some(c) = self.current
            && !self.space_cache_agrees(c)
        {
            return Err("the running thread's remembered address space differs from its VSpace");
        }
        if let Some(c) = self.scheduler.candidate() {
            let t = self.machine.tcb(c);
            let (priority, queued, state) = (t.priority, t.queued, t.state);
            if queued || state != ThreadState::Runnable || Some(c) == self.current {
                return Err("scheduler candidate: queued, not runnable or running");
            }
            if (usize::from(priority)..PRIORITIES).any(|p| self.scheduler.queue(p as u8).0.0 != 0) {
                return Err("scheduler candidate: a queued thread is at or above it");
            }
        }
        for p in 0..PRIORITIES {
            let (head, tail) = self.scheduler.queue(p as u8);
            let (mut at, mut prev, mut steps) = (head, PhysAddr(0), 0);
            while at.0 != 0 {
                let t = self.machine.tcb(at);
                if !t.queued || usize::from(t.priority) != p || t.sched_prev != prev {
                    return Err(
                        "ready queue: member not marked queued, wrong priority, or broken link",
                    );
                }
                if t.state != ThreadState::Runnable {
                    return Err("ready queue: member not runnable");
                }
                let next = t.sched_next;
                if !self.sched_context_flag_agrees(at) {
                    return Err(
                        "a thread's `unlimited_budget` disagrees with its scheduling context",
                    );
                }
                prev = at;
                at = next;
                steps += 1;
                if steps > MAX_QUEUE {
                    return Err("ready queue: cycle");
                }
            }
            if prev != tail {
                return Err("ready queue: tail is not the last member");
            }
            if self
                .scheduler
                .highest_priority()
                .is_some_and(|h| usize::from(h) < p)
                && head.0 != 0
            {
                return Err("ready bitmap misses a non-empty queue");
            }
        }
        // Every thread that may run (queued, the candidate, the current
        // one) has a context whose fastpath flag agrees with its budget.
        let mut may_run = self.current.into_iter().chain(self.scheduler.candidate());
        if may_run.any(|t| !self.sched_context_flag_agrees(t)) {
            return Err("a thread's `unlimited_budget` disagrees with its scheduling context");
        }
        if !self.scheduler.bitmaps_consistent() {
            return Err("ready bitmaps disagree with the queues");
        }
        let (mut at, mut last, mut steps) = (self.release_head, 0u64, 0);
        while at.0 != 0 {
            let sc = *self.machine.sched_context_mut(at);
            if !sc.in_release_queue || sc.replenish_at < last {
                return Err("release queue unsorted or member not marked");
            }
            last = sc.replenish_at;
            at = sc.release_next;
            steps += 1;
            if steps > MAX_QUEUE {
                return Err("release queue: cycle");
            }
        }
        Ok(())
    }
}
