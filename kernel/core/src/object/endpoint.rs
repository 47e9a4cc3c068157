//! Endpoints: rendezvous points for synchronous IPC.

use crate::PhysAddr;

/// What the threads queued on an endpoint are waiting to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum EndpointState {
    /// Nobody is waiting.
    #[default]
    Idle,
    /// Senders are queued.
    Sending,
    /// Receivers are queued.
    Receiving,
}

/// An endpoint's kernel state (32 bytes): a FIFO queue of TCBs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Endpoint {
    /// First queued thread (0 = none).
    pub head: PhysAddr,
    /// Last queued thread (0 = none).
    pub tail: PhysAddr,
    /// What the queued threads wait for.
    pub state: EndpointState,
}

const _: () = assert!(core::mem::size_of::<Endpoint>() <= 32);
