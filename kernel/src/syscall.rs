//! Syscalls the kernel binary answers itself: the debug services. Every
//! other syscall goes to `skyscope_core::Kernel::syscall`.

use crate::arch::{self, PageTables};
use crate::kernel::{Next, State};
use crate::{console, kprintln};
use skyscope_abi::{Error, Syscall, syscall::DEBUG_WRITE_MAX};
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
    let result = match Syscall::from_number(number) {
        Some(Syscall::DebugWrite) => debug_write(s, t, a0, a1).map(|()| 0),
        Some(Syscall::DebugTimerTicks) => Ok(s.ticks),
        Some(Syscall::DebugFastpath) => {
            s.core.fastpath_enabled = a0 != 0;
            Ok(s.core.counters.fastpath_hits)
        }
        Some(Syscall::DebugCheckInvariants) => Ok(u64::from(!check_invariants(s))),
        Some(Syscall::DebugShutdown) => {
            kprintln!(
                "kernel: shutdown requested by thread {} with status {}",
                s.thread_name(t),
                a0
            );
            s.power.shutdown(a0)
        }
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
fn debug_write(s: &State, t: PhysAddr, address: u64, length: u64) -> Result<(), Error> {
    use skyscope_core::slot::SlotStore;
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
