//! Architecture-neutral kernel entry: events from user space and what the
//! kernel does next.
//!
//! The arch layer decodes an exception into an [`Event`]; [`handle_user_event`]
//! lets the kernel act on it and then resumes a thread or idles. The kernel
//! state is borrowed only for the duration of handling, never across a
//! wait for an interrupt.

use crate::kernel::{self, Next};
use core::fmt;

/// Why the current thread entered the kernel.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// A syscall; number and arguments are in the saved registers.
    Syscall,
    /// A hardware interrupt arrived while the thread ran.
    Interrupt,
    /// The thread executed `wfi`: it has nothing to do until an interrupt.
    WaitForInterrupt,
    /// The thread executed a hint that amounts to a yield (`wfe`).
    Yield,
    /// The thread used the FP/SIMD unit while another thread's state was in it.
    FpAccess,
    /// The thread faulted.
    Fault(UserFault),
    /// A thread running as a Vcpu left the guest for its VMM.
    GuestExit(GuestExit),
}

/// Why a guest exited, in architecture-neutral terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestExitKind {
    /// A hypercall.
    Hypercall,
    /// A trapped secure-monitor call.
    MonitorCall,
    /// An access to guest-physical memory the GuestSpace does not map.
    Memory,
    /// A trapped system-register access.
    SystemRegister,
    /// A physical SError the guest caused, synchronised at its exit.
    SError,
    /// Anything else.
    Other,
}

/// A guest exit, for the Vcpu thread's VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestExit {
    /// Why.
    pub kind: GuestExitKind,
    /// The trapping instruction.
    pub pc: u64,
    /// The raw architectural syndrome (ESR_EL2 on aarch64).
    pub syndrome: u64,
    /// Guest-physical address (memory exits) or call immediate.
    pub address: u64,
}

impl GuestExit {
    /// The exit as a [`skyscope_abi::fault::GUEST_EXIT`] message.
    pub fn message(&self) -> (u64, [u64; skyscope_abi::fault::WORDS]) {
        use skyscope_abi::fault as f;
        let kind = match self.kind {
            GuestExitKind::Hypercall => f::EXIT_HYPERCALL,
            GuestExitKind::MonitorCall => f::EXIT_MONITOR_CALL,
            GuestExitKind::Memory => f::EXIT_MEMORY,
            GuestExitKind::SystemRegister => f::EXIT_SYSTEM_REGISTER,
            GuestExitKind::SError => f::EXIT_SERROR,
            GuestExitKind::Other => f::EXIT_OTHER,
        };
        (f::GUEST_EXIT, [self.pc, self.syndrome, self.address, kind])
    }
}

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guest exit ({:?}) at pc {:#x}, address {:#x} (syndrome {:#x})",
            self.kind, self.pc, self.address, self.syndrome
        )
    }
}

/// What went wrong in a user fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortKind {
    /// No mapping at this level of the walk.
    Translation {
        /// Translation table level that had no entry.
        level: u8,
    },
    /// Access flag clear (the kernel always sets it, so unexpected).
    AccessFlag {
        /// Level of the entry.
        level: u8,
    },
    /// The mapping forbids this access.
    Permission {
        /// Level of the entry.
        level: u8,
    },
    /// Misaligned access.
    Alignment,
    /// Any other fault status code.
    Other {
        /// The raw status code.
        status: u8,
    },
}

/// A user fault in architecture-neutral terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A load, store or instruction fetch the address space does not allow.
    MemoryAbort {
        /// Faulting virtual address (0 if the hardware did not record it).
        address: u64,
        /// A store (as opposed to a load or fetch).
        write: bool,
        /// An instruction fetch.
        instruction: bool,
        /// Why the access failed.
        kind: AbortKind,
    },
    /// An undefined or not-permitted instruction.
    UndefinedInstruction,
    /// Stack pointer misaligned.
    StackAlignment,
    /// A breakpoint instruction.
    Breakpoint {
        /// The instruction's immediate.
        comment: u16,
    },
    /// A synchronous exception the kernel does not classify.
    Unknown,
}

/// A fault taken by a user thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserFault {
    /// What happened.
    pub kind: FaultKind,
    /// Program counter of the faulting instruction.
    pub pc: u64,
    /// The raw architectural syndrome (ESR_EL2 on aarch64).
    pub syndrome: u64,
}

impl UserFault {
    /// The fault as a message for the thread's fault handler
    /// (`skyscope_abi::fault`): label and words.
    pub fn message(&self) -> (u64, [u64; skyscope_abi::fault::WORDS]) {
        use skyscope_abi::fault as f;
        match self.kind {
            FaultKind::MemoryAbort {
                address,
                write,
                instruction,
                ..
            } => {
                let flags = if instruction { f::FLAG_INSTRUCTION } else { 0 }
                    | if write { f::FLAG_WRITE } else { 0 };
                (f::VM_FAULT, [self.pc, address, flags, self.syndrome])
            }
            FaultKind::UndefinedInstruction => (
                f::USER_EXCEPTION,
                [self.pc, self.syndrome, f::KIND_UNDEFINED, 0],
            ),
            FaultKind::Breakpoint { .. } => (
                f::USER_EXCEPTION,
                [self.pc, self.syndrome, f::KIND_BREAKPOINT, 0],
            ),
            FaultKind::StackAlignment => (
                f::USER_EXCEPTION,
                [self.pc, self.syndrome, f::KIND_STACK_ALIGNMENT, 0],
            ),
            FaultKind::Unknown => (
                f::USER_EXCEPTION,
                [self.pc, self.syndrome, f::KIND_OTHER, 0],
            ),
        }
    }
}

impl fmt::Display for AbortKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortKind::Translation { level } => write!(f, "translation fault (level {level})"),
            AbortKind::AccessFlag { level } => write!(f, "access flag fault (level {level})"),
            AbortKind::Permission { level } => write!(f, "permission fault (level {level})"),
            AbortKind::Alignment => f.write_str("alignment fault"),
            AbortKind::Other { status } => write!(f, "fault status {status:#x}"),
        }
    }
}

impl fmt::Display for UserFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FaultKind::MemoryAbort {
                address,
                write,
                instruction,
                kind,
            } => {
                let (what, verb) = match (instruction, write) {
                    (true, _) => ("instruction abort", "fetching"),
                    (false, true) => ("data abort", "writing"),
                    (false, false) => ("data abort", "reading"),
                };
                write!(f, "{what}: {kind} {verb} {address:#x}")?
            }
            FaultKind::UndefinedInstruction => f.write_str("undefined instruction")?,
            FaultKind::StackAlignment => f.write_str("stack pointer misaligned")?,
            FaultKind::Breakpoint { comment } => write!(f, "breakpoint #{comment:#x}")?,
            FaultKind::Unknown => f.write_str("unclassified exception")?,
        }
        write!(f, " at pc {:#x} (syndrome {:#x})", self.pc, self.syndrome)
    }
}

/// Handles an event from the current user thread and continues.
pub fn handle_user_event(event: Event) -> ! {
    let next = kernel::with_state(|s| s.handle(event));
    continue_with(next)
}

/// Handles an IRQ taken in the idle loop (the idle loop then re-checks).
pub fn handle_idle_interrupt() {
    kernel::with_state(|s| s.interrupt());
}

/// Acts on the kernel's decision: resume a thread, or wait.
pub fn continue_with(next: Next) -> ! {
    if next == Next::WaitThenResume {
        crate::arch::wait_for_interrupt();
    }
    loop {
        kernel::enter_current_thread();
        // Nothing runnable: wait for an interrupt to change that.
        crate::arch::wait_for_interrupt();
    }
}
