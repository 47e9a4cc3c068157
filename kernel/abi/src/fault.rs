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

/// Why a guest exited to its VMM: word 3 of a [`GUEST_EXIT`] message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ExitKind {
    /// A hypercall (`hvc` on arm64, `vmcall` on x86_64); `address` holds
    /// the immediate.
    Hypercall = 1,
    /// A secure-monitor call (`smc` on arm64), trapped; `address` holds
    /// the immediate.
    MonitorCall = 2,
    /// An access to a guest-physical address with no mapping (or a
    /// mapping that forbids it) in the GuestSpace: MMIO to emulate;
    /// `address` holds the guest-physical address.
    Memory = 3,
    /// A trapped system-register access.
    SystemRegister = 4,
    /// Anything else the kernel does not handle itself.
    Other = 5,
    /// A physical SError (asynchronous external abort) the guest caused;
    /// `syndrome` is DISR_EL1 (or ESR_EL2) as the kernel read it. The
    /// kernel takes it at the guest's exit so it is never charged to
    /// another thread; the trapping instruction, if any, runs again on
    /// resume.
    SError = 6,
}

impl ExitKind {
    /// Every kind.
    pub const ALL: [ExitKind; 6] = [
        ExitKind::Hypercall,
        ExitKind::MonitorCall,
        ExitKind::Memory,
        ExitKind::SystemRegister,
        ExitKind::Other,
        ExitKind::SError,
    ];

    /// Decodes a kind word.
    pub fn from_word(w: u64) -> Option<ExitKind> {
        ExitKind::ALL.into_iter().find(|k| *k as u64 == w)
    }
}

/// One guest exit: the layout of a [`GUEST_EXIT`] message, defined once
/// for the kernel that sends it and the VMM that receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestExit {
    /// Why.
    pub kind: ExitKind,
    /// The trapping instruction (for a hypercall too: a plain reply
    /// retries it, a reply with `REPLY_SKIP_INSTRUCTION` steps over it).
    pub pc: u64,
    /// The raw architectural syndrome (ESR_EL2 on arm64).
    pub syndrome: u64,
    /// Guest-physical address of a memory exit, or a call's immediate.
    pub address: u64,
}

impl GuestExit {
    /// The message words: `[pc, syndrome, address, kind]`.
    pub fn words(&self) -> [u64; WORDS] {
        [self.pc, self.syndrome, self.address, self.kind as u64]
    }

    /// The exit a message carries (`None` for an unknown kind).
    #[inline]
    pub fn from_words(w: [u64; WORDS]) -> Option<GuestExit> {
        Some(GuestExit {
            kind: ExitKind::from_word(w[3])?,
            pc: w[0],
            syndrome: w[1],
            address: w[2],
        })
    }
}

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
