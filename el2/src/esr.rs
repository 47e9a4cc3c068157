//! Exception syndromes (ESR_EL2): the exception class and the ISS
//! encodings a hypervisor decodes, defined once for the kernel's trap
//! classification and the VMM's exit decoding.
//!
//! Layouts: Arm ARM (DDI 0487) D23.2.41 "ESR_EL2, Exception Syndrome
//! Register (EL2)": EC in bits 31:26, IL in 25, ISS in 24:0, and its
//! subsections "ISS encoding for an exception from a Data Abort", "ISS
//! encoding for an exception from MSR, MRS, or System instruction execution
//! in AArch64 state" and "ISS encoding for an exception from a WF*
//! instruction". A guest chooses which instruction traps, so every decoder
//! here accepts any 64-bit word.

use tock_registers::register_bitfields;

// Field positions only; the typed views below are what callers use (the
// macro's items carry no documentation and stay private).
register_bitfields! {u64,
    ESR [
        EC OFFSET(26) NUMBITS(6) [],
        IL OFFSET(25) NUMBITS(1) [],
        ISS OFFSET(0) NUMBITS(25) []
    ],
    DATA_ABORT [
        ISV OFFSET(24) NUMBITS(1) [],
        SAS OFFSET(22) NUMBITS(2) [],
        SSE OFFSET(21) NUMBITS(1) [],
        SRT OFFSET(16) NUMBITS(5) [],
        SF OFFSET(15) NUMBITS(1) [],
        AR OFFSET(14) NUMBITS(1) [],
        FNV OFFSET(10) NUMBITS(1) [],
        EA OFFSET(9) NUMBITS(1) [],
        CM OFFSET(8) NUMBITS(1) [],
        S1PTW OFFSET(7) NUMBITS(1) [],
        WNR OFFSET(6) NUMBITS(1) [],
        DFSC OFFSET(0) NUMBITS(6) []
    ],
    SYSTEM_REGISTER [
        OP0 OFFSET(20) NUMBITS(2) [],
        OP2 OFFSET(17) NUMBITS(3) [],
        OP1 OFFSET(14) NUMBITS(3) [],
        CRN OFFSET(10) NUMBITS(4) [],
        RT OFFSET(5) NUMBITS(5) [],
        CRM OFFSET(1) NUMBITS(4) [],
        DIRECTION OFFSET(0) NUMBITS(1) []
    ],
    WFX [
        TI OFFSET(0) NUMBITS(2) []
    ]
}

/// ESR_EL2.EC values a hypervisor distinguishes (D23.2.41, table "EC").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    /// 0x00: unknown reason (an undefined instruction, among others).
    Unknown,
    /// 0x01: a trapped `wfi`/`wfe`/`wfit`/`wfet`.
    WaitForInterruptOrEvent,
    /// 0x07: an FP/SIMD access trapped by CPTR/CPACR.
    FpAccess,
    /// 0x0e: an illegal execution state (PSTATE.IL set).
    IllegalExecutionState,
    /// 0x15: `svc` from AArch64.
    Svc64,
    /// 0x16: `hvc` from AArch64.
    Hvc64,
    /// 0x17: a trapped `smc` from AArch64.
    Smc64,
    /// 0x18: a trapped `msr`, `mrs` or system instruction (AArch64).
    SystemRegister,
    /// 0x19: an SVE access trapped by CPTR/CPACR.
    Sve,
    /// 0x20: an instruction abort from a lower exception level.
    InstructionAbortLower,
    /// 0x21: an instruction abort taken without a change of level.
    InstructionAbortSame,
    /// 0x22: a misaligned PC.
    PcAlignment,
    /// 0x24: a data abort from a lower exception level.
    DataAbortLower,
    /// 0x25: a data abort taken without a change of level.
    DataAbortSame,
    /// 0x26: a misaligned stack pointer.
    SpAlignment,
    /// 0x2f: an SError exception.
    SError,
    /// 0x3c: `brk` from AArch64.
    Brk64,
    /// Any other class (the raw 6-bit value).
    Other(u8),
}

impl ExceptionClass {
    /// The class of an EC field value (the low 6 bits of `ec`).
    #[inline]
    pub fn from_ec(ec: u8) -> ExceptionClass {
        use ExceptionClass::*;
        match ec & 0x3f {
            0x00 => Unknown,
            0x01 => WaitForInterruptOrEvent,
            0x07 => FpAccess,
            0x0e => IllegalExecutionState,
            0x15 => Svc64,
            0x16 => Hvc64,
            0x17 => Smc64,
            0x18 => SystemRegister,
            0x19 => Sve,
            0x20 => InstructionAbortLower,
            0x21 => InstructionAbortSame,
            0x22 => PcAlignment,
            0x24 => DataAbortLower,
            0x25 => DataAbortSame,
            0x26 => SpAlignment,
            0x2f => SError,
            0x3c => Brk64,
            other => Other(other),
        }
    }

    /// The EC field value.
    pub fn ec(self) -> u8 {
        use ExceptionClass::*;
        match self {
            Unknown => 0x00,
            WaitForInterruptOrEvent => 0x01,
            FpAccess => 0x07,
            IllegalExecutionState => 0x0e,
            Svc64 => 0x15,
            Hvc64 => 0x16,
            Smc64 => 0x17,
            SystemRegister => 0x18,
            Sve => 0x19,
            InstructionAbortLower => 0x20,
            InstructionAbortSame => 0x21,
            PcAlignment => 0x22,
            DataAbortLower => 0x24,
            DataAbortSame => 0x25,
            SpAlignment => 0x26,
            SError => 0x2f,
            Brk64 => 0x3c,
            Other(ec) => ec & 0x3f,
        }
    }
}

/// An ESR_EL2 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syndrome(pub u64);

impl Syndrome {
    /// The syndrome of an exception of `class` with `iss`, taken on a
    /// 32-bit instruction (IL set): what a hypervisor writes to a guest's
    /// ESR_EL1 when it injects one.
    pub fn new(class: ExceptionClass, iss: u32) -> Syndrome {
        Syndrome(
            (ESR::EC.val(u64::from(class.ec())) + ESR::IL::SET + ESR::ISS.val(u64::from(iss)))
                .value,
        )
    }

    /// Whether this is an `svc` from AArch64 (the test on the IPC
    /// fastpath's way in, before any other decoding).
    #[inline(always)]
    pub fn is_svc64(self) -> bool {
        self.0 >> 26 & 0x3f == 0x15
    }

    /// The exception class (EC, bits 31:26).
    #[inline]
    pub fn class(self) -> ExceptionClass {
        ExceptionClass::from_ec(ESR::EC.read(self.0) as u8)
    }

    /// The instruction-specific syndrome (ISS, bits 24:0).
    pub fn iss(self) -> u32 {
        ESR::ISS.read(self.0) as u32
    }

    /// The immediate of an `hvc`, `smc` or `brk` (ISS bits 15:0).
    #[inline]
    pub fn immediate(self) -> u16 {
        self.iss() as u16
    }

    /// The data-abort fields, if this is a data abort.
    pub fn data_abort(self) -> Option<DataAbort> {
        match self.class() {
            ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame => {
                Some(DataAbort::from_iss(self.0))
            }
            _ => None,
        }
    }

    /// The trapped register access, if this is a system-register trap.
    pub fn system_register(self) -> Option<SystemRegisterAccess> {
        (self.class() == ExceptionClass::SystemRegister)
            .then(|| SystemRegisterAccess::from_iss(self.0))
    }

    /// Which wait instruction trapped, if this is a WF* trap.
    pub fn wait(self) -> Option<WaitInstruction> {
        (self.class() == ExceptionClass::WaitForInterruptOrEvent).then(|| {
            match WFX::TI.read(self.0) {
                0b00 => WaitInstruction::Wfi,
                0b01 => WaitInstruction::Wfe,
                0b10 => WaitInstruction::Wfit,
                _ => WaitInstruction::Wfet,
            }
        })
    }
}

/// The instruction a WF* trap came from (ISS.TI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitInstruction {
    /// `wfi`: wait for an interrupt.
    Wfi,
    /// `wfe`: wait for an event.
    Wfe,
    /// `wfit`: `wfi` with a timeout (FEAT_WFxT).
    Wfit,
    /// `wfet`: `wfe` with a timeout (FEAT_WFxT).
    Wfet,
}

/// The ISS of a synchronous External abort not on a translation table
/// walk (DFSC/IFSC 0b010000) with FAR not valid (FnV), WnR set for a
/// `write` (data aborts only): what a VMM injects for an access nothing
/// backs. The same layout serves instruction aborts (their ISS has no
/// WnR; pass `false`).
pub fn external_abort_iss(write: bool) -> u32 {
    const FSC_EXTERNAL_ABORT: u64 = 0b01_0000;
    let wnr = if write {
        DATA_ABORT::WNR::SET
    } else {
        DATA_ABORT::WNR::CLEAR
    };
    (DATA_ABORT::FNV::SET + wnr + DATA_ABORT::DFSC.val(FSC_EXTERNAL_ABORT)).value as u32
}

/// The ISS of a data abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    /// The instruction syndrome (ISS bits 23:14) when ISV says it is valid:
    /// only then can the access be emulated without decoding the
    /// instruction (a single load or store of a general register).
    pub instruction: Option<InstructionSyndrome>,
    /// WnR: the access was a write.
    pub write: bool,
    /// FnV: FAR is not valid.
    pub far_not_valid: bool,
    /// EA: an external abort.
    pub external: bool,
    /// CM: caused by a cache maintenance instruction.
    pub cache_maintenance: bool,
    /// S1PTW: on a stage-2 translation of a stage-1 table walk.
    pub stage1_walk: bool,
    /// DFSC: the fault status code.
    pub fault_status: u8,
}

/// ISS bits 23:14 of a data abort with ISV set: what a load or store did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstructionSyndrome {
    /// Access size in bytes (SAS: 1, 2, 4 or 8).
    pub size: u8,
    /// SSE: a load sign-extends.
    pub sign_extend: bool,
    /// SRT: the general register transferred (31: `xzr`/`wzr`).
    pub register: u8,
    /// SF: the register is 64 bits wide (else 32).
    pub sixty_four: bool,
    /// AR: acquire/release semantics.
    pub acquire_release: bool,
}

impl DataAbort {
    /// Decodes the ISS bits of `esr` (the class is not checked).
    pub fn from_iss(esr: u64) -> DataAbort {
        use DATA_ABORT::*;
        let instruction = ISV.is_set(esr).then(|| InstructionSyndrome {
            size: 1 << SAS.read(esr),
            sign_extend: SSE.is_set(esr),
            register: SRT.read(esr) as u8,
            sixty_four: SF.is_set(esr),
            acquire_release: AR.is_set(esr),
        });
        DataAbort {
            instruction,
            write: WNR.is_set(esr),
            far_not_valid: FNV.is_set(esr),
            external: EA.is_set(esr),
            cache_maintenance: CM.is_set(esr),
            stage1_walk: S1PTW.is_set(esr),
            fault_status: DFSC.read(esr) as u8,
        }
    }
}

/// A system register named by its encoding (`S<op0>_<op1>_C<n>_C<m>_<op2>`),
/// Arm ARM C5.3 "A64 System instructions for ... System register access".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemRegister {
    /// op0 (2 bits).
    pub op0: u8,
    /// op1 (3 bits).
    pub op1: u8,
    /// CRn (4 bits).
    pub crn: u8,
    /// CRm (4 bits).
    pub crm: u8,
    /// op2 (3 bits).
    pub op2: u8,
}

impl SystemRegister {
    /// `S<op0>_<op1>_C<crn>_C<crm>_<op2>`.
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> SystemRegister {
        SystemRegister {
            op0,
            op1,
            crn,
            crm,
            op2,
        }
    }

    /// ICC_SGI1R_EL1 (S3_0_C12_C11_5): generates Group 1 SGIs.
    pub const ICC_SGI1R_EL1: SystemRegister = SystemRegister::new(3, 0, 12, 11, 5);
    /// ICC_ASGI1R_EL1 (S3_1_C12_C11_6): Group 1 SGIs for the other
    /// Security state.
    pub const ICC_ASGI1R_EL1: SystemRegister = SystemRegister::new(3, 1, 12, 11, 6);
    /// ICC_SGI0R_EL1 (S3_2_C12_C11_7): generates Group 0 SGIs.
    pub const ICC_SGI0R_EL1: SystemRegister = SystemRegister::new(3, 2, 12, 11, 7);
    /// PMCR_EL0 (S3_3_C9_C12_0): performance-monitor control.
    pub const PMCR_EL0: SystemRegister = SystemRegister::new(3, 3, 9, 12, 0);
}

/// A trapped `msr`/`mrs` (ISS of EC 0x18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemRegisterAccess {
    /// The register.
    pub register: SystemRegister,
    /// Rt: the general register read or written (31: `xzr`).
    pub rt: u8,
    /// Direction: `mrs` (a read of the system register), else `msr`.
    pub read: bool,
}

impl SystemRegisterAccess {
    /// Decodes the ISS bits of `esr` (the class is not checked).
    pub fn from_iss(esr: u64) -> SystemRegisterAccess {
        use SYSTEM_REGISTER::*;
        SystemRegisterAccess {
            register: SystemRegister::new(
                OP0.read(esr) as u8,
                OP1.read(esr) as u8,
                CRN.read(esr) as u8,
                CRM.read(esr) as u8,
                OP2.read(esr) as u8,
            ),
            rt: RT.read(esr) as u8,
            read: DIRECTION.is_set(esr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_round_trips() {
        for ec in 0..64u8 {
            let class = ExceptionClass::from_ec(ec);
            assert_eq!(class.ec(), ec);
            assert_eq!(Syndrome(u64::from(ec) << 26).class(), class);
        }
        assert_eq!(
            ExceptionClass::from_ec(0x24),
            ExceptionClass::DataAbortLower
        );
        assert_eq!(ExceptionClass::from_ec(0x3f), ExceptionClass::Other(0x3f));
    }

    #[test]
    fn data_abort_fields_sit_where_the_manual_puts_them() {
        // ldrsh x7, [x1] faulting at stage 2: ISV, SAS=01, SSE, SRT=7, SF,
        // translation fault level 3.
        let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (1 << 22) | (1 << 21);
        let esr = esr | (7 << 16) | (1 << 15) | 0b000111;
        let abort = Syndrome(esr).data_abort().unwrap();
        assert_eq!(
            abort.instruction,
            Some(InstructionSyndrome {
                size: 2,
                sign_extend: true,
                register: 7,
                sixty_four: true,
                acquire_release: false,
            })
        );
        assert!(!abort.write);
        assert_eq!(abort.fault_status, 0b000111);
        // A store without a valid syndrome (e.g. a store pair), FnV, EA,
        // CM, S1PTW, AR each land in their own bit.
        let esr = (0x24 << 26) | (1 << 14) | (1 << 10) | (1 << 9) | (1 << 8) | (1 << 7) | (1 << 6);
        let abort = Syndrome(esr).data_abort().unwrap();
        assert_eq!(abort.instruction, None);
        assert!(abort.write && abort.far_not_valid && abort.external);
        assert!(abort.cache_maintenance && abort.stage1_walk);
        // Not a data abort: no data-abort view.
        assert_eq!(Syndrome(0x20 << 26).data_abort(), None);
        assert_eq!(
            Syndrome(0x25 << 26).data_abort().map(|a| a.write),
            Some(false)
        );
    }

    #[test]
    fn system_register_accesses_decode() {
        // msr ICC_SGI1R_EL1, x3: op0=3 op2=5 op1=0 CRn=12 Rt=3 CRm=11 write.
        let iss = (3 << 20) | (5 << 17) | (12 << 10) | (3 << 5) | (11 << 1);
        let access = Syndrome((0x18 << 26) | (1 << 25) | iss)
            .system_register()
            .unwrap();
        assert_eq!(access.register, SystemRegister::ICC_SGI1R_EL1);
        assert_eq!((access.rt, access.read), (3, false));
        // mrs x30, PMCR_EL0.
        let iss = (3 << 20) | (3 << 14) | (9 << 10) | (30 << 5) | (12 << 1) | 1;
        let access = Syndrome((0x18 << 26) | iss).system_register().unwrap();
        assert_eq!(access.register, SystemRegister::PMCR_EL0);
        assert_eq!((access.rt, access.read), (30, true));
        assert_eq!(Syndrome(0x24 << 26).system_register(), None);
    }

    #[test]
    fn wait_instructions() {
        let wfx = |ti: u64| Syndrome((0x01 << 26) | ti).wait();
        assert_eq!(wfx(0), Some(WaitInstruction::Wfi));
        assert_eq!(wfx(1), Some(WaitInstruction::Wfe));
        assert_eq!(wfx(2), Some(WaitInstruction::Wfit));
        assert_eq!(wfx(3), Some(WaitInstruction::Wfet));
        assert_eq!(Syndrome(0).wait(), None);
        assert_eq!(Syndrome((0x16 << 26) | 0x1ff_0042).immediate(), 0x0042);
    }
}
