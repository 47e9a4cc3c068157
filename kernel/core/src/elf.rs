//! Validation of user-program ELF images (the root task's, for now).
//!
//! The bytes are treated as untrusted: every field is range-checked and
//! every inconsistency is an error naming it, never a panic (the host fuzz
//! target `elf` feeds this arbitrary bytes). The result lists the loadable
//! segments for the kernel to copy and map.

use crate::addr::PAGE_SIZE;
use ::elf::{ElfBytes, abi, endian::LittleEndian};

/// Most loadable segments an image may have.
pub const MAX_SEGMENTS: usize = 8;

/// One loadable segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address of its first byte.
    pub vaddr: u64,
    /// Size in memory (the part past `file_size` is zero).
    pub mem_size: u64,
    /// Offset of its bytes in the file.
    pub file_offset: u64,
    /// Number of bytes in the file.
    pub file_size: u64,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
}

impl Segment {
    /// The page-aligned range `[start, end)` it occupies.
    pub fn pages(&self) -> (u64, u64) {
        let start = self.vaddr & !(PAGE_SIZE - 1);
        let end = (self.vaddr + self.mem_size).next_multiple_of(PAGE_SIZE);
        (start, end)
    }
}

/// A validated executable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Executable {
    /// Entry point (inside an executable segment).
    pub entry: u64,
    /// The loadable segments, in file order.
    pub segments: [Segment; MAX_SEGMENTS],
    /// How many of `segments` are used.
    pub count: usize,
}

impl Executable {
    /// The used segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// The bytes are not a well-formed ELF file.
    Malformed,
    /// Not a 64-bit little-endian executable for this machine.
    WrongKind,
    /// No loadable segments, or more than [`MAX_SEGMENTS`].
    BadSegmentCount,
    /// A segment asks to be both writable and executable.
    WritableAndExecutable,
    /// A segment's file range lies outside the file, or its file size
    /// exceeds its memory size.
    Truncated,
    /// A segment lies at address 0, beyond `va_end`, or shares a page with
    /// another segment.
    BadAddress,
    /// The entry point is not in an executable segment.
    BadEntry,
}

/// Validates `image` as an executable for ELF machine `machine`
/// (`elf::abi::EM_*`) whose segments must lie below `va_end`.
pub fn parse_executable(image: &[u8], machine: u16, va_end: u64) -> Result<Executable, ElfError> {
    let file = ElfBytes::<LittleEndian>::minimal_parse(image).map_err(|_| ElfError::Malformed)?;
    let header = &file.ehdr;
    if header.class != ::elf::file::Class::ELF64
        || header.e_machine != machine
        || header.e_type != abi::ET_EXEC
    {
        return Err(ElfError::WrongKind);
    }
    let table = file.segments().ok_or(ElfError::BadSegmentCount)?;
    let mut out = Executable {
        entry: header.e_entry,
        ..Executable::default()
    };
    let mut entry_ok = false;
    for ph in table
        .iter()
        .filter(|ph| ph.p_type == abi::PT_LOAD && ph.p_memsz > 0)
    {
        if out.count == MAX_SEGMENTS {
            return Err(ElfError::BadSegmentCount);
        }
        let segment = Segment {
            vaddr: ph.p_vaddr,
            mem_size: ph.p_memsz,
            file_offset: ph.p_offset,
            file_size: ph.p_filesz,
            write: ph.p_flags & abi::PF_W != 0,
            execute: ph.p_flags & abi::PF_X != 0,
        };
        if segment.write && segment.execute {
            return Err(ElfError::WritableAndExecutable);
        }
        let file_end = segment
            .file_offset
            .checked_add(segment.file_size)
            .ok_or(ElfError::Truncated)?;
        if segment.file_size > segment.mem_size || file_end > image.len() as u64 {
            return Err(ElfError::Truncated);
        }
        let end = segment
            .vaddr
            .checked_add(segment.mem_size)
            .ok_or(ElfError::BadAddress)?;
        if segment.vaddr < PAGE_SIZE || end > va_end || va_end - end < PAGE_SIZE {
            return Err(ElfError::BadAddress);
        }
        let (start, stop) = segment.pages();
        if out.segments().iter().any(|s| {
            let (a, b) = s.pages();
            start < b && a < stop
        }) {
            return Err(ElfError::BadAddress);
        }
        if segment.execute && (segment.vaddr..end).contains(&out.entry) {
            entry_ok = true;
        }
        out.segments[out.count] = segment;
        out.count += 1;
    }
    if out.count == 0 {
        return Err(ElfError::BadSegmentCount);
    }
    if !entry_ok {
        return Err(ElfError::BadEntry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            parse_executable(&[], abi::EM_AARCH64, 1 << 39),
            Err(ElfError::Malformed)
        );
        assert_eq!(
            parse_executable(&[0x7f, b'E', b'L', b'F', 2, 1, 1], abi::EM_AARCH64, 1 << 39),
            Err(ElfError::Malformed)
        );
        let mut header = [0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        assert!(parse_executable(&header, abi::EM_AARCH64, 1 << 39).is_err());
    }
}
