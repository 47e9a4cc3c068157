//! Thread control blocks: a thread's registers, address spaces and state.

use crate::{
    PhysAddr,
    cap::{Cap, SlotRef},
    kernel::{Invocation, Kernel, Reply},
    machine::{Machine, ThreadContext},
    slot::Slot,
};
use skyscope_abi::{CapRights, Error, invocation::REGISTER_COUNT};

/// Slots a TCB keeps copies of capabilities in.
pub mod slots {
    /// The thread's CSpace root CNode.
    pub const CSPACE: usize = 0;
    /// The thread's VSpace.
    pub const VSPACE: usize = 1;
    /// The frame holding the thread's IPC buffer.
    pub const IPC_BUFFER: usize = 2;
    /// The endpoint the thread's faults are sent to.
    pub const FAULT_HANDLER: usize = 3;
    /// Number of slots.
    pub const COUNT: usize = 4;
}

/// Run state of a thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadState {
    /// Not started, suspended, or stopped after an unhandled fault.
    #[default]
    Inactive,
    /// Running or ready to run.
    Runnable,
    /// Waiting in an endpoint's queue to send (`blocked_on` = endpoint).
    BlockedOnSend,
    /// Waiting in an endpoint's queue to receive (`blocked_on` = endpoint).
    BlockedOnReceive,
    /// Waiting for the reply to a `Call` (`blocked_on` = reply object).
    BlockedOnReply,
    /// Waiting for a notification (`blocked_on` = notification).
    BlockedOnNotification,
    /// A Vcpu's thread whose guest executed `wfi` with no virtual
    /// interrupt pending: it uses no CPU until its Vcpu has one
    /// ([`crate::Kernel::wake_vcpu`]). Not an IPC wait: nothing is
    /// cancelled and no register is written when it ends.
    IdleInGuest,
}

/// Flags describing what a blocked sender is doing.
pub mod ipc_flags {
    /// The send is a `Call`: the sender waits for a reply.
    pub const CALL: u8 = 1 << 0;
    /// The sender's endpoint capability has GRANT (capabilities may travel).
    pub const GRANT: u8 = 1 << 1;
    /// The sender's endpoint capability has GRANT or GRANT_REPLY (a reply
    /// right may be created).
    pub const GRANT_REPLY: u8 = 1 << 2;
    /// The message is a fault message from the kernel (in `Tcb::fault`).
    pub const FAULT: u8 = 1 << 3;
}

/// A TCB as laid out in its kernel object (2 KiB).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Tcb<C> {
    /// Capability slots (must stay first: slot `i` is at `tcb + 64 i`).
    pub slots: [Slot; slots::COUNT],
    /// Run state.
    pub state: ThreadState,
    /// Scheduling priority.
    pub priority: u8,
    /// Highest priority this thread may give itself or others.
    pub max_priority: u8,
    /// In a ready queue.
    pub queued: bool,
    /// Bound to a scheduling context whose budget equals its period (one
    /// that is never charged): the IPC fastpath's test for "no budget to
    /// account for", one byte beside the priority it reads anyway. Set
    /// wherever the binding or the context's configuration changes;
    /// `check_invariants` compares it with the context.
    pub unlimited_budget: bool,
    /// Next thread in its ready queue.
    pub sched_next: PhysAddr,
    /// Previous thread in its ready queue.
    pub sched_prev: PhysAddr,
    /// User address of the IPC buffer (0 = none).
    pub ipc_buffer: u64,
    /// The object a blocked thread waits on (endpoint, notification, reply).
    pub blocked_on: PhysAddr,
    /// Next thread in the endpoint or notification queue.
    pub queue_next: PhysAddr,
    /// Previous thread in the endpoint or notification queue.
    pub queue_prev: PhysAddr,
    /// Badge of the capability a blocked sender used.
    pub ipc_badge: u64,
    /// [`ipc_flags`] of a blocked sender.
    pub ipc_flags: u8,
    /// Reply object a blocked receiver named (0 = none).
    pub recv_reply: PhysAddr,
    /// Notification bound to this thread (0 = none).
    pub bound_notification: PhysAddr,
    /// Scheduling context the thread runs on (0 = none: not scheduled).
    pub sched_context: PhysAddr,
    /// Vcpu the thread runs as (0 = none: a native thread).
    pub vcpu: PhysAddr,
    /// The user address space the thread last checked out with, for the
    /// fastpath's switch (see [`SpaceCache`]).
    pub space: SpaceCache,
    /// Fault message label while a fault is being delivered.
    pub fault_label: u64,
    /// Fault message words.
    pub fault: [u64; skyscope_abi::fault::WORDS],
    /// Saved user registers.
    pub context: C,
}

/// What [`Kernel::native_space`] found for a thread, remembered so that
/// the IPC fastpath switches to it with one comparison instead of
/// decoding the VSpace capability and consulting the identifier table.
/// It holds while `generation` equals [`Kernel::space_generation`], which
/// every event that could change the answer advances: an identifier
/// assigned, a VSpace or GuestSpace capability leaving any slot (its last
/// capability leaving frees its identifier), a TCB's slots configured, a
/// Vcpu bound or unbound. (Zeroed memory,
/// generation 0, never holds.) `check_invariants` compares every
/// remembered space that holds with a fresh lookup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaceCache {
    /// The space's top-level table.
    pub root: PhysAddr,
    /// Its ASID.
    pub asid: crate::cap::Asid,
    /// [`Kernel::space_generation`] when it was found.
    pub generation: u64,
}

/// The slot reference of TCB slot `index`.
#[inline(always)]
pub fn slot_ref(tcb: PhysAddr, index: usize) -> SlotRef {
    // The slots lie at the start of the TCB object: no overflow.
    SlotRef(
        tcb.0
            .wrapping_add((index as u64) * core::mem::size_of::<Slot>() as u64),
    )
}

/// Whether `ipc_buffer` is acceptable: aligned to the buffer's size.
fn ipc_buffer_aligned(address: u64) -> bool {
    address.is_multiple_of(1 << 10)
}

impl<M: Machine> Kernel<M> {
    /// TCB invocations.
    pub(crate) fn invoke_tcb(
        &mut self,
        tcb: PhysAddr,
        rights: CapRights,
        inv: &Invocation<'_>,
    ) -> Result<Reply, Error> {
        use skyscope_abi::Label;
        let label = Label::from_word(inv.label).ok_or(Error::IllegalOperation)?;
        let need = |r: CapRights| {
            if rights.contains(r) {
                Ok(())
            } else {
                Err(Error::InsufficientRights)
            }
        };
        match label {
            Label::TcbConfigure => {
                need(CapRights::WRITE)?;
                self.tcb_configure(tcb, inv)
            }
            Label::TcbSetPriority => {
                need(CapRights::WRITE)?;
                let priority = self.priority_argument(inv.arg(0)?)?;
                self.set_priority(tcb, priority);
                Ok(Reply::empty())
            }
            Label::TcbReadRegisters => {
                need(CapRights::READ)?;
                let count = usize::try_from(inv.arg(0)?).map_err(|_| Error::RangeError)?;
                if count == 0 || count > REGISTER_COUNT {
                    return Err(Error::RangeError);
                }
                if Some(tcb) == self.current {
                    return Err(Error::IllegalOperation);
                }
                let context = &self.machine.tcb(tcb).context;
                let mut reply = Reply::empty();
                for i in 0..count {
                    reply.push(context.register(i));
                }
                Ok(reply)
            }
            Label::TcbWriteRegisters => {
                need(CapRights::WRITE)?;
                let count = usize::try_from(inv.arg(0)?).map_err(|_| Error::RangeError)?;
                if count == 0 || count > REGISTER_COUNT {
                    return Err(Error::RangeError);
                }
                if inv.args.len() < 1 + count {
                    return Err(Error::TruncatedMessage);
                }
                if Some(tcb) == self.current {
                    return Err(Error::IllegalOperation);
                }
                let t = self.machine.tcb_mut(tcb);
                for i in 0..count {
                    t.context.set_register(i, inv.args[1 + i]);
                }
                Ok(Reply::empty())
            }
            Label::TcbResume => {
                need(CapRights::WRITE)?;
                self.resume(tcb)?;
                Ok(Reply::empty())
            }
            Label::TcbSuspend => {
                need(CapRights::WRITE)?;
                self.suspend(tcb);
                Ok(Reply::empty())
            }
            Label::TcbBindNotification => {
                need(CapRights::WRITE)?;
                self.bind_notification(tcb, inv)
            }
            Label::TcbUnbindNotification => {
                need(CapRights::WRITE)?;
                self.unbind_notification(tcb)
            }
            _ => Err(Error::IllegalOperation),
        }
    }

    /// Checks a requested priority against the invoking thread's maximum.
    fn priority_argument(&self, word: u64) -> Result<u8, Error> {
        let priority = u8::try_from(word).map_err(|_| Error::RangeError)?;
        let limit = self
            .current
            .map_or(u8::MAX, |c| self.machine.tcb(c).max_priority);
        if priority > limit {
            return Err(Error::RangeError);
        }
        Ok(priority)
    }

    fn tcb_configure(&mut self, tcb: PhysAddr, inv: &Invocation<'_>) -> Result<Reply, Error> {
        let fault_cptr = inv.arg(0)?;
        let priority = self.priority_argument(inv.arg(1)?)?;
        let guard_word = inv.arg(2)?;
        let ipc_buffer = inv.arg(3)?;
        let (cspace, cspace_src) = inv.extra_cap(0)?;
        let (vspace, vspace_src) = inv.extra_cap(1)?;
        if !matches!(cspace, Cap::CNode { .. })
            || !matches!(vspace, Cap::VSpace { .. } | Cap::GuestSpace { .. })
        {
            return Err(Error::WrongType);
        }
        let cspace = cspace.derive()?.with_data(guard_word)?;
        let vspace = vspace.derive()?;
        let buffer = match inv.extra_caps.get(2) {
            // The kernel reads and writes the buffer: RAM only, never a
            // device frame (its registers, or memory beyond the physmap).
            Some(&(Cap::Frame { device: true, .. }, _)) => return Err(Error::InvalidArgument),
            Some(&(frame @ Cap::Frame { .. }, src)) => {
                if !ipc_buffer_aligned(ipc_buffer) {
                    return Err(Error::AlignmentError);
                }
                Some((frame.derive()?, src))
            }
            Some(_) => return Err(Error::WrongType),
            None if ipc_buffer != 0 => return Err(Error::TruncatedMessage),
            None => None,
        };
        let fault = match fault_cptr {
            0 => None,
            cptr => {
                let slot = self.lookup_slot_of_current(cptr)?;
                let cap = self.machine.slot(slot).cap;
                if !matches!(cap, Cap::Endpoint { .. }) {
                    return Err(Error::WrongType);
                }
                if !cap.rights().contains(CapRights::WRITE) {
                    return Err(Error::InsufficientRights);
                }
                Some((cap.derive()?, slot))
            }
        };
        // All checks passed: replace the thread's slots. Deleting the old
        // capabilities may destroy containers (even the ones the sources
        // live in), so each source is re-checked afterwards, as in seL4.
        let sources = [
            Some((cspace, cspace_src)),
            Some((vspace, vspace_src)),
            buffer,
            fault,
        ];
        let source_slots = sources.map(|s| s.map_or(SlotRef::NONE, |(_, src)| src));
        self.watch(&[
            source_slots[0],
            source_slots[1],
            source_slots[2],
            source_slots[3],
            slot_ref(tcb, 0),
        ]);
        // Deleting may be preempted; the restarted configure finds the
        // slots emptied so far empty and goes on.
        let deleted = [
            slots::CSPACE,
            slots::VSPACE,
            slots::IPC_BUFFER,
            slots::FAULT_HANDLER,
        ]
        .into_iter()
        .try_for_each(|index| {
            if self.watched_alive(4) {
                self.delete(slot_ref(tcb, index))
            } else {
                Ok(())
            }
        });
        if let Err(e) = deleted {
            self.unwatch();
            return Err(e);
        }
        let alive = [0, 1, 2, 3].map(|i| self.watched_alive(i));
        let tcb_alive = self.watched_alive(4);
        self.unwatch();
        if !tcb_alive {
            return Ok(Reply::empty()); // the thread was destroyed with its old CSpace
        }
        let targets = [
            slots::CSPACE,
            slots::VSPACE,
            slots::IPC_BUFFER,
            slots::FAULT_HANDLER,
        ];
        for ((source, target), alive) in sources.into_iter().zip(targets).zip(alive) {
            if let Some((cap, src)) = source
                && alive
                && self.machine.slot(src).cap.same_object(&cap)
            {
                self.install_derived(src, slot_ref(tcb, target), cap);
            }
        }
        self.spaces_changed();
        let t = self.machine.tcb_mut(tcb);
        t.ipc_buffer = ipc_buffer;
        t.max_priority = priority;
        self.set_priority(tcb, priority);
        Ok(Reply::empty())
    }

    /// Changes a thread's priority, requeueing it if it is ready.
    pub fn set_priority(&mut self, tcb: PhysAddr, priority: u8) {
        let queued = self.machine.tcb(tcb).queued || self.scheduler.candidate() == Some(tcb);
        if queued {
            self.scheduler.remove(&mut self.machine, tcb);
        }
        self.machine.tcb_mut(tcb).priority = priority;
        if queued {
            self.scheduler.enqueue(&mut self.machine, tcb);
        }
    }

    /// Makes a configured thread runnable (it runs once it has a
    /// scheduling context with budget). Its address space must fit its
    /// kind: a VSpace for a native thread, a GuestSpace for a Vcpu's.
    pub fn resume(&mut self, tcb: PhysAddr) -> Result<(), Error> {
        if self.thread_space(tcb).is_err() {
            return Err(Error::IllegalOperation);
        }
        if self.machine.tcb(tcb).state == ThreadState::Inactive {
            self.audit.record(
                crate::audit::AuditKind::Lifecycle,
                self.machine.now(),
                tcb,
                0,
                1,
                0,
            );
            self.machine.tcb_mut(tcb).state = ThreadState::Runnable;
            self.make_ready(tcb);
        }
        Ok(())
    }

    /// Stops a thread (it stays configured and can be resumed); a blocking
    /// IPC it was in returns `Cancelled` when it resumes.
    pub fn suspend(&mut self, tcb: PhysAddr) {
        if self.machine.tcb(tcb).state != ThreadState::Inactive {
            self.audit.record(
                crate::audit::AuditKind::Lifecycle,
                self.machine.now(),
                tcb,
                0,
                2,
                0,
            );
        }
        self.cancel_ipc(tcb);
        self.scheduler.remove(&mut self.machine, tcb);
        self.machine.tcb_mut(tcb).state = ThreadState::Inactive;
        if self.current == Some(tcb) {
            self.current = None;
        }
    }

    /// The last capability to a thread is gone: stop it and detach it from
    /// its notification and scheduling context.
    pub(crate) fn retire_thread(&mut self, tcb: PhysAddr) {
        self.suspend(tcb);
        self.audit.record(
            crate::audit::AuditKind::Lifecycle,
            self.machine.now(),
            tcb,
            0,
            3,
            0,
        );
        let n = core::mem::take(&mut self.machine.tcb_mut(tcb).bound_notification);
        if n.0 != 0 {
            self.machine.notification_mut(n).bound_tcb = PhysAddr(0);
        }
        let sc = self.machine.tcb(tcb).sched_context;
        if sc.0 != 0 {
            self.unbind_sched_context(sc);
        }
        let vcpu = self.machine.tcb(tcb).vcpu;
        if vcpu.0 != 0 {
            self.dissociate_vcpu(vcpu, false);
        }
    }

    fn bind_notification(&mut self, tcb: PhysAddr, inv: &Invocation<'_>) -> Result<Reply, Error> {
        let (cap, _) = inv.extra_cap(0)?;
        let Cap::Notification { ptr, rights, .. } = cap else {
            return Err(if cap.is_null() {
                Error::InvalidCapability
            } else {
                Error::WrongType
            });
        };
        if !rights.contains(CapRights::READ) {
            return Err(Error::InsufficientRights);
        }
        let n = *self.machine.notification_mut(ptr);
        if self.machine.tcb(tcb).bound_notification.0 != 0 || n.bound_tcb.0 != 0 || n.head.0 != 0 {
            return Err(Error::IllegalOperation);
        }
        self.machine.notification_mut(ptr).bound_tcb = tcb;
        self.machine.tcb_mut(tcb).bound_notification = ptr;
        Ok(Reply::empty())
    }

    fn unbind_notification(&mut self, tcb: PhysAddr) -> Result<Reply, Error> {
        let n = core::mem::take(&mut self.machine.tcb_mut(tcb).bound_notification);
        if n.0 == 0 {
            return Err(Error::IllegalOperation);
        }
        self.machine.notification_mut(n).bound_tcb = PhysAddr(0);
        Ok(Reply::empty())
    }
}
