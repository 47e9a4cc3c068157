//! Which PSTATE a guest may be resumed with (SPSR_EL2 layout, Arm ARM
//! C5.2.19): AArch64 EL0t, EL1t or EL1h; never EL2, never AArch32.

use skyscope_abi::vcpu::aarch64::mode;

/// `spsr` if its mode is one a guest may run in, else the same with
/// mode EL1h. Every other field (flags, masks, PAN, SS, ...) is the
/// guest's own business.
pub fn sanitize(spsr: u64) -> u64 {
    let m = spsr & 0b1_1111;
    if [mode::EL0T, mode::EL1T, mode::EL1H].contains(&m) {
        spsr
    } else {
        (spsr & !0b1_1111) | mode::EL1H
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_guest_modes_survive() {
        assert_eq!(sanitize(0x3c5), 0x3c5); // EL1h, DAIF masked
        assert_eq!(sanitize(0x3c4), 0x3c4);
        assert_eq!(sanitize(0x0), 0x0);
        assert_eq!(sanitize(0x3c9), 0x3c5); // EL2h refused
        assert_eq!(sanitize(0x3c8), 0x3c5); // EL2t refused
        assert_eq!(sanitize(0x10), 0x5); // AArch32 refused
        for m in 0..32u64 {
            let s = sanitize(0xf000_0000 | m) & 0b1_1111;
            assert!([0, 4, 5].contains(&s), "mode {m:#x} became {s:#x}");
        }
    }
}
