//! Arm PL011 UART for the kernel console: output polled, input taken from
//! the receive FIFO when the receive interrupts fire.
//!
//! Registers from the PrimeCell UART (PL011) Technical Reference Manual
//! (Arm DDI 0183G), section 3.2 (summary) and 3.3 (descriptions); what
//! raises and clears each interrupt is in chapter 2, "Interrupts".

use tock_registers::{
    interfaces::{ReadWriteable, Readable, Writeable},
    register_bitfields, register_structs,
    registers::{ReadOnly, ReadWrite, WriteOnly},
};

register_bitfields! {
    u32,
    /// UARTDR, data register (DDI 0183G 3.3.1): the received character
    /// and its error flags.
    DR [
        OE OFFSET(11) NUMBITS(1) [],
        BE OFFSET(10) NUMBITS(1) [],
        PE OFFSET(9) NUMBITS(1) [],
        FE OFFSET(8) NUMBITS(1) [],
        DATA OFFSET(0) NUMBITS(8) []
    ],
    /// UARTFR, flag register (DDI 0183G 3.3.3).
    FR [
        TXFF OFFSET(5) NUMBITS(1) [],
        RXFE OFFSET(4) NUMBITS(1) [],
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// UARTLCR_H, line control (DDI 0183G 3.3.7).
    LCR_H [
        WLEN OFFSET(5) NUMBITS(2) [EightBits = 0b11],
        FEN OFFSET(4) NUMBITS(1) []
    ],
    /// UARTCR, control (DDI 0183G 3.3.8).
    CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ],
    /// UARTIFLS, interrupt FIFO level select (DDI 0183G 3.3.9).
    IFLS [
        /// Receive interrupt when the FIFO becomes at least 1/8 full
        /// (0b000); the receive timeout interrupt covers fewer bytes.
        RXIFLSEL OFFSET(3) NUMBITS(3) [OneEighth = 0b000]
    ],
    /// UARTIMSC, UARTRIS, UARTMIS and UARTICR share this layout (DDI 0183G
    /// 3.3.10 to 3.3.13): receive (RX) and receive timeout (RT).
    INT [
        RT OFFSET(6) NUMBITS(1) [],
        RX OFFSET(4) NUMBITS(1) []
    ]
}

register_structs! {
    /// The PL011 register block.
    Pl011Registers {
        (0x00 => dr: ReadWrite<u32, DR::Register>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _reserved1),
        (0x24 => ibrd: ReadWrite<u32>),
        (0x28 => fbrd: ReadWrite<u32>),
        (0x2c => lcr_h: ReadWrite<u32, LCR_H::Register>),
        (0x30 => cr: ReadWrite<u32, CR::Register>),
        (0x34 => ifls: ReadWrite<u32, IFLS::Register>),
        (0x38 => imsc: ReadWrite<u32, INT::Register>),
        (0x3c => _reserved2),
        (0x44 => icr: WriteOnly<u32, INT::Register>),
        (0x48 => @END),
    }
}

/// A PL011 at a fixed, mapped address.
pub struct Pl011 {
    registers: &'static Pl011Registers,
}

impl Pl011 {
    /// Wraps the UART whose registers are mapped at `base`.
    ///
    /// # Safety
    /// `base` must be the virtual address of a PL011 register block mapped
    /// as device memory for the rest of the kernel's life.
    pub unsafe fn new(base: u64) -> Pl011 {
        // SAFETY: guaranteed by the caller.
        let registers = unsafe { &*(base as *const Pl011Registers) };
        Pl011 { registers }
    }

    /// Sets 8N1 framing with FIFOs and enables transmit and receive. The
    /// divisors assume the 24 MHz reference clock of QEMU `virt` and give
    /// 115200 baud (emulated UARTs ignore them).
    pub fn init(&self) {
        self.flush();
        self.registers.cr.set(0);
        self.registers.icr.set(0x7ff);
        self.registers.ibrd.set(13);
        self.registers.fbrd.set(1);
        self.registers
            .lcr_h
            .write(LCR_H::WLEN::EightBits + LCR_H::FEN::SET);
        self.registers
            .cr
            .write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    /// Unmasks the receive and receive-timeout interrupts (UARTIMSC.RXIM
    /// and RTIM), so a byte in the receive FIFO raises the UART's line:
    /// RX once the FIFO reaches its trigger level, RT when fewer bytes
    /// have waited for 32 bit periods (DDI 0183G chapter 2, "Interrupts").
    pub fn enable_receive_interrupts(&self) {
        self.registers.ifls.modify(IFLS::RXIFLSEL::OneEighth);
        self.registers.icr.write(INT::RX::SET + INT::RT::SET);
        self.registers.imsc.modify(INT::RX::SET + INT::RT::SET);
    }

    /// The next received byte, if the receive FIFO holds one; `Some(None)`
    /// for a character received with a framing, parity or break error
    /// (not something typed; taking it off the FIFO is all it needs).
    pub fn read_byte(&self) -> Option<Option<u8>> {
        if self.registers.fr.is_set(FR::RXFE) {
            return None;
        }
        let dr = self.registers.dr.extract();
        let broken = dr.is_set(DR::FE) || dr.is_set(DR::PE) || dr.is_set(DR::BE);
        Some((!broken).then_some(dr.read(DR::DATA) as u8))
    }

    /// Whether the receive FIFO holds a byte.
    pub fn has_received(&self) -> bool {
        !self.registers.fr.is_set(FR::RXFE)
    }

    /// Clears the receive interrupts (before draining the FIFO: see
    /// `console::receive_input`).
    pub fn clear_receive_interrupts(&self) {
        self.registers.icr.write(INT::RX::SET + INT::RT::SET);
    }

    /// Writes one byte, waiting for FIFO space.
    pub fn write_byte(&self, byte: u8) {
        while self.registers.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.registers.dr.set(u32::from(byte));
    }

    /// Waits until everything written has left the transmitter.
    pub fn flush(&self) {
        while self.registers.fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}
