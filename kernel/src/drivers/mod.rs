//! Device drivers the kernel itself needs (everything else is in user space).

pub mod pl011;
