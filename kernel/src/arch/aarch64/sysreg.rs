//! Moving guest state between the CPU and Vcpu objects: `mrs`/`msr` by
//! encoding (`S<op0>_<op1>_C<n>_C<m>_<op2>`, Arm ARM C5.3), for the
//! registers a guest owns (its EL1 state through the `*_EL12`/`*_EL02`
//! aliases, its timers, the GIC's virtual interface) and EL2's guest
//! configuration. Nothing written through these macros affects the
//! translation regime or exception handling the kernel itself runs in
//! (EL2&0 with HCR_EL2.TGE set).

/// Reads a system register by its encoding.
macro_rules! read_sysreg {
    ($enc:expr) => {{
        let v: u64;
        // SAFETY: reading a system register has no side effects (none of
        // the registers read this way is a read-to-acknowledge one).
        unsafe { core::arch::asm!(concat!("mrs {}, ", $enc), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

/// Writes a system register by its encoding.
macro_rules! write_sysreg {
    ($enc:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: only guest-owned state and EL2's guest configuration are
        // written this way (see the module documentation), never what the
        // kernel's own regime depends on.
        unsafe { core::arch::asm!(concat!("msr ", $enc, ", {}"), in(reg) v, options(nomem, nostack)) };
    }};
}
