//! The boot-module bundle: how files reach the kernel from the boot loader.
//!
//! A bundle is one blob the boot loader places in RAM (QEMU:
//! `-device loader,file=BUNDLE,addr=ADDR,force-raw=on`) at a 2 MiB-aligned
//! address it names on the kernel command line (`modules=ADDR`). It starts
//! with a [`BundleHeader`] (little-endian) followed by `count`
//! [`BundleEntry`] records, all inside the first 2 MiB block; every module
//! starts on a 2 MiB boundary after that block and is padded with zeros to
//! the next one, so the kernel hands each module over as 2 MiB frames
//! covering exactly its blocks. The kernel reads the header (at most
//! [`HEADER_READ_SIZE`] bytes) and never a module's contents.
//!
//! [`parse`] is what the kernel runs on those bytes: it accepts only a
//! header whose every entry is named, aligned, inside the bundle and
//! disjoint from the others, and never panics (host property tests and the
//! `bundle` libFuzzer target feed it arbitrary bytes). [`layout`] and
//! [`Bundle::encode`] are the writer's side (`cargo xtask`).

use crate::bootinfo::{MAX_BOOT_MODULES, MODULE_NAME_CAPACITY};
use zerocopy::{
    FromBytes, Immutable, IntoBytes, KnownLayout,
    little_endian::{U32, U64},
};

/// First eight bytes of a bundle: "SKYMODS" and a format byte.
pub const BUNDLE_MAGIC: u64 = u64::from_le_bytes(*b"SKYMODS\x01");
/// Format version of [`BundleHeader`] and [`BundleEntry`].
pub const BUNDLE_VERSION: u32 = 1;
/// log2 of the alignment of the bundle, of every module and of every
/// frame handed over for one (2 MiB: one level-2 block).
pub const MODULE_ALIGN_BITS: u32 = 21;
/// The alignment itself.
pub const MODULE_ALIGN: u64 = 1 << MODULE_ALIGN_BITS;
/// Bytes of the header the kernel reads: the fixed part and the entries
/// must lie inside them.
pub const HEADER_READ_SIZE: usize = 4096;
/// Most 2 MiB frames all modules of a bundle may take together (2 GiB): a
/// bound on the root CNode slots they use (it has 4096).
pub const MAX_BUNDLE_FRAMES: u64 = 1024;

/// The fixed part of the header, at offset 0 of the bundle.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BundleHeader {
    /// Always [`BUNDLE_MAGIC`].
    pub magic: U64,
    /// Always [`BUNDLE_VERSION`].
    pub version: U32,
    /// Number of [`BundleEntry`] records right after this header.
    pub count: U32,
    /// Bytes from the bundle's start to the end of its last module's last
    /// block: a multiple of [`MODULE_ALIGN`].
    pub total_size: U64,
}

/// One module's record.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BundleEntry {
    /// Name: printable ASCII without spaces, NUL-padded.
    pub name: [u8; MODULE_NAME_CAPACITY],
    /// Where the module starts, from the bundle's start (a non-zero
    /// multiple of [`MODULE_ALIGN`]).
    pub offset: U64,
    /// Its length in bytes (not zero).
    pub size: U64,
}

const HEADER_SIZE: usize = core::mem::size_of::<BundleHeader>();
const ENTRY_SIZE: usize = core::mem::size_of::<BundleEntry>();
const _: () = assert!(HEADER_SIZE + MAX_BOOT_MODULES * ENTRY_SIZE <= HEADER_READ_SIZE);

/// Why a bundle header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// Fewer bytes than the header and its entries need.
    Truncated,
    /// The first eight bytes are not [`BUNDLE_MAGIC`].
    BadMagic,
    /// A version this kernel does not know.
    BadVersion(u32),
    /// No modules, or more than [`MAX_BOOT_MODULES`].
    BadCount(u32),
    /// `total_size` is zero or not a multiple of [`MODULE_ALIGN`].
    BadTotalSize,
    /// Module `n`'s name is empty, has bytes after its NUL padding, or
    /// characters other than printable ASCII.
    BadName(usize),
    /// Two modules share a name.
    DuplicateName(usize),
    /// Module `n` is empty.
    EmptyModule(usize),
    /// Module `n` does not start on a 2 MiB boundary after the header block.
    Misaligned(usize),
    /// Module `n` ends past `total_size` (or its end overflows).
    OutOfBounds(usize),
    /// Module `n` starts before the end of module `n - 1` (entries are in
    /// address order and disjoint).
    Overlap(usize),
    /// The modules need more than [`MAX_BUNDLE_FRAMES`] frames.
    TooLarge,
}

impl core::fmt::Display for BundleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            BundleError::Truncated => write!(f, "header truncated"),
            BundleError::BadMagic => write!(f, "no bundle magic"),
            BundleError::BadVersion(v) => write!(f, "unknown bundle version {v}"),
            BundleError::BadCount(n) => {
                write!(f, "{n} modules (1 to {MAX_BOOT_MODULES} allowed)")
            }
            BundleError::BadTotalSize => {
                write!(f, "total size is not a non-zero multiple of 2 MiB")
            }
            BundleError::BadName(i) => write!(f, "module {i} has an invalid name"),
            BundleError::DuplicateName(i) => write!(f, "module {i} repeats an earlier name"),
            BundleError::EmptyModule(i) => write!(f, "module {i} is empty"),
            BundleError::Misaligned(i) => {
                write!(
                    f,
                    "module {i} does not start on a 2 MiB boundary after the header"
                )
            }
            BundleError::OutOfBounds(i) => write!(f, "module {i} ends beyond the bundle"),
            BundleError::Overlap(i) => write!(f, "module {i} overlaps the module before it"),
            BundleError::TooLarge => {
                write!(
                    f,
                    "modules need more than {MAX_BUNDLE_FRAMES} frames of 2 MiB"
                )
            }
        }
    }
}

/// One module of a checked bundle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Module {
    /// NUL-padded name (as in [`crate::bootinfo::BootModule`]).
    pub name: [u8; MODULE_NAME_CAPACITY],
    /// Offset from the bundle's start, a multiple of [`MODULE_ALIGN`].
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Module {
    /// The name (checked printable ASCII, so never lossy).
    pub fn name(&self) -> &str {
        let n = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MODULE_NAME_CAPACITY);
        core::str::from_utf8(&self.name[..n]).unwrap_or("")
    }

    /// Number of 2 MiB frames covering it.
    pub fn frames(&self) -> u64 {
        self.size.div_ceil(MODULE_ALIGN)
    }

    /// Bytes of its frames (its size rounded up to 2 MiB; saturating,
    /// though no module [`parse`] accepts comes near).
    pub fn span(&self) -> u64 {
        self.frames().saturating_mul(MODULE_ALIGN)
    }
}

/// A bundle header that passed every check of [`parse`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bundle {
    /// Bytes from the start to the end of the last module's last block.
    pub total_size: u64,
    count: usize,
    modules: [Module; MAX_BOOT_MODULES],
}

impl Bundle {
    /// The modules, in address order.
    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.count.min(MAX_BOOT_MODULES)]
    }

    /// 2 MiB frames all modules take.
    pub fn frames(&self) -> u64 {
        self.modules().iter().map(Module::frames).sum()
    }

    /// Writes the header and entries into `out` (zeroing the rest of it);
    /// returns the number of header bytes, or `None` if `out` is shorter.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let len = HEADER_SIZE + self.modules().len() * ENTRY_SIZE;
        let out_header = out.get_mut(..len)?;
        let header = BundleHeader {
            magic: BUNDLE_MAGIC.into(),
            version: BUNDLE_VERSION.into(),
            count: (self.modules().len() as u32).into(),
            total_size: self.total_size.into(),
        };
        out_header[..HEADER_SIZE].copy_from_slice(header.as_bytes());
        for (m, chunk) in self
            .modules()
            .iter()
            .zip(out_header[HEADER_SIZE..].chunks_exact_mut(ENTRY_SIZE))
        {
            let entry = BundleEntry {
                name: m.name,
                offset: m.offset.into(),
                size: m.size.into(),
            };
            chunk.copy_from_slice(entry.as_bytes());
        }
        out[len..].fill(0);
        Some(len)
    }
}

/// Whether a name field is non-empty printable ASCII (no spaces), then
/// only NUL padding.
fn name_ok(name: &[u8; MODULE_NAME_CAPACITY]) -> bool {
    let n = name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(MODULE_NAME_CAPACITY);
    n > 0 && name[..n].iter().all(|b| b.is_ascii_graphic()) && name[n..].iter().all(|&b| b == 0)
}

/// Checks a bundle header; `bytes` are the bundle's first bytes (the
/// kernel passes [`HEADER_READ_SIZE`] of them).
pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
    let (header, rest) =
        BundleHeader::ref_from_prefix(bytes).map_err(|_| BundleError::Truncated)?;
    if header.magic.get() != BUNDLE_MAGIC {
        return Err(BundleError::BadMagic);
    }
    if header.version.get() != BUNDLE_VERSION {
        return Err(BundleError::BadVersion(header.version.get()));
    }
    let count = header.count.get();
    if count == 0 || count as usize > MAX_BOOT_MODULES {
        return Err(BundleError::BadCount(count));
    }
    let total = header.total_size.get();
    if total == 0 || !total.is_multiple_of(MODULE_ALIGN) {
        return Err(BundleError::BadTotalSize);
    }
    let (entries, _) = <[BundleEntry]>::ref_from_prefix_with_elems(rest, count as usize)
        .map_err(|_| BundleError::Truncated)?;
    let mut bundle = Bundle {
        total_size: total,
        count: 0,
        modules: [Module::default(); MAX_BOOT_MODULES],
    };
    // The header block is [0, 2 MiB): the first module starts after it.
    let mut previous_end = MODULE_ALIGN;
    for (i, e) in entries.iter().enumerate() {
        let module = Module {
            name: e.name,
            offset: e.offset.get(),
            size: e.size.get(),
        };
        if !name_ok(&module.name) {
            return Err(BundleError::BadName(i));
        }
        if bundle.modules().iter().any(|m| m.name == module.name) {
            return Err(BundleError::DuplicateName(i));
        }
        if module.size == 0 {
            return Err(BundleError::EmptyModule(i));
        }
        if module.offset < MODULE_ALIGN || !module.offset.is_multiple_of(MODULE_ALIGN) {
            return Err(BundleError::Misaligned(i));
        }
        if module.offset < previous_end {
            return Err(BundleError::Overlap(i));
        }
        let end = module
            .size
            .checked_next_multiple_of(MODULE_ALIGN)
            .and_then(|span| module.offset.checked_add(span))
            .filter(|&end| end <= total)
            .ok_or(BundleError::OutOfBounds(i))?;
        previous_end = end;
        bundle.modules[i] = module;
        bundle.count = i + 1;
    }
    if bundle.frames() > MAX_BUNDLE_FRAMES {
        return Err(BundleError::TooLarge);
    }
    Ok(bundle)
}

/// Lays out a bundle for modules of these names and sizes, in this order,
/// each on the next 2 MiB boundary after the header block. The writer
/// then puts [`Bundle::encode`]'s bytes at offset 0, each module at its
/// offset and zeros everywhere else, up to `total_size`.
pub fn layout(modules: &[(&str, u64)]) -> Result<Bundle, BundleError> {
    if modules.is_empty() || modules.len() > MAX_BOOT_MODULES {
        return Err(BundleError::BadCount(modules.len() as u32));
    }
    let mut bundle = Bundle::default();
    let mut at = MODULE_ALIGN;
    for (i, &(name, size)) in modules.iter().enumerate() {
        let mut field = [0u8; MODULE_NAME_CAPACITY];
        if name.len() > MODULE_NAME_CAPACITY {
            return Err(BundleError::BadName(i));
        }
        field[..name.len()].copy_from_slice(name.as_bytes());
        let module = Module {
            name: field,
            offset: at,
            size,
        };
        at = size
            .checked_next_multiple_of(MODULE_ALIGN)
            .and_then(|span| at.checked_add(span))
            .ok_or(BundleError::OutOfBounds(i))?;
        bundle.modules[i] = module;
        bundle.count = i + 1;
    }
    bundle.total_size = at;
    // The same checks the kernel makes.
    let mut header = [0u8; HEADER_READ_SIZE];
    bundle.encode(&mut header);
    parse(&header)
}

/// Parses a `modules=` value: a hexadecimal (`0x` prefix) or decimal
/// address.
pub fn parse_address(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn header_of(bundle: &Bundle) -> Vec<u8> {
        let mut out = std::vec![0u8; HEADER_READ_SIZE];
        bundle.encode(&mut out).unwrap();
        out
    }

    #[test]
    fn layout_places_modules_on_2mib_boundaries() {
        let b = layout(&[("linux", 30 * MIB + 123), ("initrd", 1)]).unwrap();
        let m = b.modules();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].name(), m[0].offset, m[0].frames()),
            ("linux", 2 * MIB, 16)
        );
        assert_eq!(
            (m[1].name(), m[1].offset, m[1].frames()),
            ("initrd", 34 * MIB, 1)
        );
        assert_eq!(b.total_size, 36 * MIB);
        assert_eq!(b.frames(), 17);
        assert_eq!(parse(&header_of(&b)), Ok(b));
    }

    #[test]
    fn a_128_mib_module_fits() {
        let b = layout(&[("big", 128 * MIB + 5), ("small", 4000)]).unwrap();
        assert_eq!(b.frames(), 65 + 1);
        assert!(b.frames() <= MAX_BUNDLE_FRAMES);
    }

    #[test]
    fn refuses_each_kind_of_damage() {
        let good = layout(&[("a", 3 * MIB), ("b", 10)]).unwrap();
        let bytes = header_of(&good);
        let entry = |i: usize| HEADER_SIZE + i * ENTRY_SIZE;
        let set_u64 = |b: &mut Vec<u8>, at: usize, v: u64| {
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        };
        type Damage = fn(&mut Vec<u8>);
        let cases: [(&str, Damage, BundleError); 12] = [
            ("magic", |b| b[0] ^= 1, BundleError::BadMagic),
            ("version", |b| b[8] = 2, BundleError::BadVersion(2)),
            ("no modules", |b| b[12] = 0, BundleError::BadCount(0)),
            ("too many", |b| b[12] = 5, BundleError::BadCount(5)),
            ("total", |b| b[16] = 1, BundleError::BadTotalSize),
            ("empty name", |b| b[24] = 0, BundleError::BadName(0)),
            ("space in name", |b| b[24] = b' ', BundleError::BadName(0)),
            (
                "same name",
                |b| b[24 + 48] = b'a',
                BundleError::DuplicateName(1),
            ),
            (
                "empty",
                |b| b[24 + 40..24 + 48].fill(0),
                BundleError::EmptyModule(0),
            ),
            (
                "in header block",
                |b| b[24 + 32..24 + 40].fill(0),
                BundleError::Misaligned(0),
            ),
            (
                "misaligned",
                |b| b[24 + 33] = 0x10,
                BundleError::Misaligned(0),
            ),
            (
                "overlap",
                |b| b[24 + 48 + 34] = 0x40,
                BundleError::Overlap(1),
            ),
        ];
        for (what, damage, expected) in cases {
            let mut b = bytes.clone();
            damage(&mut b);
            assert_eq!(parse(&b), Err(expected), "{what}");
        }
        // A module running past the end, and one whose end overflows.
        let mut b = bytes.clone();
        set_u64(&mut b, entry(1) + 40, 4 * MIB);
        assert_eq!(parse(&b), Err(BundleError::OutOfBounds(1)));
        let mut b = bytes.clone();
        set_u64(&mut b, entry(1) + 40, u64::MAX);
        assert_eq!(parse(&b), Err(BundleError::OutOfBounds(1)));
        let mut b = bytes.clone();
        set_u64(&mut b, entry(1) + 32, u64::MAX - (MODULE_ALIGN - 1));
        assert_eq!(parse(&b), Err(BundleError::OutOfBounds(1)));
        // Truncated before the header ends and inside the entries.
        assert_eq!(parse(&bytes[..10]), Err(BundleError::Truncated));
        assert_eq!(parse(&bytes[..entry(1) + 4]), Err(BundleError::Truncated));
        // Too many frames.
        let mut b = bytes.clone();
        set_u64(&mut b, 16, (MAX_BUNDLE_FRAMES + 3) * MODULE_ALIGN);
        set_u64(&mut b, entry(1) + 40, MAX_BUNDLE_FRAMES * MODULE_ALIGN);
        assert_eq!(parse(&b), Err(BundleError::TooLarge));
    }

    #[test]
    fn layout_refuses_what_parse_would() {
        assert_eq!(layout(&[]), Err(BundleError::BadCount(0)));
        assert_eq!(layout(&[("", 1)]), Err(BundleError::BadName(0)));
        assert_eq!(layout(&[("x", 0)]), Err(BundleError::EmptyModule(0)));
        assert_eq!(
            layout(&[("x", 1), ("x", 1)]),
            Err(BundleError::DuplicateName(1))
        );
        assert_eq!(layout(&[("x", u64::MAX)]), Err(BundleError::OutOfBounds(0)));
        let long = "n".repeat(MODULE_NAME_CAPACITY + 1);
        assert_eq!(layout(&[(&long, 1)]), Err(BundleError::BadName(0)));
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(parse_address("0x80000000"), Some(0x8000_0000));
        assert_eq!(parse_address("0X10"), Some(16));
        assert_eq!(parse_address("4096"), Some(4096));
        assert_eq!(parse_address("0x"), None);
        assert_eq!(parse_address("zz"), None);
        assert_eq!(parse_address("0x1_0000"), None);
        assert_eq!(parse_address("0x10000000000000000"), None);
    }

    /// What an accepted bundle promises whatever bytes it came from.
    fn check_accepted(b: &Bundle) -> Result<(), TestCaseError> {
        let modules = b.modules();
        prop_assert!(!modules.is_empty() && modules.len() <= MAX_BOOT_MODULES);
        prop_assert!(b.total_size > 0 && b.total_size.is_multiple_of(MODULE_ALIGN));
        let mut end = MODULE_ALIGN;
        for (i, m) in modules.iter().enumerate() {
            prop_assert!(m.offset.is_multiple_of(MODULE_ALIGN) && m.offset >= end);
            prop_assert!(m.size > 0 && !m.name().is_empty());
            prop_assert!(modules[..i].iter().all(|o| o.name() != m.name()));
            end = m.offset + m.span();
            prop_assert!(end <= b.total_size);
        }
        prop_assert!(b.frames() <= MAX_BUNDLE_FRAMES);
        Ok(())
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(b) = parse(&bytes) {
                check_accepted(&b)?;
            }
        }

        #[test]
        fn layouts_round_trip(sizes in proptest::collection::vec(1u64..1 << 28, 1..=MAX_BOOT_MODULES)) {
            let names = ["linux", "initrd", "dtb", "extra"];
            let list: Vec<(&str, u64)> = names.iter().copied().zip(sizes.iter().copied()).collect();
            match layout(&list) {
                Ok(b) => {
                    check_accepted(&b)?;
                    prop_assert_eq!(parse(&header_of(&b)), Ok(b));
                    for (m, (name, size)) in b.modules().iter().zip(&list) {
                        prop_assert_eq!((m.name(), m.size), (*name, *size));
                    }
                }
                Err(e) => prop_assert_eq!(e, BundleError::TooLarge),
            }
        }

        #[test]
        fn mutated_headers_are_refused_or_sane(
            sizes in proptest::collection::vec(1u64..1 << 26, 1..=MAX_BOOT_MODULES),
            flips in proptest::collection::vec((0usize..HEADER_SIZE + MAX_BOOT_MODULES * ENTRY_SIZE, any::<u8>()), 1..6),
        ) {
            let names = ["a", "b", "c", "d"];
            let list: Vec<(&str, u64)> = names.iter().copied().zip(sizes.iter().copied()).collect();
            let mut bytes = header_of(&layout(&list).unwrap());
            for (at, x) in flips {
                bytes[at] ^= x;
            }
            if let Ok(b) = parse(&bytes) {
                check_accepted(&b)?;
            }
        }
    }
}
