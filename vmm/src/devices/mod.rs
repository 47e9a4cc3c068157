//! Device models. Each is a state machine over its registers: an access
//! goes in, the value of a load and the device's outputs come out (the
//! level of its interrupt line, bytes it transmitted, vCPUs whose pending
//! interrupts changed). None makes a syscall; the VMM's glue turns the
//! outputs into kernel calls.

pub mod gicv3;
pub mod pl011;
pub mod pl031;

/// What an access to a device did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access<T> {
    /// The access's result: a load's value, or what a store produced.
    pub value: T,
    /// The level of the device's interrupt line afterwards (high:
    /// asserted). Lines are level-sensitive: the GIC keeps the interrupt
    /// pending while the line is high.
    pub irq_line: bool,
}

/// Identification registers of an Arm PrimeCell peripheral at offsets
/// 0xfe0..0x1000: PeriphID0-3 then PCellID0-3, one byte per 32-bit
/// register. Linux's AMBA bus reads them to match a driver (the PL011 and
/// PL031 TRMs each list their values; PCellID is 0xb105f00d for all).
pub(crate) fn primecell_id(offset: u64, periph_id: [u8; 4]) -> Option<u32> {
    const PCELL_ID: [u8; 4] = [0x0d, 0xf0, 0x05, 0xb1];
    if !(0xfe0..0x1000).contains(&offset) || !offset.is_multiple_of(4) {
        return None;
    }
    let i = ((offset - 0xfe0) / 4) as usize;
    Some(u32::from(if i < 4 {
        periph_id[i]
    } else {
        PCELL_ID[i - 4]
    }))
}
