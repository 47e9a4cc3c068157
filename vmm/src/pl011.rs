//! An emulated Arm PL011 UART: enough for a guest to print (data and flag
//! registers, the identification registers drivers probe).
//!
//! Register offsets and ID values: Arm PrimeCell UART (PL011) Technical
//! Reference Manual, r1p5, section 3.2 "Summary of registers" and 3.3.14-17
//! (UARTPeriphID0-3, UARTPCellID0-3).

/// Data register.
const UARTDR: u64 = 0x000;
/// Flag register.
const UARTFR: u64 = 0x018;
/// First identification register (PeriphID0); eight follow, 4 bytes apart.
const PERIPH_ID0: u64 = 0xfe0;
/// Identification values at 0xfe0..0xffc: PeriphID0-3, PCellID0-3.
const IDS: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
/// UARTFR: transmit FIFO empty, receive FIFO empty.
const FR_TXFE: u64 = 1 << 7;
const FR_RXFE: u64 = 1 << 4;
/// Size of the register window.
pub const WINDOW: u64 = 0x1000;

/// The UART's state: a line buffer of what the guest printed.
#[derive(Clone, Debug)]
pub struct Pl011 {
    line: [u8; 128],
    len: usize,
}

impl Default for Pl011 {
    fn default() -> Self {
        Pl011 {
            line: [0; 128],
            len: 0,
        }
    }
}

impl Pl011 {
    /// A load from register `offset`.
    pub fn read(&self, offset: u64) -> u64 {
        match offset {
            UARTFR => FR_TXFE | FR_RXFE,
            o if (PERIPH_ID0..PERIPH_ID0 + 32).contains(&o) && o % 4 == 0 => {
                u64::from(IDS[((o - PERIPH_ID0) / 4) as usize])
            }
            _ => 0, // nothing received; other registers read as zero
        }
    }

    /// A store to register `offset`. A complete line (or a full buffer) is
    /// returned for the VMM to print.
    pub fn write(&mut self, offset: u64, value: u64) -> Option<&[u8]> {
        if offset != UARTDR {
            return None; // control registers: accepted and ignored
        }
        if self.len == self.line.len() {
            self.len = 0;
        }
        self.line[self.len] = value as u8;
        self.len += 1;
        if value as u8 == b'\n' || self.len == self.line.len() {
            let n = core::mem::take(&mut self.len);
            return Some(&self.line[..n]);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_by_line_and_identifies_as_a_pl011() {
        let mut uart = Pl011::default();
        for b in b"hi" {
            assert_eq!(uart.write(UARTDR, u64::from(*b)), None);
        }
        assert_eq!(uart.write(UARTDR, u64::from(b'\n')), Some(&b"hi\n"[..]));
        assert_eq!(uart.read(0xfe0), 0x11);
        assert_eq!(uart.read(0xffc), 0xb1);
        assert_eq!(uart.read(UARTFR) & FR_TXFE, FR_TXFE);
        assert_eq!(uart.read(0xfe2), 0);
        assert_eq!(uart.write(0x30, 0x301), None);
    }

    #[test]
    fn a_long_line_is_flushed_not_overflowed() {
        let mut uart = Pl011::default();
        let mut flushed = 0;
        for _ in 0..1000 {
            if uart.write(UARTDR, u64::from(b'x')).is_some() {
                flushed += 1;
            }
        }
        assert_eq!(flushed, 1000 / 128);
    }
}
