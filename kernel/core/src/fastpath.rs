//! The IPC fastpath: `Call` and `ReplyRecv` in their common form.
//!
//! Preconditions checked first, nothing changed until all hold: a
//! message without capabilities (its first four words travel in
//! registers, the rest between the two IPC buffers, which must both be
//! usable), the other side already waiting, no reply pending on the
//! reply object, and the thread to switch to able to run and above every
//! ready thread (so that picking it directly is exactly what the scheduler
//! would do), with budget left on its scheduling context. Then the
//! registers are copied, the queues and reply object updated, time charged
//! as a kernel entry charges it, and the new thread made current.
//! Everything else — and these cases too when the fastpath is disabled —
//! goes through the general path in `syscall`, which must leave the same
//! state behind (checked by the host tests and
//! `ipc::fastpath_matches_slowpath`).
//!
//! The kernel calls [`Kernel::fastpath_call`] and
//! [`Kernel::fastpath_reply_recv`] straight from its exception entry with
//! the syscall's argument registers, before anything else is decoded.

use crate::{
    PhysAddr,
    addr::RamRange,
    cap::{Cap, SlotRef},
    cspace,
    ipc::buffer_message_words,
    kernel::Kernel,
    machine::{Machine, ThreadContext},
    object::{
        endpoint::EndpointState,
        sched_context::SchedContext,
        tcb::{self, ThreadState, ipc_flags},
    },
};
use skyscope_abi::{
    CapRights, MessageInfo, Syscall,
    fault::WORDS as FAULT_WORDS,
    message::{MAX_MESSAGE_WORDS, REGISTER_MESSAGE_WORDS},
    regs,
};

const NONE: PhysAddr = PhysAddr(0);

/// Message-info bits the fastpath refuses: extra capabilities (bits 7..9).
const INFO_CAPS: u64 = 0x180;

/// Whether a message-info word describes a message the fastpath carries:
/// no capabilities, and a length within the ABI's maximum (words past
/// the four registers travel through the IPC buffers, as on the general
/// path, whose clamping of longer lengths is left to it).
#[inline(always)]
fn fast_message(info: u64) -> bool {
    // One comparison for both: the capability bits lie above the length,
    // so with any of them set the masked word exceeds every length.
    const _: () = assert!(INFO_CAPS > 0x7f && MAX_MESSAGE_WORDS < 0x80);
    (info & (INFO_CAPS | 0x7f)) as usize <= MAX_MESSAGE_WORDS
}

/// The message-info word the receiver gets: label and length, no
/// capabilities, nothing unwrapped (what `MessageInfo::new(label, length,
/// 0)` builds from such a message).
#[inline(always)]
fn received_info(info: u64) -> u64 {
    (info & !0xfff) | (info & 0x7f)
}

/// The words of a message beyond the registers: where they come from,
/// where they go, how many (checked before anything changes, copied after).
#[derive(Clone, Copy)]
struct BufferWords {
    from: RamRange,
    to: RamRange,
    count: usize,
}

/// What the kernel does after a fastpath switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastSwitch {
    /// The thread to run (now current).
    pub next: PhysAddr,
    /// Whether a budget was involved (a scheduling context whose budget
    /// is less than its period, or one waiting for its refill): the timer
    /// deadline may have moved. Without, it cannot have: the same tick,
    /// refill and guest-timer deadlines apply before and after.
    pub budget: bool,
}

/// The new budget state of a constrained scheduling context.
#[derive(Clone, Copy)]
struct Budget {
    /// The context (0: unconstrained, nothing to write).
    sc: PhysAddr,
    remaining: u64,
    replenish_at: u64,
}

impl Budget {
    const UNCONSTRAINED: Budget = Budget {
        sc: NONE,
        remaining: 0,
        replenish_at: 0,
    };

    /// `s` (at `sc`) refreshed for `now` and charged `elapsed`, if it is
    /// constrained; `None` if it has no budget left then.
    #[inline(always)]
    fn charged(sc: PhysAddr, s: &SchedContext, now: u64, elapsed: u64) -> Option<Budget> {
        if !s.constrained() {
            return Some(Budget::UNCONSTRAINED);
        }
        let mut s = SchedContext {
            budget: s.budget,
            period: s.period,
            remaining: s.remaining,
            replenish_at: s.replenish_at,
            ..SchedContext::default()
        };
        s.refresh(now);
        let remaining = s.remaining.saturating_sub(elapsed);
        (remaining != 0).then_some(Budget {
            sc,
            remaining,
            replenish_at: s.replenish_at,
        })
    }
}

impl<M: Machine> Kernel<M> {
    /// Completes syscall `number` for the current thread, with its argument
    /// registers as saved in its context, if the fastpath applies; returns
    /// `false`, having changed nothing, otherwise. (The host tests' entry;
    /// the kernel calls the two functions below with the live registers.)
    pub fn fastpath(&mut self, number: u64) -> bool {
        let Some(t) = self.current else {
            return false;
        };
        let args = self.machine.tcb(t).context.syscall_args();
        let (cptr, info) = (args[regs::CAP_ADDRESS], args[regs::MESSAGE_INFO]);
        let done = if number == Syscall::Call as u64 {
            self.fastpath_call(cptr, info)
        } else if number == Syscall::ReplyRecv as u64 {
            self.fastpath_reply_recv(cptr, info, args[regs::REPLY_CAP])
        } else {
            None
        };
        done.is_some()
    }

    /// For a message of `info`'s length from `from` to `to`: `Some(None)`
    /// if it fits in the registers, `Some(Some(words))` for the buffer
    /// words to copy, `None` if either thread's IPC buffer cannot take
    /// them (the general path then carries the register words only).
    #[inline(always)]
    fn fast_buffer_words(
        &self,
        from: PhysAddr,
        to: PhysAddr,
        info: u64,
    ) -> Option<Option<BufferWords>> {
        let length = (info & 0x7f) as usize;
        if length <= REGISTER_MESSAGE_WORDS {
            return Some(None);
        }
        Some(Some(BufferWords {
            from: self
                .ipc_buffer_address(from)
                .and_then(buffer_message_words)?,
            to: self.ipc_buffer_address(to).and_then(buffer_message_words)?,
            count: length - REGISTER_MESSAGE_WORDS,
        }))
    }

    /// Copies the buffer words `fast_buffer_words` found, if any.
    #[inline(always)]
    fn copy_buffer_words(&mut self, words: Option<BufferWords>) {
        if let Some(w) = words {
            self.machine.copy_words(w.from, w.to, w.count);
        }
    }

    /// The registers `to` receives for the message `info` the
    /// current thread `from` sends: `badge`, the info word, the four
    /// message registers straight from `from`'s saved registers, status 0.
    #[inline(always)]
    fn deliver_short(&mut self, from: PhysAddr, to: PhysAddr, badge: u64, info: u64) {
        let c = &self.machine.tcb(from).context;
        let words = [
            c.arg(regs::FIRST_MESSAGE_REGISTER),
            c.arg(regs::FIRST_MESSAGE_REGISTER + 1),
            c.arg(regs::FIRST_MESSAGE_REGISTER + 2),
            c.arg(regs::FIRST_MESSAGE_REGISTER + 3),
        ];
        self.machine.tcb_mut(to).context.set_syscall_results([
            badge,
            received_info(info),
            words[0],
            words[1],
            words[2],
            words[3],
            0,
        ]);
    }

    /// Looks up the capabilities `cptrs` name in `t`'s CSpace and returns
    /// their slots. A one-level CSpace whose root consumes all 64 bits (the
    /// usual layout) takes one step per address, decoding the root once;
    /// anything else takes the general walk.
    #[inline(always)]
    fn fast_lookup<const N: usize>(&self, t: PhysAddr, cptrs: [u64; N]) -> Option<[SlotRef; N]> {
        let root = &self.machine.slot(tcb::slot_ref(t, tcb::slots::CSPACE)).cap;
        let mut slots = [SlotRef::NONE; N];
        if let Some(flat) = cspace::FlatCSpace::of(root) {
            for (slot, cptr) in slots.iter_mut().zip(cptrs) {
                *slot = flat.slot(cptr).ok()?;
            }
        } else {
            for (slot, cptr) in slots.iter_mut().zip(cptrs) {
                *slot = cspace::lookup_cap_slot(&self.machine, root, cptr).ok()?;
            }
        }
        Some(slots)
    }

    /// Whether switching straight from `current` to `next` is what the
    /// scheduler would do after this entry; if it is, charges time as a
    /// kernel entry does and returns whether a budget was involved (the
    /// last check of the fastpath: nothing changes unless it passes).
    /// `next` must be above every ready thread and have budget left; the
    /// running thread is charged as [`Kernel::charge`] charges it on every
    /// kernel entry, and must keep budget left (running out is the general
    /// path's business); a due refill also sends the entry down the
    /// general path. Without a constrained context or a pending refill
    /// there is nothing to charge and the clock is not read.
    #[inline(always)]
    fn fast_charge(&mut self, current: PhysAddr, next: PhysAddr) -> Option<bool> {
        let (priority, next_unlimited) = {
            let t = self.machine.tcb(next);
            (t.priority, t.unlimited_budget)
        };
        if self.scheduler.any_ready_at_or_above(priority) {
            return None;
        }
        if next_unlimited && self.machine.tcb(current).unlimited_budget && self.release_head.0 == 0
        {
            return Some(false);
        }
        let current_sc = self.machine.tcb(current).sched_context;
        let next_sc = self.machine.tcb(next).sched_context;
        if current_sc.0 == 0 || next_sc.0 == 0 {
            return None;
        }
        let from_budget = self.machine.sched_context_mut(current_sc).budget;
        if from_budget == 0 || self.machine.sched_context_mut(next_sc).budget == 0 {
            return None; // bound but never configured: the general path
        }
        self.fast_charge_budgets(current_sc, next_sc)
            .then_some(true)
    }

    /// [`Kernel::fast_charge`] when a budget is involved: reads the clock,
    /// and charges unless a refill is due or either context would be out
    /// of budget (then `false`, having changed nothing).
    #[inline(never)]
    fn fast_charge_budgets(&mut self, current_sc: PhysAddr, next_sc: PhysAddr) -> bool {
        let now = self.machine.now();
        if self.release_head.0 != 0
            && self
                .machine
                .sched_context_mut(self.release_head)
                .replenish_at
                <= now
        {
            return false;
        }
        let elapsed = now.saturating_sub(self.last_charge);
        let Some(from) = Budget::charged(
            current_sc,
            self.machine.sched_context_mut(current_sc),
            now,
            elapsed,
        ) else {
            return false;
        };
        let Some(to) = Budget::charged(next_sc, self.machine.sched_context_mut(next_sc), now, 0)
        else {
            return false;
        };
        self.last_charge = now;
        for b in [from, to] {
            if b.sc.0 != 0 {
                let c = self.machine.sched_context_mut(b.sc);
                c.remaining = b.remaining;
                c.replenish_at = b.replenish_at;
            }
        }
        true
    }

    /// The thread at the head of `ep`'s queue if it waits to receive, with
    /// the reply object it named, which must be free (the `Call` and the
    /// fault fastpaths deliver to it).
    #[inline(always)]
    fn waiting_receiver(&mut self, ep: PhysAddr) -> Option<(PhysAddr, PhysAddr)> {
        let endpoint = self.machine.endpoint_mut(ep);
        if endpoint.state != EndpointState::Receiving {
            return None;
        }
        let receiver = endpoint.head;
        let reply = self.machine.tcb(receiver).recv_reply;
        if reply.0 == 0 || self.machine.reply_mut(reply).caller.0 != 0 {
            return None;
        }
        Some((receiver, reply))
    }

    /// The end of a fastpath switch to `next`.
    #[inline(always)]
    fn fast_switched(&mut self, next: PhysAddr, budget: bool) -> FastSwitch {
        self.counters.fastpath_hits = self.counters.fastpath_hits.wrapping_add(1);
        self.current = Some(next);
        FastSwitch { next, budget }
    }

    /// `Call` on the fastpath for the current thread, whose saved
    /// registers hold the syscall's arguments, with the capability address
    /// `cptr` and message info `info` from its registers; returns the
    /// thread to run next, or `None` having changed nothing.
    #[inline(always)]
    pub fn fastpath_call(&mut self, cptr: u64, info: u64) -> Option<FastSwitch> {
        if !self.fastpath_enabled {
            return None;
        }
        let caller = self.current?;
        if !fast_message(info) {
            return None;
        }
        let [slot] = self.fast_lookup(caller, [cptr])?;
        let Cap::Endpoint {
            ptr: ep,
            badge,
            rights,
        } = self.machine.slot(slot).cap
        else {
            return None;
        };
        if !rights.contains(CapRights::WRITE)
            || !rights.intersects(CapRights::GRANT | CapRights::GRANT_REPLY)
        {
            return None;
        }
        let (receiver, reply) = self.waiting_receiver(ep)?;
        let words = self.fast_buffer_words(caller, receiver, info)?;
        let budget = self.fast_charge(caller, receiver)?;

        self.copy_buffer_words(words);
        self.deliver_short(caller, receiver, badge, info);
        let mut flags = ipc_flags::CALL | ipc_flags::GRANT_REPLY;
        if rights.contains(CapRights::GRANT) {
            flags |= ipc_flags::GRANT;
        }
        self.fast_rendezvous(caller, ep, receiver, reply, flags);
        Some(self.fast_switched(receiver, budget))
    }

    /// The rest of a `Call` (or fault) the receiver at the head of `ep`'s
    /// queue takes (its registers already written): the receiver leaves
    /// the queue and runs, and the caller waits on `reply` with `flags`.
    #[inline(always)]
    fn fast_rendezvous(
        &mut self,
        caller: PhysAddr,
        ep: PhysAddr,
        receiver: PhysAddr,
        reply: PhysAddr,
        flags: u8,
    ) {
        // Dequeue the receiver (it is at the head).
        let r = self.machine.tcb_mut(receiver);
        let next = r.queue_next;
        r.queue_next = NONE;
        r.queue_prev = NONE;
        r.state = ThreadState::Runnable;
        r.blocked_on = NONE;
        r.recv_reply = NONE;
        r.ipc_flags = 0;
        let e = self.machine.endpoint_mut(ep);
        e.head = next;
        if next.0 == 0 {
            e.tail = NONE;
            e.state = EndpointState::Idle;
        } else {
            self.machine.tcb_mut(next).queue_prev = NONE;
        }
        // The caller waits on the reply object.
        let rep = self.machine.reply_mut(reply);
        rep.receiver = NONE;
        rep.caller = caller;
        let c = self.machine.tcb_mut(caller);
        c.state = ThreadState::BlockedOnReply;
        c.blocked_on = reply;
        c.ipc_flags = flags;
    }

    /// A fault of the current thread on the fastpath — a guest's exit, a
    /// native thread's fault — as [`Kernel::deliver_fault`] delivers it:
    /// the message (`label`, `words`) to the receiver waiting on the
    /// thread's fault endpoint, the thread waiting for the reply. Returns
    /// the thread to run next, or `None` having changed nothing (no
    /// receiver waiting, or any other precondition of [`Kernel::fastpath_call`]
    /// not met).
    #[inline(always)]
    pub fn fastpath_fault(&mut self, label: u64, words: [u64; FAULT_WORDS]) -> Option<FastSwitch> {
        if !self.fastpath_enabled {
            return None;
        }
        let t = self.current?;
        let Cap::Endpoint {
            ptr: ep,
            badge,
            rights,
        } = self
            .machine
            .slot(tcb::slot_ref(t, tcb::slots::FAULT_HANDLER))
            .cap
        else {
            return None;
        };
        if !rights.contains(CapRights::WRITE) {
            return None;
        }
        let (receiver, reply) = self.waiting_receiver(ep)?;
        let budget = self.fast_charge(t, receiver)?;

        // As `deliver_fault`: audited, the message kept in the thread.
        let now = self.machine.now();
        self.audit
            .record(crate::audit::AuditKind::Fault, now, t, words[0], label, 0);
        let f = self.machine.tcb_mut(t);
        f.fault_label = label;
        f.fault = words;
        let info = MessageInfo::new(label, FAULT_WORDS, 0).raw();
        self.machine
            .tcb_mut(receiver)
            .context
            .set_syscall_results([badge, info, words[0], words[1], words[2], words[3], 0]);
        let flags = ipc_flags::CALL | ipc_flags::GRANT_REPLY | ipc_flags::FAULT;
        self.fast_rendezvous(t, ep, receiver, reply, flags);
        Some(self.fast_switched(receiver, budget))
    }

    /// `ReplyRecv` on the fastpath for the current thread, as
    /// [`Kernel::fastpath_call`], with the reply object's address
    /// `reply_cptr` too.
    #[inline(always)]
    pub fn fastpath_reply_recv(
        &mut self,
        cptr: u64,
        info: u64,
        reply_cptr: u64,
    ) -> Option<FastSwitch> {
        if !self.fastpath_enabled {
            return None;
        }
        let server = self.current?;
        if !fast_message(info) {
            return None;
        }
        let [reply_slot, ep_slot] = self.fast_lookup(server, [reply_cptr, cptr])?;
        let Cap::Reply { ptr: reply, .. } = self.machine.slot(reply_slot).cap else {
            return None;
        };
        let Cap::Endpoint {
            ptr: ep, rights, ..
        } = self.machine.slot(ep_slot).cap
        else {
            return None;
        };
        let rep = *self.machine.reply_mut(reply);
        let caller = rep.caller;
        if caller.0 == 0 || rep.receiver.0 != 0 || !rights.contains(CapRights::READ) {
            return None;
        }
        let fault = self.machine.tcb(caller).ipc_flags & ipc_flags::FAULT != 0;
        let endpoint = *self.machine.endpoint_mut(ep);
        if endpoint.state == EndpointState::Sending {
            return None;
        }
        let bound = self.machine.tcb(server).bound_notification;
        if bound.0 != 0 && self.machine.notification_mut(bound).pending {
            return None;
        }
        // A fault reply's words are instructions to the kernel, not a
        // message (and stay in the registers).
        let words = if fault {
            None
        } else {
            self.fast_buffer_words(server, caller, info)?
        };
        let budget = self.fast_charge(server, caller)?;

        if fault {
            // The reply to a fault restarts the thread, as the handler asks.
            self.apply_fault_reply(server, caller);
        } else {
            // Reply, straight from the server's registers and buffer.
            self.copy_buffer_words(words);
            self.deliver_short(server, caller, 0, info);
        }
        let c = self.machine.tcb_mut(caller);
        c.state = ThreadState::Runnable;
        c.blocked_on = NONE;
        c.ipc_flags = 0;
        // The server waits at the endpoint's tail.
        let tail = endpoint.tail;
        let s = self.machine.tcb_mut(server);
        s.queue_next = NONE;
        s.queue_prev = tail;
        s.state = ThreadState::BlockedOnReceive;
        s.blocked_on = ep;
        s.recv_reply = reply;
        if tail.0 != 0 {
            self.machine.tcb_mut(tail).queue_next = server;
        }
        let e = self.machine.endpoint_mut(ep);
        if tail.0 == 0 {
            e.head = server;
        }
        e.tail = server;
        e.state = EndpointState::Receiving;
        let rep = self.machine.reply_mut(reply);
        rep.caller = NONE;
        rep.receiver = server;
        Some(self.fast_switched(caller, budget))
    }
}
