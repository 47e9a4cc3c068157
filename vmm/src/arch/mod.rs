//! What depends on the guest's architecture. arm64 is the only one today;
//! its parts are plain code, so they build and are tested on any host.

pub mod aarch64;

/// A decoded guest exit of the architecture guests run on.
pub use aarch64::exit::Exit;
