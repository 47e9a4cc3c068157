//! The syscall layer: registers in, IPC or an object invocation, registers out.
//!
//! The architecture recognises the trap as a syscall and hands its number
//! here (having tried the IPC fastpath once); this is the one place that
//! decodes it. Arguments and results travel in the current thread's saved
//! registers (`skyscope_abi::regs`) and IPC buffer. The console, power-off
//! and debug syscalls are here too, each behind its capability; the debug
//! ones only with the `debug-syscalls` feature (absent in the hardened
//! kernel).

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

/// What the kernel binary must still do after a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallOutcome {
    /// Nothing: the thread's registers hold the results (or it blocked).
    Done,
    /// The thread holds the power-control capability and asked to power
    /// the machine off with this status.
    PowerOff(u64),
}

/// Longest console write the kernel copies in one syscall.
const CONSOLE_WRITE_MAX: usize = skyscope_abi::syscall::CONSOLE_WRITE_MAX;
const CONSOLE_READ_MAX: usize = skyscope_abi::syscall::CONSOLE_READ_MAX;

/// The authority a platform syscall needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needed {
    ConsoleWrite,
    ConsoleRead,
    PowerControl,
    #[cfg_attr(not(feature = "debug-syscalls"), allow(dead_code))]
    Debug,
}

impl<M: Machine> Kernel<M> {
    /// Performs syscall `number` for the current thread (the fastpath, if
    /// it applies, was tried before).
    pub fn syscall(&mut self, number: u64) -> SyscallOutcome {
        let Some(t) = self.current else {
            return SyscallOutcome::Done;
        };
        let syscall = Syscall::from_number(number)
            .filter(|s| cfg!(feature = "debug-syscalls") || !s.is_debug());
        let Some(syscall) = syscall else {
            self.unknown_syscall(t, number);
            return SyscallOutcome::Done;
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
            Syscall::ConsoleWrite => {
                let result = self
                    .platform_capability(cptr, Needed::ConsoleWrite)
                    .and_then(|()| self.console_write(t, args[1], args[2]));
                self.set_result(t, result.map(|()| 0));
            }
            Syscall::ConsoleRead => match self.platform_capability(cptr, Needed::ConsoleRead) {
                Ok(()) => self.console_read(t, args[1]),
                Err(e) => self.set_result(t, Err(e)),
            },
            Syscall::ConsoleNotify => {
                let result = self
                    .platform_capability(cptr, Needed::ConsoleRead)
                    .and_then(|()| self.console_notify(args[1]));
                self.set_result(t, result.map(|()| 0));
            }
            Syscall::PowerOff => match self.platform_capability(cptr, Needed::PowerControl) {
                Ok(()) => return SyscallOutcome::PowerOff(args[1]),
                Err(e) => self.set_result(t, Err(e)),
            },
            #[cfg(feature = "debug-syscalls")]
            Syscall::DebugTimerTicks
            | Syscall::DebugFastpath
            | Syscall::DebugCheckInvariants
            | Syscall::DebugInjectGuestSError => {
                let result = self
                    .platform_capability(cptr, Needed::Debug)
                    .map(|()| self.debug_syscall(t, syscall, args[1]));
                self.set_result(t, result);
            }
            #[cfg(not(feature = "debug-syscalls"))]
            _ => self.unknown_syscall(t, number),
        }
        SyscallOutcome::Done
    }

    /// Writes a plain syscall's result (or error code) to `x0`.
    fn set_result(&mut self, t: PhysAddr, result: Result<u64, Error>) {
        let value = result.unwrap_or_else(|e| e.code());
        self.machine.tcb_mut(t).context.set_arg(0, value);
    }

    /// A syscall number the kernel does not know: a fault the thread's
    /// handler may emulate; without a handler the thread gets
    /// `InvalidSyscall`.
    fn unknown_syscall(&mut self, t: PhysAddr, number: u64) {
        let context = self.machine.tcb(t).context;
        let pc = context.register(skyscope_abi::invocation::REG_PC);
        let words = [pc, number, context.arg(0), context.arg(1)];
        if self.has_fault_handler(t) {
            self.deliver_fault(t, skyscope_abi::fault::UNKNOWN_SYSCALL, words);
        } else {
            self.set_result(t, Err(Error::InvalidSyscall));
        }
    }

    /// Whether thread `t` has a fault endpoint.
    pub fn has_fault_handler(&self, t: PhysAddr) -> bool {
        matches!(
            self.machine
                .slot(crate::object::tcb::slot_ref(
                    t,
                    crate::object::tcb::slots::FAULT_HANDLER
                ))
                .cap,
            Cap::Endpoint { .. }
        )
    }

    /// Checks that the capability at `cptr` grants `needed`.
    fn platform_capability(&self, cptr: u64, needed: Needed) -> Result<(), Error> {
        let slot = self.lookup_slot_of_current(cptr)?;
        match (self.machine.slot(slot).cap, needed) {
            (Cap::Null, _) => Err(Error::InvalidCapability),
            (Cap::Console { rights }, Needed::ConsoleWrite | Needed::ConsoleRead) => {
                let right = match needed {
                    Needed::ConsoleRead => CapRights::READ,
                    _ => CapRights::WRITE,
                };
                if rights.contains(right) {
                    Ok(())
                } else {
                    Err(Error::InsufficientRights)
                }
            }
            (Cap::PowerControl, Needed::PowerControl) | (Cap::Debug, Needed::Debug) => Ok(()),
            _ => Err(Error::WrongType),
        }
    }

    /// Copies `length` bytes at the thread's `address` to the console.
    fn console_write(&mut self, t: PhysAddr, address: u64, length: u64) -> Result<(), Error> {
        if length > CONSOLE_WRITE_MAX as u64 {
            return Err(Error::RangeError);
        }
        let space = self.thread_space(t).map_err(|_| Error::InvalidUserBuffer)?;
        let mut buffer = [0u8; CONSOLE_WRITE_MAX];
        let bytes = &mut buffer[..length as usize];
        self.machine.read_user(space, address, bytes)?;
        self.machine.console_write(bytes);
        Ok(())
    }

    /// Hands the thread what the user typed, in registers `x1..x5`.
    fn console_read(&mut self, t: PhysAddr, max: u64) {
        let mut bytes = [0u8; CONSOLE_READ_MAX];
        let take = (max as usize).min(CONSOLE_READ_MAX);
        let n = self.machine.console_read(&mut bytes[..take]);
        let waiting = self.machine.console_waiting();
        let context = &mut self.machine.tcb_mut(t).context;
        context.set_arg(0, 0);
        context.set_arg(1, n as u64);
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            context.set_arg(2 + i, word);
        }
        context.set_arg(6, waiting as u64);
    }

    /// Makes the notification at `cptr` (0: none) the console's listener.
    fn console_notify(&mut self, cptr: u64) -> Result<(), Error> {
        if cptr == 0 {
            self.console_listener = (PhysAddr(0), 0);
            return Ok(());
        }
        let slot = self.lookup_slot_of_current(cptr)?;
        match self.machine.slot(slot).cap {
            Cap::Notification { ptr, badge, rights } if rights.contains(CapRights::WRITE) => {
                self.console_listener = (ptr, badge);
                Ok(())
            }
            Cap::Notification { .. } => Err(Error::InsufficientRights),
            Cap::Null => Err(Error::InvalidCapability),
            _ => Err(Error::WrongType),
        }
    }

    /// Console input arrived (the kernel's UART interrupt): tell the
    /// listener, if any.
    pub fn console_input_arrived(&mut self) {
        let (n, badge) = self.console_listener;
        if n.0 != 0 {
            self.signal(n, badge);
        }
    }

    /// The debugging syscalls (the debug capability was checked).
    #[cfg(feature = "debug-syscalls")]
    fn debug_syscall(&mut self, t: PhysAddr, syscall: Syscall, arg: u64) -> u64 {
        match syscall {
            Syscall::DebugTimerTicks => self.machine.timer_ticks(),
            Syscall::DebugFastpath => {
                self.fastpath_enabled = arg != 0;
                self.counters.fastpath_hits
            }
            Syscall::DebugInjectGuestSError => {
                self.machine.simulate_guest_serror();
                0
            }
            _ => {
                // Everything reachable from the caller's CSpace (the root
                // task's, which holds the debug capability).
                let cspace = self
                    .machine
                    .slot(crate::object::tcb::slot_ref(
                        t,
                        crate::object::tcb::slots::CSPACE,
                    ))
                    .cap;
                let checked = self
                    .machine
                    .check_hardware_invariants()
                    .and_then(|()| self.check_invariants(&[cspace]).map(drop));
                match checked {
                    Ok(()) => 0,
                    Err(violation) => {
                        self.machine.console_write(b"kernel: invariant violated: ");
                        self.machine.console_write(violation.as_bytes());
                        self.machine.console_write(b"\n");
                        1
                    }
                }
            }
        }
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
