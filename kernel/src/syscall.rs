//! Syscalls the kernel binary answers itself: console output, power off
//! and (except in the `hardened` kernel) the debug services, each with a
//! capability that only the root task is given at boot. Every other
//! syscall goes to `skyscope_core::Kernel::syscall`.

use crate::arch::{self, PageTables};
use crate::kernel::{Next, State};
use crate::{console, kprintln};
use skyscope_abi::{CapRights, Error, Syscall, syscall::CONSOLE_WRITE_MAX};
use skyscope_core::{PhysAddr, VirtAddr, cap::Cap, machine::Machine, object::tcb};

/// Handles the syscall the current thread made.
pub fn handle(s: &mut State) -> Next {
    let Some(t) = s.core.current else {
        return Next::Resume;
    };
    let context = s.core.machine.tcb(t).context;
    let (number, a0, a1) = (context.syscall_number(), context.arg(0), context.arg(1));
    if s.core.syscall(number) {
        return Next::Resume;
    }
    let syscall = Syscall::from_number(number)
        .filter(|call| !(call.is_debug() && cfg!(feature = "hardened")));
    let result = match syscall {
        Some(Syscall::ConsoleWrite) => capability(s, a0, Needed::ConsoleWrite)
            .and_then(|()| console_write(s, t, a1, context.arg(2)))
            .map(|()| 0),
        Some(Syscall::PowerOff) => match capability(s, a0, Needed::PowerControl) {
            Ok(()) => {
                kprintln!(
                    "kernel: power off requested by thread {} with status {}",
                    s.thread_name(t),
                    a1
                );
                s.power.shutdown(a1)
            }
            Err(e) => Err(e),
        },
        Some(call) if call.is_debug() => capability(s, a0, Needed::Debug).map(|()| match call {
            Syscall::DebugTimerTicks => s.ticks,
            Syscall::DebugFastpath => {
                s.core.fastpath_enabled = a1 != 0;
                s.core.counters.fastpath_hits
            }
            Syscall::DebugInjectGuestSError => {
                arch::vcpu::simulate_serror_at_next_exit();
                0
            }
            _ => u64::from(!check_invariants(s)),
        }),
        _ => {
            // An unknown syscall is a fault the handler may emulate; without
            // a handler the thread gets an error code.
            let pc = context.pc;
            let words = [pc, number, a0, a1];
            if has_fault_handler(s, t) {
                s.core
                    .deliver_fault(t, skyscope_abi::fault::UNKNOWN_SYSCALL, words);
                return Next::Resume;
            }
            Err(Error::InvalidSyscall)
        }
    };
    let value = result.unwrap_or_else(|e| e.code());
    s.core.machine.tcb_mut(t).context.set_result(0, value);
    Next::Resume
}

/// The authority behind a syscall the kernel binary answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needed {
    /// A console capability with WRITE.
    ConsoleWrite,
    /// The power-control capability.
    PowerControl,
    /// The debug capability.
    Debug,
}

/// Checks that the capability at `cptr` in the current thread's CSpace
/// grants `needed`.
fn capability(s: &State, cptr: u64, needed: Needed) -> Result<(), Error> {
    use skyscope_core::slot::SlotStore;
    let slot = s.core.lookup_slot_of_current(cptr)?;
    match (s.core.machine.slot(slot).cap, needed) {
        (Cap::Null, _) => Err(Error::InvalidCapability),
        (Cap::Console { rights }, Needed::ConsoleWrite) => {
            if rights.contains(CapRights::WRITE) {
                Ok(())
            } else {
                Err(Error::InsufficientRights)
            }
        }
        (Cap::PowerControl, Needed::PowerControl) | (Cap::Debug, Needed::Debug) => Ok(()),
        _ => Err(Error::WrongType),
    }
}

/// Checks the kernel invariants over everything reachable from the root
/// task's CSpace (and the scheduler's queues); prints the first violation.
pub fn check_invariants(s: &mut State) -> bool {
    use skyscope_core::slot::SlotStore;
    if !arch::pan_enabled() {
        kprintln!("kernel: invariant violated: PSTATE.PAN is clear inside the kernel");
        return false;
    }
    let Some(root) = crate::kernel::ROOT_TCB.get() else {
        return false;
    };
    let cspace = s
        .core
        .machine
        .slot(tcb::slot_ref(root, tcb::slots::CSPACE))
        .cap;
    match s.core.check_invariants(&[cspace]) {
        Ok(_) => true,
        Err(violation) => {
            kprintln!("kernel: invariant violated: {violation}");
            false
        }
    }
}

/// Whether thread `t` has a fault endpoint.
pub fn has_fault_handler(s: &State, t: PhysAddr) -> bool {
    use skyscope_core::slot::SlotStore;
    matches!(
        s.core
            .machine
            .slot(tcb::slot_ref(t, tcb::slots::FAULT_HANDLER))
            .cap,
        Cap::Endpoint { .. }
    )
}

/// Copies `length` bytes at user address `address` to the console,
/// checking each page is mapped readable for the thread.
fn console_write(s: &State, t: PhysAddr, address: u64, length: u64) -> Result<(), Error> {
    use skyscope_core::slot::SlotStore;
    if length > CONSOLE_WRITE_MAX as u64 {
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
    let mut buffer = [0u8; CONSOLE_WRITE_MAX];
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
