//! The arm64 EL2 virtualization backend's pure half: what the kernel
//! writes into stage-2 descriptors and the EL2 control registers for a
//! guest, which PSTATE a guest may resume with, how a trap from a guest is
//! classified, and how exception syndromes decode ([`esr`], shared with the
//! VMM, which decodes the same syndromes from its exit messages). The
//! kernel's `arch::aarch64::vcpu` does the register moves; everything that
//! can be decided without touching the hardware is here, where the host
//! tests reach it.
#![no_std]
#![forbid(unsafe_code)]

pub mod config;
pub mod esr;
pub mod exit;
pub mod pstate;
pub mod stage2;
