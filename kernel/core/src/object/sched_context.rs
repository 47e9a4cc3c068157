//! Scheduling contexts: a CPU budget per period that threads run on.
//!
//! Budgets are configured through the `SchedControl` capability; a thread
//! runs only while its scheduling context has budget left in the current
//! period.

/// A scheduling context's kernel state (256 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SchedContext {
    /// Budget per period, in timer ticks of the counter.
    pub budget: u64,
    /// Period, in counter ticks.
    pub period: u64,
    /// Budget left in the current period.
    pub remaining: u64,
    /// Counter value when the budget is next replenished.
    pub replenish_at: u64,
}

const _: () = assert!(core::mem::size_of::<SchedContext>() <= 256);
