//! Reply objects: the right to answer one `Call`.
//!
//! Under MCS-style IPC a server names a reply object when it receives; a
//! `Call` that reaches it records the caller here, and `Reply`/`ReplyRecv`
//! through the reply capability resumes that caller exactly once.

use crate::PhysAddr;

/// A reply object's kernel state (32 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Reply {
    /// The thread waiting for this reply (0 = none).
    pub caller: PhysAddr,
    /// The thread waiting to receive that named this reply object (0 = none).
    pub receiver: PhysAddr,
}

const _: () = assert!(core::mem::size_of::<Reply>() <= 32);
