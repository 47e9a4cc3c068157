//! Classifying a synchronous exception from EL0 or from a guest: the one
//! decode of a trap into what the kernel does with it (a syscall, a fault
//! for the thread's handler, an exit for a guest's VMM, a wait, a yield).
//! The syndrome fields come from [`crate::esr`]; the results are the
//! core's fault type and the ABI's exit message.

use crate::esr::{
    DataAbort, ExceptionClass, Syndrome, SystemRegister, SystemRegisterAccess, WaitInstruction,
};
use skyscope_abi::fault::{ExitKind, GuestExit};
use skyscope_core::fault::{AbortKind, FaultKind, UserFault};

/// What a synchronous trap asks of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// `svc` from a native thread: a syscall (number in `x7`).
    Syscall,
    /// FP/SIMD use while another thread's state is in the unit.
    FpAccess,
    /// `wfi`: wait for an interrupt.
    WaitForInterrupt,
    /// `wfe` and friends: a yield.
    Yield,
    /// A native thread's fault, for its fault handler.
    Fault(UserFault),
    /// A guest's exit, for its VMM.
    GuestExit(GuestExit),
    /// A guest read an ID register (trapped by HCR_EL2.TID3): the kernel
    /// answers from [`crate::idregs`] into `rt` and steps past the `mrs`.
    IdRegisterRead {
        /// The register.
        register: SystemRegister,
        /// The destination register (31: `xzr`, the value is dropped).
        rt: u8,
    },
}

/// The wait instruction a WF* trap names.
fn wait(syndrome: Syndrome) -> Trap {
    match syndrome.wait() {
        Some(WaitInstruction::Wfi) => Trap::WaitForInterrupt,
        _ => Trap::Yield,
    }
}

/// The fault status code of an abort (ISS.DFSC / IFSC, Arm ARM D23.2.41).
pub fn abort_kind(fsc: u8) -> AbortKind {
    let level = fsc & 0b11;
    match fsc >> 2 {
        0b0001 => AbortKind::Translation { level },
        0b0010 => AbortKind::AccessFlag { level },
        0b0011 => AbortKind::Permission { level },
        _ if fsc == 0b10_0001 => AbortKind::Alignment,
        _ => AbortKind::Other { status: fsc },
    }
}

/// Classifies a trap from a native thread at EL0 from ESR_EL2, FAR_EL2
/// and ELR_EL2 (`pc`).
pub fn classify_native(esr: u64, far: u64, pc: u64) -> Trap {
    let syndrome = Syndrome(esr);
    let fault = |kind| {
        Trap::Fault(UserFault {
            kind,
            pc,
            syndrome: esr,
        })
    };
    match syndrome.class() {
        ExceptionClass::Svc64 => Trap::Syscall,
        ExceptionClass::FpAccess => Trap::FpAccess,
        ExceptionClass::WaitForInterruptOrEvent => wait(syndrome),
        class @ (ExceptionClass::DataAbortLower | ExceptionClass::InstructionAbortLower) => {
            let instruction = class == ExceptionClass::InstructionAbortLower;
            // Data and instruction aborts share WnR's absence for fetches,
            // FnV and the status code position.
            let abort = DataAbort::from_iss(esr);
            fault(FaultKind::MemoryAbort {
                // FnV: FAR is not valid; report 0 rather than garbage.
                address: if abort.far_not_valid { 0 } else { far },
                write: !instruction && abort.write,
                instruction,
                kind: abort_kind(abort.fault_status),
            })
        }
        ExceptionClass::Unknown
        | ExceptionClass::SystemRegister
        | ExceptionClass::Sve
        | ExceptionClass::IllegalExecutionState => fault(FaultKind::UndefinedInstruction),
        ExceptionClass::PcAlignment => fault(FaultKind::MemoryAbort {
            address: far,
            write: false,
            instruction: true,
            kind: AbortKind::Alignment,
        }),
        ExceptionClass::SpAlignment => fault(FaultKind::StackAlignment),
        ExceptionClass::Brk64 => fault(FaultKind::Breakpoint {
            comment: syndrome.immediate(),
        }),
        _ => fault(FaultKind::Unknown),
    }
}

/// Classifies a trap from a guest from ESR_EL2, FAR_EL2, HPFAR_EL2 and
/// ELR_EL2. An exit's `pc` names the trapping instruction: for `hvc`,
/// whose ELR points past it, that is `elr - 4` (the kernel resumes there).
pub fn classify_guest(esr: u64, far: u64, hpfar: u64, elr: u64) -> Trap {
    let syndrome = Syndrome(esr);
    let exit = |kind, pc, address| {
        Trap::GuestExit(GuestExit {
            kind,
            pc,
            syndrome: esr,
            address,
        })
    };
    match syndrome.class() {
        ExceptionClass::WaitForInterruptOrEvent => wait(syndrome),
        ExceptionClass::Hvc64 => exit(
            ExitKind::Hypercall,
            elr.wrapping_sub(4),
            syndrome.immediate().into(),
        ),
        ExceptionClass::Smc64 => exit(ExitKind::MonitorCall, elr, syndrome.immediate().into()),
        ExceptionClass::SystemRegister => {
            let access = SystemRegisterAccess::from_iss(esr);
            if access.read && crate::idregs::is_id_register(access.register) {
                Trap::IdRegisterRead {
                    register: access.register,
                    rt: access.rt,
                }
            } else {
                exit(ExitKind::SystemRegister, elr, 0)
            }
        }
        ExceptionClass::DataAbortLower | ExceptionClass::InstructionAbortLower => {
            // HPFAR_EL2.FIPA (bits 43:4) holds IPA bits 51:12 of a stage-2
            // fault; FAR_EL2 supplies the offset within the page.
            let ipa = (((hpfar >> 4) & ((1 << 40) - 1)) << 12) | (far & 0xfff);
            exit(ExitKind::Memory, elr, ipa)
        }
        _ => exit(ExitKind::Other, elr, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest_exit(trap: Trap) -> GuestExit {
        match trap {
            Trap::GuestExit(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn guest_classes() {
        let hvc = guest_exit(classify_guest(0x5a00_0001, 0, 0, 0x1004));
        assert_eq!(
            (hvc.kind, hvc.address, hvc.pc),
            (ExitKind::Hypercall, 1, 0x1000)
        );
        let smc = guest_exit(classify_guest(0x5e00_0000, 0, 0, 0x2000));
        assert_eq!((smc.kind, smc.pc), (ExitKind::MonitorCall, 0x2000));
        assert_eq!(classify_guest(0x0600_0000, 0, 0, 0), Trap::WaitForInterrupt);
        assert_eq!(classify_guest(0x0600_0001, 0, 0, 0), Trap::Yield);
        assert_eq!(
            guest_exit(classify_guest(0x6200_0000, 0, 0, 0)).kind,
            ExitKind::SystemRegister
        );
        let mmio = guest_exit(classify_guest(
            0x9300_0046,
            0x1234_5fe0,
            (0x900_0000 >> 12) << 4,
            0,
        ));
        assert_eq!((mmio.kind, mmio.address), (ExitKind::Memory, 0x900_0fe0));
        assert_eq!(guest_exit(classify_guest(0, 0, 0, 0)).kind, ExitKind::Other);
        // mrs x5, ID_AA64PFR0_EL1: Op0 3 (20), Op2 0 (17), Op1 0 (14),
        // CRn 0 (10), Rt 5 (5), CRm 4 (1), read (0).
        let mrs = (0x18u64 << 26) | (3 << 20) | (5 << 5) | (4 << 1) | 1;
        assert_eq!(
            classify_guest(mrs, 0, 0, 0),
            Trap::IdRegisterRead {
                register: SystemRegister::new(3, 0, 0, 4, 0),
                rt: 5
            }
        );
        // A write to the same encoding is not emulated (it goes to the VMM).
        assert_eq!(
            guest_exit(classify_guest(mrs & !1, 0, 0, 0)).kind,
            ExitKind::SystemRegister
        );
    }

    #[test]
    fn native_classes() {
        assert_eq!(classify_native(0x5600_0000, 0, 0), Trap::Syscall);
        assert_eq!(classify_native(0x1e00_0000, 0, 0), Trap::FpAccess);
        assert_eq!(classify_native(0x0600_0000, 0, 0), Trap::WaitForInterrupt);
        // A translation fault at level 1 on a write to 0xdead0000.
        match classify_native(0x9200_0045, 0xdead_0000, 0x40_0000) {
            Trap::Fault(UserFault {
                kind:
                    FaultKind::MemoryAbort {
                        address,
                        write,
                        instruction,
                        kind,
                    },
                pc,
                ..
            }) => {
                assert_eq!(
                    (address, write, instruction, pc),
                    (0xdead_0000, true, false, 0x40_0000)
                );
                assert_eq!(kind, AbortKind::Translation { level: 1 });
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify_native(0x0200_0000, 0, 0),
            Trap::Fault(UserFault {
                kind: FaultKind::UndefinedInstruction,
                ..
            })
        ));
        assert!(matches!(
            classify_native(0xf200_0007, 0, 0),
            Trap::Fault(UserFault {
                kind: FaultKind::Breakpoint { comment: 7 },
                ..
            })
        ));
    }

    #[test]
    fn any_syndrome_classifies() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if let Trap::GuestExit(e) = classify_guest(x, x.rotate_left(7), x.rotate_left(19), x) {
                assert!(e.kind != ExitKind::Memory || e.address < 1 << 52);
            }
            let _ = classify_native(x, x.rotate_left(3), x.rotate_left(5));
        }
    }
}
