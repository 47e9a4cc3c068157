//! IPC: message transfer, endpoint queues, replies and notifications.
//!
//! Threads waiting on an endpoint or notification form an intrusive FIFO
//! through their TCBs. Completing an operation for a thread writes its
//! result registers (badge, message info, words, status) before it runs
//! again, so a blocked syscall returns exactly like an immediate one.

use crate::{
    PhysAddr,
    addr::RamRange,
    cap::Cap,
    cspace,
    kernel::Kernel,
    machine::{Machine, ThreadContext},
    object::{
        endpoint::EndpointState,
        tcb::{self, ThreadState, ipc_flags},
    },
};
use skyscope_abi::{
    Error, MessageInfo,
    fault::WORDS as FAULT_WORDS,
    invocation::{IPC_BUFFER_CAPS_OFFSET, IPC_BUFFER_MSG_OFFSET, IpcBuffer},
    message::{MAX_EXTRA_CAPS, MAX_MESSAGE_WORDS, REGISTER_MESSAGE_WORDS},
    regs,
};

/// Head and tail of a thread queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Queue {
    pub head: PhysAddr,
    pub tail: PhysAddr,
}

const NONE: PhysAddr = PhysAddr(0);

impl<M: Machine> Kernel<M> {
    // ---- thread queues ----------------------------------------------------

    fn queue_append(&mut self, q: Queue, t: PhysAddr) -> Queue {
        let tcb = self.machine.tcb_mut(t);
        tcb.queue_next = NONE;
        tcb.queue_prev = q.tail;
        if q.tail.0 == 0 {
            Queue { head: t, tail: t }
        } else {
            self.machine.tcb_mut(q.tail).queue_next = t;
            Queue {
                head: q.head,
                tail: t,
            }
        }
    }

    fn queue_remove(&mut self, mut q: Queue, t: PhysAddr) -> Queue {
        let (prev, next) = {
            let tcb = self.machine.tcb_mut(t);
            let links = (tcb.queue_prev, tcb.queue_next);
            tcb.queue_prev = NONE;
            tcb.queue_next = NONE;
            links
        };
        if prev.0 == 0 {
            q.head = next;
        } else {
            self.machine.tcb_mut(prev).queue_next = next;
        }
        if next.0 == 0 {
            q.tail = prev;
        } else {
            self.machine.tcb_mut(next).queue_prev = prev;
        }
        q
    }

    fn endpoint_queue(&mut self, ep: PhysAddr) -> Queue {
        let e = self.machine.endpoint_mut(ep);
        Queue {
            head: e.head,
            tail: e.tail,
        }
    }

    fn set_endpoint_queue(&mut self, ep: PhysAddr, q: Queue, state: EndpointState) {
        let e = self.machine.endpoint_mut(ep);
        e.head = q.head;
        e.tail = q.tail;
        e.state = if q.head.0 == 0 {
            EndpointState::Idle
        } else {
            state
        };
    }

    fn notification_queue(&mut self, n: PhysAddr) -> Queue {
        let n = self.machine.notification_mut(n);
        Queue {
            head: n.head,
            tail: n.tail,
        }
    }

    fn set_notification_queue(&mut self, n: PhysAddr, q: Queue) {
        let n = self.machine.notification_mut(n);
        n.head = q.head;
        n.tail = q.tail;
    }

    // ---- results ---------------------------------------------------------

    /// Sets the status register of `t` (0 for success).
    pub(crate) fn set_status(&mut self, t: PhysAddr, status: Result<(), Error>) {
        let code = status.err().map_or(0, Error::code);
        self.machine.tcb_mut(t).context.set_arg(regs::STATUS, code);
    }

    /// Completes a blocked operation of `t` with an error and makes it run.
    fn wake_with_error(&mut self, t: PhysAddr, error: Error) {
        let context = &mut self.machine.tcb_mut(t).context;
        context.set_arg(0, 0);
        context.set_arg(1, MessageInfo::new(error.code(), 0, 0).raw());
        self.set_status(t, Err(error));
        self.wake(t);
    }

    /// Makes a thread that was blocked runnable again.
    pub(crate) fn wake(&mut self, t: PhysAddr) {
        let tcb = self.machine.tcb_mut(t);
        tcb.state = ThreadState::Runnable;
        tcb.blocked_on = NONE;
        tcb.ipc_flags = 0;
        self.make_ready(t);
    }

    /// Takes a thread that is about to block off the processor.
    pub(crate) fn block(&mut self, t: PhysAddr, state: ThreadState, on: PhysAddr) {
        self.scheduler.remove(&mut self.machine, t);
        let tcb = self.machine.tcb_mut(t);
        tcb.state = state;
        tcb.blocked_on = on;
    }

    // ---- message transfer --------------------------------------------------

    /// `t`'s IPC buffer, if it has one lying wholly inside its IPC-buffer
    /// frame, which must be RAM (configure refuses device frames; the
    /// check here keeps the kernel off device memory whatever the slot
    /// holds).
    pub fn ipc_buffer_address(&self, t: PhysAddr) -> Option<RamRange> {
        let address = self.machine.tcb(t).ipc_buffer;
        let frame = self
            .machine
            .slot(tcb::slot_ref(t, tcb::slots::IPC_BUFFER))
            .cap;
        let Cap::Frame { size, .. } = frame else {
            return None;
        };
        if address == 0 {
            return None;
        }
        let offset = address & (size.bytes() - 1);
        RamRange::inside(&frame, offset, core::mem::size_of::<IpcBuffer>() as u64)
    }

    /// Copies the message of `sender` to `receiver`: label, words, and (with
    /// `grant`) capabilities; writes the receiver's badge, info and words.
    pub(crate) fn transfer(
        &mut self,
        sender: PhysAddr,
        receiver: PhysAddr,
        endpoint: Option<PhysAddr>,
        badge: u64,
        grant: bool,
    ) {
        let s = self.machine.tcb(sender);
        let fault = s.ipc_flags & ipc_flags::FAULT != 0;
        let mut words = [0u64; REGISTER_MESSAGE_WORDS];
        let (label, mut length, caps) = if fault {
            words.copy_from_slice(&s.fault);
            (s.fault_label, FAULT_WORDS, 0)
        } else {
            let info = MessageInfo::from_raw(s.context.arg(regs::MESSAGE_INFO));
            for (i, w) in words.iter_mut().take(REGISTER_MESSAGE_WORDS).enumerate() {
                *w = s.context.arg(regs::FIRST_MESSAGE_REGISTER + i);
            }
            (info.label(), info.length(), info.extra_caps())
        };
        let send_buffer = if fault {
            None
        } else {
            self.ipc_buffer_address(sender)
        };
        let recv_buffer = self.ipc_buffer_address(receiver);
        if length > REGISTER_MESSAGE_WORDS {
            match (
                send_buffer.and_then(buffer_message_words),
                recv_buffer.and_then(buffer_message_words),
            ) {
                (Some(from), Some(to)) => {
                    self.machine
                        .copy_words(from, to, length - REGISTER_MESSAGE_WORDS);
                }
                _ => length = REGISTER_MESSAGE_WORDS,
            }
        }
        let (sent_caps, unwrapped) = match (grant && caps > 0, send_buffer, recv_buffer) {
            (true, Some(sb), Some(rb)) => {
                self.transfer_caps(sender, receiver, endpoint, caps, sb, rb)
            }
            _ => (0, 0),
        };
        let info = MessageInfo::new(label, length, sent_caps).with_caps_unwrapped(unwrapped);
        let context = &mut self.machine.tcb_mut(receiver).context;
        context.set_arg(0, badge);
        context.set_arg(regs::MESSAGE_INFO, info.raw());
        for (i, &w) in words.iter().take(REGISTER_MESSAGE_WORDS).enumerate() {
            context.set_arg(regs::FIRST_MESSAGE_REGISTER + i, w);
        }
        context.set_arg(regs::STATUS, 0);
    }

    /// Moves the sender's extra capabilities: a badged capability to the
    /// endpoint itself is unwrapped to its badge; at most one other is
    /// copied into the receiver's receive slot. Stops at the first that
    /// cannot be transferred. Returns the count and the unwrapped mask.
    fn transfer_caps(
        &mut self,
        sender: PhysAddr,
        receiver: PhysAddr,
        endpoint: Option<PhysAddr>,
        count: usize,
        send_buffer: RamRange,
        recv_buffer: RamRange,
    ) -> (usize, u64) {
        let mut cptrs = [0u64; MAX_EXTRA_CAPS];
        if let Some(caps) = send_buffer.sub(IPC_BUFFER_CAPS_OFFSET as u64, 8 * count as u64) {
            self.machine.read_words(caps, &mut cptrs[..count]);
        }
        let mut receive = [0u64; 3]; // receive_cnode, receive_index, receive_depth
        if let Some(at) = recv_buffer.sub(IPC_BUFFER_CAPS_OFFSET as u64 + 24, 24) {
            self.machine.read_words(at, &mut receive);
        }
        let sender_cspace = self
            .machine
            .slot(tcb::slot_ref(sender, tcb::slots::CSPACE))
            .cap;
        let receiver_cspace = self
            .machine
            .slot(tcb::slot_ref(receiver, tcb::slots::CSPACE))
            .cap;
        let (mut done, mut unwrapped, mut slot_used) = (0, 0u64, false);
        for (i, &cptr) in cptrs[..count].iter().enumerate() {
            let Ok(src) = cspace::lookup_cap_slot(&self.machine, &sender_cspace, cptr) else {
                break;
            };
            let cap = self.machine.slot(src).cap;
            if cap.is_null() {
                break;
            }
            if let (Some(ep), Cap::Endpoint { ptr, badge, .. }) = (endpoint, cap)
                && ptr == ep
                && badge != 0
            {
                if let Some(at) = recv_buffer.sub((IPC_BUFFER_CAPS_OFFSET + 8 * i) as u64, 8) {
                    self.machine.write_words(at, &[badge]);
                }
                unwrapped |= 1 << i;
                done += 1;
                continue;
            }
            if slot_used || receive[2] == 0 {
                break;
            }
            let dest = cspace::lookup_cap_slot(&self.machine, &receiver_cspace, receive[0])
                .and_then(|node| {
                    let node = self.machine.slot(node).cap;
                    cspace::lookup_slot(
                        &self.machine,
                        &node,
                        receive[1],
                        u32::try_from(receive[2]).unwrap_or(0),
                    )
                });
            let Ok(dest) = dest else { break };
            if !self.machine.slot(dest).cap.is_null() {
                break;
            }
            let Ok(derived) = cap.derive() else { break };
            self.install_derived(src, dest, derived);
            let time = self.machine.now();
            self.audit.record(
                crate::audit::AuditKind::Delegated,
                time,
                sender,
                derived.audit_object(),
                skyscope_abi::audit::TRANSFER,
                u64::from(derived.rights().bits()),
            );
            slot_used = true;
            done += 1;
        }
        (done, unwrapped)
    }

    // ---- endpoints ---------------------------------------------------------

    /// `t` sends on endpoint `ep` with `badge` and [`ipc_flags`]; blocks if
    /// no receiver waits (unless `blocking` is false: the message is dropped).
    pub(crate) fn send_ipc(
        &mut self,
        t: PhysAddr,
        ep: PhysAddr,
        badge: u64,
        flags: u8,
        blocking: bool,
    ) {
        let endpoint = *self.machine.endpoint_mut(ep);
        if endpoint.state == EndpointState::Receiving {
            let receiver = endpoint.head;
            let q = {
                let q0 = self.endpoint_queue(ep);
                self.queue_remove(q0, receiver)
            };
            self.set_endpoint_queue(ep, q, EndpointState::Receiving);
            self.machine.tcb_mut(t).ipc_flags = flags;
            self.transfer(t, receiver, Some(ep), badge, flags & ipc_flags::GRANT != 0);
            let reply = core::mem::take(&mut self.machine.tcb_mut(receiver).recv_reply);
            if reply.0 != 0 {
                self.machine.reply_mut(reply).receiver = NONE;
            }
            self.wake(receiver);
            if flags & ipc_flags::CALL != 0 {
                self.await_reply(t, reply);
            } else {
                self.machine.tcb_mut(t).ipc_flags = 0;
                self.set_status(t, Ok(()));
            }
        } else if blocking {
            let q = {
                let q0 = self.endpoint_queue(ep);
                self.queue_append(q0, t)
            };
            self.set_endpoint_queue(ep, q, EndpointState::Sending);
            self.block(t, ThreadState::BlockedOnSend, ep);
            let tcb = self.machine.tcb_mut(t);
            tcb.ipc_badge = badge;
            tcb.ipc_flags = flags;
        } else {
            self.set_status(t, Ok(()));
        }
    }

    /// After a `Call` (or fault) was delivered: the caller waits on `reply`,
    /// or, if the receiver named no reply object, cannot be answered.
    fn await_reply(&mut self, caller: PhysAddr, reply: PhysAddr) {
        let flags = self.machine.tcb(caller).ipc_flags;
        if reply.0 != 0 && flags & ipc_flags::GRANT_REPLY != 0 {
            let old = self.machine.reply_mut(reply).caller;
            if old.0 != 0 && old != caller {
                self.cancel_reply_caller(old);
            }
            self.machine.reply_mut(reply).caller = caller;
            self.block(caller, ThreadState::BlockedOnReply, reply);
        } else if flags & ipc_flags::FAULT != 0 {
            // Nobody can answer the fault: the thread stays stopped.
            self.suspend(caller);
        } else {
            self.wake_with_error(caller, Error::Cancelled);
        }
    }

    /// `t` receives on endpoint `ep`, naming `reply` (0: none) for a `Call`.
    pub(crate) fn receive_ipc(
        &mut self,
        t: PhysAddr,
        ep: PhysAddr,
        reply: PhysAddr,
        blocking: bool,
    ) {
        if self.take_bound_notification(t) {
            return;
        }
        let endpoint = *self.machine.endpoint_mut(ep);
        if endpoint.state == EndpointState::Sending {
            let sender = endpoint.head;
            let q = {
                let q0 = self.endpoint_queue(ep);
                self.queue_remove(q0, sender)
            };
            self.set_endpoint_queue(ep, q, EndpointState::Sending);
            let (badge, flags) = {
                let s = self.machine.tcb(sender);
                (s.ipc_badge, s.ipc_flags)
            };
            self.transfer(sender, t, Some(ep), badge, flags & ipc_flags::GRANT != 0);
            if flags & ipc_flags::CALL != 0 {
                let s = self.machine.tcb_mut(sender);
                s.state = ThreadState::Runnable; // leaves the send queue first
                s.blocked_on = NONE;
                self.await_reply(sender, reply);
            } else {
                self.set_status(sender, Ok(()));
                self.wake(sender);
            }
        } else if blocking {
            let q = {
                let q0 = self.endpoint_queue(ep);
                self.queue_append(q0, t)
            };
            self.set_endpoint_queue(ep, q, EndpointState::Receiving);
            self.block(t, ThreadState::BlockedOnReceive, ep);
            self.machine.tcb_mut(t).recv_reply = reply;
            if reply.0 != 0 {
                let r = self.machine.reply_mut(reply);
                let previous = core::mem::replace(&mut r.receiver, t);
                if previous.0 != 0 && previous != t {
                    self.machine.tcb_mut(previous).recv_reply = NONE;
                }
            }
        } else {
            self.set_status(t, Err(Error::WouldBlock));
        }
    }

    /// Answers the caller recorded in `reply` with `t`'s message (or
    /// restarts it, for a fault). No caller: nothing happens.
    pub(crate) fn do_reply(&mut self, t: PhysAddr, reply: PhysAddr) {
        let caller = core::mem::take(&mut self.machine.reply_mut(reply).caller);
        if caller.0 == 0 {
            return;
        }
        let fault = self.machine.tcb(caller).ipc_flags & ipc_flags::FAULT != 0;
        if fault {
            self.apply_fault_reply(t, caller);
        } else {
            self.transfer(t, caller, None, 0, false);
        }
        self.wake(caller);
    }

    /// What a fault handler's reply asks for (`skyscope_abi::fault::REPLY_*`
    /// in word 0): step past the faulting instruction, set a register.
    fn apply_fault_reply(&mut self, handler: PhysAddr, faulted: PhysAddr) {
        use skyscope_abi::{fault, invocation::REGISTER_COUNT};
        let context = &self.machine.tcb(handler).context;
        let info = MessageInfo::from_raw(context.arg(regs::MESSAGE_INFO));
        let word = |i: usize| {
            if info.length() > i {
                context.arg(regs::FIRST_MESSAGE_REGISTER + i)
            } else {
                0
            }
        };
        let (flags, register, value) = (word(0), word(1), word(2));
        let target = &mut self.machine.tcb_mut(faulted).context;
        if flags & fault::REPLY_SET_REGISTER != 0
            && info.length() >= 3
            && let Ok(index) = usize::try_from(register)
            && index < REGISTER_COUNT
        {
            target.set_register(index, value);
        }
        if flags & fault::REPLY_SKIP_INSTRUCTION != 0 {
            target.skip_instruction();
        }
    }

    /// The caller waiting on a reply that will never come.
    fn cancel_reply_caller(&mut self, caller: PhysAddr) {
        if self.machine.tcb(caller).ipc_flags & ipc_flags::FAULT != 0 {
            self.suspend(caller);
        } else {
            self.wake_with_error(caller, Error::Cancelled);
        }
    }

    // ---- notifications -----------------------------------------------------

    /// Signals notification `n` with `badge`.
    pub fn signal(&mut self, n: PhysAddr, badge: u64) {
        let queue = self.notification_queue(n);
        let word = self.machine.notification_mut(n).word | badge;
        if queue.head.0 != 0 {
            let waiter = queue.head;
            let q = self.queue_remove(queue, waiter);
            self.set_notification_queue(n, q);
            let obj = self.machine.notification_mut(n);
            obj.word = 0;
            obj.pending = false;
            self.deliver_notification(waiter, word);
            return;
        }
        let bound = self.machine.notification_mut(n).bound_tcb;
        if bound.0 != 0 && self.machine.tcb(bound).state == ThreadState::BlockedOnReceive {
            self.cancel_ipc(bound);
            let obj = self.machine.notification_mut(n);
            obj.word = 0;
            obj.pending = false;
            self.deliver_notification(bound, word);
            return;
        }
        let obj = self.machine.notification_mut(n);
        obj.word = word;
        obj.pending = true;
    }

    fn deliver_notification(&mut self, t: PhysAddr, word: u64) {
        let context = &mut self.machine.tcb_mut(t).context;
        context.set_arg(0, word);
        context.set_arg(regs::MESSAGE_INFO, 0);
        context.set_arg(regs::STATUS, 0);
        self.wake(t);
    }

    /// A pending signal on `t`'s bound notification completes a receive at once.
    fn take_bound_notification(&mut self, t: PhysAddr) -> bool {
        let n = self.machine.tcb(t).bound_notification;
        if n.0 == 0 || !self.machine.notification_mut(n).pending {
            return false;
        }
        let obj = self.machine.notification_mut(n);
        let word = core::mem::take(&mut obj.word);
        obj.pending = false;
        let context = &mut self.machine.tcb_mut(t).context;
        context.set_arg(0, word);
        context.set_arg(regs::MESSAGE_INFO, 0);
        context.set_arg(regs::STATUS, 0);
        true
    }

    /// `t` waits on (or, without `blocking`, polls) notification `n`.
    pub(crate) fn wait_notification(&mut self, t: PhysAddr, n: PhysAddr, blocking: bool) {
        let bound = self.machine.notification_mut(n).bound_tcb;
        if bound.0 != 0 && bound != t {
            self.set_status(t, Err(Error::IllegalOperation));
            return;
        }
        let obj = self.machine.notification_mut(n);
        if obj.pending {
            let word = core::mem::take(&mut obj.word);
            obj.pending = false;
            let context = &mut self.machine.tcb_mut(t).context;
            context.set_arg(0, word);
            context.set_arg(regs::MESSAGE_INFO, 0);
            self.set_status(t, Ok(()));
        } else if blocking {
            let q = {
                let q0 = self.notification_queue(n);
                self.queue_append(q0, t)
            };
            self.set_notification_queue(n, q);
            self.block(t, ThreadState::BlockedOnNotification, n);
        } else {
            self.set_status(t, Err(Error::WouldBlock));
        }
    }

    // ---- cancellation ------------------------------------------------------

    /// Takes `t` out of whatever IPC it waits in; its state is left to the caller.
    pub(crate) fn cancel_ipc(&mut self, t: PhysAddr) {
        let (state, on) = {
            let tcb = self.machine.tcb(t);
            (tcb.state, tcb.blocked_on)
        };
        match state {
            ThreadState::BlockedOnSend | ThreadState::BlockedOnReceive => {
                let q = {
                    let q0 = self.endpoint_queue(on);
                    self.queue_remove(q0, t)
                };
                let ep_state = self.machine.endpoint_mut(on).state;
                self.set_endpoint_queue(on, q, ep_state);
                let reply = core::mem::take(&mut self.machine.tcb_mut(t).recv_reply);
                if reply.0 != 0 {
                    self.machine.reply_mut(reply).receiver = NONE;
                }
            }
            ThreadState::BlockedOnNotification => {
                let q = {
                    let q0 = self.notification_queue(on);
                    self.queue_remove(q0, t)
                };
                self.set_notification_queue(on, q);
            }
            ThreadState::BlockedOnReply => {
                if on.0 != 0 {
                    self.machine.reply_mut(on).caller = NONE;
                }
            }
            ThreadState::Inactive | ThreadState::Runnable | ThreadState::IdleInGuest => {}
        }
        let tcb = self.machine.tcb_mut(t);
        tcb.blocked_on = NONE;
        if !matches!(
            state,
            ThreadState::Inactive | ThreadState::Runnable | ThreadState::IdleInGuest
        ) {
            tcb.context.set_arg(regs::STATUS, Error::Cancelled.code());
        }
    }

    /// The last capability to endpoint `ep` is gone: every waiter resumes
    /// with `Cancelled`.
    pub(crate) fn cancel_endpoint(&mut self, ep: PhysAddr) {
        loop {
            let head = self.machine.endpoint_mut(ep).head;
            if head.0 == 0 {
                break;
            }
            let fault = self.machine.tcb(head).ipc_flags & ipc_flags::FAULT != 0;
            self.cancel_ipc(head);
            if fault {
                self.suspend(head);
            } else {
                self.wake_with_error(head, Error::Cancelled);
            }
        }
    }

    /// The last capability to notification `n` is gone.
    pub(crate) fn cancel_notification(&mut self, n: PhysAddr) {
        loop {
            let head = self.machine.notification_mut(n).head;
            if head.0 == 0 {
                break;
            }
            self.cancel_ipc(head);
            self.wake_with_error(head, Error::Cancelled);
        }
        let bound = core::mem::take(&mut self.machine.notification_mut(n).bound_tcb);
        if bound.0 != 0 {
            self.machine.tcb_mut(bound).bound_notification = NONE;
        }
        self.forget_irq_notification(n);
        if self.console_listener.0 == n {
            self.console_listener = (PhysAddr(0), 0);
        }
    }

    /// The last capability to reply object `r` is gone.
    pub(crate) fn cancel_reply(&mut self, r: PhysAddr) {
        let obj = self.machine.reply_mut(r);
        let (caller, receiver) = (
            core::mem::take(&mut obj.caller),
            core::mem::take(&mut obj.receiver),
        );
        if receiver.0 != 0 {
            self.machine.tcb_mut(receiver).recv_reply = NONE;
        }
        if caller.0 != 0 {
            self.machine.tcb_mut(caller).blocked_on = NONE;
            self.cancel_reply_caller(caller);
        }
    }
}

/// The message words of an IPC buffer beyond those that travel in
/// registers.
pub(crate) fn buffer_message_words(buffer: RamRange) -> Option<RamRange> {
    let start = (IPC_BUFFER_MSG_OFFSET + 8 * REGISTER_MESSAGE_WORDS) as u64;
    buffer.sub(
        start,
        8 * (MAX_MESSAGE_WORDS - REGISTER_MESSAGE_WORDS) as u64,
    )
}
