//! An emulated Arm PL011 UART: output, input through a receive FIFO the
//! VMM fills from its console, and the interrupt logic Linux's
//! `amba-pl011` driver relies on.
//!
//! Registers and bits: Arm PrimeCell UART (PL011) Technical Reference
//! Manual (DDI 0183), chapter 3 "Programmers Model": 3.2 "Summary of
//! registers", 3.3 "Register descriptions" (UARTDR, UARTFR, UARTLCR_H,
//! UARTCR, UARTIFLS, UARTIMSC, UARTRIS, UARTMIS, UARTICR, the ID
//! registers), and 2.8 "Interrupts". Transmission takes no time: a byte
//! written to UARTDR leaves at once, so the transmit FIFO is always empty.

use super::{Access, primecell_id};
use bitflags::bitflags;

/// Size of the register window.
pub const WINDOW: u64 = 0x1000;

/// Register offsets (DDI 0183 3.2).
mod reg {
    pub const DR: u64 = 0x000;
    pub const RSR_ECR: u64 = 0x004;
    pub const FR: u64 = 0x018;
    pub const ILPR: u64 = 0x020;
    pub const IBRD: u64 = 0x024;
    pub const FBRD: u64 = 0x028;
    pub const LCR_H: u64 = 0x02c;
    pub const CR: u64 = 0x030;
    pub const IFLS: u64 = 0x034;
    pub const IMSC: u64 = 0x038;
    pub const RIS: u64 = 0x03c;
    pub const MIS: u64 = 0x040;
    pub const ICR: u64 = 0x044;
    pub const DMACR: u64 = 0x048;
}

/// PeriphID0-3: part 0x011, designer 0x41 (Arm), revision 1 (DDI 0183
/// 3.3, "UARTPeriphID0-3"). Linux sizes the FIFOs from the revision:
/// below 3 it expects 16 entries, which is what this model has.
const PERIPH_ID: [u8; 4] = [0x11, 0x10, 0x14, 0x00];
/// FIFO depth for revision 1.
const FIFO_DEPTH: usize = 16;

bitflags! {
    /// UARTFR, the flag register (DDI 0183 3.3).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Flags: u32 {
        const BUSY = 1 << 3;
        const RXFE = 1 << 4;
        const TXFF = 1 << 5;
        const RXFF = 1 << 6;
        const TXFE = 1 << 7;
    }
}

bitflags! {
    /// The interrupt bits shared by UARTIMSC, UARTRIS, UARTMIS and
    /// UARTICR (DDI 0183 3.3).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Interrupts: u32 {
        /// Modem status (RI, CTS, DCD, DSR): 0..3.
        const MODEM = 0b1111;
        /// Receive (RXIM/RXRIS).
        const RX = 1 << 4;
        /// Transmit (TXIM/TXRIS).
        const TX = 1 << 5;
        /// Receive timeout (RTIM/RTRIS).
        const RT = 1 << 6;
        /// Framing, parity, break and overrun errors: 7..10.
        const ERRORS = 0b1111 << 7;
    }
}

/// UARTLCR_H.FEN: FIFOs enabled (else one-character holding registers).
const LCR_H_FEN: u32 = 1 << 4;
/// UARTCR bits: UARTEN (0), LBE loopback (7), TXE (8), RXE (9).
const CR_UARTEN: u32 = 1 << 0;
const CR_LBE: u32 = 1 << 7;
const CR_RXE: u32 = 1 << 9;
/// UARTCR as firmware leaves it: enabled, transmit and receive on. The VMM
/// is the guest's firmware; Linux's early console writes to the UART
/// before its driver sets it up.
const CR_RESET: u32 = CR_UARTEN | (1 << 8) | CR_RXE;
/// UARTIFLS reset value: both FIFO trigger levels at 1/2 (DDI 0183 3.3).
const IFLS_RESET: u32 = 0x12;

/// The UART's state.
#[derive(Clone, Debug)]
pub struct Pl011 {
    rx: [u8; FIFO_DEPTH],
    rx_head: usize,
    rx_len: usize,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: Interrupts,
    ris: Interrupts,
    dmacr: u32,
}

impl Default for Pl011 {
    fn default() -> Self {
        Pl011 {
            rx: [0; FIFO_DEPTH],
            rx_head: 0,
            rx_len: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
            imsc: Interrupts::empty(),
            ris: Interrupts::empty(),
            dmacr: 0,
        }
    }
}

impl Pl011 {
    /// How many bytes the receive FIFO holds: 16 with FIFOs enabled, 1 in
    /// character mode.
    fn rx_capacity(&self) -> usize {
        if self.lcr_h & LCR_H_FEN != 0 {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// The receive trigger level in bytes (UARTIFLS.RXIFLSEL: 1/8, 1/4,
    /// 1/2, 3/4, 7/8 full), or 1 in character mode.
    fn rx_trigger(&self) -> usize {
        if self.lcr_h & LCR_H_FEN == 0 {
            return 1;
        }
        match (self.ifls >> 3) & 0b111 {
            0 => FIFO_DEPTH / 8,
            1 => FIFO_DEPTH / 4,
            2 => FIFO_DEPTH / 2,
            3 => FIFO_DEPTH * 3 / 4,
            _ => FIFO_DEPTH * 7 / 8,
        }
    }

    /// The level of UARTINTR, the combined interrupt output.
    pub fn irq_line(&self) -> bool {
        !(self.ris & self.imsc).is_empty()
    }

    fn access<T>(&self, value: T) -> Access<T> {
        Access {
            value,
            irq_line: self.irq_line(),
        }
    }

    fn push(&mut self, byte: u8) -> bool {
        if self.rx_len >= self.rx_capacity() {
            return false;
        }
        self.rx[(self.rx_head + self.rx_len) % FIFO_DEPTH] = byte;
        self.rx_len += 1;
        if self.rx_len >= self.rx_trigger() {
            self.ris |= Interrupts::RX;
        }
        // The receive timeout (32 bit periods without new data) is taken
        // to have elapsed at once: the VMM has no bit clock, and a driver
        // must see bytes below the trigger level without waiting for more.
        self.ris |= Interrupts::RT;
        true
    }

    fn pop(&mut self) -> Option<u8> {
        if self.rx_len == 0 {
            return None;
        }
        let byte = self.rx[self.rx_head];
        self.rx_head = (self.rx_head + 1) % FIFO_DEPTH;
        self.rx_len -= 1;
        // RXRIS clears once reading takes the FIFO below the trigger level;
        // RTRIS once it is empty (DDI 0183 2.8).
        if self.rx_len < self.rx_trigger() {
            self.ris.remove(Interrupts::RX);
        }
        if self.rx_len == 0 {
            self.ris.remove(Interrupts::RT);
        }
        Some(byte)
    }

    /// Input from the VMM's console: puts as many of `bytes` in the receive
    /// FIFO as fit, and returns how many (the rest wait in the VMM). Nothing
    /// is received while the UART or its receiver is disabled, or in
    /// loopback mode (the receiver then hears the transmitter).
    pub fn receive(&mut self, bytes: &[u8]) -> Access<usize> {
        let mut taken = 0;
        if self.cr & (CR_UARTEN | CR_RXE) == CR_UARTEN | CR_RXE && self.cr & CR_LBE == 0 {
            for &b in bytes {
                if !self.push(b) {
                    break;
                }
                taken += 1;
            }
        }
        self.access(taken)
    }

    /// A load of `size` bytes from register `offset`. Registers are 32 bits
    /// wide at word offsets; narrower loads see their low bytes, other
    /// offsets read as zero.
    pub fn read(&mut self, offset: u64, size: u8) -> Access<u32> {
        let value = if !offset.is_multiple_of(4) {
            0
        } else {
            match offset {
                reg::DR => self.pop().map_or(0, u32::from),
                reg::RSR_ECR => 0, // no framing, parity, break or overrun errors
                reg::FR => self.flags().bits(),
                reg::ILPR => self.ilpr,
                reg::IBRD => self.ibrd,
                reg::FBRD => self.fbrd,
                reg::LCR_H => self.lcr_h,
                reg::CR => self.cr,
                reg::IFLS => self.ifls,
                reg::IMSC => self.imsc.bits(),
                reg::RIS => self.ris.bits(),
                reg::MIS => (self.ris & self.imsc).bits(),
                reg::DMACR => self.dmacr,
                o => primecell_id(o, PERIPH_ID).unwrap_or(0),
            }
        };
        let value = match size {
            1 => value & 0xff,
            2 => value & 0xffff,
            _ => value,
        };
        self.access(value)
    }

    fn flags(&self) -> Flags {
        let mut f = Flags::TXFE; // transmission is instantaneous
        if self.rx_len == 0 {
            f |= Flags::RXFE;
        }
        if self.rx_len >= self.rx_capacity() {
            f |= Flags::RXFF;
        }
        f
    }

    /// A store of `value` to register `offset`. Returns the byte the UART
    /// transmitted, if any, for the VMM to print.
    pub fn write(&mut self, offset: u64, value: u64) -> Access<Option<u8>> {
        let value = value as u32;
        let mut sent = None;
        match offset {
            reg::DR => {
                let byte = value as u8;
                if self.cr & CR_LBE != 0 {
                    // Loopback: the transmitter feeds the receiver.
                    self.push(byte);
                } else {
                    sent = Some(byte);
                }
                // The byte left at once, so the transmit FIFO passed its
                // trigger level on the way down: the transmit interrupt
                // asserts (it is a transition, not a level, DDI 0183 2.8).
                self.ris |= Interrupts::TX;
            }
            reg::RSR_ECR => {} // writing clears the (absent) error flags
            reg::ILPR => self.ilpr = value & 0xff,
            reg::IBRD => self.ibrd = value & 0xffff,
            reg::FBRD => self.fbrd = value & 0x3f,
            reg::LCR_H => self.lcr_h = value & 0xff,
            reg::CR => self.cr = value & 0xffff,
            reg::IFLS => self.ifls = value & 0x3f,
            reg::IMSC => self.imsc = Interrupts::from_bits_truncate(value),
            reg::ICR => self.ris &= !Interrupts::from_bits_truncate(value),
            reg::DMACR => self.dmacr = value & 0b111,
            _ => {} // read-only and unknown registers ignore stores
        }
        self.access(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prints_and_identifies_as_a_pl011() {
        let mut uart = Pl011::default();
        let out: std::vec::Vec<u8> = b"hi\n"
            .iter()
            .filter_map(|&b| uart.write(reg::DR, u64::from(b)).value)
            .collect();
        assert_eq!(out, b"hi\n");
        let ids: std::vec::Vec<u32> = (0..8).map(|i| uart.read(0xfe0 + 4 * i, 4).value).collect();
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        assert_eq!(uart.read(0xfe2, 2).value, 0);
        let fr = uart.read(reg::FR, 4).value;
        assert_eq!(
            fr & (Flags::TXFE | Flags::RXFE).bits(),
            (Flags::TXFE | Flags::RXFE).bits()
        );
        assert_eq!(fr & Flags::TXFF.bits(), 0);
        assert_eq!(uart.write(reg::CR, 0x301).value, None);
        assert_eq!(uart.read(reg::CR, 4).value, 0x301);
    }

    /// What Linux's amba-pl011 does at startup and for input: clear
    /// interrupts, set the baud rate and line control (FIFOs on), enable,
    /// unmask receive and receive-timeout, then read what arrives.
    #[test]
    fn linux_probe_and_receive() {
        let mut uart = Pl011::default();
        uart.write(reg::ICR, 0x7ff);
        uart.write(reg::IBRD, 13);
        uart.write(reg::FBRD, 1);
        uart.write(reg::LCR_H, 0x70); // 8 bits, FIFOs on
        uart.write(reg::CR, 0x301);
        assert_eq!(uart.read(reg::IBRD, 4).value, 13);
        let masked = uart.write(reg::IMSC, (Interrupts::RX | Interrupts::RT).bits().into());
        assert!(!masked.irq_line);
        // Three bytes: below the 1/2 trigger, but the receive timeout fires.
        let got = uart.receive(b"ls\n");
        assert_eq!(got.value, 3);
        assert!(got.irq_line);
        assert_eq!(uart.read(reg::MIS, 4).value, Interrupts::RT.bits());
        // The handler reads until RXFE; the line drops with the last byte.
        let mut read = std::vec::Vec::new();
        while uart.read(reg::FR, 4).value & Flags::RXFE.bits() == 0 {
            let a = uart.read(reg::DR, 4);
            read.push(a.value as u8);
            assert_eq!(a.irq_line, read.len() < 3);
        }
        assert_eq!(read, b"ls\n");
        // Eight bytes reach the trigger level: RXRIS too.
        assert_eq!(uart.receive(&[b'x'; 8]).value, 8);
        assert_eq!(
            uart.read(reg::RIS, 4).value,
            (Interrupts::RX | Interrupts::RT).bits()
        );
        uart.read(reg::DR, 1);
        assert_eq!(uart.read(reg::RIS, 4).value, Interrupts::RT.bits());
        // Clearing RT through UARTICR drops the line with data still queued.
        assert!(!uart.write(reg::ICR, Interrupts::RT.bits().into()).irq_line);
    }

    #[test]
    fn fifo_fills_and_character_mode_holds_one() {
        let mut uart = Pl011::default();
        uart.write(reg::LCR_H, u64::from(LCR_H_FEN));
        assert_eq!(uart.receive(&[0; 20]).value, 16);
        assert_ne!(uart.read(reg::FR, 4).value & Flags::RXFF.bits(), 0);
        assert_eq!(uart.receive(b"z").value, 0);
        let mut uart = Pl011::default();
        assert_eq!(uart.receive(b"ab").value, 1);
        assert_eq!(uart.read(reg::DR, 4).value, u32::from(b'a'));
        // Receiver off: nothing is taken.
        uart.write(reg::CR, u64::from(CR_UARTEN));
        assert_eq!(uart.receive(b"c").value, 0);
    }

    #[test]
    fn transmit_interrupt_and_loopback() {
        let mut uart = Pl011::default();
        uart.write(reg::IMSC, Interrupts::TX.bits().into());
        assert!(!uart.irq_line());
        // Linux writes half a FIFO, then unmasks TX and waits for it.
        assert!(uart.write(reg::DR, u64::from(b'a')).irq_line);
        assert!(!uart.write(reg::ICR, Interrupts::TX.bits().into()).irq_line);
        uart.write(reg::CR, u64::from(CR_RESET | CR_LBE));
        assert_eq!(uart.write(reg::DR, u64::from(b'q')).value, None);
        assert_eq!(uart.read(reg::DR, 4).value, u32::from(b'q'));
    }

    proptest! {
        /// Any access sequence: no panic, the FIFO never reports more than
        /// it holds, and the line is exactly RIS & IMSC.
        #[test]
        fn any_access_sequence(ops in proptest::collection::vec((0u64..0x1010, any::<u64>(), 0u8..4), 0..200)) {
            let mut uart = Pl011::default();
            for (offset, value, kind) in ops {
                let line = match kind {
                    0 => uart.read(offset, [1, 2, 4, 8][value as usize % 4]).irq_line,
                    1 => uart.write(offset, value).irq_line,
                    2 => uart.receive(&value.to_le_bytes()[..(value % 9) as usize]).irq_line,
                    _ => uart.write(offset & 0x4c, value).irq_line,
                };
                prop_assert_eq!(line, uart.read(reg::MIS, 4).value != 0);
                prop_assert!(uart.rx_len <= FIFO_DEPTH);
            }
        }
    }
}
