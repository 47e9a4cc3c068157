//! The CPU a guest sees: the ID registers it reads (trapped by
//! HCR_EL2.TID3 and answered by the kernel) with every feature whose state
//! the kernel does not switch hidden.
//!
//! A guest that found SVE, SME, MTE, the PMU, RAS error records, LORegions
//! or EL2 would use registers the kernel neither saves nor restores, so it
//! could read another guest's or a native thread's leftovers, or leave
//! state behind for them. The policy is a whitelist: a field is passed
//! through only if it describes instructions (whose state is the general,
//! FP/SIMD or already-switched EL1 registers) or a memory-system property
//! the guest's own stage 1 uses; everything else reads as "not
//! implemented" (0). Register layouts: Arm ARM (DDI 0487K) D23.2,
//! "ID_AA64PFR0_EL1" and neighbours; the ID register space is
//! op0 = 3, op1 = 0, CRn = 0, CRm = 0..7 (D23.3.1, "Op0 == 0b11": the
//! unallocated encodings with CRm 1..7 are RAZ).

use crate::esr::SystemRegister;

/// Registers per CRm row of the ID space (op2 = 0..7).
const ROW: usize = 8;
/// The trapped ID space: CRm = 1..7 (CRm = 0 holds MIDR, MPIDR, REVIDR,
/// which TID3 does not trap; VPIDR/VMPIDR give the guest its own).
pub const ID_SPACE_REGISTERS: usize = 7 * ROW;

/// Whether `r` is one of the registers TID3 traps (the ID space with
/// CRm = 1..7).
pub fn is_id_register(r: SystemRegister) -> bool {
    r.op0 == 3 && r.op1 == 0 && r.crn == 0 && (1..=7).contains(&r.crm)
}

/// Index of an ID-space register in [`GuestIdRegisters`].
pub fn index(r: SystemRegister) -> Option<usize> {
    is_id_register(r).then(|| usize::from(r.crm - 1) * ROW + usize::from(r.op2 & 7))
}

/// A 4-bit ID field: its position.
#[derive(Clone, Copy)]
struct Field(u32);

impl Field {
    fn get(self, v: u64) -> u64 {
        (v >> self.0) & 0xf
    }
}

/// Fields passed through unchanged, by register (CRm, op2). Anything not
/// listed reads as 0.
fn kept_fields(crm: u8, op2: u8) -> &'static [u32] {
    match (crm, op2) {
        // ID_AA64PFR0_EL1: FP (16), AdvSIMD (20), GIC (24: the system
        // register interface, which the virtual CPU interface provides),
        // DIT (48), CSV2 (56), CSV3 (60). EL0..EL3 are set below; RAS
        // (28), SVE (32), SEL2 (36), MPAM (40), AMU (44) and RME (52)
        // stay hidden.
        (4, 0) => &[16, 20, 24, 48, 56, 60],
        // ID_AA64PFR1_EL1: BT (0), SSBS (4) (both PSTATE bits the
        // kernel keeps with the guest's SPSR). MTE (8), RAS_frac,
        // MPAM_frac, SME (24), CSV2_frac (32: SCXTNUM_ELx controls), NMI
        // (36), GCS (44) and the rest hidden.
        (4, 1) => &[0, 4],
        // ID_AA64DFR0_EL1: DebugVer (0), BRPs (12), WRPs (20), CTX_CMPs
        // (28), DoubleLock (36). The debug registers trap to the VMM
        // (MDCR_EL2.TDA); tracing, the PMU (8), SPE (32), BRBE are hidden.
        (5, 0) => &[0, 12, 20, 28, 36],
        // ID_AA64ISAR0_EL1: every instruction set extension but TME (24),
        // whose transactions the kernel would have to abort on exit.
        (6, 0) => &[4, 8, 12, 16, 20, 28, 32, 36, 40, 44, 48, 52, 56, 60],
        // ID_AA64ISAR1_EL1: all but XS (56) and LS64 (60), which need
        // EL2 configuration (HCRX_EL2) the kernel does not provide.
        (6, 1) => &[0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52],
        // ID_AA64ISAR2_EL1: RPRES (4), GPA3 (8), APA3 (12), BC (20),
        // PAC_frac (24), CLRBHB (28), PRFMSLC (40), RPRFM (48), CSSC
        // (52), LUT (56). WFxT (0) and MOPS (16) need HCRX_EL2; the
        // 128-bit system register fields (32, 36) are hidden.
        (6, 2) => &[4, 8, 12, 20, 24, 28, 40, 48, 52, 56],
        // ID_AA64MMFR0_EL1: ASIDBits (4), BigEnd (8), SNSMem (12),
        // BigEndEL0 (16), TGran16 (20), TGran64 (24), TGran4 (28), ExS
        // (44). PARange is set below; the stage-2 granule fields (32..43),
        // FGT and ECV describe EL2 and are hidden.
        (7, 0) => &[4, 8, 12, 16, 20, 24, 28, 44],
        // ID_AA64MMFR1_EL1: HAFDBS (0), HPDS (12), PAN (20), SpecSEI (24),
        // ETS (36), AFP (44), nTLBPA (48), CMOW (56), ECBHB (60). VMIDBits,
        // VH, XNX, TWED and HCX describe EL2; LO (16: LORegions registers
        // are not switched) and TIDCP1 are hidden.
        (7, 1) => &[0, 12, 20, 24, 36, 44, 48, 56, 60],
        // ID_AA64MMFR2_EL1: CnP (0), UAO (4), LSM (8), IESB (12), VARange
        // (16), CCIDX (20), ST (28), AT (32), IDS (36), TTL (48), BBM
        // (52), E0PD (60). NV, FWB and EVT describe EL2.
        (7, 2) => &[0, 4, 8, 12, 16, 20, 28, 32, 36, 48, 52, 60],
        // Everything else: the AArch32 registers (the guest is AArch64
        // only), PFR2, ZFR0 (SVE), SMFR0 (SME), FPFR0, DFR1, the
        // auxiliary registers, ISAR3, MMFR3 (TCR2, SCTLR2, permission
        // indirection and overlays: registers not switched), MMFR4.
        _ => &[],
    }
}

/// ID_AA64PFR0_EL1 EL0/EL1 value 0b0001: AArch64 only.
const AARCH64_ONLY: u64 = 0b0001;
/// ID_AA64MMFR0_EL1.PARange 0b0001: 36-bit physical addresses, the
/// largest size that fits the guest-physical space stage 2 translates
/// (39 bits, `config::VTCR_BASE`); 0b0010 would promise 40.
const GUEST_PARANGE: u64 = 0b0001;

/// What the guest reads for register (`crm`, `op2`) of the ID space,
/// given the host's value.
pub fn guest_value(crm: u8, op2: u8, host: u64) -> u64 {
    let mut v = kept_fields(crm, op2)
        .iter()
        .fold(0, |v, &shift| v | (Field(shift).get(host) << shift));
    match (crm, op2) {
        // EL0 (0) and EL1 (4) AArch64 only; EL2 (8) and EL3 (12) absent.
        // CSV2 (56) at most 1: 2 would promise the SCXTNUM_ELx context
        // numbers, registers the kernel does not switch (they trap:
        // HCR_EL2.EnSCXT is clear).
        (4, 0) => {
            v = (v & !(0xf << 56)) | (Field(56).get(host).min(1) << 56);
            v |= AARCH64_ONLY | (AARCH64_ONLY << 4);
        }
        (7, 0) => v |= Field(0).get(host).min(GUEST_PARANGE),
        _ => {}
    }
    v
}

/// The guest's view of the whole trapped ID space, computed once at boot
/// from the host's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestIdRegisters([u64; ID_SPACE_REGISTERS]);

impl GuestIdRegisters {
    /// Builds the guest's view; `host(crm, op2)` reads the host register.
    pub fn new(mut host: impl FnMut(u8, u8) -> u64) -> GuestIdRegisters {
        let mut values = [0; ID_SPACE_REGISTERS];
        for (i, v) in values.iter_mut().enumerate() {
            let (crm, op2) = ((i / ROW) as u8 + 1, (i % ROW) as u8);
            *v = guest_value(crm, op2, host(crm, op2));
        }
        GuestIdRegisters(values)
    }

    /// What a guest `mrs` of `r` reads, if `r` is in the trapped space.
    pub fn read(&self, r: SystemRegister) -> Option<u64> {
        index(r).map(|i| self.0[i])
    }

    /// The value at [`index`] `i` (0 past the table).
    pub fn by_index(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ID registers of QEMU's `-cpu max` (QEMU 10), as read by a kernel.
    fn max_cpu(crm: u8, op2: u8) -> u64 {
        match (crm, op2) {
            (4, 0) => 0x1201_1111_1111_2222, // PFR0: EL3..EL0 AArch32+64, SVE 1, RAS 1, AMU 1
            (4, 1) => 0x0000_0111_0120_0321, // PFR1: MTE 2, SME 1, NMI 1, BT 1, SSBS 2
            (4, 4) => 0x0110_0110_0000_0011, // ZFR0
            (5, 0) => 0x0000_0001_f010_f10b, // DFR0: PMUVer 1, DebugVer 0xb
            (6, 0) => 0x1221_1111_1212_1120, // ISAR0: TME 1
            (6, 1) => 0x0011_1111_0211_1102, // ISAR1
            (6, 2) => 0x0000_0000_0011_0011, // ISAR2: WFxT 1, MOPS 1
            (7, 0) => 0x1100_0000_0010_1126, // MMFR0: PARange 6 (52 bits), ECV 1
            (7, 1) => 0x1011_1101_1121_0122, // MMFR1: VH 1, LO 1
            (7, 2) => 0x1221_0111_1001_1011, // MMFR2: NV 1
            (7, 3) => 0x0000_0000_0000_1111, // MMFR3: TCRX, SCTLRX, ...
            (1, 0) => 0x0000_0131,           // ID_PFR0_EL1 (AArch32)
            _ => 0,
        }
    }

    fn field(v: u64, shift: u32) -> u64 {
        (v >> shift) & 0xf
    }

    #[test]
    fn unswitched_state_is_hidden() {
        let ids = GuestIdRegisters::new(max_cpu);
        let read = |crm, op2| {
            ids.read(SystemRegister::new(3, 0, 0, crm, op2))
                .expect("ID space")
        };
        let pfr0 = read(4, 0);
        assert_eq!(field(pfr0, 32), 0, "SVE");
        assert_eq!(field(pfr0, 28), 0, "RAS");
        assert_eq!(field(pfr0, 44), 0, "AMU");
        assert_eq!((field(pfr0, 0), field(pfr0, 4)), (1, 1), "AArch64 only");
        assert_eq!((field(pfr0, 8), field(pfr0, 12)), (0, 0), "no EL2, EL3");
        assert_eq!(field(pfr0, 24), 1, "GIC system registers stay");
        let pfr1 = read(4, 1);
        assert_eq!((field(pfr1, 8), field(pfr1, 24)), (0, 0), "MTE, SME");
        assert_eq!((field(pfr1, 0), field(pfr1, 4)), (1, 2), "BT, SSBS stay");
        assert_eq!(read(4, 4), 0, "ZFR0");
        assert_eq!(field(read(5, 0), 8), 0, "PMU");
        assert_eq!(field(read(5, 0), 0), 0xb, "debug architecture stays");
        assert_eq!(field(read(6, 0), 24), 0, "TME");
        assert_eq!((field(read(6, 2), 0), field(read(6, 2), 16)), (0, 0));
        assert_eq!(field(read(7, 0), 0), GUEST_PARANGE, "PARange capped");
        assert_eq!(field(read(7, 0), 60), 0, "ECV");
        assert_eq!((field(read(7, 1), 8), field(read(7, 1), 16)), (0, 0));
        assert_eq!(field(read(7, 2), 24), 0, "NV");
        assert_eq!(read(7, 3), 0, "MMFR3");
        assert_eq!(read(1, 0), 0, "AArch32 registers");
    }

    #[test]
    fn the_guest_never_sees_more_than_the_host() {
        // Every field the guest sees is at most the host's, except the
        // ones set to fixed values (EL0/EL1 = AArch64 only).
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for crm in 1..=7u8 {
                for op2 in 0..8u8 {
                    let host = x.rotate_left(u32::from(crm * 8 + op2));
                    let guest = guest_value(crm, op2, host);
                    for shift in (0..64).step_by(4) {
                        let fixed = (crm, op2) == (4, 0) && shift < 8;
                        if !fixed {
                            assert!(field(guest, shift) <= field(host, shift));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn only_the_id_space_is_answered() {
        let ids = GuestIdRegisters::new(max_cpu);
        assert!(
            ids.read(SystemRegister::new(3, 0, 0, 0, 0)).is_none(),
            "MIDR"
        );
        assert!(ids.read(SystemRegister::new(3, 0, 1, 0, 0)).is_none());
        assert!(ids.read(SystemRegister::new(3, 3, 0, 4, 0)).is_none());
        assert_eq!(ids.read(SystemRegister::new(3, 0, 0, 7, 7)), Some(0));
    }
}
