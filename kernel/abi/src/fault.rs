//! Fault messages: what a thread's fault handler receives.
//!
//! A fault is delivered as if the faulting thread had made a `Call` on its
//! fault endpoint: the label names the fault, the words describe it, and
//! replying to the message restarts the thread (at the faulting instruction
//! for memory faults, exceptions and guest exits, after the syscall for
//! unknown syscalls). Word 0 of the reply may ask for more (`REPLY_*`
//! flags). A handler that does not want the thread to continue suspends
//! or deletes it instead of replying.

/// Label: a memory access the address space does not allow.
/// Words: `[pc, address, flags (FLAG_*), syndrome]`.
pub const VM_FAULT: u64 = 1;
/// Label: a syscall number the kernel does not know.
/// Words: `[pc, syscall number, x0, x1]`.
pub const UNKNOWN_SYSCALL: u64 = 2;
/// Label: an undefined instruction, breakpoint or alignment exception.
/// Words: `[pc, syscall-free syndrome, kind (KIND_*), 0]`.
pub const USER_EXCEPTION: u64 = 3;

/// Label: a thread running as a Vcpu left the guest for a reason its VMM
/// must handle. Words: `[pc, syndrome, address, kind (EXIT_*)]`; `pc` is
/// the trapping instruction (for a hypercall too), `address` the
/// guest-physical address of a memory exit or the immediate of a call.
pub const GUEST_EXIT: u64 = 4;

/// Guest exit: a hypercall (`hvc` on arm64, `vmcall` on x86_64).
pub const EXIT_HYPERCALL: u64 = 1;
/// Guest exit: a secure-monitor call (`smc` on arm64), trapped.
pub const EXIT_MONITOR_CALL: u64 = 2;
/// Guest exit: an access to a guest-physical address with no mapping (or
/// a mapping that forbids it) in the GuestSpace: MMIO to emulate.
pub const EXIT_MEMORY: u64 = 3;
/// Guest exit: a trapped system-register access.
pub const EXIT_SYSTEM_REGISTER: u64 = 4;
/// Guest exit: anything else the kernel does not handle itself.
pub const EXIT_OTHER: u64 = 5;
/// Guest exit: a physical SError (asynchronous external abort) the guest
/// caused; `syndrome` is DISR_EL1 (or ESR_EL2) as the kernel read it. The
/// kernel takes it at the guest's exit so it is never charged to another
/// thread; the trapping instruction, if any, runs again on resume.
pub const EXIT_SERROR: u64 = 6;

/// Fault reply flag (word 0 of the reply): resume after the faulting
/// instruction instead of retrying it.
pub const REPLY_SKIP_INSTRUCTION: u64 = 1 << 0;
/// Fault reply flag: set register `word 1` (`invocation::REG_*` index) to
/// `word 2` before resuming (e.g. the result of an emulated load); the
/// reply must carry all three words.
pub const REPLY_SET_REGISTER: u64 = 1 << 1;

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
