//! What is arm64-only in the VMM: decoding exits ([`exit`], through
//! `skyscope-el2`'s syndrome decoder), vCPU identity and entry state
//! ([`cpu`]), the firmware interface ([`psci`]), the guest-physical memory
//! map ([`layout`]), the device tree (`fdt`, with the `alloc` feature)
//! and the Linux Image loader ([`image`]).

pub mod cpu;
pub mod exit;
#[cfg(any(feature = "alloc", test))]
pub mod fdt;
pub mod image;
pub mod inject;
pub mod layout;
pub mod psci;
