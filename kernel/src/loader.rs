//! Loads the root task's ELF image into a fresh user address space.
//!
//! The image comes from the kernel build (embedded), but it is parsed as
//! untrusted bytes all the same: every header field is range-checked and
//! any inconsistency is an error naming the problem, never a panic.

use crate::arch::{PageTables, Permissions, copy_to_phys, zero_phys};
use elf::{ElfBytes, abi, endian::LittleEndian};
use skyscope_core::{
    PhysAddr, VirtAddr,
    addr::PAGE_SIZE,
    memory::{FreeRegions, Region},
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
    /// The bytes are not a well-formed ELF file.
    Malformed,
    /// Not a 64-bit little-endian AArch64 executable.
    WrongKind,
    /// No loadable segments.
    NoSegments,
    /// A segment asks to be both writable and executable.
    WritableAndExecutable,
    /// A segment's file range lies outside the file, or sizes are inconsistent.
    Truncated,
    /// A segment lies outside the user address range or overlaps another.
    BadAddress,
    /// The entry point is not in an executable segment.
    BadEntry,
    /// Not enough memory for the segments or page tables.
    NoMemory,
}

fn page_align_up(v: u64) -> Option<u64> {
    Some(v.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1))
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
    let file = ElfBytes::<LittleEndian>::minimal_parse(image).map_err(|_| LoadError::Malformed)?;
    let header = &file.ehdr;
    if header.class != elf::file::Class::ELF64
        || header.e_machine != abi::EM_AARCH64
        || header.e_type != abi::ET_EXEC
    {
        return Err(LoadError::WrongKind);
    }
    let segments = file.segments().ok_or(LoadError::NoSegments)?;
    let mut loaded: Option<LoadedImage> = None;
    let mut entry_ok = false;
    for ph in segments
        .iter()
        .filter(|ph| ph.p_type == abi::PT_LOAD && ph.p_memsz > 0)
    {
        let write = ph.p_flags & abi::PF_W != 0;
        let execute = ph.p_flags & abi::PF_X != 0;
        if write && execute {
            return Err(LoadError::WritableAndExecutable);
        }
        if ph.p_filesz > ph.p_memsz {
            return Err(LoadError::Truncated);
        }
        let file_end = ph
            .p_offset
            .checked_add(ph.p_filesz)
            .ok_or(LoadError::Truncated)?;
        let data = image
            .get(ph.p_offset as usize..file_end as usize)
            .ok_or(LoadError::Truncated)?;
        let start = ph.p_vaddr & !(PAGE_SIZE - 1);
        let end = ph
            .p_vaddr
            .checked_add(ph.p_memsz)
            .and_then(page_align_up)
            .ok_or(LoadError::BadAddress)?;
        if start == 0 || end > crate::arch::mmu::USER_VA_END {
            return Err(LoadError::BadAddress);
        }
        let size = end - start;
        let frames = allocate_zeroed(free, size).ok_or(LoadError::NoMemory)?;
        copy_to_phys(PhysAddr(frames.0 + (ph.p_vaddr - start)), data);
        let perms = Permissions {
            write,
            execute,
            device: false,
        };
        let mut table_alloc = || allocate_zeroed(free, PAGE_SIZE);
        if let Err(e) = space.map_range(VirtAddr(start), frames, size, perms, &mut table_alloc) {
            // Give the frames back; the image will not be used.
            let _ = free.add(Region {
                start: frames,
                end: PhysAddr(frames.0 + size),
            });
            return Err(match e {
                crate::arch::mmu::MapError::NoMemory => LoadError::NoMemory,
                _ => LoadError::BadAddress,
            });
        }
        if execute && (ph.p_vaddr..ph.p_vaddr + ph.p_memsz).contains(&header.e_entry) {
            entry_ok = true;
        }
        loaded = Some(match loaded {
            None => LoadedImage {
                entry: header.e_entry,
                start,
                end,
            },
            Some(l) => LoadedImage {
                entry: l.entry,
                start: l.start.min(start),
                end: l.end.max(end),
            },
        });
    }
    let loaded = loaded.ok_or(LoadError::NoSegments)?;
    if !entry_ok {
        return Err(LoadError::BadEntry);
    }
    Ok(loaded)
}
