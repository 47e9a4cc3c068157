//! The syscall layer: registers in, IPC or an object invocation, registers out.
//!
//! The architecture decodes the trap and hands the syscall number here;
//! arguments and results travel in the current thread's saved registers
//! (`skyscope_abi::regs`) and IPC buffer. Debug syscalls stay with the
//! kernel binary.

use crate::{
    PhysAddr,
    cap::{Cap, SlotRef},
    ipc::buffer_message_words,
    kernel::{Invocation, Kernel},
    machine::{Machine, ThreadContext},
    object::tcb::ipc_flags,
};
use skyscope_abi::{
    CapRights, Error, MessageInfo, Syscall,
    invocation::IPC_BUFFER_CAPS_OFFSET,
    message::{MAX_EXTRA_CAPS, MAX_MESSAGE_WORDS, REGISTER_MESSAGE_WORDS},
    regs,
};

impl<M: Machine> Kernel<M> {
    /// Performs syscall `number` for the current thread. Returns `false` if
    /// the number is not one of the core's syscalls (the binary handles
    /// debug syscalls and reports unknown ones).
    pub fn syscall(&mut self, number: u64) -> bool {
        if self.fastpath(number) {
            return true;
        }
        let Some(t) = self.current else { return true };
        let Some(syscall) = Syscall::from_number(number) else {
            return false;
        };
        let args = self.machine.tcb(t).context.syscall_args();
        let (cptr, reply_cptr) = (args[0], args[regs::REPLY_CAP]);
        match syscall {
            Syscall::Call => self.call(t, cptr, true),
            Syscall::Send => self.call(t, cptr, false),
            Syscall::NBSend => self.nb_send(t, cptr),
            Syscall::Recv | Syscall::NBRecv => {
                self.recv(t, cptr, reply_cptr, syscall == Syscall::Recv)
            }
            Syscall::Reply => {
                if let Err(e) = self.reply(t, reply_cptr) {
                    self.set_status(t, Err(e));
                } else {
                    self.set_status(t, Ok(()));
                }
            }
            Syscall::ReplyRecv => match self.reply(t, reply_cptr) {
                Ok(()) => self.recv(t, cptr, reply_cptr, true),
                Err(e) => self.fail(t, e),
            },
            Syscall::Yield => {
                self.rotate_current();
            }
            _ => return false,
        }
        true
    }

    /// A syscall-level failure: status and message label carry the error.
    fn fail(&mut self, t: PhysAddr, e: Error) {
        let args = self.machine.tcb(t).context.syscall_args();
        let label = MessageInfo::from_raw(args[regs::MESSAGE_INFO]).label();
        self.audit.record(
            crate::audit::AuditKind::Denied,
            self.machine.now(),
            t,
            args[0],
            label,
            e.code(),
        );
        let context = &mut self.machine.tcb_mut(t).context;
        context.set_arg(0, 0);
        context.set_arg(regs::MESSAGE_INFO, MessageInfo::new(e.code(), 0, 0).raw());
        self.set_status(t, Err(e));
    }

    fn lookup(&self, cptr: u64) -> Result<(SlotRef, Cap), Error> {
        let slot = self.lookup_slot_of_current(cptr)?;
        match self.machine.slot(slot).cap {
            Cap::Null => Err(Error::InvalidCapability),
            cap => Ok((slot, cap)),
        }
    }

    /// `Call` or `Send`: IPC on endpoints, signal on notifications,
    /// invocation on every other object.
    fn call(&mut self, t: PhysAddr, cptr: u64, call: bool) {
        let (slot, cap) = match self.lookup(cptr) {
            Ok(found) => found,
            Err(e) => return self.fail(t, e),
        };
        match cap {
            Cap::Endpoint { ptr, badge, rights } => {
                if !rights.contains(CapRights::WRITE) {
                    return self.fail(t, Error::InsufficientRights);
                }
                let mut flags = 0;
                if rights.contains(CapRights::GRANT) {
                    flags |= ipc_flags::GRANT | ipc_flags::GRANT_REPLY;
                }
                if rights.contains(CapRights::GRANT_REPLY) {
                    flags |= ipc_flags::GRANT_REPLY;
                }
                if call {
                    if flags & ipc_flags::GRANT_REPLY == 0 {
                        return self.fail(t, Error::InsufficientRights);
                    }
                    flags |= ipc_flags::CALL;
                }
                self.send_ipc(t, ptr, badge, flags, true);
            }
            Cap::Notification { ptr, badge, rights } => {
                if !rights.contains(CapRights::WRITE) {
                    return self.fail(t, Error::InsufficientRights);
                }
                self.signal(ptr, badge);
                self.set_status(t, Ok(()));
            }
            _ => self.invoke_from_registers(t, slot),
        }
    }

    fn nb_send(&mut self, t: PhysAddr, cptr: u64) {
        match self.lookup(cptr) {
            Ok((_, Cap::Endpoint { ptr, badge, rights })) if rights.contains(CapRights::WRITE) => {
                let flags = if rights.contains(CapRights::GRANT) {
                    ipc_flags::GRANT
                } else {
                    0
                };
                self.send_ipc(t, ptr, badge, flags, false);
            }
            Ok((_, Cap::Notification { ptr, badge, rights }))
                if rights.contains(CapRights::WRITE) =>
            {
                self.signal(ptr, badge);
                self.set_status(t, Ok(()));
            }
            Ok((_, Cap::Endpoint { .. } | Cap::Notification { .. })) => {
                self.fail(t, Error::InsufficientRights)
            }
            Ok(_) => self.fail(t, Error::WrongType),
            Err(e) => self.fail(t, e),
        }
    }

    fn recv(&mut self, t: PhysAddr, cptr: u64, reply_cptr: u64, blocking: bool) {
        let reply = match reply_cptr {
            0 => Ok(PhysAddr(0)),
            r => match self.lookup(r) {
                Ok((_, Cap::Reply { ptr, .. })) => Ok(ptr),
                Ok(_) => Err(Error::WrongType),
                Err(e) => Err(e),
            },
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => return self.fail(t, e),
        };
        match self.lookup(cptr) {
            Ok((_, Cap::Endpoint { ptr, rights, .. })) if rights.contains(CapRights::READ) => {
                self.receive_ipc(t, ptr, reply, blocking)
            }
            Ok((_, Cap::Notification { ptr, rights, .. })) if rights.contains(CapRights::READ) => {
                self.wait_notification(t, ptr, blocking)
            }
            Ok((_, Cap::Endpoint { .. } | Cap::Notification { .. })) => {
                self.fail(t, Error::InsufficientRights)
            }
            Ok(_) => self.fail(t, Error::WrongType),
            Err(e) => self.fail(t, e),
        }
    }

    fn reply(&mut self, t: PhysAddr, reply_cptr: u64) -> Result<(), Error> {
        if reply_cptr == 0 {
            return Ok(());
        }
        match self.lookup(reply_cptr)? {
            (_, Cap::Reply { ptr, .. }) => {
                self.do_reply(t, ptr);
                Ok(())
            }
            _ => Err(Error::WrongType),
        }
    }

    /// An invocation of the kernel object in `slot`, decoded from the
    /// caller's registers and IPC buffer; the reply goes back the same way.
    fn invoke_from_registers(&mut self, t: PhysAddr, slot: SlotRef) {
        let context = self.machine.tcb(t).context.syscall_args();
        let info = MessageInfo::from_raw(context[regs::MESSAGE_INFO]);
        let buffer = self.ipc_buffer_address(t);
        let mut args = [0u64; MAX_MESSAGE_WORDS];
        let mut length = info.length();
        for (i, a) in args.iter_mut().take(REGISTER_MESSAGE_WORDS).enumerate() {
            *a = context[regs::FIRST_MESSAGE_REGISTER + i];
        }
        if length > REGISTER_MESSAGE_WORDS {
            match buffer.and_then(buffer_message_words) {
                Some(at) => {
                    self.machine
                        .read_words(at, &mut args[REGISTER_MESSAGE_WORDS..length]);
                }
                None => length = REGISTER_MESSAGE_WORDS,
            }
        }
        let result = (|| {
            let mut extra = [(Cap::Null, SlotRef::NONE); MAX_EXTRA_CAPS];
            let count = info.extra_caps();
            if count > 0 {
                let caps = buffer
                    .and_then(|b| b.sub(IPC_BUFFER_CAPS_OFFSET as u64, 8 * count as u64))
                    .ok_or(Error::TruncatedMessage)?;
                let mut cptrs = [0u64; MAX_EXTRA_CAPS];
                self.machine.read_words(caps, &mut cptrs[..count]);
                for (e, &c) in extra.iter_mut().zip(&cptrs[..count]) {
                    let s = self.lookup_slot_of_current(c)?;
                    *e = (self.machine.slot(s).cap, s);
                }
            }
            self.caller = Some(t);
            self.caller_destroyed = false;
            let inv = Invocation {
                label: info.label(),
                args: &args[..length],
                extra_caps: &extra[..count],
            };
            self.invoke(slot, &inv)
        })();
        self.caller = None;
        if core::mem::take(&mut self.caller_destroyed) {
            return; // the caller deleted its own thread
        }
        if result == Err(Error::Preempted) {
            // An interrupt is waiting: leave the registers as they are and
            // let the thread issue the syscall again after it; the
            // operation continues from the state it reached.
            self.machine.tcb_mut(t).context.restart_syscall();
            return;
        }
        if let Err(e) = result {
            self.audit.record(
                crate::audit::AuditKind::Denied,
                self.machine.now(),
                t,
                context[0],
                info.label(),
                e.code(),
            );
        }
        let (label, words) = match &result {
            Ok(reply) => (0, reply.words()),
            Err(e) => (e.code(), &[][..]),
        };
        let mut sent = words.len().min(REGISTER_MESSAGE_WORDS);
        if words.len() > REGISTER_MESSAGE_WORDS
            && let Some(at) = self.ipc_buffer_address(t).and_then(buffer_message_words)
        {
            self.machine
                .write_words(at, &words[REGISTER_MESSAGE_WORDS..]);
            sent = words.len();
        }
        let context = &mut self.machine.tcb_mut(t).context;
        context.set_arg(0, 0);
        context.set_arg(regs::MESSAGE_INFO, MessageInfo::new(label, sent, 0).raw());
        for i in 0..REGISTER_MESSAGE_WORDS {
            context.set_arg(
                regs::FIRST_MESSAGE_REGISTER + i,
                words.get(i).copied().unwrap_or(0),
            );
        }
        context.set_arg(regs::STATUS, 0);
    }
}
