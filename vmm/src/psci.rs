//! PSCI, the firmware interface guests use to start, stop and power off
//! CPUs: function IDs from Arm DEN0022 (Power State Coordination Interface,
//! 1.1), table 5.1, SMC32/SMC64 conventions.

/// `PSCI_VERSION`.
pub const VERSION: u64 = 0x8400_0000;
/// `CPU_OFF`.
pub const CPU_OFF: u64 = 0x8400_0002;
/// `CPU_ON` (SMC64).
pub const CPU_ON: u64 = 0xc400_0003;
/// `SYSTEM_OFF`.
pub const SYSTEM_OFF: u64 = 0x8400_0008;
/// `SYSTEM_RESET`.
pub const SYSTEM_RESET: u64 = 0x8400_0009;
/// `PSCI_FEATURES`.
pub const FEATURES: u64 = 0x8400_000a;
/// Return code: not supported.
pub const NOT_SUPPORTED: u64 = -1i64 as u64;
/// The version this VMM implements (1.1: major << 16 | minor).
pub const VERSION_1_1: u64 = 0x1_0001;

/// A PSCI call, decoded from the guest's `x0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `PSCI_VERSION`.
    Version,
    /// `SYSTEM_OFF`: the guest is done.
    SystemOff,
    /// `SYSTEM_RESET`.
    SystemReset,
    /// `CPU_OFF`.
    CpuOff,
    /// Anything else (answered with `NOT_SUPPORTED`).
    Other(u64),
}

impl Call {
    /// Decodes function ID `x0` (the upper 32 bits are ignored for SMC32
    /// IDs, as the convention says).
    pub fn decode(x0: u64) -> Call {
        let id = if x0 & (1 << 30) == 0 {
            x0 & 0xffff_ffff
        } else {
            x0
        };
        match id {
            VERSION => Call::Version,
            SYSTEM_OFF => Call::SystemOff,
            SYSTEM_RESET => Call::SystemReset,
            CPU_OFF => Call::CpuOff,
            other => Call::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_ids() {
        assert_eq!(Call::decode(0x8400_0008), Call::SystemOff);
        assert_eq!(Call::decode(0xffff_ffff_8400_0000), Call::Version);
        assert_eq!(Call::decode(CPU_ON), Call::Other(CPU_ON));
    }
}
