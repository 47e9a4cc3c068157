//! The unprivileged user-space VMM.
//!
//! A guest's VMM is an ordinary native process holding capabilities to the
//! guest's Vcpu thread, GuestSpace and memory. The kernel reports every
//! guest exit to it as a [`skyscope_abi::fault::GUEST_EXIT`] message; the
//! VMM decodes it ([`exit`]), emulates what the guest touched (devices such
//! as the [`pl011`] UART, firmware calls such as [`psci`]), and answers with
//! a reply that resumes the guest ([`exit::Resume`]). Everything here but
//! [`vcpu`] (the syscalls) is plain code that the host tests exercise.
#![no_std]
#![forbid(unsafe_code)]

pub mod exit;
pub mod pl011;
pub mod psci;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod vcpu;
