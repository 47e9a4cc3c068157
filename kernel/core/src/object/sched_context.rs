//! Scheduling contexts: a CPU budget per period that threads run on.
//!
//! A thread is scheduled only while it is bound to a scheduling context
//! with budget left. Budgets follow the periodic-server model: the budget
//! is refilled at every period boundary, and a thread that used it all
//! waits for the next boundary. A context whose budget equals its period
//! is never throttled; threads on such contexts share the processor round
//! robin within their priority, one kernel tick at a time. Time is charged
//! on every kernel entry, so a thread cannot run past its budget by more
//! than the time to the next timer interrupt, which the kernel programs for
//! the moment the budget runs out.

use crate::{
    PhysAddr,
    cap::Cap,
    kernel::{Invocation, Kernel, Reply},
    machine::Machine,
    object::tcb::ThreadState,
};
use skyscope_abi::{CapRights, Error, Label};

/// Shortest budget, in microseconds (shorter ones mostly measure the kernel).
pub const MIN_BUDGET_US: u64 = 100;
/// Longest period, in microseconds (one hour).
pub const MAX_PERIOD_US: u64 = 3_600_000_000;

/// A scheduling context's kernel state (256 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SchedContext {
    /// Budget per period, in counter ticks (0: not configured yet).
    pub budget: u64,
    /// Period, in counter ticks.
    pub period: u64,
    /// Budget left in the current period.
    pub remaining: u64,
    /// Counter value of the next period boundary.
    pub replenish_at: u64,
    /// The thread bound to this context (0 = none).
    pub tcb: PhysAddr,
    /// Next context in the kernel's release queue (sorted by `replenish_at`).
    pub release_next: PhysAddr,
    /// In the release queue.
    pub in_release_queue: bool,
}

const _: () = assert!(core::mem::size_of::<SchedContext>() <= 256);

impl SchedContext {
    /// Whether the budget is a real limit (less than the period).
    pub fn constrained(&self) -> bool {
        self.budget < self.period
    }

    /// Configured with its budget equal to its period: it never runs out
    /// and is never charged (what the bound thread's `unlimited_budget`
    /// says).
    pub fn unlimited(&self) -> bool {
        self.budget != 0 && !self.constrained()
    }

    /// Refills the budget for every period boundary at or before `now`.
    pub fn refresh(&mut self, now: u64) {
        if self.period == 0 || now < self.replenish_at {
            return;
        }
        let missed = (now - self.replenish_at) / self.period + 1;
        self.replenish_at = self
            .replenish_at
            .saturating_add(missed.saturating_mul(self.period));
        self.remaining = self.budget;
    }
}

fn us_to_ticks(us: u64, frequency: u64) -> u64 {
    (u128::from(us) * u128::from(frequency) / 1_000_000) as u64
}

impl<M: Machine> Kernel<M> {
    pub(crate) fn invoke_sched_control(&mut self, inv: &Invocation<'_>) -> Result<Reply, Error> {
        if Label::from_word(inv.label) != Some(Label::SchedControlConfigure) {
            return Err(Error::IllegalOperation);
        }
        let (budget_us, period_us) = (inv.arg(0)?, inv.arg(1)?);
        let (sc_cap, _) = inv.extra_cap(0)?;
        let Cap::SchedContext { ptr, rights } = sc_cap else {
            return Err(if sc_cap.is_null() {
                Error::InvalidCapability
            } else {
                Error::WrongType
            });
        };
        if !rights.contains(CapRights::WRITE) {
            return Err(Error::InsufficientRights);
        }
        if budget_us < MIN_BUDGET_US || period_us < budget_us || period_us > MAX_PERIOD_US {
            return Err(Error::RangeError);
        }
        let frequency = self.machine.counter_frequency();
        let now = self.machine.now();
        self.release_remove(ptr);
        let sc = self.machine.sched_context_mut(ptr);
        sc.budget = us_to_ticks(budget_us, frequency).max(1);
        sc.period = us_to_ticks(period_us, frequency).max(sc.budget);
        sc.remaining = sc.budget;
        sc.replenish_at = now + sc.period;
        let (tcb, unlimited) = (sc.tcb, sc.unlimited());
        if tcb.0 != 0 {
            self.machine.tcb_mut(tcb).unlimited_budget = unlimited;
            self.make_ready(tcb);
        }
        Ok(Reply::empty())
    }

    pub(crate) fn invoke_sched_context(
        &mut self,
        sc: PhysAddr,
        rights: CapRights,
        inv: &Invocation<'_>,
    ) -> Result<Reply, Error> {
        let label = Label::from_word(inv.label)
            .filter(|l| matches!(l, Label::SchedContextBind | Label::SchedContextUnbind))
            .ok_or(Error::IllegalOperation)?;
        if !rights.contains(CapRights::WRITE) {
            return Err(Error::InsufficientRights);
        }
        match Some(label) {
            Some(Label::SchedContextBind) => {
                let (tcb_cap, _) = inv.extra_cap(0)?;
                let Cap::Tcb {
                    ptr: tcb,
                    rights: tcb_rights,
                } = tcb_cap
                else {
                    return Err(if tcb_cap.is_null() {
                        Error::InvalidCapability
                    } else {
                        Error::WrongType
                    });
                };
                if !tcb_rights.contains(CapRights::WRITE) {
                    return Err(Error::InsufficientRights);
                }
                if self.machine.sched_context_mut(sc).tcb.0 != 0
                    || self.machine.tcb(tcb).sched_context.0 != 0
                {
                    return Err(Error::IllegalOperation);
                }
                let context = self.machine.sched_context_mut(sc);
                context.tcb = tcb;
                let unlimited = context.unlimited();
                let t = self.machine.tcb_mut(tcb);
                t.sched_context = sc;
                t.unlimited_budget = unlimited;
                self.make_ready(tcb);
                Ok(Reply::empty())
            }
            Some(Label::SchedContextUnbind) => {
                self.unbind_sched_context(sc);
                Ok(Reply::empty())
            }
            _ => Err(Error::IllegalOperation),
        }
    }

    /// Separates `sc` from its thread, which stops being scheduled.
    pub(crate) fn unbind_sched_context(&mut self, sc: PhysAddr) {
        let tcb = self.machine.sched_context_mut(sc).tcb;
        self.release_remove(sc);
        self.machine.sched_context_mut(sc).tcb = PhysAddr(0);
        if tcb.0 != 0 {
            self.scheduler.remove(&mut self.machine, tcb);
            let t = self.machine.tcb_mut(tcb);
            t.sched_context = PhysAddr(0);
            t.unlimited_budget = false;
            if self.current == Some(tcb) {
                self.current = None;
            }
        }
    }

    /// Binds a scheduling context made at boot (the root task's).
    pub fn bind_boot_sched_context(
        &mut self,
        sc: PhysAddr,
        tcb: PhysAddr,
        budget: u64,
        period: u64,
    ) {
        let now = self.machine.now();
        let s = self.machine.sched_context_mut(sc);
        *s = SchedContext {
            budget,
            period,
            remaining: budget,
            replenish_at: now + period,
            tcb,
            ..SchedContext::default()
        };
        let unlimited = s.unlimited();
        let t = self.machine.tcb_mut(tcb);
        t.sched_context = sc;
        t.unlimited_budget = unlimited;
    }

    /// Whether `tcb` may be picked to run now.
    pub fn schedulable(&mut self, tcb: PhysAddr) -> bool {
        self.machine.tcb(tcb).state == ThreadState::Runnable && self.has_budget(tcb)
    }

    /// Whether the running thread's budget is a real limit.
    pub fn current_constrained(&mut self) -> bool {
        let Some(t) = self.current else { return false };
        let sc = self.machine.tcb(t).sched_context;
        sc.0 != 0 && self.machine.sched_context_mut(sc).constrained()
    }

    /// Whether a scheduling context waits for its refill.
    pub fn release_pending(&self) -> bool {
        self.release_head.0 != 0
    }

    /// Whether `tcb` has a configured scheduling context with budget left.
    pub fn has_budget(&mut self, tcb: PhysAddr) -> bool {
        let sc = self.machine.tcb(tcb).sched_context;
        if sc.0 == 0 {
            return false;
        }
        let s = self.machine.sched_context_mut(sc);
        if s.budget != 0 && !s.constrained() {
            return true; // never throttled: no need to read the clock
        }
        let now = self.machine.now();
        let s = self.machine.sched_context_mut(sc);
        if s.budget == 0 {
            return false; // bound but never configured
        }
        s.refresh(now);
        !s.constrained() || s.remaining > 0
    }

    /// Puts a runnable thread where the scheduler will find it: in a ready
    /// queue if it has budget, or (through its context) in the release
    /// queue until its next period.
    pub fn make_ready(&mut self, tcb: PhysAddr) {
        if self.schedulable(tcb) {
            if self.current != Some(tcb) {
                self.scheduler.make_ready(&mut self.machine, tcb);
            }
        } else {
            let t = self.machine.tcb(tcb);
            if t.state == ThreadState::Runnable && t.sched_context.0 != 0 {
                let sc = t.sched_context;
                if self.machine.sched_context_mut(sc).budget != 0 {
                    self.release_insert(sc);
                }
            }
        }
    }

    /// Charges the running thread for the time since the last charge and
    /// moves it off the processor if its budget is gone. Called on every
    /// kernel entry.
    pub fn charge(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.last_charge);
        self.last_charge = now;
        let Some(current) = self.current else { return };
        let sc = self.machine.tcb(current).sched_context;
        if sc.0 == 0 {
            return;
        }
        let s = self.machine.sched_context_mut(sc);
        if !s.constrained() {
            return;
        }
        s.refresh(now);
        s.remaining = s.remaining.saturating_sub(elapsed);
        if s.remaining == 0 {
            self.current = None;
            self.release_insert(sc);
            self.counters.budget_depletions += 1;
        }
    }

    /// Refills contexts whose period boundary has come and makes their
    /// threads ready again.
    pub fn release_due(&mut self, now: u64) {
        while self.release_head.0 != 0 {
            let head = self.release_head;
            let s = self.machine.sched_context_mut(head);
            if s.replenish_at > now {
                break;
            }
            self.release_head = s.release_next;
            s.release_next = PhysAddr(0);
            s.in_release_queue = false;
            s.refresh(now);
            let tcb = s.tcb;
            if tcb.0 != 0 {
                self.make_ready(tcb);
            }
        }
    }

    /// When the kernel next needs a timer interrupt for budgets: the running
    /// thread's budget running out, or the next refill.
    pub fn next_budget_event(&mut self, now: u64) -> Option<u64> {
        let mut next = None;
        if let Some(current) = self.current {
            let sc = self.machine.tcb(current).sched_context;
            if sc.0 != 0 {
                let s = self.machine.sched_context_mut(sc);
                if s.constrained() {
                    next = Some(now + s.remaining);
                }
            }
        }
        if self.release_head.0 != 0 {
            let at = self
                .machine
                .sched_context_mut(self.release_head)
                .replenish_at;
            next = Some(next.map_or(at, |n: u64| n.min(at)));
        }
        next
    }

    fn release_insert(&mut self, sc: PhysAddr) {
        if self.machine.sched_context_mut(sc).in_release_queue {
            return;
        }
        let at = self.machine.sched_context_mut(sc).replenish_at;
        let mut prev = PhysAddr(0);
        let mut next = self.release_head;
        while next.0 != 0 && self.machine.sched_context_mut(next).replenish_at <= at {
            prev = next;
            next = self.machine.sched_context_mut(next).release_next;
        }
        let s = self.machine.sched_context_mut(sc);
        s.release_next = next;
        s.in_release_queue = true;
        if prev.0 == 0 {
            self.release_head = sc;
        } else {
            self.machine.sched_context_mut(prev).release_next = sc;
        }
    }

    pub(crate) fn release_remove(&mut self, sc: PhysAddr) {
        if !self.machine.sched_context_mut(sc).in_release_queue {
            return;
        }
        let next_of_sc = self.machine.sched_context_mut(sc).release_next;
        if self.release_head == sc {
            self.release_head = next_of_sc;
        } else {
            let mut at = self.release_head;
            while at.0 != 0 {
                let next = self.machine.sched_context_mut(at).release_next;
                if next == sc {
                    self.machine.sched_context_mut(at).release_next = next_of_sc;
                    break;
                }
                at = next;
            }
        }
        let s = self.machine.sched_context_mut(sc);
        s.release_next = PhysAddr(0);
        s.in_release_queue = false;
    }
}
