//! The architecture facade: the rest of the kernel names only `arch::…`.
//!
//! Each architecture module exports the same names (`UserContext`,
//! `PageTables`, `Permissions`, `enter_user`, `wait_for_interrupt`, …).

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;
