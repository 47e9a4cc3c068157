//! Threads as the kernel runs them today: a register context in an
//! address space. (TCB objects with CSpaces, priorities and scheduling
//! contexts replace this with the capability object model.)

use crate::arch::{PageTables, UserContext};

/// Whether a thread can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// Ready to run (or running).
    Runnable,
    /// Stopped: faulted with no handler, or never started.
    Inactive,
}

/// A user thread.
pub struct Thread {
    /// Name for diagnostics.
    pub name: &'static str,
    /// Saved user registers.
    pub context: UserContext,
    /// The address space it runs in.
    pub address_space: PageTables,
    /// Address-space identifier tagging its TLB entries.
    pub asid: u16,
    /// Run state.
    pub state: ThreadState,
}
