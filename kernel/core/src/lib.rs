//! Skyscope's architecture-independent kernel core.
//!
//! Everything here is plain safe `no_std` Rust that also builds for the host,
//! so `cargo test` exercises it directly. The kernel binary (`kernel/`) adds
//! the hardware glue around it; the core never names an architecture.
#![no_std]
#![forbid(unsafe_code)]

pub mod addr;
pub mod memory;

pub use addr::{PhysAddr, VirtAddr};
