//! The Skyscope kernel ABI shared by the kernel and every user-space program.
//!
//! Everything that crosses the user/kernel boundary is defined here once:
//! syscall numbers ([`Syscall`]), the register convention ([`regs`]), the
//! message-info word ([`MessageInfo`]), error codes ([`Error`]), the
//! boot-info page ([`BootInfo`]) and the [`start`] pages of programs a
//! parent starts. The safe wrappers in [`syscall`] issue the actual traps
//! on aarch64. [`window`] is the one place user space touches memory it
//! shares with a guest.
#![no_std]
#![deny(missing_docs)]

pub mod audit;
pub mod bootinfo;
pub mod bundle;
pub mod error;
pub mod fault;
pub mod invocation;
pub mod ipc;
pub mod message;
pub mod object;
pub mod start;
pub mod syscall;
pub mod vcpu;
pub mod window;

#[cfg(all(feature = "rt", target_os = "none"))]
pub mod rt;

pub use bootinfo::BootInfo;
pub use error::Error;
pub use invocation::Label;
pub use message::MessageInfo;
pub use object::{CapRights, ObjectType};
pub use syscall::Syscall;

/// Register convention for the `svc #0` trap on aarch64.
///
/// Mirrors seL4's AArch64 convention so that short messages travel in
/// registers: the syscall number in `x7`, the capability address in `x0`,
/// the message-info word in `x1` and message registers 0..4 in `x2..x5`.
pub mod regs {
    /// Register index holding the syscall number.
    pub const SYSCALL_NUMBER: usize = 7;
    /// Register index holding the capability address (or first argument).
    pub const CAP_ADDRESS: usize = 0;
    /// Register index holding the [`MessageInfo`](crate::MessageInfo) word.
    pub const MESSAGE_INFO: usize = 1;
    /// Register index of the first message register carried in a register.
    pub const FIRST_MESSAGE_REGISTER: usize = 2;
    /// Register index of the reply capability address for `ReplyRecv`.
    pub const REPLY_CAP: usize = 6;
    /// Register index of the status word (0 or an [`Error`](crate::Error)
    /// code) on return from IPC syscalls.
    pub const STATUS: usize = 6;
}
