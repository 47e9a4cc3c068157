//! The kernel's tick: the EL2 physical timer (CNTHP_*_EL2).
//!
//! With VHE the EL1 timers (CNTP, CNTV) stay free for guests; the kernel
//! owns the hypervisor physical timer (Arm ARM D12.9, registers D23.8).

/// Counter frequency in Hz (CNTFRQ_EL0).
pub fn frequency() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f
}

/// Current count of the physical counter (CNTPCT_EL0).
pub fn now() -> u64 {
    let c: u64;
    // SAFETY: reading the counter has no side effects; `isb` orders it.
    unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) c, options(nomem, nostack)) };
    c
}

/// Arms the EL2 timer to fire when the counter reaches `deadline`.
pub fn arm_at(deadline: u64) {
    // SAFETY: CNTHP_CVAL_EL2 (S3_4_C14_C2_2) is the absolute compare value;
    // CNTHP_CTL_EL2 (S3_4_C14_C2_1) = ENABLE, IMASK clear.
    unsafe {
        core::arch::asm!(
            "msr S3_4_C14_C2_2, {deadline}",
            "msr S3_4_C14_C2_1, {ctl}",
            "isb",
            deadline = in(reg) deadline,
            ctl = in(reg) 1u64,
            options(nostack),
        );
    }
}

/// Arms the EL2 timer to fire `ticks` counter ticks from now.
pub fn arm(ticks: u64) {
    // SAFETY: CNTHP_TVAL_EL2 (S3_4_C14_C2_0) sets the deadline relative to
    // now; CNTHP_CTL_EL2 (S3_4_C14_C2_1) = ENABLE, IMASK clear.
    unsafe {
        core::arch::asm!(
            "msr S3_4_C14_C2_0, {ticks}",
            "msr S3_4_C14_C2_1, {ctl}",
            "isb",
            ticks = in(reg) ticks.min(u64::from(u32::MAX >> 1)),
            ctl = in(reg) 1u64,
            options(nostack),
        );
    }
}

/// Configures which counters and timers EL0 and guests may access.
///
/// CNTHCTL_EL2 with E2H=1 (Arm ARM D23.8.3): EL0PCTEN (bit 0) and EL0VCTEN
/// (bit 1) let user code read the counters (benchmarks time with them);
/// the EL0 timer registers stay trapped (EL0PTEN, EL0VTEN clear). With
/// TGE clear, EL1PCTEN (bit 10) and EL1PTEN (bit 11) give a guest its EL1
/// physical counter and timer, which the kernel switches per Vcpu.
/// CNTVOFF_EL2 = 0 makes the virtual count equal the physical count for
/// native threads.
pub fn init_el0_access() {
    // SAFETY: plain configuration writes with no memory effects.
    unsafe {
        core::arch::asm!(
            "msr S3_4_C14_C1_0, {ctl}",
            "msr S3_4_C14_C0_3, xzr",
            "isb",
            ctl = in(reg) 0b1100_0000_0011u64,
            options(nostack),
        );
    }
}
