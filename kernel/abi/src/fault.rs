//! Fault messages: what a thread's fault handler receives.
//!
//! A fault is delivered as if the faulting thread had made a `Call` on its
//! fault endpoint: the label names the fault, the words describe it, and
//! replying to the message restarts the thread (at the faulting instruction
//! for memory faults and exceptions, after the syscall for unknown
//! syscalls). A handler that does not want the thread to continue
//! suspends or deletes it instead of replying.

/// Label: a memory access the address space does not allow.
/// Words: `[pc, address, flags (FLAG_*), syndrome]`.
pub const VM_FAULT: u64 = 1;
/// Label: a syscall number the kernel does not know.
/// Words: `[pc, syscall number, x0, x1]`.
pub const UNKNOWN_SYSCALL: u64 = 2;
/// Label: an undefined instruction, breakpoint or alignment exception.
/// Words: `[pc, syscall-free syndrome, kind (KIND_*), 0]`.
pub const USER_EXCEPTION: u64 = 3;

/// Number of words in every fault message.
pub const WORDS: usize = 4;

/// VM fault flag: the access was an instruction fetch.
pub const FLAG_INSTRUCTION: u64 = 1 << 0;
/// VM fault flag: the access was a write.
pub const FLAG_WRITE: u64 = 1 << 1;

/// User exception kind: undefined or not permitted instruction.
pub const KIND_UNDEFINED: u64 = 1;
/// User exception kind: breakpoint instruction.
pub const KIND_BREAKPOINT: u64 = 2;
/// User exception kind: misaligned stack pointer.
pub const KIND_STACK_ALIGNMENT: u64 = 3;
/// User exception kind: anything else.
pub const KIND_OTHER: u64 = 4;
