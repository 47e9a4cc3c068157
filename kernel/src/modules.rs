//! Boot modules: the bundle the boot loader placed in RAM and named with
//! `modules=ADDR` on the command line.
//!
//! Before touching it the kernel proves the header page is RAM that
//! nothing else uses ([`skyscope_core::bootmodules::check_range`]); it
//! then reads that one page, checks the header
//! ([`skyscope_abi::bundle::parse`]) and the whole bundle's place, and
//! takes the modules' frames out of the memory that will become untyped.
//! It never reads a module. Anything wrong is reported on the console and
//! the system boots without modules.

use crate::arch::{BOOT_MAP_END, Platform, device_virt};
use crate::kprintln;
use core::fmt;
use skyscope_abi::bundle::{self, BundleError, HEADER_READ_SIZE};
use skyscope_core::{
    PhysAddr,
    bootmodules::{self, PlaceError, Placement},
    memory::{FreeRegions, MAX_REGIONS, Region},
};

/// Why the bundle was not used.
enum Refused {
    /// `modules=` is not an address.
    BadArgument,
    /// The header page is not RAM the kernel may read.
    HeaderPage(PlaceError),
    /// The header page lies above what the boot map reaches.
    AboveBootMap,
    /// The header is malformed.
    Header(BundleError),
    /// The bundle does not fit where it is.
    Place(PlaceError),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::BadArgument => write!(f, "not an address"),
            Refused::HeaderPage(e) => write!(f, "header page {e}"),
            Refused::AboveBootMap => {
                write!(f, "header above {BOOT_MAP_END:#x}, unreachable at boot")
            }
            Refused::Header(e) => write!(f, "bad header: {e}"),
            Refused::Place(e) => write!(f, "bundle {e}"),
        }
    }
}

/// Memory already in use: reservations, the device tree, the kernel image.
fn in_use(platform: &Platform, image: Region) -> ([Region; MAX_REGIONS + 2], usize) {
    let empty = Region {
        start: PhysAddr(0),
        end: PhysAddr(0),
    };
    let mut list = [empty; MAX_REGIONS + 2];
    let mut n = 0;
    for r in platform.reserved.iter().chain([platform.dtb, image]) {
        list[n] = r;
        n += 1;
    }
    (list, n)
}

/// Reads the header page at `base`, which `check_range` proved is RAM in
/// use by nothing else, below the boot map's end.
fn read_header(base: u64) -> [u8; HEADER_READ_SIZE] {
    let mut words = [0u64; HEADER_READ_SIZE / 8];
    let va = device_virt(PhysAddr(base)) as *const u64;
    for (i, w) in words.iter_mut().enumerate() {
        // SAFETY: `base` is page aligned, and the page is RAM below
        // `BOOT_MAP_END`, which the boot map maps in the upper half;
        // nothing else refers to it (it is in no region the kernel uses).
        *w = unsafe { va.add(i).read_volatile() };
    }
    let mut bytes = [0u8; HEADER_READ_SIZE];
    for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    bytes
}

fn find(
    argument: &str,
    platform: &Platform,
    in_use: &[Region],
    free: &FreeRegions,
) -> Result<(Placement, FreeRegions), Refused> {
    let base = bundle::parse_address(argument).ok_or(Refused::BadArgument)?;
    if !base.is_multiple_of(bundle::MODULE_ALIGN) {
        return Err(Refused::Place(PlaceError::Misaligned));
    }
    let page = bootmodules::check_range(base, HEADER_READ_SIZE as u64, &platform.ram, in_use)
        .map_err(Refused::HeaderPage)?;
    if page.end.0 > BOOT_MAP_END {
        return Err(Refused::AboveBootMap);
    }
    let header = bundle::parse(&read_header(base)).map_err(Refused::Header)?;
    let placement =
        bootmodules::place(&header, base, &platform.ram, in_use).map_err(Refused::Place)?;
    let rest = bootmodules::reserve(free, &placement).map_err(Refused::Place)?;
    Ok((placement, rest))
}

/// Finds the bundle named by `modules=`, if any, and removes its modules'
/// frames from `free`; returns where they are (none if there is no
/// bundle or it is refused, which is reported).
pub fn discover(platform: &Platform, image: Region, free: &mut FreeRegions) -> Placement {
    let Some(argument) = platform.bootarg("modules") else {
        return Placement::default();
    };
    let (list, n) = in_use(platform, image);
    match find(argument, platform, &list[..n], free) {
        Ok((placement, rest)) => {
            *free = rest;
            for m in placement.modules() {
                let r = m.region();
                kprintln!(
                    "modules: '{}', {} bytes at {:#x}..{:#x} ({} frame{} of 2 MiB)",
                    m.module.name(),
                    m.module.size,
                    r.start.0,
                    r.end.0,
                    m.module.frames(),
                    if m.module.frames() == 1 { "" } else { "s" }
                );
            }
            placement
        }
        Err(why) => {
            kprintln!(
                "modules: bundle at modules={argument} refused ({why}); booting without modules"
            );
            Placement::default()
        }
    }
}
