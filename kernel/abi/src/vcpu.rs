//! Virtual CPUs: register indices for `Vcpu::ReadRegister` and
//! `Vcpu::WriteRegister`, per architecture.
//!
//! A thread bound to a Vcpu runs guest code. Its general registers, PC and
//! stack pointer are the TCB's (`TCB::ReadRegisters`/`WriteRegisters`);
//! the guest kernel's system registers live in the Vcpu. A guest exit
//! reaches the thread's fault handler as a [`crate::fault::GUEST_EXIT`]
//! message.

/// arm64: the guest's EL1 state. Names are the architectural registers
/// (Arm ARM, chapter D23 "AArch64 System Register Descriptions").
pub mod aarch64 {
    /// Guest PSTATE as restored by `eret` (SPSR_EL2 layout). Mode must be
    /// EL0t, EL1t or EL1h (AArch64); anything else reads back as EL1h.
    pub const PSTATE: u64 = 0;
    /// SCTLR_EL1: system control (MMU, caches, alignment checks).
    pub const SCTLR_EL1: u64 = 1;
    /// TTBR0_EL1: stage-1 table base, lower half.
    pub const TTBR0_EL1: u64 = 2;
    /// TTBR1_EL1: stage-1 table base, upper half.
    pub const TTBR1_EL1: u64 = 3;
    /// TCR_EL1: translation control.
    pub const TCR_EL1: u64 = 4;
    /// MAIR_EL1: memory attribute indirection.
    pub const MAIR_EL1: u64 = 5;
    /// AMAIR_EL1: auxiliary memory attributes.
    pub const AMAIR_EL1: u64 = 6;
    /// VBAR_EL1: the guest kernel's exception vectors.
    pub const VBAR_EL1: u64 = 7;
    /// CONTEXTIDR_EL1.
    pub const CONTEXTIDR_EL1: u64 = 8;
    /// TPIDR_EL1: the guest kernel's thread pointer.
    pub const TPIDR_EL1: u64 = 9;
    /// TPIDRRO_EL0: read-only thread pointer of guest user space.
    pub const TPIDRRO_EL0: u64 = 10;
    /// SP_EL1: the guest kernel's stack pointer (when PSTATE is not EL1h).
    pub const SP_EL1: u64 = 11;
    /// ELR_EL1: the guest's exception return address.
    pub const ELR_EL1: u64 = 12;
    /// SPSR_EL1: the guest's saved PSTATE.
    pub const SPSR_EL1: u64 = 13;
    /// ESR_EL1: the guest's exception syndrome.
    pub const ESR_EL1: u64 = 14;
    /// FAR_EL1: the guest's fault address.
    pub const FAR_EL1: u64 = 15;
    /// AFSR0_EL1.
    pub const AFSR0_EL1: u64 = 16;
    /// AFSR1_EL1.
    pub const AFSR1_EL1: u64 = 17;
    /// PAR_EL1: address-translation result.
    pub const PAR_EL1: u64 = 18;
    /// CPACR_EL1: the guest kernel's FP/SIMD access control.
    pub const CPACR_EL1: u64 = 19;
    /// CNTKCTL_EL1: guest timer access control.
    pub const CNTKCTL_EL1: u64 = 20;
    /// CNTV_CTL_EL0: the guest's virtual timer control.
    pub const CNTV_CTL_EL0: u64 = 21;
    /// CNTV_CVAL_EL0: the guest's virtual timer compare value.
    pub const CNTV_CVAL_EL0: u64 = 22;
    /// CNTVOFF_EL2: offset of the guest's virtual counter.
    pub const CNTVOFF_EL2: u64 = 23;
    /// VMPIDR_EL2: what the guest reads as MPIDR_EL1.
    pub const VMPIDR_EL2: u64 = 24;
    /// CSSELR_EL1: which cache CCSIDR_EL1 describes (the guest's own).
    pub const CSSELR_EL1: u64 = 25;
    /// APIAKeyLo_EL1: pointer-authentication instruction key A, low half
    /// (this and the following keys read as 0 and are ignored on CPUs
    /// without pointer authentication).
    pub const APIAKEYLO_EL1: u64 = 26;
    /// APIAKeyHi_EL1.
    pub const APIAKEYHI_EL1: u64 = 27;
    /// APIBKeyLo_EL1: instruction key B.
    pub const APIBKEYLO_EL1: u64 = 28;
    /// APIBKeyHi_EL1.
    pub const APIBKEYHI_EL1: u64 = 29;
    /// APDAKeyLo_EL1: data key A.
    pub const APDAKEYLO_EL1: u64 = 30;
    /// APDAKeyHi_EL1.
    pub const APDAKEYHI_EL1: u64 = 31;
    /// APDBKeyLo_EL1: data key B.
    pub const APDBKEYLO_EL1: u64 = 32;
    /// APDBKeyHi_EL1.
    pub const APDBKEYHI_EL1: u64 = 33;
    /// APGAKeyLo_EL1: generic key.
    pub const APGAKEYLO_EL1: u64 = 34;
    /// APGAKeyHi_EL1.
    pub const APGAKEYHI_EL1: u64 = 35;
    /// The guest's EL1 physical timer control, CNTP_CTL_EL0 as the guest
    /// sees it (the kernel's own tick uses the EL2 timer, so the guest has
    /// this one to itself, as under KVM).
    pub const CNTP_CTL_EL0: u64 = 36;
    /// CNTP_CVAL_EL0: the guest's physical timer compare value (in the
    /// physical count: the guest's physical counter has no offset).
    pub const CNTP_CVAL_EL0: u64 = 37;
    /// How the kernel delivers the virtual timer's interrupt (PPI 27):
    /// a [`timer_irq`] word. The VMM's redistributor model writes it when
    /// the guest enables, disables or reprioritises that PPI.
    pub const VTIMER_IRQ: u64 = 38;
    /// As [`VTIMER_IRQ`], for the physical timer's PPI 30.
    pub const PTIMER_IRQ: u64 = 39;
    /// Number of registers.
    pub const COUNT: u64 = 40;

    /// The interrupt IDs the kernel raises in the guest for its timers
    /// (the PPIs Linux's `arm,armv8-timer` binding names for EL1).
    pub mod timer_ppi {
        /// EL1 virtual timer.
        pub const VIRTUAL: u32 = 27;
        /// EL1 physical timer.
        pub const PHYSICAL: u32 = 30;
    }

    /// Fields of [`VTIMER_IRQ`] and [`PTIMER_IRQ`]. A new Vcpu has both
    /// disabled: nothing reaches a guest that has not enabled the PPI.
    pub mod timer_irq {
        /// The guest has the PPI enabled (GICR_ISENABLER0).
        pub const ENABLED: u64 = 1 << 0;
        /// The PPI is in Group 1 (GICR_IGROUPR0); else Group 0.
        pub const GROUP1: u64 = 1 << 1;
        /// Its priority (GICR_IPRIORITYR), bits 15:8.
        pub const PRIORITY_SHIFT: u32 = 8;
    }

    /// PSTATE mode field values a guest may run in (SPSR_EL2.M, bits 3..0).
    pub mod mode {
        /// EL0 with SP_EL0.
        pub const EL0T: u64 = 0b0000;
        /// EL1 with SP_EL0.
        pub const EL1T: u64 = 0b0100;
        /// EL1 with SP_EL1.
        pub const EL1H: u64 = 0b0101;
    }
    /// PSTATE.DAIF: all four exception masks (SPSR bits 9..6).
    pub const PSTATE_DAIF: u64 = 0b1111 << 6;
}

/// `Vcpu::SetIrq` flags: how the VMM drives one of the guest's virtual
/// interrupt lines. The kernel owns the virtual CPU interface (list
/// registers), queues what does not fit, and resamples level-sensitive
/// lines when the guest ends them.
pub mod irq {
    /// Level-sensitive: the interrupt stays pending while the line is high
    /// and is pended again at the guest's EOI if still high. Without it,
    /// the interrupt is an edge: `HIGH` makes it pending once.
    pub const LEVEL: u64 = 1 << 0;
    /// The line is high (for an edge: fire it).
    pub const HIGH: u64 = 1 << 1;
    /// Group 1 (what Linux uses); else Group 0.
    pub const GROUP1: u64 = 1 << 2;
    /// The first INTID that cannot be injected (1020..1023 are special).
    pub const INTID_LIMIT: u64 = 1020;
}
