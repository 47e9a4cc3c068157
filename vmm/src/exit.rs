//! Guest exits: decoding the kernel's exit message, and the reply that
//! resumes the guest.
//!
//! The syndrome is ESR_EL2 as the kernel saw it (Arm ARM D23.2.41, and
//! D23.2.41's "ISS encoding for an exception from a Data Abort" for MMIO).
//! A guest controls which instruction trapped, so the decoding accepts any
//! word and answers [`Exit::Unsupported`] for what it cannot emulate.

use skyscope_abi::fault;

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
    /// A trapped system-register access (ISS as reported).
    SystemRegister {
        /// The ISS field.
        iss: u32,
    },
    /// Something the VMM cannot emulate (a memory exit without a valid
    /// instruction syndrome, an unknown kind).
    Unsupported,
}

/// One emulable MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// Guest-physical address.
    pub address: u64,
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
    /// The value a load of `raw` (the device's bytes, little-endian)
    /// leaves in the destination register.
    pub fn load_result(&self, raw: u64) -> u64 {
        let bits = u32::from(self.size) * 8;
        let value = if bits >= 64 {
            raw
        } else {
            let v = raw & ((1u64 << bits) - 1);
            if self.sign_extend && v >> (bits - 1) & 1 == 1 {
                v | !((1u64 << bits) - 1)
            } else {
                v
            }
        };
        if self.sixty_four {
            value
        } else {
            value & 0xffff_ffff
        }
    }
}

/// ESR_EL2 exception classes a memory exit carries.
const EC_INSTRUCTION_ABORT_LOWER: u64 = 0x20;
const EC_DATA_ABORT_LOWER: u64 = 0x24;

impl Exit {
    /// Decodes the words of a `GUEST_EXIT` message: `[pc, syndrome,
    /// address, kind]`.
    pub fn decode(words: [u64; fault::WORDS]) -> Exit {
        let [_, syndrome, address, kind] = words;
        let iss = (syndrome & 0x1ff_ffff) as u32;
        match kind {
            fault::EXIT_HYPERCALL => Exit::Hypercall {
                imm: address as u16,
            },
            fault::EXIT_MONITOR_CALL => Exit::MonitorCall {
                imm: address as u16,
            },
            fault::EXIT_SYSTEM_REGISTER => Exit::SystemRegister { iss },
            fault::EXIT_MEMORY => decode_memory(syndrome, address),
            _ => Exit::Unsupported,
        }
    }
}

fn decode_memory(syndrome: u64, address: u64) -> Exit {
    let class = syndrome >> 26;
    if class == EC_INSTRUCTION_ABORT_LOWER || class != EC_DATA_ABORT_LOWER {
        return Exit::Unsupported; // executing device memory is not emulated
    }
    let iss = syndrome & 0x1ff_ffff;
    let valid = iss >> 24 & 1 == 1; // ISV: the fields below are meaningful
    if !valid {
        return Exit::Unsupported;
    }
    let register = ((iss >> 16) & 0x1f) as u8; // SRT
    Exit::Mmio(MmioAccess {
        address,
        write: iss >> 6 & 1 == 1,        // WnR
        size: 1 << ((iss >> 22) & 0b11), // SAS
        register: (register != 31).then_some(register),
        sign_extend: iss >> 21 & 1 == 1, // SSE
        sixty_four: iss >> 15 & 1 == 1,  // SF
    })
}

/// How the VMM answers an exit (the reply message to the fault).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// Continue after the trapping instruction (else retry it).
    pub skip: bool,
    /// Set general register `x<n>` to a value first.
    pub set: Option<(u8, u64)>,
}

impl Resume {
    /// Step over the instruction.
    pub const SKIP: Resume = Resume {
        skip: true,
        set: None,
    };

    /// Step over the instruction, setting `x<register>` to `value`
    /// (`None` register: nothing to set, as for a load into `xzr`).
    pub fn skip_setting(register: Option<u8>, value: u64) -> Resume {
        Resume {
            skip: true,
            set: register.map(|r| (r, value)),
        }
    }

    /// The reply's words: `[flags, register index, value]`, and how many
    /// of them to send.
    pub fn words(&self) -> ([u64; 4], usize) {
        let mut flags = 0;
        if self.skip {
            flags |= fault::REPLY_SKIP_INSTRUCTION;
        }
        match self.set {
            Some((r, v)) => {
                flags |= fault::REPLY_SET_REGISTER;
                let index = skyscope_abi::invocation::REG_X0 as u64 + u64::from(r);
                ([flags, index, v, 0], 3)
            }
            None => ([flags, 0, 0, 0], 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ESR for a data abort from a lower EL with the given ISS fields.
    fn dabt(isv: bool, sas: u64, sse: bool, srt: u64, sf: bool, wnr: bool) -> u64 {
        (EC_DATA_ABORT_LOWER << 26)
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
            fault::EXIT_MEMORY,
        ]);
        assert_eq!(
            store,
            Exit::Mmio(MmioAccess {
                address: 0x900_0000,
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
            fault::EXIT_MEMORY,
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
            dabt(false, 3, false, 1, true, false),
            0x1000,
            fault::EXIT_MEMORY,
        ]);
        assert_eq!(e, Exit::Unsupported);
        let fetch = (EC_INSTRUCTION_ABORT_LOWER << 26) | 0b000111;
        assert_eq!(
            Exit::decode([0, fetch, 0x1000, fault::EXIT_MEMORY]),
            Exit::Unsupported
        );
        assert_eq!(Exit::decode([0, 0, 0, 99]), Exit::Unsupported);
    }

    #[test]
    fn loads_extend_as_the_instruction_says() {
        let access = |size, sign_extend, sixty_four| MmioAccess {
            address: 0,
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
    }

    #[test]
    fn every_syndrome_decodes_without_panicking() {
        // The guest picks the instruction; exhaust the ISS fields that matter.
        for iss in (0..1u64 << 25).step_by(97) {
            for kind in 0..7 {
                let _ = Exit::decode([0, (EC_DATA_ABORT_LOWER << 26) | iss, u64::MAX, kind]);
            }
        }
    }

    #[test]
    fn replies_carry_flags_and_registers() {
        assert_eq!(
            Resume::SKIP.words(),
            ([fault::REPLY_SKIP_INSTRUCTION, 0, 0, 0], 1)
        );
        let (w, n) = Resume::skip_setting(Some(4), 7).words();
        assert_eq!(n, 3);
        assert_eq!(
            w[0],
            fault::REPLY_SKIP_INSTRUCTION | fault::REPLY_SET_REGISTER
        );
        assert_eq!(w[1], (skyscope_abi::invocation::REG_X0 + 4) as u64);
        assert_eq!(w[2], 7);
        assert_eq!(Resume::skip_setting(None, 7).words().1, 1);
    }
}
