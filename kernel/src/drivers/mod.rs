//! Device drivers the kernel itself needs (everything else is in user space).

pub mod gicv3;
pub mod pl011;
