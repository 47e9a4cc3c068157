//! Typed physical and virtual addresses, so the two never mix silently.

use core::fmt;

/// Size of the smallest page (4 KiB granule).
pub const PAGE_SIZE: u64 = 4096;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
