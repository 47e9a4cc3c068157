//! Physical memory bookkeeping at boot: a set of free, disjoint regions.
//!
//! The kernel starts with the RAM ranges from the device tree, removes what
//! is already in use (its own image, the device tree blob, reserved memory),
//! allocates the few frames it needs to start the root task, and later hands
//! every remaining region to the root task as untyped memory. After boot the
//! kernel allocates nothing on its own: all kernel objects come from untyped
//! memory retyped by user space.

use crate::addr::PhysAddr;

/// A half-open physical range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub start: PhysAddr,
    /// One past the last byte.
    pub end: PhysAddr,
}

impl Region {
    /// A region from `start` with `size` bytes; `None` if it would wrap.
    pub fn new(start: u64, size: u64) -> Option<Region> {
        Some(Region {
            start: PhysAddr(start),
            end: PhysAddr(start.checked_add(size)?),
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.end.0 - self.start.0
    }

    /// Whether the region holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.end.0 <= self.start.0
    }
}

/// Why a region operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// The fixed table of regions is full.
    TooManyRegions,
    /// No free region can satisfy the request.
    OutOfMemory,
    /// Size or alignment is zero or alignment is not a power of two.
    BadRequest,
}

/// Most disjoint regions tracked; device trees on the machines we target
/// describe a handful of RAM banks and reservations.
pub const MAX_REGIONS: usize = 64;

/// A set of disjoint, sorted, non-adjacent free physical regions.
#[derive(Clone, Debug)]
pub struct FreeRegions {
    regions: [Region; MAX_REGIONS],
    count: usize,
}

impl Default for FreeRegions {
    fn default() -> Self {
        Self::new()
    }
}

impl FreeRegions {
    /// An empty set.
    pub const fn new() -> FreeRegions {
        const EMPTY: Region = Region {
            start: PhysAddr(0),
            end: PhysAddr(0),
        };
        FreeRegions {
            regions: [EMPTY; MAX_REGIONS],
            count: 0,
        }
    }

    /// The free regions, sorted by address.
    pub fn iter(&self) -> impl Iterator<Item = Region> + '_ {
        self.regions[..self.count].iter().copied()
    }

    /// Total free bytes.
    pub fn total(&self) -> u64 {
        self.iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.size()))
    }

    /// Marks `region` free, merging with neighbours it overlaps or touches.
    pub fn add(&mut self, region: Region) -> Result<(), RegionError> {
        if region.is_empty() {
            return Ok(());
        }
        let mut merged = region;
        // Absorb every existing region that overlaps or touches `merged`.
        let mut i = 0;
        while i < self.count {
            let r = self.regions[i];
            if r.start <= merged.end && merged.start <= r.end {
                merged.start = merged.start.min(r.start);
                merged.end = merged.end.max(r.end);
                self.remove_index(i);
            } else {
                i += 1;
            }
        }
        self.insert_sorted(merged)
    }

    /// Marks `region` as in use: removes it from every free region,
    /// splitting regions it cuts through.
    pub fn remove(&mut self, region: Region) -> Result<(), RegionError> {
        if region.is_empty() {
            return Ok(());
        }
        let mut i = 0;
        while i < self.count {
            let r = self.regions[i];
            if region.end <= r.start || r.end <= region.start {
                i += 1;
                continue;
            }
            let below = Region {
                start: r.start,
                end: region.start.max(r.start),
            };
            let above = Region {
                start: region.end.min(r.end),
                end: r.end,
            };
            self.remove_index(i);
            if !below.is_empty() {
                self.insert_sorted(below)?;
                i += 1;
            }
            if !above.is_empty() {
                self.insert_sorted(above)?;
                i += 1;
            }
        }
        Ok(())
    }

    /// Allocates `size` bytes aligned to `align` from the lowest region that
    /// fits, and returns its start.
    pub fn allocate(&mut self, size: u64, align: u64) -> Result<PhysAddr, RegionError> {
        if size == 0 || align == 0 || !align.is_power_of_two() {
            return Err(RegionError::BadRequest);
        }
        let found = self.iter().find_map(|r| {
            let start = r.start.checked_align_up(align)?;
            let end = start.checked_add(size)?;
            (end <= r.end).then_some(Region { start, end })
        });
        let chunk = found.ok_or(RegionError::OutOfMemory)?;
        self.remove(chunk)?;
        Ok(chunk.start)
    }

    fn remove_index(&mut self, i: usize) {
        self.regions.copy_within(i + 1..self.count, i);
        self.count -= 1;
    }

    fn insert_sorted(&mut self, region: Region) -> Result<(), RegionError> {
        if self.count == MAX_REGIONS {
            return Err(RegionError::TooManyRegions);
        }
        let at = self.regions[..self.count].partition_point(|r| r.start < region.start);
        self.regions.copy_within(at..self.count, at + 1);
        self.regions[at] = region;
        self.count += 1;
        Ok(())
    }
}

/// Splits `region` into maximal naturally aligned power-of-two blocks of
/// `2^min_bits..=2^max_bits` bytes, in address order. Bytes at the edges
/// that do not fill a minimum-size aligned block are left out.
pub fn aligned_blocks(
    region: Region,
    min_bits: u8,
    max_bits: u8,
) -> impl Iterator<Item = (PhysAddr, u8)> {
    let end = region.end.0;
    let mut at = region
        .start
        .checked_align_up(1 << min_bits)
        .map_or(end, |a| a.0);
    core::iter::from_fn(move || {
        if end < at || end - at < 1 << min_bits {
            return None;
        }
        let fits = 63 - (end - at).leading_zeros() as u8; // floor(log2(remaining))
        let aligned = if at == 0 {
            max_bits
        } else {
            at.trailing_zeros().min(63) as u8
        };
        let bits = aligned.min(fits).min(max_bits);
        let block = (PhysAddr(at), bits);
        at += 1 << bits;
        Some(block)
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::vec::Vec;

    const UNIT: u64 = 0x1000;

    fn r(start: u64, end: u64) -> Region {
        Region {
            start: PhysAddr(start),
            end: PhysAddr(end),
        }
    }

    #[test]
    fn remove_splits_and_add_merges() {
        let mut f = FreeRegions::new();
        f.add(r(0x4000_0000, 0x8000_0000)).unwrap();
        f.remove(r(0x4020_0000, 0x4040_0000)).unwrap();
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            [r(0x4000_0000, 0x4020_0000), r(0x4040_0000, 0x8000_0000)]
        );
        f.add(r(0x4020_0000, 0x4040_0000)).unwrap();
        assert_eq!(f.iter().collect::<Vec<_>>(), [r(0x4000_0000, 0x8000_0000)]);
    }

    #[test]
    fn allocate_respects_alignment() {
        let mut f = FreeRegions::new();
        f.add(r(0x1000, 0x10_0000)).unwrap();
        let a = f.allocate(0x2000, 0x1_0000).unwrap();
        assert_eq!(a, PhysAddr(0x1_0000));
        assert_eq!(f.total(), 0x10_0000 - 0x1000 - 0x2000);
        assert_eq!(f.allocate(0x100_0000, UNIT), Err(RegionError::OutOfMemory));
        assert_eq!(f.allocate(0x1000, 3), Err(RegionError::BadRequest));
        assert_eq!(f.allocate(0, UNIT), Err(RegionError::BadRequest));
    }

    #[test]
    fn table_full_is_an_error_not_a_panic() {
        let mut f = FreeRegions::new();
        for i in 0..MAX_REGIONS as u64 {
            f.add(r(i * 4 * UNIT, i * 4 * UNIT + UNIT)).unwrap();
        }
        let last = MAX_REGIONS as u64 * 4 * UNIT;
        assert_eq!(
            f.add(r(last, last + UNIT)),
            Err(RegionError::TooManyRegions)
        );
    }

    #[test]
    fn aligned_blocks_cover_exactly() {
        let blocks: Vec<_> = aligned_blocks(r(0x4030_0000, 0x8000_0000), 12, 30).collect();
        assert_eq!(blocks.first(), Some(&(PhysAddr(0x4030_0000), 20)));
        assert_eq!(
            blocks.last(),
            Some(&(PhysAddr(0x4000_0000 + 0x2000_0000), 29))
        );
        let total: u64 = blocks.iter().map(|&(_, b)| 1u64 << b).sum();
        assert_eq!(total, 0x8000_0000 - 0x4030_0000);
        assert_eq!(aligned_blocks(r(0x1001, 0x1fff), 12, 30).count(), 0);
        assert_eq!(aligned_blocks(r(0, 1 << 40), 12, 30).count(), 1024);
    }

    proptest! {
        #[test]
        fn aligned_blocks_are_aligned_disjoint_and_inside(start in 0u64..1 << 36, len in 0u64..1 << 34) {
            let region = r(start, start + len);
            let mut covered = 0;
            let mut last_end = 0;
            for (at, bits) in aligned_blocks(region, 12, 30) {
                prop_assert!((12..=30).contains(&bits));
                prop_assert_eq!(at.0 % (1 << bits), 0);
                prop_assert!(at.0 >= start && at.0 + (1 << bits) <= start + len);
                prop_assert!(at.0 >= last_end);
                last_end = at.0 + (1 << bits);
                covered += 1u64 << bits;
            }
            // Everything page-aligned inside the region is covered.
            let lo = start.next_multiple_of(1 << 12);
            let hi = (start + len) & !((1 << 12) - 1);
            prop_assert_eq!(covered, hi.saturating_sub(lo));
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u64, u64),
        Remove(u64, u64),
        Allocate(u64, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..64u64, 1..16u64).prop_map(|(s, n)| Op::Add(s, n)),
            (0..64u64, 1..16u64).prop_map(|(s, n)| Op::Remove(s, n)),
            (1..8u64, 0..4u32).prop_map(|(n, a)| Op::Allocate(n, a)),
        ]
    }

    proptest! {
        /// The region set behaves like a set of free pages.
        #[test]
        fn matches_page_set_model(ops in proptest::collection::vec(op(), 1..200)) {
            let mut f = FreeRegions::new();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Add(s, n) => {
                        f.add(r(s * UNIT, (s + n) * UNIT)).unwrap();
                        model.extend(s..s + n);
                    }
                    Op::Remove(s, n) => {
                        f.remove(r(s * UNIT, (s + n) * UNIT)).unwrap();
                        for p in s..s + n { model.remove(&p); }
                    }
                    Op::Allocate(n, a) => {
                        let align = UNIT << a;
                        match f.allocate(n * UNIT, align) {
                            Ok(at) => {
                                let first = at.0 / UNIT;
                                prop_assert_eq!(at.0 % align, 0);
                                for p in first..first + n {
                                    prop_assert!(model.remove(&p), "allocated a page that was not free");
                                }
                            }
                            Err(RegionError::OutOfMemory) => {
                                // No aligned run of n free pages may exist.
                                let step = align / UNIT;
                                let fits = (0..128u64).step_by(step as usize)
                                    .any(|s| (s..s + n).all(|p| model.contains(&p)));
                                prop_assert!(!fits, "allocation failed although memory was free");
                            }
                            Err(e) => prop_assert!(false, "unexpected {:?}", e),
                        }
                    }
                }
                // Same pages, regions sorted, disjoint and non-adjacent.
                let pages: BTreeSet<u64> = f.iter()
                    .flat_map(|r| r.start.0 / UNIT..r.end.0 / UNIT).collect();
                prop_assert_eq!(&pages, &model);
                let v: Vec<_> = f.iter().collect();
                for w in v.windows(2) { prop_assert!(w[0].end < w[1].start); }
            }
        }
    }
}
