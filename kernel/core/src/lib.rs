//! Skyscope's architecture-independent kernel core.
//!
//! Everything here is plain safe `no_std` Rust that also builds for the host,
//! so `cargo test` exercises it directly. The kernel binary (`kernel/`) adds
//! the hardware glue around it; the core never names an architecture.
#![no_std]
#![forbid(unsafe_code)]

pub mod addr;
pub mod audit;
pub mod bootmodules;
pub mod cap;
pub mod console;
pub mod cspace;
pub mod devicetree;
pub mod elf;
pub mod fastpath;
pub mod fault;
pub mod invariants;
pub mod ipc;
pub mod kernel;
pub mod machine;
pub mod memory;
pub mod object;
pub mod sched;
pub mod slot;
pub mod syscall;

#[cfg(any(test, feature = "host-model"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use addr::{PhysAddr, VirtAddr};
pub use cap::{Cap, SlotRef};
pub use kernel::{Invocation, Kernel, Reply};
pub use machine::Machine;
