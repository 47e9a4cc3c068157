//! Kernel entry from EL0 and from guests: the IPC fastpath (the vector
//! code sends `Call` and `ReplyRecv` straight to [`fast_call`] and
//! [`fast_reply_recv`] with their argument registers), and otherwise the
//! syndrome registers read once and the exception turned into one
//! architecture-neutral [`Event`] through `skyscope_el2::trap`, the one
//! decode of every native and guest trap.

use super::exception::{EntryKind, UserContext};
use crate::trap::Event;
use skyscope_abi::fault::{ExitKind, GuestExit};
use skyscope_core::fault::{FaultKind, UserFault};
use skyscope_el2::trap::{Trap, classify_guest, classify_native};

fn read_esr() -> u64 {
    let v: u64;
    // SAFETY: reading ESR_EL2 has no side effects.
    unsafe { core::arch::asm!("mrs {}, esr_el2", out(reg) v, options(nomem, nostack)) };
    v
}

fn read_far() -> u64 {
    let v: u64;
    // SAFETY: reading FAR_EL2 has no side effects.
    unsafe { core::arch::asm!("mrs {}, far_el2", out(reg) v, options(nomem, nostack)) };
    v
}

/// The event a classified trap is; `number` is the syscall number (read
/// by the caller for `svc` only).
fn event(trap: Trap, number: u64) -> Event {
    match trap {
        Trap::Syscall => Event::Syscall { number },
        Trap::FpAccess => Event::FpAccess,
        Trap::WaitForInterrupt => Event::WaitForInterrupt,
        Trap::Yield => Event::Yield,
        Trap::Fault(fault) => Event::Fault(fault),
        Trap::GuestExit(exit) => Event::GuestExit(exit),
        Trap::IdRegisterRead { register, rt } => match skyscope_el2::idregs::index(register) {
            Some(index) => Event::GuestFeatureRead { index, rt },
            None => Event::Fault(UserFault {
                kind: FaultKind::UndefinedInstruction,
                pc: 0,
                syndrome: 0,
            }),
        },
    }
}

/// The IPC fastpath's entry for `Call`: the vector code branches here, on
/// the kernel stack with every register saved, for an `svc` from a native
/// thread whose `x7` is `Call`, with the syscall's argument registers as
/// they arrived (the message words are read from the saved registers
/// where they are delivered). Nothing else has been decoded: the general
/// path takes over if the fastpath does not apply.
pub(super) extern "C" fn fast_call(cptr: u64, info: u64) -> ! {
    debug_assert!(!guest_was_running());
    crate::kernel::fast_call(cptr, info);
    slow_syscall(skyscope_abi::Syscall::Call as u64)
}

/// [`fast_call`] for `ReplyRecv` (`x7` = 2), whose reply capability
/// address is in `x6`.
pub(super) extern "C" fn fast_reply_recv(
    cptr: u64,
    info: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    reply_cptr: u64,
) -> ! {
    debug_assert!(!guest_was_running());
    crate::kernel::fast_reply_recv(cptr, info, reply_cptr);
    slow_syscall(skyscope_abi::Syscall::ReplyRecv as u64)
}

/// The general path of a syscall the fastpath did not take.
#[inline(never)]
fn slow_syscall(number: u64) -> ! {
    crate::trap::handle_user_event(Event::Syscall { number })
}

/// Entry from EL0 or a guest (called by the vector code on the kernel
/// stack) for everything but the fastpath's syscalls.
pub(super) extern "C" fn handle_user_entry(kind: u64, context: *mut UserContext) -> ! {
    if guest_was_running() {
        handle_guest_entry(kind, context);
    }
    // SAFETY: `context` is the current thread's register area the vector
    // code just filled; nothing else refers to it while the kernel runs.
    let context = unsafe { &mut *context };
    let event = match kind {
        k if k == EntryKind::Sync as u64 => {
            let number = context.x[skyscope_abi::regs::SYSCALL_NUMBER];
            let event = event(classify_native(read_esr(), read_far(), context.pc), number);
            if let Event::Fault(fault) = event {
                let (label, words) = fault.message();
                crate::kernel::fast_fault(label, words);
            }
            event
        }
        k if k == EntryKind::Irq as u64 => Event::Interrupt,
        // FIQs are not used on this platform and an SError is an
        // asynchronous external abort: both are charged to the thread.
        k if k == EntryKind::Fiq as u64 || k == EntryKind::SError as u64 => {
            Event::Fault(UserFault {
                kind: FaultKind::Unknown,
                pc: context.pc,
                syndrome: read_esr(),
            })
        }
        _ => unreachable!("the vector code passes only EntryKind values"),
    };
    crate::trap::handle_user_event(event)
}

/// Whether the exception came from a guest: HCR_EL2.TGE is clear only
/// while a guest runs (`vcpu::enter_guest` clears it, every exit sets it).
fn guest_was_running() -> bool {
    let hcr: u64;
    // SAFETY: reading HCR_EL2 has no side effects.
    unsafe { core::arch::asm!("mrs {}, hcr_el2", out(reg) hcr, options(nomem, nostack)) };
    hcr & skyscope_el2::config::HCR_TGE == 0
}

/// Entry from a guest (EL1 or EL0 of a Vcpu thread).
fn handle_guest_entry(kind: u64, context: *mut UserContext) -> ! {
    // Still in the guest's configuration: an SError it caused and that is
    // pending now is the guest's (reported to its VMM), not whatever runs
    // next. The trapping instruction, if any, is retried on resume.
    let serror = super::vcpu::take_pending_serror();
    super::vcpu::restore_host_configuration();
    // SAFETY: `context` is the current thread's register area the vector
    // code just filled; nothing else refers to it while the kernel runs.
    let context = unsafe { &mut *context };
    let trap = match kind {
        k if k == EntryKind::Sync as u64 => Some(classify_guest(
            read_esr(),
            read_far(),
            super::vcpu::read_hpfar(),
            context.pc,
        )),
        _ => None,
    };
    // Every exit names the trapping instruction, and a plain reply retries
    // it (ELR is past an `hvc`).
    if let Some(Trap::GuestExit(exit)) = trap {
        context.pc = exit.pc;
    }
    let guest_exit = |kind, syndrome| {
        Event::GuestExit(GuestExit {
            kind,
            pc: context.pc,
            syndrome,
            address: 0,
        })
    };
    let event = match (serror, trap) {
        (Some(disr), _) => guest_exit(ExitKind::SError, disr),
        (None, Some(trap)) => event(trap, 0),
        (None, None) if kind == EntryKind::Irq as u64 => Event::Interrupt,
        (None, None) if kind == EntryKind::SError as u64 => {
            guest_exit(ExitKind::SError, read_esr())
        }
        (None, None) => guest_exit(ExitKind::Other, read_esr()),
    };
    if let Event::GuestExit(exit) = event {
        crate::kernel::fast_fault(skyscope_abi::fault::GUEST_EXIT, exit.words());
    }
    crate::trap::handle_user_event(event)
}

/// IRQ taken while the kernel waits in its idle loop.
pub(super) extern "C" fn handle_kernel_irq() {
    crate::trap::handle_idle_interrupt();
}

/// Synchronous exception or SError inside the kernel: always a bug.
pub(super) extern "C" fn kernel_fault(stack_pointer: u64) -> ! {
    let elr: u64;
    // SAFETY: reading ELR_EL2 has no side effects.
    unsafe { core::arch::asm!("mrs {}, elr_el2", out(reg) elr, options(nomem, nostack)) };
    panic!(
        "kernel exception: esr={:#x} far={:#x} elr={:#x} sp={:#x}",
        read_esr(),
        read_far(),
        elr,
        stack_pointer
    );
}

/// Unmasks IRQs, waits for one, and masks them again. The IRQ itself is
/// handled by `handle_kernel_irq` before this returns.
pub fn wait_for_interrupt() {
    // SAFETY: the kernel holds no borrowed state across this call (the
    // caller guarantees it), so the IRQ handler may take the kernel state.
    unsafe {
        core::arch::asm!(
            "msr daifclr, #2",
            "wfi",
            "msr daifset, #2",
            options(nostack)
        )
    };
}
