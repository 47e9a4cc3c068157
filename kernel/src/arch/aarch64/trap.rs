//! Decoding of EL2 exceptions (ESR_EL2) into architecture-neutral events.
//!
//! Exception classes and ISS encodings from the Arm ARM, D23.2.41
//! (ESR_EL2) and D17.2 (exception syndromes).

use super::exception::{EntryKind, UserContext};
use crate::trap::{AbortKind, Event, FaultKind, UserFault};
use skyscope_abi::Syscall;

/// ESR_EL2.EC values this kernel distinguishes.
mod ec {
    pub const UNKNOWN: u64 = 0x00;
    pub const WFX: u64 = 0x01;
    pub const FP_ACCESS: u64 = 0x07;
    pub const ILLEGAL_STATE: u64 = 0x0e;
    pub const SVC64: u64 = 0x15;
    pub const HVC64: u64 = 0x16;
    pub const SYSREG: u64 = 0x18;
    pub const SVE: u64 = 0x19;
    pub const INSTRUCTION_ABORT_LOWER: u64 = 0x20;
    pub const PC_ALIGNMENT: u64 = 0x22;
    pub const DATA_ABORT_LOWER: u64 = 0x24;
    pub const SP_ALIGNMENT: u64 = 0x26;
    pub const BRK64: u64 = 0x3c;
}

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

/// Decodes the data/instruction fault status code (ISS.DFSC/IFSC, 6 bits).
fn abort_kind(fsc: u64) -> AbortKind {
    let level = (fsc & 0b11) as u8;
    match fsc >> 2 {
        0b0001 => AbortKind::Translation { level },
        0b0010 => AbortKind::AccessFlag { level },
        0b0011 => AbortKind::Permission { level },
        _ if fsc == 0b10_0001 => AbortKind::Alignment,
        _ => AbortKind::Other { status: fsc as u8 },
    }
}

/// Turns a synchronous exception from EL0 into an event.
pub fn decode_sync(esr: u64, far: u64, pc: u64) -> Event {
    let class = esr >> 26;
    let iss = esr & 0x1ff_ffff;
    let fault = |kind| {
        Event::Fault(UserFault {
            kind,
            pc,
            syndrome: esr,
        })
    };
    match class {
        ec::SVC64 => Event::Syscall,
        ec::FP_ACCESS => Event::FpAccess,
        ec::WFX if iss & 0b11 == 0 => Event::WaitForInterrupt,
        ec::WFX => Event::Yield, // WFE/WFET: nothing to wait for but a yield
        ec::DATA_ABORT_LOWER | ec::INSTRUCTION_ABORT_LOWER => {
            let instruction = class == ec::INSTRUCTION_ABORT_LOWER;
            // FnV (bit 10): FAR is not valid; report 0 rather than garbage.
            let address = if iss & (1 << 10) != 0 { 0 } else { far };
            fault(FaultKind::MemoryAbort {
                address,
                write: !instruction && iss & (1 << 6) != 0,
                instruction,
                kind: abort_kind(iss & 0x3f),
            })
        }
        ec::UNKNOWN | ec::SYSREG | ec::SVE | ec::ILLEGAL_STATE => {
            fault(FaultKind::UndefinedInstruction)
        }
        ec::PC_ALIGNMENT => fault(FaultKind::MemoryAbort {
            address: far,
            write: false,
            instruction: true,
            kind: AbortKind::Alignment,
        }),
        ec::SP_ALIGNMENT => fault(FaultKind::StackAlignment),
        ec::BRK64 => fault(FaultKind::Breakpoint {
            comment: (iss & 0xffff) as u16,
        }),
        _ => fault(FaultKind::Unknown),
    }
}

/// Entry from EL0 (called by the vector code on the kernel stack).
pub(super) extern "C" fn handle_user_entry(kind: u64, context: *mut UserContext) -> ! {
    if guest_was_running() {
        handle_guest_entry(kind, context);
    }
    if kind == EntryKind::Sync as u64 {
        let esr = read_esr();
        // SAFETY: `context` is the current thread's register area the vector
        // code just filled; only x7 (the syscall number) is read here.
        let number = unsafe { (*context).x[skyscope_abi::regs::SYSCALL_NUMBER] };
        if esr >> 26 == ec::SVC64
            && (number == Syscall::Call as u64 || number == Syscall::ReplyRecv as u64)
            && crate::kernel::try_fastpath(number)
        {
            crate::trap::continue_with(crate::kernel::Next::Resume);
        }
    }
    let event = match kind {
        k if k == EntryKind::Sync as u64 => {
            // SAFETY: `context` is the current thread's register area the
            // vector code just filled; only its pc is read here.
            let pc = unsafe { (*context).pc };
            decode_sync(read_esr(), read_far(), pc)
        }
        k if k == EntryKind::Irq as u64 => Event::Interrupt,
        // FIQs are not used on this platform and an SError is an
        // asynchronous external abort: both are charged to the thread.
        k if k == EntryKind::Fiq as u64 || k == EntryKind::SError as u64 => {
            // SAFETY: as above.
            let pc = unsafe { (*context).pc };
            Event::Fault(UserFault {
                kind: FaultKind::Unknown,
                pc,
                syndrome: read_esr(),
            })
        }
        _ => unreachable!("vector code passes only EntryKind values"),
    };
    crate::trap::handle_user_event(event)
}

/// Whether the exception came from a guest: HCR_EL2.TGE is clear only
/// while a guest runs (`vcpu::enter_guest` clears it, every exit sets it).
fn guest_was_running() -> bool {
    let hcr: u64;
    // SAFETY: reading HCR_EL2 has no side effects.
    unsafe { core::arch::asm!("mrs {}, hcr_el2", out(reg) hcr, options(nomem, nostack)) };
    hcr & (1 << 27) == 0
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
    let guest_serror = |pc, syndrome| {
        Event::GuestExit(crate::trap::GuestExit {
            kind: crate::trap::GuestExitKind::SError,
            pc,
            syndrome,
            address: 0,
        })
    };
    let event = match kind {
        _ if let Some(disr) = serror => {
            if kind == EntryKind::Sync as u64 && read_esr() >> 26 == ec::HVC64 {
                // ELR is past the `hvc`: retry it after the SError.
                context.pc = context.pc.wrapping_sub(4);
            }
            guest_serror(context.pc, disr)
        }
        k if k == EntryKind::SError as u64 => guest_serror(context.pc, read_esr()),
        k if k == EntryKind::Sync as u64 => super::vcpu::decode_guest_sync(
            read_esr(),
            read_far(),
            super::vcpu::read_hpfar(),
            context,
        ),
        k if k == EntryKind::Irq as u64 => Event::Interrupt,
        _ => Event::GuestExit(crate::trap::GuestExit {
            kind: crate::trap::GuestExitKind::Other,
            pc: context.pc,
            syndrome: read_esr(),
            address: 0,
        }),
    };
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
