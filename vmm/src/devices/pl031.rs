//! An emulated Arm PL031 real-time clock: a 32-bit seconds counter that
//! the guest reads (and may load), with a match interrupt.
//!
//! Registers: ARM PrimeCell Real Time Clock (PL031) Technical Reference
//! Manual (DDI 0224), chapter 3 "Programmer's Model", register summary and
//! descriptions: RTCDR (data), RTCMR (match), RTCLR (load), RTCCR
//! (control), RTCIMSC, RTCRIS, RTCMIS, RTCICR, and the identification
//! registers. Time comes from the VMM: the wall-clock seconds when the RTC
//! was made, plus the time elapsed since on the architectural counter
//! (whose value the glue passes with every access).

use super::{Access, primecell_id};

/// Size of the register window.
pub const WINDOW: u64 = 0x1000;

/// Register offsets.
mod reg {
    pub const DR: u64 = 0x00;
    pub const MR: u64 = 0x04;
    pub const LR: u64 = 0x08;
    pub const CR: u64 = 0x0c;
    pub const IMSC: u64 = 0x10;
    pub const RIS: u64 = 0x14;
    pub const MIS: u64 = 0x18;
    pub const ICR: u64 = 0x1c;
}

/// PeriphID0-3: part 0x031, designer 0x41 (Arm), revision 1.
const PERIPH_ID: [u8; 4] = [0x31, 0x10, 0x14, 0x00];

/// The RTC's state.
#[derive(Clone, Debug)]
pub struct Pl031 {
    /// Counter ticks per second.
    frequency: u64,
    /// RTCDR at counter value `base_ticks`.
    base_seconds: u32,
    base_ticks: u64,
    /// Last value written to RTCLR.
    load: u32,
    match_value: u32,
    /// Counter value at which RTCDR next equals RTCMR.
    match_at: u64,
    imsc: bool,
    ris: bool,
}

impl Pl031 {
    /// An RTC reading `seconds` (e.g. seconds since 1970) at counter value
    /// `now`, counting at `frequency` ticks per second (CNTFRQ_EL0; at
    /// least 1).
    ///
    /// It is running from the start (RTCCR.RTCStart set): the VMM is the
    /// guest's firmware, which starts the RTC so that the guest's time is
    /// right from power-on.
    pub fn new(seconds: u32, now: u64, frequency: u64) -> Pl031 {
        let mut rtc = Pl031 {
            frequency: frequency.max(1),
            base_seconds: seconds,
            base_ticks: now,
            load: 0,
            match_value: 0,
            match_at: 0,
            imsc: false,
            ris: false,
        };
        rtc.schedule_match(now);
        rtc
    }

    /// Whole seconds elapsed since the last load, at counter value `now`.
    fn elapsed(&self, now: u64) -> u64 {
        now.saturating_sub(self.base_ticks) / self.frequency
    }

    /// RTCDR at counter value `now` (it wraps after 2^32 seconds).
    fn seconds(&self, now: u64) -> u32 {
        self.base_seconds.wrapping_add(self.elapsed(now) as u32)
    }

    /// Works out when RTCDR next equals RTCMR. A match value equal to the
    /// current time matches at once.
    fn schedule_match(&mut self, now: u64) {
        let ahead = u64::from(self.match_value.wrapping_sub(self.seconds(now)));
        let at_second = self.elapsed(now) + ahead;
        self.match_at = self
            .base_ticks
            .saturating_add(at_second.saturating_mul(self.frequency));
        self.poll_at(now);
    }

    /// Raises the raw interrupt if the match time has come; the next match
    /// is 2^32 seconds later.
    fn poll_at(&mut self, now: u64) {
        if now >= self.match_at {
            self.ris = true;
            self.match_at = self
                .match_at
                .saturating_add((1u64 << 32).saturating_mul(self.frequency));
        }
    }

    /// The level of RTCINTR.
    pub fn irq_line(&self) -> bool {
        self.ris && self.imsc
    }

    fn access<T>(&self, value: T) -> Access<T> {
        Access {
            value,
            irq_line: self.irq_line(),
        }
    }

    /// Brings the match interrupt up to date at counter value `now` (the
    /// glue calls it when the timer it armed for [`Pl031::next_match`]
    /// fires).
    pub fn poll(&mut self, now: u64) -> Access<()> {
        self.poll_at(now);
        self.access(())
    }

    /// When the VMM should next call [`Pl031::poll`]: the counter value of
    /// the next match, if the match interrupt is unmasked (a masked one
    /// needs no timely update: any access brings it up to date).
    pub fn next_match(&self) -> Option<u64> {
        self.imsc.then_some(self.match_at)
    }

    /// A load from register `offset` at counter value `now` (the registers
    /// are 32 bits wide); unknown offsets read as zero.
    pub fn read(&mut self, offset: u64, now: u64) -> Access<u32> {
        self.poll_at(now);
        let value = match offset {
            reg::DR => self.seconds(now),
            reg::MR => self.match_value,
            reg::LR => self.load,
            // RTCStart: set, and once set it stays set until reset.
            reg::CR => 1,
            reg::IMSC => u32::from(self.imsc),
            reg::RIS => u32::from(self.ris),
            reg::MIS => u32::from(self.irq_line()),
            o => primecell_id(o, PERIPH_ID).unwrap_or(0),
        };
        self.access(value)
    }

    /// A store of `value` to register `offset` at counter value `now`.
    pub fn write(&mut self, offset: u64, value: u64, now: u64) -> Access<()> {
        self.poll_at(now);
        let value = value as u32;
        match offset {
            reg::MR => {
                self.match_value = value;
                self.schedule_match(now);
            }
            reg::LR => {
                // Loading restarts the count from the new value.
                self.load = value;
                self.base_seconds = value;
                self.base_ticks = now;
                self.schedule_match(now);
            }
            reg::IMSC => self.imsc = value & 1 != 0,
            reg::ICR if value & 1 != 0 => self.ris = false,
            // RTCCR: writes have no effect once the RTC runs (DDI 0224,
            // RTCCR); RTCDR, RTCRIS, RTCMIS and the IDs are read-only.
            _ => {}
        }
        self.access(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HZ: u64 = 62_500_000;

    #[test]
    fn counts_seconds_from_the_host_time() {
        let mut rtc = Pl031::new(1_700_000_000, 1000, HZ);
        assert_eq!(rtc.read(reg::DR, 1000).value, 1_700_000_000);
        assert_eq!(rtc.read(reg::DR, 1000 + HZ - 1).value, 1_700_000_000);
        assert_eq!(rtc.read(reg::DR, 1000 + 5 * HZ).value, 1_700_000_005);
        assert_eq!(rtc.read(reg::CR, 0).value, 1);
        let ids: std::vec::Vec<u32> = (0..8).map(|i| rtc.read(0xfe0 + 4 * i, 0).value).collect();
        assert_eq!(ids, [0x31, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        // Writing RTCCR cannot stop it.
        rtc.write(reg::CR, 0, 2 * HZ);
        assert_eq!(rtc.read(reg::DR, 1000 + 7 * HZ).value, 1_700_000_007);
    }

    #[test]
    fn load_restarts_the_count() {
        let mut rtc = Pl031::new(100, 0, HZ);
        rtc.write(reg::LR, 5000, 3 * HZ + 7);
        assert_eq!(rtc.read(reg::LR, 3 * HZ + 7).value, 5000);
        assert_eq!(rtc.read(reg::DR, 3 * HZ + 8).value, 5000);
        assert_eq!(rtc.read(reg::DR, 4 * HZ + 7).value, 5001);
        // The count wraps at 2^32.
        rtc.write(reg::LR, u32::MAX.into(), 0);
        assert_eq!(rtc.read(reg::DR, HZ).value, 0);
    }

    /// What Linux's rtc-pl031 does for an alarm: set RTCMR, unmask, wait
    /// for the interrupt, clear it.
    #[test]
    fn match_interrupt() {
        let mut rtc = Pl031::new(1000, 0, HZ);
        rtc.write(reg::MR, 1003, HZ / 2);
        assert_eq!(rtc.next_match(), None, "masked: no timer needed");
        assert!(!rtc.write(reg::IMSC, 1, HZ / 2).irq_line);
        assert_eq!(rtc.next_match(), Some(3 * HZ));
        assert!(!rtc.poll(3 * HZ - 1).irq_line);
        assert!(rtc.poll(3 * HZ).irq_line);
        assert_eq!(rtc.read(reg::RIS, 3 * HZ).value, 1);
        assert_eq!(rtc.read(reg::MIS, 3 * HZ).value, 1);
        assert!(!rtc.write(reg::ICR, 1, 3 * HZ).irq_line);
        // It does not fire again for 2^32 seconds.
        assert!(!rtc.poll(100 * HZ).irq_line);
        // A match value equal to the current time matches at once.
        assert!(rtc.write(reg::MR, 1100, 100 * HZ).irq_line);
        // The raw interrupt is set while masked, and shows once unmasked.
        rtc.write(reg::ICR, 1, 100 * HZ);
        rtc.write(reg::IMSC, 0, 100 * HZ);
        rtc.write(reg::MR, 1101, 100 * HZ);
        assert_eq!(rtc.read(reg::RIS, 101 * HZ).value, 1);
        assert!(rtc.write(reg::IMSC, 1, 101 * HZ).irq_line);
    }

    proptest! {
        /// Any access sequence at non-decreasing times: no panic, and the
        /// line is RIS & IMSC.
        #[test]
        fn any_access_sequence(
            start: u32,
            frequency in 0u64..100_000_000,
            ops in proptest::collection::vec((0u64..0x1010, any::<u64>(), any::<bool>(), 0u64..1 << 40), 0..100),
        ) {
            let mut now = 0u64;
            let mut rtc = Pl031::new(start, now, frequency);
            for (offset, value, write, step) in ops {
                now = now.saturating_add(step);
                let line = if write {
                    rtc.write(offset, value, now).irq_line
                } else {
                    rtc.read(offset, now).irq_line
                };
                prop_assert_eq!(line, rtc.read(reg::MIS, now).value == 1);
            }
        }
    }
}
