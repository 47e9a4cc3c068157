//! Classifying a synchronous exception taken from a guest: what the
//! kernel does with it (handle it, or send it to the VMM as an exit). The
//! syndrome fields come from [`crate::esr`].

use crate::esr::{ExceptionClass, Syndrome, WaitInstruction};

/// What a synchronous trap from a guest is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestTrap {
    /// `wfi`: wait for an interrupt.
    WaitForInterrupt,
    /// `wfe` and friends: a yield.
    Yield,
    /// `hvc #imm`. ELR_EL2 is past the instruction: the trapping
    /// instruction is at ELR - 4.
    Hypercall {
        /// The immediate.
        imm: u16,
    },
    /// A trapped `smc #imm` (ELR_EL2 is the instruction itself).
    MonitorCall {
        /// The immediate.
        imm: u16,
    },
    /// A trapped system-register access.
    SystemRegister,
    /// A stage-2 abort: a guest-physical address the GuestSpace does not
    /// map (or not for this access).
    Memory {
        /// The guest-physical address.
        ipa: u64,
    },
    /// Anything else.
    Other,
}

/// Classifies a trap from its syndrome, FAR_EL2 and HPFAR_EL2.
pub fn classify(esr: u64, far: u64, hpfar: u64) -> GuestTrap {
    let syndrome = Syndrome(esr);
    match syndrome.class() {
        ExceptionClass::WaitForInterruptOrEvent => match syndrome.wait() {
            Some(WaitInstruction::Wfi) => GuestTrap::WaitForInterrupt,
            _ => GuestTrap::Yield,
        },
        ExceptionClass::Hvc64 => GuestTrap::Hypercall {
            imm: syndrome.immediate(),
        },
        ExceptionClass::Smc64 => GuestTrap::MonitorCall {
            imm: syndrome.immediate(),
        },
        ExceptionClass::SystemRegister => GuestTrap::SystemRegister,
        ExceptionClass::DataAbortLower | ExceptionClass::InstructionAbortLower => {
            GuestTrap::Memory {
                // HPFAR_EL2.FIPA (bits 43:4) holds IPA bits 51:12 of a
                // stage-2 fault; FAR_EL2 supplies the offset within the page.
                ipa: (((hpfar >> 4) & ((1 << 40) - 1)) << 12) | (far & 0xfff),
            }
        }
        _ => GuestTrap::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(classify(0x5a00_0001, 0, 0), GuestTrap::Hypercall { imm: 1 });
        assert_eq!(
            classify(0x5e00_0000, 0, 0),
            GuestTrap::MonitorCall { imm: 0 }
        );
        assert_eq!(classify(0x0600_0000, 0, 0), GuestTrap::WaitForInterrupt);
        assert_eq!(classify(0x0600_0001, 0, 0), GuestTrap::Yield);
        assert_eq!(classify(0x6200_0000, 0, 0), GuestTrap::SystemRegister);
        assert_eq!(
            classify(0x9300_0046, 0x1234_5fe0, (0x900_0000 >> 12) << 4),
            GuestTrap::Memory { ipa: 0x900_0fe0 }
        );
        assert_eq!(classify(0, 0, 0), GuestTrap::Other);
    }

    #[test]
    fn any_syndrome_classifies() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if let GuestTrap::Memory { ipa } = classify(x, x.rotate_left(7), x.rotate_left(19)) {
                assert!(ipa < 1 << 52);
            }
        }
    }
}
