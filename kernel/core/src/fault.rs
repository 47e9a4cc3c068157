//! Faults as messages: a thread that faults "calls" its fault handler.
//! What a native fault is ([`UserFault`]) is architecture-neutral; each
//! architecture's trap decoding (arm64: `skyscope-el2`) produces it.

use crate::{
    PhysAddr,
    cap::Cap,
    kernel::Kernel,
    machine::Machine,
    object::tcb::{self, ipc_flags},
};
use core::fmt;
use skyscope_abi::{CapRights, fault::WORDS};

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

impl<M: Machine> Kernel<M> {
    /// Delivers a fault of thread `t` (`label` and `words` per
    /// `skyscope_abi::fault`) to its fault endpoint, as a `Call` the
    /// handler answers to restart the thread. Returns `false` if the
    /// thread has no usable fault endpoint; it is then stopped.
    pub fn deliver_fault(&mut self, t: PhysAddr, label: u64, words: [u64; WORDS]) -> bool {
        self.audit.record(
            crate::audit::AuditKind::Fault,
            self.machine.now(),
            t,
            words[0],
            label,
            0,
        );
        let handler = self
            .machine
            .slot(tcb::slot_ref(t, tcb::slots::FAULT_HANDLER))
            .cap;
        let Cap::Endpoint { ptr, badge, rights } = handler else {
            self.suspend(t);
            return false;
        };
        if !rights.contains(CapRights::WRITE) {
            self.suspend(t);
            return false;
        }
        let tcb = self.machine.tcb_mut(t);
        tcb.fault_label = label;
        tcb.fault = words;
        // The kernel always lets the handler answer a fault.
        let flags = ipc_flags::CALL | ipc_flags::GRANT_REPLY | ipc_flags::FAULT;
        self.send_ipc(t, ptr, badge, flags, true);
        true
    }
}
