//! Notifications: a word of flags that threads signal and wait on.

use crate::PhysAddr;

/// A notification's kernel state (64 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Notification {
    /// Pending badge bits (OR of the badges signalled since the last wait).
    pub word: u64,
    /// First thread waiting (0 = none).
    pub head: PhysAddr,
    /// Last thread waiting (0 = none).
    pub tail: PhysAddr,
    /// TCB this notification is bound to (0 = none).
    pub bound_tcb: PhysAddr,
    /// Signalled since the last wait (an unbadged signal sets no word bits).
    pub pending: bool,
}

const _: () = assert!(core::mem::size_of::<Notification>() <= 64);
