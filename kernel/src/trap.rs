//! Architecture-neutral kernel entry: events from user space and what the
//! kernel does next.
//!
//! The arch layer decodes an exception into an [`Event`]; [`handle_user_event`]
//! lets the kernel act on it and then resumes a thread or idles. The kernel
//! state is borrowed only for the duration of handling, never across a
//! wait for an interrupt.

use crate::kernel::{self, Next};
use skyscope_abi::fault::GuestExit;
use skyscope_core::fault::UserFault;

/// Why the current thread entered the kernel.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// A syscall with this number (not completed by the fastpath); the
    /// arguments are in the saved registers, where the core reads them.
    Syscall {
        /// The syscall number (`x7` on arm64), read once by the entry code.
        number: u64,
    },
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
    /// A thread running as a Vcpu left the guest for its VMM (the message
    /// it gets, as the ABI lays it out).
    GuestExit(GuestExit),
    /// A guest read one of its CPU feature registers (on arm64 an ID
    /// register, trapped by HCR_EL2.TID3): the kernel answers from the
    /// sanitised table (`index` into it) into general register `rt`.
    GuestFeatureRead {
        /// Which feature register.
        index: usize,
        /// The destination register (31: discarded).
        rt: u8,
    },
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
