//! Typed physical and virtual addresses, so the two never mix silently.

use core::fmt;

/// Size of the smallest page (4 KiB granule).
pub const PAGE_SIZE: u64 = 4096;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, zerocopy::FromBytes,
        )]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw address.
            pub const fn as_u64(self) -> u64 {
                self.0
            }
            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }
            /// Rounds up to a multiple of `align` (a power of two); `None`
            /// on overflow.
            pub const fn checked_align_up(self, align: u64) -> Option<Self> {
                match self.0.checked_add(align - 1) {
                    Some(v) => Some(Self(v & !(align - 1))),
                    None => None,
                }
            }
            /// Adds a byte offset; `None` on overflow.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address_type!(
    /// A physical (or, for guests, intermediate-physical) address.
    PhysAddr
);
address_type!(
    /// A virtual address in some address space.
    VirtAddr
);

/// Kernel-owned RAM that the kernel reads or writes on behalf of a
/// capability holder: IPC buffers, and untyped memory being zeroed.
///
/// This is the one door through which the core names memory by address.
/// A range can only be made from a RAM (non-device) frame or untyped
/// capability and lies wholly inside it, so a device frame used where RAM
/// is needed is refused here, never turned into a kernel access to MMIO or
/// to whatever the physmap holds beyond RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRange {
    base: PhysAddr,
    len: u64,
}

impl RamRange {
    /// `len` bytes at `offset` inside the object `cap` names, if `cap` is a
    /// RAM frame or RAM untyped region and the bytes lie inside it.
    #[inline]
    pub fn inside(cap: &crate::Cap, offset: u64, len: u64) -> Option<RamRange> {
        let (base, bits) = match *cap {
            crate::Cap::Frame {
                base,
                size,
                device: false,
                ..
            } => (base, size.bits()),
            crate::Cap::Untyped {
                base,
                size_bits,
                device: false,
                ..
            } => (base, size_bits),
            _ => return None,
        };
        let end = offset.checked_add(len)?;
        if end > 1u64 << bits {
            return None;
        }
        Some(RamRange {
            base: PhysAddr(base.0 + offset),
            len,
        })
    }

    /// The sub-range of `len` bytes at `offset`, if it fits.
    #[inline]
    pub fn sub(self, offset: u64, len: u64) -> Option<RamRange> {
        let end = offset.checked_add(len)?;
        (end <= self.len).then_some(RamRange {
            base: PhysAddr(self.base.0 + offset),
            len,
        })
    }

    /// First byte.
    #[inline]
    pub fn base(self) -> PhysAddr {
        self.base
    }

    /// Length in bytes.
    #[inline]
    pub fn len(self) -> u64 {
        self.len
    }

    /// Whether the range is empty.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// How many whole words fit.
    #[inline]
    pub fn words(self) -> usize {
        (self.len / 8) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_ranges_only_from_ram_and_inside() {
        use crate::cap::{Cap, FrameSize, Mapping};
        use skyscope_abi::CapRights;
        let frame = |device| Cap::Frame {
            base: PhysAddr(0x4000_0000),
            size: FrameSize::Small,
            device,
            rights: CapRights::ALL,
            mapping: Mapping::NONE,
        };
        let r = RamRange::inside(&frame(false), 0xc00, 0x400).unwrap();
        assert_eq!((r.base(), r.len()), (PhysAddr(0x4000_0c00), 0x400));
        assert_eq!(RamRange::inside(&frame(false), 0xc00, 0x401), None);
        assert_eq!(RamRange::inside(&frame(false), u64::MAX, 2), None);
        assert_eq!(RamRange::inside(&frame(true), 0, 8), None);
        assert_eq!(
            r.sub(0x3f8, 8).map(RamRange::base),
            Some(PhysAddr(0x4000_0ff8))
        );
        assert_eq!(r.sub(0x3f8, 9), None);
        let ut = Cap::Untyped {
            base: PhysAddr(0x1000_0000),
            free_offset: 0,
            zeroed_to: 0,
            size_bits: 12,
            device: true,
        };
        assert_eq!(RamRange::inside(&ut, 0, 8), None);
    }

    #[test]
    fn alignment_helpers() {
        let a = PhysAddr(0x4020_1234);
        assert!(!a.is_aligned(PAGE_SIZE));
        assert_eq!(a.align_down(PAGE_SIZE), PhysAddr(0x4020_1000));
        assert_eq!(a.checked_align_up(PAGE_SIZE), Some(PhysAddr(0x4020_2000)));
        assert_eq!(PhysAddr(u64::MAX).checked_align_up(PAGE_SIZE), None);
        assert_eq!(VirtAddr(u64::MAX).checked_add(1), None);
    }
}
