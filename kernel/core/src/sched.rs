//! The ready queues: 256 priorities, FIFO within a priority, O(1) pick.
//!
//! Queues are intrusive doubly linked lists through the TCBs, so the
//! scheduler allocates nothing. A two-level bitmap (one bit per priority)
//! finds the highest non-empty queue with two leading-zero counts.

use crate::{PhysAddr, machine::Machine};

/// Number of priorities (0 lowest, 255 highest).
pub const PRIORITIES: usize = 256;

/// Ready queues of runnable threads (not including the running one).
#[derive(Clone)]
pub struct Scheduler {
    heads: [PhysAddr; PRIORITIES],
    tails: [PhysAddr; PRIORITIES],
    /// Bit `p % 64` of word `p / 64`: queue `p` is non-empty.
    bitmap: [u64; PRIORITIES / 64],
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
        }
    }

    /// Appends `tcb` to the queue of its priority (no-op if queued).
    pub fn enqueue<M: Machine>(&mut self, m: &mut M, tcb: PhysAddr) {
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
    }

    /// Removes `tcb` from its queue (no-op if not queued).
    pub fn remove<M: Machine>(&mut self, m: &mut M, tcb: PhysAddr) {
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
        }
    }

    /// The highest priority with a ready thread.
    pub fn highest_priority(&self) -> Option<u8> {
        (0..self.bitmap.len())
            .rev()
            .find(|&w| self.bitmap[w] != 0)
            .map(|w| (w * 64 + 63 - self.bitmap[w].leading_zeros() as usize) as u8)
    }

    /// Whether a thread of priority `priority` or higher is ready.
    #[inline]
    pub fn any_ready_at_or_above(&self, priority: u8) -> bool {
        let p = usize::from(priority);
        let first = self.bitmap[p / 64] >> (p % 64) != 0;
        first || self.bitmap[p / 64 + 1..].iter().any(|&w| w != 0)
    }

    /// Head and tail of the queue of priority `p`.
    pub fn queue(&self, p: u8) -> (PhysAddr, PhysAddr) {
        (self.heads[usize::from(p)], self.tails[usize::from(p)])
    }

    /// The first thread of the highest non-empty queue, without removing it.
    pub fn peek(&self) -> Option<PhysAddr> {
        self.highest_priority().map(|p| self.heads[usize::from(p)])
    }
}
