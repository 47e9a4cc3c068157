//! Kernel objects, one module each (as seL4's `src/object/*.c`).
//!
//! Each module holds the object's in-memory layout and the decoding of its
//! invocations; [`crate::kernel::Kernel::invoke`] dispatches to them.

pub mod cnode;
pub mod endpoint;
pub mod frame;
pub mod guest_space;
pub mod irq;
pub mod notification;
pub mod page_table;
pub mod reply;
pub mod sched_context;
pub mod tcb;
pub mod untyped;
pub mod vcpu;
pub mod vspace;
