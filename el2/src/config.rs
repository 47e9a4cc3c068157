//! EL2 control-register values for running guests, computed from the ID
//! registers the kernel reads at boot.

/// HCR_EL2 while a guest runs (Arm ARM D23.2.53): VM (0) stage 2 on,
/// SWIO (1), FMO/IMO/AMO (3..5) route physical FIQ/IRQ/SError to EL2,
/// FB (9) and BSU = inner shareable (10) broadcast guest maintenance,
/// TWI (13) traps `wfi`, TWE (14) traps `wfe` (a guest spinning on `wfe`
/// yields instead of holding the CPU), TID3 (18) traps the ID registers
/// (the kernel answers with [`crate::idregs`]), TSC (19) traps `smc`,
/// TIDCP (20) traps implementation-defined registers, TACR (21) traps
/// ACTLR_EL1, TSW (22) traps cache maintenance by set/way, RW (31) EL1 is
/// AArch64, E2H (34), TLOR (35) traps the LORegion registers and TERR (36)
/// the RAS error records (neither is switched, both hidden from the ID
/// registers). TGE (27) is clear: EL1 and EL0 are the guest's.
pub const HCR_GUEST_BASE: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 9)
    | (1 << 10)
    | (1 << 13)
    | (1 << 14)
    | (1 << 18)
    | (1 << 19)
    | (1 << 20)
    | (1 << 21)
    | (1 << 22)
    | (1 << 31)
    | (1 << 34)
    | (1 << 35)
    | (1 << 36);
/// HCR_EL2.TGE: set for the host, clear while a guest runs.
pub const HCR_TGE: u64 = 1 << 27;
/// HCR_EL2 for the host (Arm ARM D23.2.53): E2H (bit 34) selects VHE,
/// TGE (bit 27) routes EL0 exceptions to EL2, RW (bit 31) makes EL1 AArch64.
pub const HCR_HOST: u64 = (1 << 34) | (1 << 31) | HCR_TGE;

/// HCR_EL2.APK (40) and API (41): pointer-authentication keys and
/// instructions are the guest's to use (only if the CPU has them; the
/// kernel then switches the keys with the rest of the Vcpu's state).
pub const HCR_PAUTH: u64 = (1 << 40) | (1 << 41);
/// HCR_EL2.FWB (46, FEAT_S2FWB): stage 2 forces write-back for guest
/// RAM, so a guest cannot read past the caches (stale DRAM contents of a
/// frame the kernel zeroed) by mapping its memory non-cacheable.
pub const HCR_FWB: u64 = 1 << 46;

/// VTCR_EL2 (Arm ARM D23.2.186) without PS and VS: T0SZ = 25 (39-bit
/// guest-physical space, three levels like user VSpaces), SL0 = 1 (start
/// at level 1), IRGN0/ORGN0 = write-back, SH0 = inner shareable, TG0 =
/// 4 KiB, bit 31 RES1.
pub const VTCR_BASE: u64 = 25 | (1 << 6) | (1 << 8) | (1 << 10) | (0b11 << 12) | (1 << 31);

/// MDCR_EL2 trap bits (D23.2.99): TPMCR (5), TPM (6), TDA (9), TDOSA (10),
/// TDRA (11): a guest's debug and performance-monitor registers trap.
pub const MDCR_GUEST_TRAPS: u64 = (1 << 5) | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11);

/// The guest-related configuration this CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestConfig {
    /// HCR_EL2 to run a guest with.
    pub hcr: u64,
    /// VTCR_EL2.
    pub vtcr: u64,
    /// Largest VMID the CPU tags TLB entries with.
    pub max_vmid: u16,
    /// Pointer authentication: the key registers are part of a Vcpu.
    pub pauth: bool,
    /// FEAT_S2FWB: stage 2 forces write-back (else guest RAM is cleaned
    /// to the point of coherency when it is mapped into a GuestSpace).
    pub fwb: bool,
    /// FEAT_RAS: `esb` synchronises a guest's pending SError at exit.
    pub ras: bool,
}

/// The ID registers the configuration depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdRegisters {
    /// ID_AA64MMFR0_EL1.
    pub mmfr0: u64,
    /// ID_AA64MMFR1_EL1.
    pub mmfr1: u64,
    /// ID_AA64MMFR2_EL1.
    pub mmfr2: u64,
    /// ID_AA64ISAR1_EL1.
    pub isar1: u64,
    /// ID_AA64PFR0_EL1.
    pub pfr0: u64,
}

/// Derives the configuration from the ID registers.
pub fn guest_config(id: IdRegisters) -> GuestConfig {
    // PARange (3:0) gives PS, at most 48 bits (0b101): tables never need more.
    let ps = (id.mmfr0 & 0xf).min(0b101);
    // VMIDBits (7:4) = 0b0010: 16-bit VMIDs (VTCR_EL2.VS, bit 19).
    let vmid16 = (id.mmfr1 >> 4) & 0xf == 0b0010;
    // APA (7:4) or API (11:8): address authentication is implemented.
    let pauth = (id.isar1 >> 4) & 0xff != 0;
    // ID_AA64MMFR2_EL1.FWB (43:40).
    let fwb = (id.mmfr2 >> 40) & 0xf != 0;
    // ID_AA64PFR0_EL1.RAS (31:28).
    let ras = (id.pfr0 >> 28) & 0xf != 0;
    GuestConfig {
        hcr: HCR_GUEST_BASE | if pauth { HCR_PAUTH } else { 0 } | if fwb { HCR_FWB } else { 0 },
        vtcr: VTCR_BASE | (ps << 16) | if vmid16 { 1 << 19 } else { 0 },
        max_vmid: if vmid16 { u16::MAX } else { u8::MAX.into() },
        pauth,
        fwb,
        ras,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_follows_the_id_registers() {
        let small = guest_config(IdRegisters {
            mmfr0: 0b0010,
            ..IdRegisters::default()
        });
        assert_eq!(small.max_vmid, 255);
        assert_eq!((small.vtcr >> 16) & 0b111, 0b010);
        assert_eq!(small.vtcr & (1 << 19), 0);
        assert_eq!(small.hcr & HCR_PAUTH, 0);
        assert_eq!(small.hcr & HCR_TGE, 0, "a guest never runs with TGE");
        assert!(!small.fwb && !small.ras && small.hcr & HCR_FWB == 0);
        let big = guest_config(IdRegisters {
            mmfr0: 0b0110,
            mmfr1: 0b0010 << 4,
            mmfr2: 0b0001 << 40,
            isar1: 0b0001 << 8,
            pfr0: 0b0001 << 28,
        });
        assert!(big.fwb && big.ras && big.pauth);
        assert_eq!(big.hcr & HCR_FWB, HCR_FWB);
        assert_eq!(big.max_vmid, u16::MAX);
        assert_eq!((big.vtcr >> 16) & 0b111, 0b101, "PS capped at 48 bits");
        assert_ne!(big.vtcr & (1 << 19), 0);
        assert_eq!(big.hcr & HCR_PAUTH, HCR_PAUTH);
        assert_eq!(big.vtcr & 0x3f, 25);
    }
}
