//! Boot modules in physical memory: where a bundle's modules lie, and the
//! checks that make them RAM that nothing else owns.
//!
//! The bundle's header (`skyscope_abi::bundle::parse`) says where each
//! module sits relative to the bundle; the kernel command line says where
//! the bundle is. Before the kernel reads the header or hands a module
//! over, [`check_range`] proves the bytes lie inside one RAM bank and
//! overlap nothing already in use (the kernel image, the device tree,
//! reserved memory). [`place`] turns a checked header into physical
//! regions, and [`reserve`] takes them out of the memory that becomes
//! untyped, so a module's frames are never also covered by an untyped
//! capability.

use crate::{
    PhysAddr,
    addr::PAGE_SIZE,
    memory::{FreeRegions, Region, RegionError},
};
use skyscope_abi::{
    bootinfo::MAX_BOOT_MODULES,
    bundle::{Bundle, MODULE_ALIGN, Module},
};

/// Why a bundle cannot be used where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceError {
    /// The bundle's address is not 2 MiB aligned.
    Misaligned,
    /// The range wraps around the address space.
    Wraps,
    /// The range is not inside one RAM bank.
    NotInRam,
    /// The range overlaps memory already in use (this one).
    InUse(Region),
    /// Taking the modules out of free memory needs more regions than the
    /// kernel tracks.
    TooFragmented,
}

impl core::fmt::Display for PlaceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PlaceError::Misaligned => write!(f, "address is not 2 MiB aligned"),
            PlaceError::Wraps => write!(f, "range wraps around the address space"),
            PlaceError::NotInRam => write!(f, "not inside one RAM bank"),
            PlaceError::InUse(r) => write!(
                f,
                "overlaps memory in use at {:#x}..{:#x}",
                r.start.0, r.end.0
            ),
            PlaceError::TooFragmented => write!(f, "too many free-memory regions"),
        }
    }
}

/// Rounds a region out to whole pages.
fn page_round(r: Region) -> Region {
    Region {
        start: r.start.align_down(PAGE_SIZE),
        end: r
            .end
            .checked_align_up(PAGE_SIZE)
            .unwrap_or(PhysAddr(u64::MAX)),
    }
}

/// Checks that `[start, start + size)` lies inside one bank of `ram` and
/// overlaps none of `in_use` (each rounded out to whole pages, as the
/// kernel reserves them).
pub fn check_range(
    start: u64,
    size: u64,
    ram: &FreeRegions,
    in_use: &[Region],
) -> Result<Region, PlaceError> {
    let range = Region::new(start, size).ok_or(PlaceError::Wraps)?;
    if !ram
        .iter()
        .any(|bank| bank.start <= range.start && range.end <= bank.end)
    {
        return Err(PlaceError::NotInRam);
    }
    match in_use
        .iter()
        .copied()
        .filter(|r| !r.is_empty())
        .map(page_round)
        .find(|r| r.start < range.end && range.start < r.end)
    {
        Some(r) => Err(PlaceError::InUse(r)),
        None => Ok(range),
    }
}

/// A module of a placed bundle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlacedModule {
    /// Name and size, from the header.
    pub module: Module,
    /// Physical address of its first 2 MiB frame.
    pub base: PhysAddr,
}

impl PlacedModule {
    /// The physical range of its frames.
    pub fn region(&self) -> Region {
        Region {
            start: self.base,
            end: PhysAddr(self.base.0 + self.module.span()),
        }
    }
}

/// A bundle's modules at their physical addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    count: usize,
    modules: [PlacedModule; MAX_BOOT_MODULES],
}

impl Placement {
    /// The modules, in address order.
    pub fn modules(&self) -> &[PlacedModule] {
        &self.modules[..self.count.min(MAX_BOOT_MODULES)]
    }
}

/// Places a checked bundle at physical address `base`: the whole bundle
/// must lie inside one RAM bank, clear of everything in `in_use`.
pub fn place(
    bundle: &Bundle,
    base: u64,
    ram: &FreeRegions,
    in_use: &[Region],
) -> Result<Placement, PlaceError> {
    if !base.is_multiple_of(MODULE_ALIGN) {
        return Err(PlaceError::Misaligned);
    }
    check_range(base, bundle.total_size, ram, in_use)?;
    let mut placement = Placement::default();
    for (i, m) in bundle.modules().iter().enumerate() {
        // In range: the header check put every module inside
        // `total_size`, and the bundle's range did not wrap.
        placement.modules[i] = PlacedModule {
            module: *m,
            base: PhysAddr(base + m.offset),
        };
        placement.count = i + 1;
    }
    Ok(placement)
}

/// `free` without the placed modules' frames; `free` itself is left alone
/// if that cannot be tracked, so a failure hands over no module and loses
/// no memory.
pub fn reserve(free: &FreeRegions, placement: &Placement) -> Result<FreeRegions, PlaceError> {
    let mut rest = free.clone();
    for m in placement.modules() {
        rest.remove(m.region())
            .map_err(|_: RegionError| PlaceError::TooFragmented)?;
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use skyscope_abi::bundle::{self, MAX_BUNDLE_FRAMES};
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn r(start: u64, end: u64) -> Region {
        Region {
            start: PhysAddr(start),
            end: PhysAddr(end),
        }
    }

    /// QEMU `virt` with 2 GiB: DTB at the start of RAM, kernel 2 MiB above.
    fn virt() -> (FreeRegions, [Region; 2]) {
        let mut ram = FreeRegions::new();
        ram.add(r(GIB, 3 * GIB)).unwrap();
        let in_use = [
            r(GIB, GIB + 0x10_0000),
            r(GIB + 2 * MIB, GIB + 2 * MIB + 0x31_5000),
        ];
        (ram, in_use)
    }

    #[test]
    fn places_at_2gib_and_reserves_exactly_the_frames() {
        let (ram, in_use) = virt();
        let b = bundle::layout(&[("big", 128 * MIB + 5), ("small", 100)]).unwrap();
        let p = place(&b, 2 * GIB, &ram, &in_use).unwrap();
        let regions: Vec<_> = p.modules().iter().map(|m| m.region()).collect();
        assert_eq!(
            regions,
            [
                r(2 * GIB + 2 * MIB, 2 * GIB + 132 * MIB),
                r(2 * GIB + 132 * MIB, 2 * GIB + 134 * MIB)
            ]
        );
        let free = reserve(&ram, &p).unwrap();
        // The header block stays free; the modules' frames do not.
        assert_eq!(
            free.iter().collect::<Vec<_>>(),
            [r(GIB, 2 * GIB + 2 * MIB), r(2 * GIB + 134 * MIB, 3 * GIB)]
        );
    }

    #[test]
    fn refuses_bad_places() {
        let (ram, in_use) = virt();
        let b = bundle::layout(&[("m", 10 * MIB)]).unwrap();
        let cases = [
            (2 * GIB + 4096, PlaceError::Misaligned),
            (0, PlaceError::NotInRam),
            (3 * GIB - 4 * MIB, PlaceError::NotInRam),
            (u64::MAX - 2 * MIB + 1, PlaceError::Wraps),
            (GIB, PlaceError::InUse(in_use[0])),
            (
                GIB + 2 * MIB,
                PlaceError::InUse(r(GIB + 2 * MIB, GIB + 2 * MIB + 0x31_5000)),
            ),
        ];
        for (base, expected) in cases {
            assert_eq!(place(&b, base, &ram, &in_use), Err(expected), "{base:#x}");
        }
        // A 16-byte reservation inside a module is reported as its page.
        let tiny = [r(2 * GIB + 5 * MIB + 8, 2 * GIB + 5 * MIB + 24)];
        assert_eq!(
            place(&b, 2 * GIB, &ram, &tiny),
            Err(PlaceError::InUse(r(
                2 * GIB + 5 * MIB,
                2 * GIB + 5 * MIB + 4096
            )))
        );
        // Straddling two banks with a hole between them.
        let mut split = FreeRegions::new();
        split.add(r(GIB, 2 * GIB + 4 * MIB)).unwrap();
        split.add(r(2 * GIB + 6 * MIB, 3 * GIB)).unwrap();
        assert_eq!(place(&b, 2 * GIB, &split, &[]), Err(PlaceError::NotInRam));
    }

    #[test]
    fn failed_reservation_changes_nothing() {
        let mut free = FreeRegions::new();
        for i in 0..crate::memory::MAX_REGIONS as u64 {
            free.add(r(i * 64 * MIB, i * 64 * MIB + 32 * MIB)).unwrap();
        }
        let b = bundle::layout(&[("m", MIB)]).unwrap();
        let p = place(&b, 0, &free, &[]).unwrap();
        // Cutting 2..4 MiB out of 0..32 MiB needs one more region.
        assert_eq!(reserve(&free, &p).err(), Some(PlaceError::TooFragmented));
        assert_eq!(free.iter().count(), crate::memory::MAX_REGIONS);
    }

    proptest! {
        /// Whatever the bundle, RAM and reservations: an accepted placement
        /// lies in RAM, clear of what is in use, and after `reserve` no
        /// free byte is a module byte while every other free byte stays.
        #[test]
        fn accepted_placements_are_ram_nobody_owns(
            sizes in proptest::collection::vec(1u64..64 * MIB, 1..=MAX_BOOT_MODULES),
            base_blocks in 0u64..2048,
            banks in proptest::collection::vec((0u64..2048, 1u64..512), 1..4),
            used in proptest::collection::vec((0u64..1 << 32, 1u64..1 << 24), 0..4),
        ) {
            let names = ["a", "b", "c", "d"];
            let list: Vec<(&str, u64)> = names.iter().copied().zip(sizes).collect();
            let b = bundle::layout(&list).unwrap();
            prop_assert!(b.frames() <= MAX_BUNDLE_FRAMES);
            let mut ram = FreeRegions::new();
            for (start, len) in banks {
                ram.add(r(start * 2 * MIB, (start + len) * 2 * MIB)).unwrap();
            }
            let in_use: Vec<Region> = used.iter().map(|&(s, l)| r(s, s + l)).collect();
            let base = base_blocks * 2 * MIB;
            if let Ok(p) = place(&b, base, &ram, &in_use) {
                prop_assert_eq!(p.modules().len(), list.len());
                for m in p.modules() {
                    let reg = m.region();
                    prop_assert!(ram.iter().any(|bank| bank.start <= reg.start && reg.end <= bank.end));
                    for u in &in_use {
                        prop_assert!(u.end <= reg.start || reg.end <= u.start);
                    }
                    prop_assert_eq!(reg.start.0 % MODULE_ALIGN, 0);
                    prop_assert!(m.module.size <= reg.size() && reg.size() - m.module.size < MODULE_ALIGN);
                }
                let free = reserve(&ram, &p).unwrap();
                let mut back = free.clone();
                for m in p.modules() {
                    for f in free.iter() {
                        prop_assert!(f.end <= m.region().start || m.region().end <= f.start);
                    }
                    back.add(m.region()).unwrap();
                }
                prop_assert_eq!(back.iter().collect::<Vec<_>>(), ram.iter().collect::<Vec<_>>());
            }
        }
    }
}
