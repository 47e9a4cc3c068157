//! The ready queues: 256 priorities, FIFO within a priority, O(1) pick.
//!
//! Queues are intrusive doubly linked lists through the TCBs, so the
//! scheduler allocates nothing. A bitmap (one bit per priority) finds the
//! highest non-empty queue when one empties; one more than the highest
//! ready priority is kept beside it, so that picking and the fastpath's
//! "is anything ready at or above this priority?" are one comparison.
//!
//! One enqueue may be deferred: a thread made ready into an empty queue
//! above every ready thread is held as the *candidate* instead of being
//! linked in, because the next scheduling decision (usually right away:
//! an IPC partner woken while the caller blocks) picks it, and then it
//! never needs linking and unlinking. Anything else that looks at or
//! changes the queues first links the candidate in where the enqueue would
//! have put it, so the queues behave exactly as if every enqueue happened
//! at once (`Scheduler::flush`).

use crate::{PhysAddr, machine::Machine};

/// Number of priorities (0 lowest, 255 highest).
pub const PRIORITIES: usize = 256;

/// Ready queues of runnable threads (not including the running one).
#[derive(Clone)]
#[repr(C)] // `top` first: the fastpath reads it (see `Kernel`'s layout)
pub struct Scheduler {
    /// One more than the highest priority ready (queued or the
    /// candidate), 0 if none: the fastpath's "anything ready at or above
    /// this priority?" is one comparison.
    top: u16,
    /// One more than the highest queued priority, 0 if none (what `top`
    /// falls back to when the candidate leaves).
    queued_top: u16,
    /// The deferred enqueue (0: none): a ready thread, not linked in, and
    /// its priority, above every queued thread.
    candidate: (PhysAddr, u8),
    /// Bit `p % 64` of word `p / 64`: queue `p` is non-empty.
    bitmap: [u64; PRIORITIES / 64],
    heads: [PhysAddr; PRIORITIES],
    tails: [PhysAddr; PRIORITIES],
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    /// Empty queues.
    pub const fn new() -> Scheduler {
        Scheduler {
            heads: [PhysAddr(0); PRIORITIES],
            tails: [PhysAddr(0); PRIORITIES],
            bitmap: [0; PRIORITIES / 64],
            top: 0,
            queued_top: 0,
            candidate: (PhysAddr(0), 0),
        }
    }

    /// Makes ready thread `tcb` (of priority `priority`, not queued, not
    /// running) wait to run: deferred as the candidate if its queue is
    /// empty and nothing ready is at or above it, else enqueued.
    pub fn make_ready<M: Machine>(&mut self, m: &mut M, tcb: PhysAddr) {
        let priority = m.tcb(tcb).priority;
        if self.candidate.0.0 == 0 && !m.tcb(tcb).queued && !self.any_ready_at_or_above(priority) {
            self.candidate = (tcb, priority);
            self.top = u16::from(priority) + 1;
        } else {
            self.enqueue(m, tcb);
        }
    }

    /// The candidate, if any (see the module documentation).
    pub fn candidate(&self) -> Option<PhysAddr> {
        (self.candidate.0.0 != 0).then_some(self.candidate.0)
    }

    /// Links the candidate in where its deferred enqueue would have put it.
    pub fn flush<M: Machine>(&mut self, m: &mut M) {
        let (tcb, _) = core::mem::replace(&mut self.candidate, (PhysAddr(0), 0));
        if tcb.0 != 0 {
            self.link(m, tcb);
        }
    }

    /// Appends `tcb` to the queue of its priority (no-op if queued).
    pub fn enqueue<M: Machine>(&mut self, m: &mut M, tcb: PhysAddr) {
        if self.candidate.0 == tcb {
            return; // already waiting to run
        }
        if self.candidate.0.0 != 0 && m.tcb(tcb).priority < self.candidate.1 {
            // Another queue than the candidate's: the order of the two
            // enqueues cannot matter, and the candidate stays above.
            self.link(m, tcb);
            return;
        }
        self.flush(m);
        self.link(m, tcb);
    }

    fn link<M: Machine>(&mut self, m: &mut M, tcb: PhysAddr) {
        let t = m.tcb_mut(tcb);
        if t.queued {
            return;
        }
        let p = usize::from(t.priority);
        t.queued = true;
        t.sched_next = PhysAddr(0);
        t.sched_prev = self.tails[p];
        let tail = self.tails[p];
        if tail.0 == 0 {
            self.heads[p] = tcb;
        } else {
            m.tcb_mut(tail).sched_next = tcb;
        }
        self.tails[p] = tcb;
        self.bitmap[p / 64] |= 1 << (p % 64);
        self.queued_top = self.queued_top.max(p as u16 + 1);
        self.top = self.top.max(p as u16 + 1);
    }

    /// `top` for a given `queued_top`: the candidate is above every
    /// queued thread.
    fn top_over(&self, queued_top: u16) -> u16 {
        if self.candidate.0.0 != 0 {
            u16::from(self.candidate.1) + 1
        } else {
            queued_top
        }
    }

    /// `queued_top` as the bitmap says it is (the highest non-zero word,
    /// then its highest bit).
    fn queued_top_from_bitmap(&self) -> u16 {
        (0..self.bitmap.len())
            .rev()
            .find(|&w| self.bitmap[w] != 0)
            .map_or(0, |w| {
                (w * 64 + 64 - self.bitmap[w].leading_zeros() as usize) as u16
            })
    }

    /// Removes `tcb` from its queue (no-op if not queued).
    pub fn remove<M: Machine>(&mut self, m: &mut M, tcb: PhysAddr) {
        if self.candidate.0 == tcb {
            self.candidate = (PhysAddr(0), 0);
            self.top = self.queued_top;
            return;
        }
        let (p, prev, next) = {
            let t = m.tcb_mut(tcb);
            if !t.queued {
                return;
            }
            t.queued = false;
            let links = (usize::from(t.priority), t.sched_prev, t.sched_next);
            t.sched_prev = PhysAddr(0);
            t.sched_next = PhysAddr(0);
            links
        };
        if prev.0 == 0 {
            self.heads[p] = next;
        } else {
            m.tcb_mut(prev).sched_next = next;
        }
        if next.0 == 0 {
            self.tails[p] = prev;
        } else {
            m.tcb_mut(next).sched_prev = prev;
        }
        if self.heads[p].0 == 0 {
            self.bitmap[p / 64] &= !(1 << (p % 64));
            self.queued_top = self.queued_top_from_bitmap();
            self.top = self.top_over(self.queued_top);
        }
    }

    /// The highest priority with a ready thread.
    pub fn highest_priority(&self) -> Option<u8> {
        if self.candidate.0.0 != 0 {
            return Some(self.candidate.1); // above every queued thread
        }
        self.queued_top.checked_sub(1).map(|p| p as u8)
    }

    /// Whether the bitmaps say exactly which queues are non-empty (for
    /// the invariant check).
    pub fn bitmaps_consistent(&self) -> bool {
        (0..PRIORITIES)
            .all(|p| (self.bitmap[p / 64] >> (p % 64) & 1 != 0) == (self.heads[p].0 != 0))
            && self.queued_top == self.queued_top_from_bitmap()
            && self.top == self.top_over(self.queued_top_from_bitmap())
    }

    /// Whether a thread of priority `priority` or higher is ready.
    #[inline(always)]
    pub fn any_ready_at_or_above(&self, priority: u8) -> bool {
        self.top > u16::from(priority)
    }

    /// Head and tail of the queue of priority `p` (the candidate is not
    /// in it).
    pub fn queue(&self, p: u8) -> (PhysAddr, PhysAddr) {
        (self.heads[usize::from(p)], self.tails[usize::from(p)])
    }

    /// The thread that runs next: the candidate, or the first thread of
    /// the highest non-empty queue; without removing it.
    pub fn peek(&self) -> Option<PhysAddr> {
        if self.candidate.0.0 != 0 {
            return Some(self.candidate.0);
        }
        self.highest_priority().map(|p| self.heads[usize::from(p)])
    }
}
