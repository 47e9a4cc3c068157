//! A guest's EL1 generic timers as the kernel sees them while their Vcpu is
//! switched out: when each one's output would rise, and whether it is
//! high now. CNTV_CTL_EL0 / CNTP_CTL_EL0 layout: Arm ARM D23.8
//! ("Generic Timer registers"): ENABLE (bit 0), IMASK (bit 1), ISTATUS
//! (bit 2); the virtual count is the physical count minus CNTVOFF_EL2.

/// CNTx_CTL_EL0.ENABLE.
pub const CTL_ENABLE: u64 = 1 << 0;
/// CNTx_CTL_EL0.IMASK: the timer's interrupt is masked (ISTATUS still
/// reports the condition).
pub const CTL_IMASK: u64 = 1 << 1;
/// CNTx_CTL_EL0.ISTATUS: the timer condition is met.
pub const CTL_ISTATUS: u64 = 1 << 2;

/// One EL1 timer's saved registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedTimer {
    /// CNTx_CTL_EL0.
    pub ctl: u64,
    /// CNTx_CVAL_EL0 (in the timer's own count).
    pub cval: u64,
    /// What the physical count minus this timer's count is (CNTVOFF_EL2
    /// for the virtual timer, 0 for the physical one).
    pub offset: u64,
}

impl SavedTimer {
    /// Whether the timer's interrupt output is asserted at physical count
    /// `now`: enabled, not masked, condition met.
    pub fn output(self, now: u64) -> bool {
        self.ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE
            && now.wrapping_sub(self.offset) >= self.cval
    }

    /// The physical count at which the output rises, if it is low now and
    /// will rise without the guest running (enabled and not masked).
    pub fn rises_at(self, now: u64) -> Option<u64> {
        if self.ctl & (CTL_ENABLE | CTL_IMASK) != CTL_ENABLE || self.output(now) {
            return None;
        }
        // The condition is met once count - offset >= cval; the count
        // cannot wrap in the machine's lifetime (64 bits).
        Some(self.cval.saturating_add(self.offset))
    }
}

/// Whether a loaded timer's interrupt output is asserted, from its live
/// control register (ISTATUS is computed by the hardware).
pub fn live_output(ctl: u64) -> bool {
    ctl & (CTL_ENABLE | CTL_IMASK | CTL_ISTATUS) == CTL_ENABLE | CTL_ISTATUS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_follows_enable_mask_and_compare() {
        let t = SavedTimer {
            ctl: CTL_ENABLE,
            cval: 1000,
            offset: 200,
        };
        assert!(!t.output(1199));
        assert!(t.output(1200));
        assert_eq!(t.rises_at(500), Some(1200));
        assert_eq!(t.rises_at(1300), None, "already high");
        let masked = SavedTimer {
            ctl: CTL_ENABLE | CTL_IMASK,
            ..t
        };
        assert!(!masked.output(5000));
        assert_eq!(masked.rises_at(0), None);
        let off = SavedTimer { ctl: 0, ..t };
        assert_eq!(off.rises_at(0), None);
        assert!(live_output(CTL_ENABLE | CTL_ISTATUS));
        assert!(!live_output(CTL_ENABLE | CTL_IMASK | CTL_ISTATUS));
        assert!(!live_output(CTL_ISTATUS));
    }

    #[test]
    fn huge_compare_values_do_not_wrap() {
        let t = SavedTimer {
            ctl: CTL_ENABLE,
            cval: u64::MAX - 5,
            offset: 100,
        };
        assert_eq!(t.rises_at(0), Some(u64::MAX));
    }
}
