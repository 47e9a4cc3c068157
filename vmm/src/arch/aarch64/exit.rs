//! Decoding an arm64 guest exit: the kernel's `GUEST_EXIT` words
//! (`[pc, ESR_EL2, address or immediate, kind]`, see
//! [`skyscope_abi::fault`]) into what the VMM must emulate.
//!
//! The syndrome is decoded with `skyscope-el2`'s [`Syndrome`], the same
//! decoder the kernel classified the trap with. A guest controls which
//! instruction trapped, so any word decodes, and what the VMM cannot
//! emulate is [`Exit::Unsupported`].

use crate::memory::GuestAddress;
use skyscope_abi::fault::{self, ExitKind};
use skyscope_el2::esr::{ExceptionClass, Syndrome};
pub use skyscope_el2::esr::{SystemRegister, SystemRegisterAccess};

/// A decoded guest exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `hvc #imm`; arguments are in the guest's `x0..`.
    Hypercall {
        /// The immediate.
        imm: u16,
    },
    /// `smc #imm` (trapped; firmware calls are the VMM's to emulate).
    MonitorCall {
        /// The immediate.
        imm: u16,
    },
    /// A load or store to guest-physical memory that is not mapped: MMIO.
    Mmio(MmioAccess),
    /// A stage-2 abort the VMM cannot emulate as one register transfer:
    /// an instruction fetch from an address no RAM backs, or a data
    /// access without a valid instruction syndrome (a load/store pair,
    /// writeback addressing, SIMD registers...). Unless a device claims
    /// the address, the answer is an external abort injected into the
    /// guest ([`super::inject`]).
    Abort(Abort),
    /// A trapped system-register access.
    SystemRegister(SystemRegisterAccess),
    /// A physical SError the guest caused (the kernel took it at the
    /// guest's exit); `syndrome` as the kernel read it (DISR_EL1). The
    /// guest's state is not to be trusted: a VMM usually stops it.
    SError {
        /// The syndrome.
        syndrome: u64,
    },
    /// An instruction of an extension the guest is not given (SVE or SME,
    /// which the kernel traps and its ID registers hide) or one the trap
    /// reports for an unknown reason: UNDEFINED for this guest.
    Undefined {
        /// ESR_EL2.
        syndrome: u64,
    },
    /// An exit the VMM does not understand (an unknown kind, or words
    /// that contradict each other).
    Unsupported,
}

/// A memory exit that is not one emulable register transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abort {
    /// The guest-physical address.
    pub address: GuestAddress,
    /// An instruction fetch (else a data access).
    pub fetch: bool,
    /// A data write (WnR).
    pub write: bool,
}

/// One emulable MMIO access: a single load or store of a general register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// Guest-physical address.
    pub address: GuestAddress,
    /// A store (else a load).
    pub write: bool,
    /// Access size in bytes (1, 2, 4 or 8).
    pub size: u8,
    /// The general register loaded or stored (`None`: `xzr`/`wzr`).
    pub register: Option<u8>,
    /// A load sign-extends the value.
    pub sign_extend: bool,
    /// A load writes a 64-bit register (else a 32-bit one, zero-extended).
    pub sixty_four: bool,
}

impl MmioAccess {
    /// The mask of the access's bytes.
    fn mask(&self) -> u64 {
        match self.size {
            8.. => u64::MAX,
            n => (1u64 << (u32::from(n) * 8)) - 1,
        }
    }

    /// The value a store of register value `register_value` writes (its
    /// low `size` bytes; `xzr` stores zero, pass 0).
    pub fn store_value(&self, register_value: u64) -> u64 {
        register_value & self.mask()
    }

    /// The value a load of `raw` (the device's bytes, little-endian)
    /// leaves in the destination register.
    pub fn load_result(&self, raw: u64) -> u64 {
        let mask = self.mask();
        let value = raw & mask;
        let sign = (mask >> 1) + 1; // the access's top bit
        let value = if self.sign_extend && value & sign != 0 {
            value | !mask
        } else {
            value
        };
        if self.sixty_four {
            value
        } else {
            value & 0xffff_ffff
        }
    }
}

impl Exit {
    /// Decodes the words of a `GUEST_EXIT` message (layout:
    /// [`fault::GuestExit`]).
    pub fn decode(words: [u64; fault::WORDS]) -> Exit {
        let Some(exit) = fault::GuestExit::from_words(words) else {
            return Exit::Unsupported;
        };
        let syndrome = Syndrome(exit.syndrome);
        match exit.kind {
            ExitKind::Hypercall => Exit::Hypercall {
                imm: exit.address as u16,
            },
            ExitKind::MonitorCall => Exit::MonitorCall {
                imm: exit.address as u16,
            },
            ExitKind::SystemRegister => syndrome
                .system_register()
                .map_or(Exit::Unsupported, Exit::SystemRegister),
            ExitKind::Memory => decode_memory(syndrome, GuestAddress(exit.address)),
            ExitKind::SError => Exit::SError {
                syndrome: exit.syndrome,
            },
            ExitKind::Other => match syndrome.class() {
                // 0x00 unknown reason, 0x19 SVE, 0x1d SME (Arm ARM, ESR_EL2.EC).
                ExceptionClass::Unknown | ExceptionClass::Sve | ExceptionClass::Other(0x1d) => {
                    Exit::Undefined {
                        syndrome: exit.syndrome,
                    }
                }
                _ => Exit::Unsupported,
            },
        }
    }
}

fn decode_memory(syndrome: Syndrome, address: GuestAddress) -> Exit {
    match syndrome.class() {
        // Executing from where no RAM is: never emulable.
        ExceptionClass::InstructionAbortLower => {
            return Exit::Abort(Abort {
                address,
                fetch: true,
                write: false,
            });
        }
        ExceptionClass::DataAbortLower => {}
        _ => return Exit::Unsupported,
    }
    let Some(abort) = syndrome.data_abort() else {
        return Exit::Unsupported;
    };
    // Without a valid instruction syndrome (ISV clear) the VMM would have
    // to decode the instruction itself; it does not.
    let Some(insn) = abort.instruction else {
        return Exit::Abort(Abort {
            address,
            fetch: false,
            write: abort.write,
        });
    };
    Exit::Mmio(MmioAccess {
        address,
        write: abort.write,
        size: insn.size,
        register: (insn.register != 31).then_some(insn.register),
        sign_extend: insn.sign_extend,
        sixty_four: insn.sixty_four,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ESR for a data abort from a lower EL with the given ISS fields.
    fn dabt(isv: bool, sas: u64, sse: bool, srt: u64, sf: bool, wnr: bool) -> u64 {
        (0x24 << 26)
            | (1 << 25)
            | (u64::from(isv) << 24)
            | (sas << 22)
            | (u64::from(sse) << 21)
            | (srt << 16)
            | (u64::from(sf) << 15)
            | (u64::from(wnr) << 6)
            | 0b000111 // translation fault, level 3
    }

    #[test]
    fn byte_store_and_word_load_decode() {
        let store = Exit::decode([
            0,
            dabt(true, 0, false, 3, false, true),
            0x900_0000,
            ExitKind::Memory as u64,
        ]);
        assert_eq!(
            store,
            Exit::Mmio(MmioAccess {
                address: GuestAddress(0x900_0000),
                write: true,
                size: 1,
                register: Some(3),
                sign_extend: false,
                sixty_four: false,
            })
        );
        let load = Exit::decode([
            0,
            dabt(true, 2, false, 31, false, false),
            0x900_0fe0,
            ExitKind::Memory as u64,
        ]);
        let Exit::Mmio(access) = load else {
            panic!("{load:?}")
        };
        assert_eq!(
            (access.size, access.register, access.write),
            (4, None, false)
        );
    }

    #[test]
    fn without_a_valid_syndrome_nothing_is_emulated() {
        let e = Exit::decode([
            0,
            dabt(false, 3, false, 1, true, true),
            0x1000,
            ExitKind::Memory as u64,
        ]);
        assert_eq!(
            e,
            Exit::Abort(Abort {
                address: GuestAddress(0x1000),
                fetch: false,
                write: true
            })
        );
        let fetch = (0x20 << 26) | 0b000111;
        assert_eq!(
            Exit::decode([0, fetch, 0x1000, ExitKind::Memory as u64]),
            Exit::Abort(Abort {
                address: GuestAddress(0x1000),
                fetch: true,
                write: false
            })
        );
        // A memory exit whose syndrome is no stage-2 abort of the guest.
        assert_eq!(
            Exit::decode([0, 0x15 << 26, 0x1000, ExitKind::Memory as u64]),
            Exit::Unsupported
        );
        assert_eq!(Exit::decode([0, 0, 0, 99]), Exit::Unsupported);
    }

    #[test]
    fn sve_and_sme_traps_are_undefined_instructions() {
        let other = ExitKind::Other as u64;
        // What the kernel reported when Linux probed SVE: EC 0x19, IL.
        assert_eq!(
            Exit::decode([0, 0x6600_0000, 0, other]),
            Exit::Undefined {
                syndrome: 0x6600_0000
            }
        );
        assert!(matches!(
            Exit::decode([0, 0x1d << 26, 0, other]),
            Exit::Undefined { .. }
        ));
        // An FP/SIMD trap is not the guest's doing: not emulated.
        assert_eq!(Exit::decode([0, 0x07 << 26, 0, other]), Exit::Unsupported);
    }

    #[test]
    fn system_register_exits_name_the_register() {
        // msr PMCR_EL0, xzr: what guests/minimal's hostile guest does.
        let iss = (3 << 20) | (3 << 14) | (9 << 10) | (31 << 5) | (12 << 1);
        let e = Exit::decode([0, (0x18 << 26) | iss, 0, ExitKind::SystemRegister as u64]);
        assert_eq!(
            e,
            Exit::SystemRegister(SystemRegisterAccess {
                register: SystemRegister::PMCR_EL0,
                rt: 31,
                read: false,
            })
        );
        // The kernel reports system-register exits only for EC 0x18; a
        // mislabelled syndrome is not trusted.
        assert_eq!(
            Exit::decode([0, 0x24 << 26, 0, ExitKind::SystemRegister as u64]),
            Exit::Unsupported
        );
    }

    #[test]
    fn loads_extend_as_the_instruction_says() {
        let access = |size, sign_extend, sixty_four| MmioAccess {
            address: GuestAddress(0),
            write: false,
            size,
            register: Some(0),
            sign_extend,
            sixty_four,
        };
        assert_eq!(
            access(1, true, true).load_result(0x80),
            0xffff_ffff_ffff_ff80
        );
        assert_eq!(access(1, true, false).load_result(0x80), 0xffff_ff80);
        assert_eq!(access(2, false, true).load_result(0x1_8000), 0x8000);
        assert_eq!(access(8, false, true).load_result(u64::MAX), u64::MAX);
        assert_eq!(
            access(4, true, true).load_result(0x8000_0000),
            0xffff_ffff_8000_0000
        );
        assert_eq!(access(2, false, false).store_value(0x1234_5678), 0x5678);
        assert_eq!(access(8, false, false).store_value(u64::MAX), u64::MAX);
    }

    proptest! {
        /// Whatever the guest's instruction and the kernel's words, decoding
        /// never panics, and an MMIO access it yields is one the VMM can
        /// perform: a real size, a real register, at the reported address,
        /// with load results that fit the destination register.
        #[test]
        fn any_exit_decodes(esr: u64, address: u64, kind in 0u64..8, raw: u64) {
            if let Exit::Mmio(a) = Exit::decode([0, esr, address, kind]) {
                prop_assert_eq!(kind, ExitKind::Memory as u64);
                prop_assert_eq!(a.address, GuestAddress(address));
                prop_assert!(matches!(a.size, 1 | 2 | 4 | 8));
                prop_assert!(a.register.is_none_or(|r| r < 31));
                let v = a.load_result(raw);
                if !a.sixty_four {
                    prop_assert_eq!(v >> 32, 0);
                }
                prop_assert_eq!(a.store_value(raw) & !a.mask(), 0);
            }
        }
    }
}
