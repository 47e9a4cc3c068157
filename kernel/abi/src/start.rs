//! The start page: what a user program finds at the address in `x0` when
//! its first thread starts.
//!
//! The kernel starts the root task with a [`BootInfo`](crate::BootInfo)
//! page; a parent that builds a process (a root task starting a VMM)
//! maps a read-only page of its own layout there instead. Each layout is a
//! [`StartPage`]: a `repr(C)` record read from the page's bytes without
//! `unsafe`, refused unless its magic and version match, so a program
//! started with the wrong kind of page stops at once instead of misreading it.

use zerocopy::{FromBytes, Immutable, KnownLayout};

/// A record a program can be started with.
pub trait StartPage: FromBytes + Immutable + KnownLayout + Sync + 'static {
    /// The record at the start of `page`, if `page` holds one of this
    /// kind and version.
    fn from_page(page: &[u8]) -> Option<&Self>;
}

impl StartPage for crate::BootInfo {
    fn from_page(page: &[u8]) -> Option<&Self> {
        crate::BootInfo::from_page(page)
    }
}
