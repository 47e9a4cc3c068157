//! An address bus: which device answers at which address. The VMM asks it
//! where a trapped access goes and hands the access to that device with the
//! offset into the device's window.
//!
//! The bus holds device handles (`D`: typically a small enum naming the
//! VMM's devices), not the devices themselves, so that every device keeps
//! its own signature and its outputs (interrupt lines, transmitted bytes)
//! reach the VMM's glue unchanged. It is generic over the address type:
//! arm64 has only MMIO ([`MmioBus`], guest-physical addresses); an x86
//! port-I/O bus is the same structure over port numbers. Fixed capacity,
//! no allocation: a guest has a handful of devices.

use crate::memory::{GuestAddress, GuestRange};

/// An address a bus decodes.
pub trait BusAddress: Copy + Ord {
    /// The address as a number.
    fn raw(self) -> u64;
}

impl BusAddress for GuestAddress {
    fn raw(self) -> u64 {
        self.0
    }
}

/// A non-empty, non-wrapping range of bus addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusRange<A> {
    base: A,
    size: u64,
}

impl<A: BusAddress> BusRange<A> {
    /// `size` addresses from `base`; `None` if empty or wrapping.
    pub fn new(base: A, size: u64) -> Option<BusRange<A>> {
        (size > 0 && base.raw().checked_add(size).is_some()).then_some(BusRange { base, size })
    }

    /// The first address.
    pub fn base(self) -> A {
        self.base
    }

    /// Number of addresses.
    pub fn size(self) -> u64 {
        self.size
    }

    fn end(self) -> u64 {
        self.base.raw() + self.size
    }

    fn overlaps(self, other: BusRange<A>) -> bool {
        self.base.raw() < other.end() && other.base.raw() < self.end()
    }
}

impl From<GuestRange> for BusRange<GuestAddress> {
    fn from(r: GuestRange) -> Self {
        BusRange {
            base: r.start(),
            size: r.size(),
        }
    }
}

/// Why a device could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError<D> {
    /// The range overlaps the one of this device.
    Overlap(D),
    /// The bus holds as many devices as it can.
    Full,
}

/// Where an access lands: the device and the offset into its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<D> {
    /// The device.
    pub device: D,
    /// Offset of the access from the device's base.
    pub offset: u64,
}

/// A bus of at most `N` devices over addresses `A`.
#[derive(Clone, Debug)]
pub struct Bus<A, D, const N: usize> {
    /// Sorted by base; the first `len` are in use.
    entries: [Option<(BusRange<A>, D)>; N],
    len: usize,
}

/// The MMIO bus: guest-physical addresses.
pub type MmioBus<D, const N: usize> = Bus<GuestAddress, D, N>;

impl<A: BusAddress, D: Copy, const N: usize> Default for Bus<A, D, N> {
    fn default() -> Self {
        Bus {
            entries: [None; N],
            len: 0,
        }
    }
}

impl<A: BusAddress, D: Copy, const N: usize> Bus<A, D, N> {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn used(&self) -> impl Iterator<Item = (BusRange<A>, D)> + '_ {
        self.entries[..self.len].iter().flatten().copied()
    }

    /// Adds `device` at `range`; refused if it overlaps another device.
    pub fn insert(&mut self, range: BusRange<A>, device: D) -> Result<(), BusError<D>> {
        if let Some((_, other)) = self.used().find(|(r, _)| r.overlaps(range)) {
            return Err(BusError::Overlap(other));
        }
        if self.len == N {
            return Err(BusError::Full);
        }
        let at = self
            .used()
            .position(|(r, _)| r.base > range.base)
            .unwrap_or(self.len);
        self.entries[at..=self.len].rotate_right(1);
        self.entries[at] = Some((range, device));
        self.len += 1;
        Ok(())
    }

    /// The entry whose range holds `address`.
    fn entry(&self, address: A) -> Option<(BusRange<A>, D)> {
        // Entries are sorted and disjoint: the candidate is the last one
        // starting at or below the address.
        let used = &self.entries[..self.len];
        let after = used.partition_point(|e| e.is_some_and(|(r, _)| r.base <= address));
        let (range, device) = used.get(after.checked_sub(1)?).copied().flatten()?;
        (address.raw() - range.base.raw() < range.size).then_some((range, device))
    }

    /// The device whose range holds `address`.
    pub fn find(&self, address: A) -> Option<Target<D>> {
        self.entry(address).map(|(range, device)| Target {
            device,
            offset: address.raw() - range.base.raw(),
        })
    }

    /// The device that an access of `size` bytes at `address` lies wholly
    /// inside (an access running off a device's end reaches no device).
    pub fn find_access(&self, address: A, size: u64) -> Option<Target<D>> {
        let (range, device) = self.entry(address)?;
        let offset = address.raw() - range.base.raw();
        (offset.checked_add(size)? <= range.size).then_some(Target { device, offset })
    }

    /// The devices and their ranges, by address.
    pub fn iter(&self) -> impl Iterator<Item = (BusRange<A>, D)> + '_ {
        self.used()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Dev {
        Uart,
        Rtc,
        Gic,
    }

    fn range(base: u64, size: u64) -> BusRange<GuestAddress> {
        BusRange::new(GuestAddress(base), size).unwrap()
    }

    #[test]
    fn lookup_by_address() {
        let mut bus = MmioBus::<Dev, 4>::new();
        bus.insert(range(0x0901_0000, 0x1000), Dev::Rtc).unwrap();
        bus.insert(range(0x0900_0000, 0x1000), Dev::Uart).unwrap();
        bus.insert(range(0x0800_0000, 0x1_0000), Dev::Gic).unwrap();
        let at = |a| bus.find(GuestAddress(a));
        assert_eq!(
            at(0x0900_0fe0),
            Some(Target {
                device: Dev::Uart,
                offset: 0xfe0
            })
        );
        assert_eq!(at(0x0901_0000).map(|t| t.device), Some(Dev::Rtc));
        assert_eq!(at(0x0800_ffff).map(|t| t.offset), Some(0xffff));
        assert_eq!(at(0x0901_1000), None);
        assert_eq!(at(0x0900_1000), None);
        assert_eq!(at(0), None);
        assert_eq!(at(u64::MAX), None);
        let order: std::vec::Vec<_> = bus.iter().map(|(_, d)| d).collect();
        assert_eq!(order, [Dev::Gic, Dev::Uart, Dev::Rtc]);
    }

    #[test]
    fn overlaps_and_overflow_are_refused() {
        let mut bus = MmioBus::<Dev, 2>::new();
        bus.insert(range(0x1000, 0x1000), Dev::Uart).unwrap();
        assert_eq!(
            bus.insert(range(0x1fff, 0x10), Dev::Rtc),
            Err(BusError::Overlap(Dev::Uart))
        );
        assert_eq!(
            bus.insert(range(0x0, 0x1001), Dev::Rtc),
            Err(BusError::Overlap(Dev::Uart))
        );
        bus.insert(range(0x2000, 0x10), Dev::Rtc).unwrap();
        assert_eq!(bus.insert(range(0x9000, 1), Dev::Gic), Err(BusError::Full));
        assert_eq!(BusRange::new(GuestAddress(u64::MAX), 1), None);
        assert_eq!(BusRange::new(GuestAddress(5), 0), None);
    }

    #[test]
    fn accesses_must_fit_one_device() {
        let mut bus = MmioBus::<Dev, 2>::new();
        bus.insert(range(0x1000, 0x1000), Dev::Uart).unwrap();
        bus.insert(range(0x2000, 0x1000), Dev::Rtc).unwrap();
        assert!(bus.find_access(GuestAddress(0x1ffc), 4).is_some());
        assert_eq!(bus.find_access(GuestAddress(0x1ffc), 8), None);
        assert_eq!(bus.find_access(GuestAddress(0x1fff), u64::MAX), None);
    }

    proptest! {
        /// Against a plain list: a lookup finds the one range holding the
        /// address, whatever was inserted in whatever order.
        #[test]
        fn bus_agrees_with_a_list(
            ranges in proptest::collection::vec((0u64..64, 1u64..8), 0..12),
            probes in proptest::collection::vec(0u64..80, 0..40),
        ) {
            let mut bus = MmioBus::<usize, 8>::new();
            let mut kept: std::vec::Vec<(u64, u64, usize)> = std::vec::Vec::new();
            for (i, &(base, size)) in ranges.iter().enumerate() {
                let overlaps = kept.iter().any(|&(b, s, _)| base < b + s && b < base + size);
                let r = bus.insert(range(base, size), i);
                match r {
                    Ok(()) => { prop_assert!(!overlaps); kept.push((base, size, i)); }
                    Err(BusError::Overlap(_)) => prop_assert!(overlaps),
                    Err(BusError::Full) => prop_assert!(!overlaps && kept.len() == 8),
                }
            }
            for p in probes {
                let expected = kept.iter().find(|&&(b, s, _)| p >= b && p < b + s)
                    .map(|&(b, _, i)| Target { device: i, offset: p - b });
                prop_assert_eq!(bus.find(GuestAddress(p)), expected);
            }
        }
    }
}
