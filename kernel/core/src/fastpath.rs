//! The IPC fastpath: `Call` and `ReplyRecv` in their common form.
//!
//! Preconditions checked first, nothing changed until all hold: a short
//! message (at most four words, no capabilities), the other side already
//! waiting, no reply pending on the reply object, and the thread to switch
//! to able to run and above every ready thread (so that picking it directly
//! is exactly what the scheduler would do). Then the registers are copied,
//! the queues and reply object updated, and the new thread made current.
//! Everything else — and these cases too when the fastpath is disabled —
//! goes through the general path in `syscall`, which must leave the same
//! state behind (checked by the host tests and `ipc::fastpath_matches_slowpath`).

use crate::{
    PhysAddr,
    cap::Cap,
    cspace,
    kernel::Kernel,
    machine::{Machine, ThreadContext},
    object::{
        endpoint::EndpointState,
        tcb::{self, ThreadState, ipc_flags},
    },
};
use skyscope_abi::{CapRights, MessageInfo, Syscall, message::REGISTER_MESSAGE_WORDS, regs};

const NONE: PhysAddr = PhysAddr(0);

impl<M: Machine> Kernel<M> {
    /// Completes `number` for the current thread if the fastpath applies;
    /// returns `false`, having changed nothing, otherwise.
    pub fn fastpath(&mut self, number: u64) -> bool {
        if !self.fastpath_enabled {
            return false;
        }
        let done = if number == Syscall::Call as u64 {
            self.fastpath_call()
        } else if number == Syscall::ReplyRecv as u64 {
            self.fastpath_reply_recv()
        } else {
            false
        };
        if done {
            self.counters.fastpath_hits += 1;
        }
        done
    }

    /// Looks up `cptr` in `t`'s CSpace and returns the capability by
    /// reference (capabilities are 40 bytes: copying one costs a `memcpy`
    /// call). A one-level CSpace whose root consumes all 64 bits (the usual
    /// layout) takes one step; anything else takes the general walk.
    #[inline(always)]
    fn fast_lookup(&self, t: PhysAddr, cptr: u64) -> Option<&Cap> {
        let root = &self.machine.slot(tcb::slot_ref(t, tcb::slots::CSPACE)).cap;
        let slot = match *root {
            Cap::CNode {
                ptr,
                radix,
                guard_bits,
                guard,
                ..
            } if u32::from(radix) + u32::from(guard_bits) == cspace::WORD_BITS => {
                if cptr >> radix != guard {
                    return None;
                }
                let index = cptr & ((1u64 << radix) - 1);
                crate::cap::SlotRef(ptr.0 + (index << crate::slot::SLOT_BITS))
            }
            _ => cspace::lookup_cap_slot(&self.machine, root, cptr).ok()?,
        };
        Some(&self.machine.slot(slot).cap)
    }

    /// Whether switching straight to `t` is what the scheduler would do,
    /// and needs no budget accounting: both the running thread and `t` run
    /// on unthrottled scheduling contexts (budget = period), so no timer
    /// deadline changes and no time needs charging.
    #[inline(always)]
    fn runs_next(&mut self, current: PhysAddr, t: PhysAddr) -> bool {
        let priority = self.machine.tcb(t).priority;
        !self.scheduler.any_ready_at_or_above(priority)
            && self.unthrottled(t)
            && self.unthrottled(current)
    }

    #[inline(always)]
    fn unthrottled(&mut self, t: PhysAddr) -> bool {
        let sc = self.machine.tcb(t).sched_context;
        if sc.0 == 0 {
            return false;
        }
        let s = self.machine.sched_context_mut(sc);
        s.budget != 0 && !s.constrained()
    }

    fn fastpath_call(&mut self) -> bool {
        let Some(caller) = self.current else {
            return false;
        };
        let args = self.machine.tcb(caller).context.syscall_args();
        let info = MessageInfo::from_raw(args[regs::MESSAGE_INFO]);
        if info.extra_caps() != 0 || info.length() > REGISTER_MESSAGE_WORDS {
            return false;
        }
        let Some(&Cap::Endpoint {
            ptr: ep,
            badge,
            rights,
        }) = self.fast_lookup(caller, args[0])
        else {
            return false;
        };
        if !rights.contains(CapRights::WRITE)
            || !rights.intersects(CapRights::GRANT | CapRights::GRANT_REPLY)
        {
            return false;
        }
        let endpoint = *self.machine.endpoint_mut(ep);
        if endpoint.state != EndpointState::Receiving {
            return false;
        }
        let receiver = endpoint.head;
        let reply = self.machine.tcb(receiver).recv_reply;
        if reply.0 == 0
            || self.machine.reply_mut(reply).caller.0 != 0
            || !self.runs_next(caller, receiver)
        {
            return false;
        }

        // Dequeue the receiver (it is at the head).
        let next = self.machine.tcb(receiver).queue_next;
        let e = self.machine.endpoint_mut(ep);
        e.head = next;
        if next.0 == 0 {
            e.tail = NONE;
            e.state = EndpointState::Idle;
        } else {
            self.machine.tcb_mut(next).queue_prev = NONE;
        }
        // Message.
        let r = self.machine.tcb_mut(receiver);
        r.queue_next = NONE;
        r.queue_prev = NONE;
        let info_out = MessageInfo::new(info.label(), info.length(), 0).raw();
        r.context
            .set_syscall_results([badge, info_out, args[2], args[3], args[4], args[5], 0]);
        r.state = ThreadState::Runnable;
        r.blocked_on = NONE;
        r.recv_reply = NONE;
        r.ipc_flags = 0;
        // The caller waits on the reply object.
        let rep = self.machine.reply_mut(reply);
        rep.receiver = NONE;
        rep.caller = caller;
        let mut flags = ipc_flags::CALL | ipc_flags::GRANT_REPLY;
        if rights.contains(CapRights::GRANT) {
            flags |= ipc_flags::GRANT;
        }
        let c = self.machine.tcb_mut(caller);
        c.state = ThreadState::BlockedOnReply;
        c.blocked_on = reply;
        c.ipc_flags = flags;
        self.current = Some(receiver);
        true
    }

    fn fastpath_reply_recv(&mut self) -> bool {
        let Some(server) = self.current else {
            return false;
        };
        let args = self.machine.tcb(server).context.syscall_args();
        let info = MessageInfo::from_raw(args[regs::MESSAGE_INFO]);
        if info.extra_caps() != 0 || info.length() > REGISTER_MESSAGE_WORDS {
            return false;
        }
        let Some(&Cap::Reply { ptr: reply, .. }) = self.fast_lookup(server, args[regs::REPLY_CAP])
        else {
            return false;
        };
        let Some(&Cap::Endpoint {
            ptr: ep, rights, ..
        }) = self.fast_lookup(server, args[0])
        else {
            return false;
        };
        let rep = *self.machine.reply_mut(reply);
        let caller = rep.caller;
        if caller.0 == 0 || rep.receiver.0 != 0 || !rights.contains(CapRights::READ) {
            return false;
        }
        if self.machine.tcb(caller).ipc_flags & ipc_flags::FAULT != 0 {
            return false;
        }
        if self.machine.endpoint_mut(ep).state == EndpointState::Sending {
            return false;
        }
        let bound = self.machine.tcb(server).bound_notification;
        if bound.0 != 0 && self.machine.notification_mut(bound).pending {
            return false;
        }
        if !self.runs_next(server, caller) {
            return false;
        }

        // Reply.
        let c = self.machine.tcb_mut(caller);
        let info_out = MessageInfo::new(info.label(), info.length(), 0).raw();
        c.context
            .set_syscall_results([0, info_out, args[2], args[3], args[4], args[5], 0]);
        c.state = ThreadState::Runnable;
        c.blocked_on = NONE;
        c.ipc_flags = 0;
        // The server waits at the endpoint's tail.
        let tail = self.machine.endpoint_mut(ep).tail;
        let s = self.machine.tcb_mut(server);
        s.queue_next = NONE;
        s.queue_prev = tail;
        s.state = ThreadState::BlockedOnReceive;
        s.blocked_on = ep;
        s.recv_reply = reply;
        if tail.0 == 0 {
            self.machine.endpoint_mut(ep).head = server;
        } else {
            self.machine.tcb_mut(tail).queue_next = server;
        }
        let e = self.machine.endpoint_mut(ep);
        e.tail = server;
        e.state = EndpointState::Receiving;
        let rep = self.machine.reply_mut(reply);
        rep.caller = NONE;
        rep.receiver = server;
        self.current = Some(caller);
        true
    }
}
