//! Loads the root task's ELF image into a fresh user address space.
//!
//! The image comes from the kernel build (embedded), but it is validated as
//! untrusted bytes all the same (`skyscope_core::elf`, fuzzed on the host).

use crate::arch::{PageTables, copy_to_phys, zero_phys};
use skyscope_core::machine::Access;
use skyscope_core::{
    PhysAddr, VirtAddr,
    addr::PAGE_SIZE,
    elf::{ElfError, parse_executable},
    memory::FreeRegions,
};

/// Where a loaded image sits and where it starts.
#[derive(Clone, Copy, Debug)]
pub struct LoadedImage {
    /// Entry point.
    pub entry: u64,
    /// Lowest mapped address.
    pub start: u64,
    /// One past the highest mapped address.
    pub end: u64,
}

/// Why an image could not be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The image failed validation.
    Invalid(ElfError),
    /// Not enough memory for the segments or page tables.
    NoMemory,
    /// A segment could not be mapped.
    Map,
}

/// Allocates zeroed, page-aligned physical memory from `free`.
pub fn allocate_zeroed(free: &mut FreeRegions, size: u64) -> Option<PhysAddr> {
    let pa = free.allocate(size, PAGE_SIZE).ok()?;
    zero_phys(pa, size);
    Some(pa)
}

/// Loads `image` into `space`, taking frames and page tables from `free`.
pub fn load_elf(
    image: &[u8],
    space: &mut PageTables,
    free: &mut FreeRegions,
) -> Result<LoadedImage, LoadError> {
    let exe = parse_executable(image, elf::abi::EM_AARCH64, crate::arch::USER_VA_END)
        .map_err(LoadError::Invalid)?;
    let mut loaded = LoadedImage {
        entry: exe.entry,
        start: u64::MAX,
        end: 0,
    };
    for segment in exe.segments() {
        let (start, end) = segment.pages();
        let size = end - start;
        let frames = allocate_zeroed(free, size).ok_or(LoadError::NoMemory)?;
        let data = &image
            [segment.file_offset as usize..(segment.file_offset + segment.file_size) as usize];
        copy_to_phys(PhysAddr(frames.0 + (segment.vaddr - start)), data);
        let perms = Access {
            write: segment.write,
            execute: segment.execute,
            device: false,
        };
        let mut table_alloc = || allocate_zeroed(free, PAGE_SIZE);
        space
            .map_range(VirtAddr(start), frames, size, perms, &mut table_alloc)
            .map_err(|e| match e {
                crate::arch::MapError::NoMemory => LoadError::NoMemory,
                _ => LoadError::Map,
            })?;
        loaded.start = loaded.start.min(start);
        loaded.end = loaded.end.max(end);
    }
    Ok(loaded)
}
