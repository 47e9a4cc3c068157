//! Injecting a synchronous exception into a guest's EL1: what a guest sees
//! when it touches what nothing backs (an external abort) or executes what
//! the VMM does not implement (an undefined instruction), computed from
//! the guest's registers as plain values so the host tests check them.
//!
//! The VMM does what the PE does when it takes an exception to EL1
//! (Arm ARM, DDI 0487, the pseudocode `AArch64.TakeException()` and the
//! rules it follows):
//!
//! - `ELR_EL1` gets the preferred return address — for a synchronous
//!   abort and an undefined instruction, the instruction itself;
//! - `SPSR_EL1` gets PSTATE as it was;
//! - PSTATE becomes EL1 with SP_EL1 (EL1h), D, A, I and F set; PAN is set
//!   when `SCTLR_EL1.SPAN` is 0 (FEAT_PAN), SSBS follows
//!   `SCTLR_EL1.DSSBS` (FEAT_SSBS); the condition flags are kept; SS, IL,
//!   BTYPE and the other fields are cleared;
//! - the PC goes to `VBAR_EL1` plus the vector offset ("Exception
//!   vectors": 0x000 from the current EL with SP_EL0, 0x200 from the
//!   current EL with SP_ELx, 0x400 from a lower EL using AArch64; the
//!   synchronous entry is the first of each group);
//! - `ESR_EL1` describes it ("ESR_EL1, Exception Syndrome Register (EL1)":
//!   EC in bits 31:26, IL bit 25 = 1 for a 32-bit instruction, ISS);
//! - for an abort, `FAR_EL1` would hold the faulting virtual address. The
//!   exit tells the VMM only the guest-physical one, so the syndrome sets
//!   FnV ("FAR not Valid", ISS bit 10, which the architecture provides for
//!   synchronous external aborts) and FAR_EL1 is written as 0.
//!
//! Data and instruction aborts are reported as a synchronous External
//! abort not on a translation table walk (DFSC/IFSC 0b010000, "ISS
//! encoding for an exception from a Data Abort" and "... from an
//! Instruction Abort"), with EC 0x24/0x20 when the guest was at EL0 and
//! 0x25/0x21 when at EL1, and WnR (bit 6) for a data write. An undefined
//! instruction is EC 0x00, "Unknown reason", ISS 0.

use skyscope_abi::vcpu::aarch64::mode;
use skyscope_el2::esr::{ExceptionClass, Syndrome, external_abort_iss};

/// What to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    /// A synchronous external abort on a data access (`write`: a store).
    DataAbort {
        /// The access was a write.
        write: bool,
    },
    /// A synchronous external abort on an instruction fetch.
    InstructionAbort,
    /// An undefined instruction.
    Undefined,
}

/// The guest's state the injection depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestState {
    /// The address of the instruction that trapped.
    pub pc: u64,
    /// PSTATE (SPSR_EL2 layout, as the Vcpu's PSTATE register holds it).
    pub pstate: u64,
    /// VBAR_EL1.
    pub vbar: u64,
    /// SCTLR_EL1.
    pub sctlr: u64,
}

/// The registers to write so that the guest takes the exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// The new PC: the vector.
    pub pc: u64,
    /// The new PSTATE.
    pub pstate: u64,
    /// ELR_EL1.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1, for an abort (an undefined instruction leaves it alone).
    pub far: Option<u64>,
}

/// PSTATE.M: exception level and stack pointer (bits 3:0) and the
/// execution state (bit 4, 1 for AArch32).
const M_MASK: u64 = 0b1_1111;
/// PSTATE.{D,A,I,F}, bits 9:6.
const DAIF: u64 = 0b1111 << 6;
/// PSTATE.{N,Z,C,V}, bits 31:28.
const NZCV: u64 = 0b1111 << 28;
/// PSTATE.PAN, bit 22; PSTATE.SSBS, bit 12.
const PAN: u64 = 1 << 22;
const SSBS: u64 = 1 << 12;
/// SCTLR_EL1.SPAN (bit 23): 0 sets PAN on exception entry to EL1;
/// SCTLR_EL1.DSSBS (bit 44): the SSBS value on exception entry.
const SCTLR_SPAN: u64 = 1 << 23;
const SCTLR_DSSBS: u64 = 1 << 44;

/// Vector offsets from VBAR_EL1 of the synchronous entries.
pub mod vector {
    /// From EL1 using SP_EL0 (EL1t).
    pub const CURRENT_SP0: u64 = 0x000;
    /// From EL1 using SP_EL1 (EL1h).
    pub const CURRENT_SPX: u64 = 0x200;
    /// From EL0 in AArch64.
    pub const LOWER_AARCH64: u64 = 0x400;
}

/// Computes the injection of `exception` into a guest in `state`.
pub fn inject(exception: Exception, state: GuestState) -> Injection {
    // The kernel runs guests only at EL0t, EL1t or EL1h in AArch64 (other
    // modes read back as EL1h), so these are the cases.
    let from = state.pstate & M_MASK;
    let lower = from == mode::EL0T;
    let offset = match from {
        mode::EL0T => vector::LOWER_AARCH64,
        mode::EL1T => vector::CURRENT_SP0,
        _ => vector::CURRENT_SPX,
    };
    let (class, iss, far) = match exception {
        Exception::DataAbort { write } => {
            let class = if lower {
                ExceptionClass::DataAbortLower
            } else {
                ExceptionClass::DataAbortSame
            };
            (class, external_abort_iss(write), Some(0))
        }
        Exception::InstructionAbort => {
            let class = if lower {
                ExceptionClass::InstructionAbortLower
            } else {
                ExceptionClass::InstructionAbortSame
            };
            (class, external_abort_iss(false), Some(0))
        }
        Exception::Undefined => (ExceptionClass::Unknown, 0, None),
    };
    let mut pstate = (state.pstate & NZCV) | DAIF | mode::EL1H;
    pstate |= if state.sctlr & SCTLR_SPAN == 0 {
        PAN
    } else {
        state.pstate & PAN
    };
    if state.sctlr & SCTLR_DSSBS != 0 {
        pstate |= SSBS;
    }
    Injection {
        pc: state.vbar.wrapping_add(offset),
        pstate,
        elr: state.pc,
        spsr: state.pstate,
        esr: Syndrome::new(class, iss).0,
        far,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use skyscope_el2::esr::{ExceptionClass, Syndrome};

    const VBAR: u64 = 0xffff_8000_8001_0800;
    /// A Linux kernel's SCTLR_EL1 with SPAN clear (PAN on entry).
    const SCTLR: u64 = 0x0000_0000_34d4_d91d & !SCTLR_SPAN;

    fn state(pstate: u64) -> GuestState {
        GuestState {
            pc: 0xffff_8000_8123_4568,
            pstate,
            vbar: VBAR,
            sctlr: SCTLR,
        }
    }

    #[test]
    fn a_kernel_load_from_nothing_takes_the_current_el_vector() {
        // EL1h with IRQs unmasked and Z set.
        let s = state(0x4000_0005);
        let i = inject(Exception::DataAbort { write: false }, s);
        assert_eq!(i.pc, VBAR + 0x200);
        assert_eq!(i.elr, s.pc);
        assert_eq!(i.spsr, 0x4000_0005);
        assert_eq!(i.pstate, 0x4000_0000 | PAN | 0x3c5);
        // EC 0x25, IL, FnV, DFSC 0b010000.
        assert_eq!(i.esr, 0x9600_0410);
        assert_eq!(i.far, Some(0));
        // The kernel's own decoder reads it back as that.
        let syndrome = Syndrome(i.esr);
        assert_eq!(syndrome.class(), ExceptionClass::DataAbortSame);
        let abort = syndrome.data_abort().unwrap();
        assert!(abort.far_not_valid && !abort.write && abort.instruction.is_none());
    }

    #[test]
    fn user_space_and_el1t_take_their_own_vectors() {
        let store = inject(Exception::DataAbort { write: true }, state(mode::EL0T));
        assert_eq!(store.pc, VBAR + 0x400);
        assert_eq!(store.esr, 0x9200_0450, "EC 0x24 with WnR");
        let fetch = inject(Exception::InstructionAbort, state(mode::EL0T));
        assert_eq!(fetch.esr, 0x8200_0410);
        let fetch = inject(Exception::InstructionAbort, state(mode::EL1T | DAIF));
        assert_eq!(fetch.pc, VBAR);
        assert_eq!(fetch.esr, 0x8600_0410);
        assert_eq!(
            Syndrome(fetch.esr).class(),
            ExceptionClass::InstructionAbortSame
        );
    }

    #[test]
    fn an_undefined_instruction_has_the_unknown_class() {
        let i = inject(Exception::Undefined, state(mode::EL1H));
        assert_eq!(i.esr, 0x0200_0000);
        assert_eq!(i.far, None);
        assert_eq!(i.pc, VBAR + 0x200);
        assert_eq!(Syndrome(i.esr).class(), ExceptionClass::Unknown);
    }

    #[test]
    fn pan_and_ssbs_follow_sctlr() {
        let mut s = state(mode::EL0T | PAN);
        s.sctlr |= SCTLR_SPAN;
        assert_eq!(inject(Exception::Undefined, s).pstate & PAN, PAN, "kept");
        s.pstate = mode::EL0T;
        assert_eq!(inject(Exception::Undefined, s).pstate & PAN, 0, "kept");
        s.sctlr |= SCTLR_DSSBS;
        assert_eq!(inject(Exception::Undefined, s).pstate & SSBS, SSBS);
    }

    proptest! {
        /// Whatever the guest's registers: the new PSTATE is EL1h with
        /// every interrupt masked, the vector is one of the three
        /// synchronous entries, the old state is saved as it was, and the
        /// syndrome says a 32-bit instruction.
        #[test]
        fn any_state(pc: u64, pstate: u64, vbar: u64, sctlr: u64, kind in 0u8..4) {
            let pstate = skyscope_el2::pstate::sanitize(pstate);
            let exception = match kind {
                0 => Exception::DataAbort { write: false },
                1 => Exception::DataAbort { write: true },
                2 => Exception::InstructionAbort,
                _ => Exception::Undefined,
            };
            let i = inject(exception, GuestState { pc, pstate, vbar, sctlr });
            prop_assert_eq!(i.pstate & M_MASK, mode::EL1H);
            prop_assert_eq!(i.pstate & DAIF, DAIF);
            prop_assert_eq!(skyscope_el2::pstate::sanitize(i.pstate), i.pstate);
            prop_assert!([0, 0x200, 0x400].contains(&i.pc.wrapping_sub(vbar)));
            prop_assert_eq!((i.elr, i.spsr), (pc, pstate));
            prop_assert_ne!(i.esr & 1 << 25, 0, "IL (bit 25) clear");
            prop_assert_eq!(i.esr >> 32, 0);
        }
    }
}
