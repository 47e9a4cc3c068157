//! Syscall decoding: registers and IPC buffer in, object invocations and
//! debug services out.

use crate::arch::{self, PageTables};
use crate::kernel::{Next, State};
use crate::{console, kprintln};
use skyscope_abi::{
    Error, MessageInfo, Syscall,
    invocation::{IPC_BUFFER_CAPS_OFFSET, IPC_BUFFER_MSG_OFFSET, IpcBuffer},
    message::{MAX_EXTRA_CAPS, MAX_MESSAGE_WORDS, REGISTER_MESSAGE_WORDS},
    syscall::DEBUG_WRITE_MAX,
};
use skyscope_core::{
    Invocation, PhysAddr, VirtAddr,
    cap::{Cap, SlotRef},
    machine::Machine,
    object::tcb,
    slot::SlotStore,
};
use zerocopy::IntoBytes;

/// Handles the syscall the current thread made.
pub fn handle(s: &mut State) -> Next {
    let Some(t) = s.core.current else {
        return Next::Resume;
    };
    let context = &s.core.machine.tcb(t).context;
    let (number, a0, a1) = (context.syscall_number(), context.arg(0), context.arg(1));
    let result = match Syscall::from_number(number) {
        None => Err(Error::InvalidSyscall),
        Some(Syscall::Call) => {
            call(s, t);
            return Next::Resume;
        }
        Some(Syscall::Yield) => {
            s.core.rotate_current();
            Ok(0)
        }
        Some(Syscall::DebugWrite) => debug_write(s, t, a0, a1).map(|()| 0),
        Some(Syscall::DebugTimerTicks) => Ok(s.ticks),
        Some(Syscall::DebugShutdown) => {
            kprintln!(
                "kernel: shutdown requested by thread {} with status {}",
                s.thread_name(t),
                a0
            );
            s.power.shutdown(a0)
        }
    };
    let value = result.unwrap_or_else(|e| e.code());
    s.core.machine.tcb_mut(t).context.set_result(0, value);
    Next::Resume
}

/// Where thread `t`'s IPC buffer is in physical memory, if it has one that
/// lies wholly inside its IPC-buffer frame.
fn ipc_buffer(s: &State, t: PhysAddr) -> Option<PhysAddr> {
    let address = s.core.machine.tcb(t).ipc_buffer;
    let Cap::Frame { base, size, .. } = s
        .core
        .machine
        .slot(tcb::slot_ref(t, tcb::slots::IPC_BUFFER))
        .cap
    else {
        return None;
    };
    let offset = address & (size.bytes() - 1);
    (address != 0 && offset + core::mem::size_of::<IpcBuffer>() as u64 <= size.bytes())
        .then(|| PhysAddr(base.0 + offset))
}

/// `Call` on a kernel object: look up the capability and the extra
/// capabilities, invoke, and write the reply into the caller's registers
/// and IPC buffer.
fn call(s: &mut State, t: PhysAddr) {
    let context = s.core.machine.tcb(t).context;
    let cptr = context.arg(0);
    let info = MessageInfo::from_raw(context.arg(1));
    let buffer = ipc_buffer(s, t);
    let mut args = [0u64; MAX_MESSAGE_WORDS];
    let mut length = info.length();
    for (i, a) in args.iter_mut().take(REGISTER_MESSAGE_WORDS).enumerate() {
        *a = context.arg(skyscope_abi::regs::FIRST_MESSAGE_REGISTER + i);
    }
    if length > REGISTER_MESSAGE_WORDS {
        match buffer {
            Some(b) => arch::copy_from_phys(
                PhysAddr(b.0 + (IPC_BUFFER_MSG_OFFSET + 8 * REGISTER_MESSAGE_WORDS) as u64),
                args[REGISTER_MESSAGE_WORDS..length].as_mut_bytes(),
            ),
            None => length = REGISTER_MESSAGE_WORDS,
        }
    }
    let result = (|| {
        let slot = s.core.lookup_slot_of_current(cptr)?;
        let mut extra = [(Cap::Null, SlotRef::NONE); MAX_EXTRA_CAPS];
        let count = info.extra_caps();
        if count > 0 {
            let b = buffer.ok_or(Error::TruncatedMessage)?;
            let mut cptrs = [0u64; MAX_EXTRA_CAPS];
            arch::copy_from_phys(
                PhysAddr(b.0 + IPC_BUFFER_CAPS_OFFSET as u64),
                cptrs[..count].as_mut_bytes(),
            );
            for (e, &c) in extra.iter_mut().zip(&cptrs[..count]) {
                let slot = s.core.lookup_slot_of_current(c)?;
                *e = (s.core.machine.slot(slot).cap, slot);
            }
        }
        s.core.machine.watch_tcb = Some(t);
        let inv = Invocation {
            label: info.label(),
            args: &args[..length],
            extra_caps: &extra[..count],
        };
        s.core.invoke(slot, &inv)
    })();
    let caller_alive = !core::mem::take(&mut s.core.machine.watched_tcb_destroyed);
    s.core.machine.watch_tcb = None;
    if !caller_alive {
        return; // the caller deleted its own thread
    }
    let (label, words) = match &result {
        Ok(reply) => (0, reply.words()),
        Err(e) => (e.code(), &[][..]),
    };
    let buffer = ipc_buffer(s, t);
    let mut sent = words.len().min(REGISTER_MESSAGE_WORDS);
    if words.len() > REGISTER_MESSAGE_WORDS
        && let Some(b) = buffer
    {
        let rest = &words[REGISTER_MESSAGE_WORDS..];
        arch::copy_to_phys(
            PhysAddr(b.0 + (IPC_BUFFER_MSG_OFFSET + 8 * REGISTER_MESSAGE_WORDS) as u64),
            rest.as_bytes(),
        );
        sent = words.len();
    }
    let context = &mut s.core.machine.tcb_mut(t).context;
    context.set_result(0, 0);
    context.set_result(1, MessageInfo::new(label, sent, 0).raw());
    for i in 0..REGISTER_MESSAGE_WORDS {
        context.set_result(2 + i, words.get(i).copied().unwrap_or(0));
    }
}

/// Copies `length` bytes at user address `address` to the console,
/// checking each page is mapped readable for the thread.
fn debug_write(s: &State, t: PhysAddr, address: u64, length: u64) -> Result<(), Error> {
    if length > DEBUG_WRITE_MAX as u64 {
        return Err(Error::RangeError);
    }
    let Cap::VSpace { ptr, .. } = s
        .core
        .machine
        .slot(tcb::slot_ref(t, tcb::slots::VSPACE))
        .cap
    else {
        return Err(Error::InvalidUserBuffer);
    };
    let mut buffer = [0u8; DEBUG_WRITE_MAX];
    copy_from_user(
        &PageTables::user(ptr),
        address,
        &mut buffer[..length as usize],
    )?;
    console::write_bytes(&buffer[..length as usize]);
    Ok(())
}

/// Copies user memory at `address` into `out`, page by page, through the
/// physmap after checking the thread's own page tables allow EL0 to read.
pub fn copy_from_user(space: &PageTables, address: u64, out: &mut [u8]) -> Result<(), Error> {
    let mut done = 0;
    while done < out.len() {
        let va = address
            .checked_add(done as u64)
            .ok_or(Error::InvalidUserBuffer)?;
        let pa = space
            .user_access(VirtAddr(va), false)
            .ok_or(Error::InvalidUserBuffer)?;
        let in_page = (skyscope_core::addr::PAGE_SIZE - (va & 0xfff)) as usize;
        let n = in_page.min(out.len() - done);
        arch::copy_from_phys(pa, &mut out[done..done + n]);
        done += n;
    }
    Ok(())
}
