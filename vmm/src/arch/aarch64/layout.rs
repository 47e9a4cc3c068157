//! The guest-physical memory map of the arm64 machine the VMM presents,
//! defined once for the device tree, the MMIO bus, the GIC model and the
//! loader. It follows QEMU's `virt` board (hw/arm/virt.c's memory map), so
//! that the addresses a Linux user sees are the familiar ones and the
//! minimal test guests' constants (`guests/minimal`) hold.
//!
//! ```text
//! 0x0800_0000  GIC distributor (64 KiB)
//! 0x080a_0000  GIC redistributors (128 KiB per vCPU)
//! 0x0900_0000  PL011 UART (4 KiB), SPI 1
//! 0x0901_0000  PL031 RTC (4 KiB), SPI 2
//! 0x4000_0000  RAM (512 MiB by default)
//! ```

use crate::memory::{GuestAddress, GuestRange};
use crate::vcpu::MAX_VCPUS;

const fn fixed(base: u64, size: u64) -> GuestRange {
    match GuestRange::new(GuestAddress(base), size) {
        Some(r) => r,
        None => panic!("fixed ranges are valid"),
    }
}

/// The GICv3 distributor (GICD_*, IHI 0069 §12.8: a 64 KiB frame).
pub const GICD: GuestRange = fixed(0x0800_0000, 0x1_0000);
/// The first redistributor (GICR_*: RD_base then SGI_base, IHI 0069
/// §12.10: two 64 KiB frames per PE without virtual LPIs).
pub const GICR_BASE: GuestAddress = GuestAddress(0x080a_0000);
/// Bytes per redistributor.
pub const GICR_STRIDE: u64 = 0x2_0000;
/// The PL011 UART's register window.
pub const UART: GuestRange = fixed(0x0900_0000, 0x1000);
/// The PL031 RTC's register window.
pub const RTC: GuestRange = fixed(0x0901_0000, 0x1000);
/// Where RAM starts.
pub const RAM_BASE: GuestAddress = GuestAddress(0x4000_0000);
/// RAM a guest gets unless told otherwise.
pub const DEFAULT_RAM_SIZE: u64 = 512 << 20;
/// First address past the guest-physical space: GuestSpaces translate 39
/// bits (VTCR_EL2.T0SZ = 25, see `skyscope-el2`'s `config`).
pub const GUEST_PHYSICAL_LIMIT: u64 = 1 << 39;

/// Interrupt numbers (GIC INTIDs: SGIs 0-15, PPIs 16-31, SPIs 32-1019).
pub mod irq {
    /// First PPI INTID.
    pub const PPI_BASE: u32 = 16;
    /// First SPI INTID.
    pub const SPI_BASE: u32 = 32;
    /// The UART's SPI (device-tree number; INTID 33).
    pub const UART_SPI: u32 = 1;
    /// The RTC's SPI (INTID 34).
    pub const RTC_SPI: u32 = 2;
    /// GIC maintenance interrupt PPI (INTID 25), as Arm's Base System
    /// Architecture recommends.
    pub const MAINTENANCE_PPI: u32 = 9;
    /// EL2 physical timer PPI (INTID 26).
    pub const HYP_TIMER_PPI: u32 = 10;
    /// Virtual timer PPI (INTID 27): the timer a guest kernel uses.
    pub const VIRTUAL_TIMER_PPI: u32 = 11;
    /// Secure physical timer PPI (INTID 29).
    pub const SECURE_TIMER_PPI: u32 = 13;
    /// Non-secure EL1 physical timer PPI (INTID 30).
    pub const PHYSICAL_TIMER_PPI: u32 = 14;
}

/// Why a layout was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// RAM must be a non-empty whole number of 2 MiB blocks at a 2 MiB
    /// aligned base (so the Image and DTB placement rules can be met and
    /// block mappings used).
    RamAlignment,
    /// RAM must lie between the device window and the end of the 39-bit
    /// guest-physical space.
    RamOutOfRange,
    /// 1 to [`MAX_VCPUS`] vCPUs.
    VcpuCount,
}

/// A guest's machine: where its RAM is and how many vCPUs it has (which
/// sizes the redistributor region).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    ram: GuestRange,
    vcpus: usize,
}

impl Default for Layout {
    /// 512 MiB at 0x4000_0000, one vCPU.
    fn default() -> Self {
        Layout {
            ram: fixed(RAM_BASE.0, DEFAULT_RAM_SIZE),
            vcpus: 1,
        }
    }
}

impl Layout {
    /// RAM of `ram_size` bytes at `ram_base`, `vcpus` vCPUs.
    pub fn new(ram_base: GuestAddress, ram_size: u64, vcpus: usize) -> Result<Layout, LayoutError> {
        const BLOCK: u64 = 2 << 20;
        if !(1..=MAX_VCPUS).contains(&vcpus) {
            return Err(LayoutError::VcpuCount);
        }
        if !ram_base.is_aligned(BLOCK) || !ram_size.is_multiple_of(BLOCK) {
            return Err(LayoutError::RamAlignment);
        }
        let ram = GuestRange::new(ram_base, ram_size).ok_or(LayoutError::RamAlignment)?;
        if ram.start() < RAM_BASE || ram.end().raw() > GUEST_PHYSICAL_LIMIT {
            return Err(LayoutError::RamOutOfRange);
        }
        Ok(Layout { ram, vcpus })
    }

    /// Guest RAM.
    pub fn ram(&self) -> GuestRange {
        self.ram
    }

    /// Number of vCPUs.
    pub fn vcpus(&self) -> usize {
        self.vcpus
    }

    /// The redistributor region: one [`GICR_STRIDE`] frame pair per vCPU.
    pub fn gicr(&self) -> GuestRange {
        fixed(GICR_BASE.0, GICR_STRIDE * self.vcpus as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_do_not_overlap_each_other_or_ram() {
        let layout = Layout::new(RAM_BASE, 1 << 30, MAX_VCPUS).unwrap();
        let ranges = [GICD, layout.gicr(), UART, RTC, layout.ram()];
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                assert!(!a.overlaps(*b), "{a:?} overlaps {b:?}");
            }
        }
        assert_eq!(layout.gicr().end(), GuestAddress(0x081a_0000));
    }

    #[test]
    fn bad_layouts_are_refused() {
        let r = |base, size, n| Layout::new(GuestAddress(base), size, n);
        assert_eq!(r(0x4000_0000, 0x10_0000, 1), Err(LayoutError::RamAlignment));
        assert_eq!(r(0x4010_0000, 0x20_0000, 1), Err(LayoutError::RamAlignment));
        assert_eq!(r(0x4000_0000, 0, 1), Err(LayoutError::RamAlignment));
        assert_eq!(
            r(0x0800_0000, 0x20_0000, 1),
            Err(LayoutError::RamOutOfRange)
        );
        assert_eq!(
            r(0x7f_ffe0_0000, 0x40_0000, 1),
            Err(LayoutError::RamOutOfRange)
        );
        assert_eq!(r(0x4000_0000, 0x20_0000, 0), Err(LayoutError::VcpuCount));
        assert_eq!(
            r(0x4000_0000, 0x20_0000, MAX_VCPUS + 1),
            Err(LayoutError::VcpuCount)
        );
        assert_eq!(Layout::default().ram().size(), 512 << 20);
    }
}
