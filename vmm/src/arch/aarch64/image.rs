//! Booting a Linux arm64 `Image`: its header, where it, the device tree
//! and the initrd go in guest RAM, and the state the boot vCPU starts in.
//!
//! The rules are Linux's Documentation/arch/arm64/booting.rst:
//! - §4 "Call the kernel image", the 64-byte header: `code0`, `code1`,
//!   `text_offset` (little-endian since v3.17; `image_size` 0 marks an
//!   older kernel, whose `text_offset` is then taken as 0x80000),
//!   `image_size`, `flags` (bit 0 big-endian, bits 1-2 page size, bit 3
//!   physical placement), reserved words, `magic` = "ARM\x64" at 0x38;
//! - the Image goes `text_offset` bytes above a 2 MiB aligned base in RAM
//!   and needs `image_size` bytes there (its BSS included);
//! - §2 "Setup the device tree": the DTB is 8-byte aligned, at most 2 MiB,
//!   and must not share a 2 MiB region with anything mapped with special
//!   attributes;
//! - §4 again for the initrd: anywhere in RAM, within a 1 GiB aligned
//!   window of up to 32 GiB that also covers the Image;
//! - primary CPU: x0 = the DTB's physical address, x1-x3 = 0, MMU and
//!   D-cache off, all interrupts masked, at EL1 or EL2.
//!
//! Everything the header says is checked; a malformed or hostile Image is
//! an [`ImageError`], never a panic.

use crate::memory::{GuestAddress, GuestRange};
use zerocopy::{FromBytes, Immutable, KnownLayout, LittleEndian, U32, U64};

use super::cpu::EntryState;

/// The header at the start of an Image (booting.rst §4).
#[derive(Clone, Copy, Debug, FromBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawHeader {
    code0: U32<LittleEndian>,
    code1: U32<LittleEndian>,
    text_offset: U64<LittleEndian>,
    image_size: U64<LittleEndian>,
    flags: U64<LittleEndian>,
    res2: U64<LittleEndian>,
    res3: U64<LittleEndian>,
    res4: U64<LittleEndian>,
    magic: U32<LittleEndian>,
    res5: U32<LittleEndian>,
}

const _: () = assert!(core::mem::size_of::<RawHeader>() == HEADER_SIZE);

/// Size of the header.
pub const HEADER_SIZE: usize = 64;
/// `magic`: "ARM\x64", little-endian.
pub const MAGIC: u32 = 0x644d_5241;
/// `text_offset` of kernels older than v3.17 (`image_size` 0).
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
/// The Image's base (below `text_offset`) is aligned to 2 MiB.
pub const IMAGE_ALIGN: u64 = 2 << 20;
/// Largest DTB the kernel accepts.
pub const DTB_MAX: u64 = 2 << 20;
/// Alignment of the initrd in this loader's placement: a page, so the
/// kernel can free it page by page.
const INITRD_ALIGN: u64 = 0x1000;

/// The page size a kernel was built for (`flags` bits 1-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// Not stated (0).
    Unspecified,
    /// 4 KiB (1).
    K4,
    /// 16 KiB (2).
    K16,
    /// 64 KiB (3).
    K64,
}

/// What an Image's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Where the Image goes above its 2 MiB aligned base.
    pub text_offset: u64,
    /// Bytes of RAM the Image needs from its start (BSS included); never
    /// less than the file.
    pub image_size: u64,
    /// The kernel's page size.
    pub page_size: PageSize,
    /// `flags` bit 3: the base may be anywhere in RAM (else it should be
    /// as close to the start of RAM as possible; this loader always puts
    /// it at the start, which satisfies both).
    pub placement_anywhere: bool,
}

/// Why an Image or a boot layout was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than the header.
    TooShort,
    /// No "ARM\x64" at offset 0x38: not an arm64 Image (perhaps
    /// compressed, or an EFI zboot image).
    BadMagic,
    /// `flags` bit 0: a big-endian kernel; guests here are little-endian.
    BigEndian,
    /// Reserved `flags` bits (4-63) set.
    ReservedFlags,
    /// `text_offset` is not below 2 MiB, or not 4 KiB aligned (kernels
    /// use 0 or 0x80000; anything else is not a kernel this loader
    /// trusts), or `image_size` is smaller than the file.
    BadSize,
    /// The Image does not fit in RAM.
    ImageTooLarge,
    /// The DTB is empty or larger than 2 MiB.
    BadDtb,
    /// The Image, the DTB and the initrd do not fit in RAM together (or
    /// the initrd is not in a 32 GiB window with the Image).
    NoRoom,
}

impl ImageHeader {
    /// Parses and checks the header of `image` (the whole file, so that
    /// its length can be checked against `image_size`).
    pub fn parse(image: &[u8]) -> Result<ImageHeader, ImageError> {
        Self::parse_prefix(image, image.len() as u64)
    }

    /// Parses and checks the header at the start of `prefix`, the first
    /// bytes of an Image file of `file_len` bytes (a VMM reads the header
    /// before copying the rest).
    pub fn parse_prefix(prefix: &[u8], file_len: u64) -> Result<ImageHeader, ImageError> {
        let (raw, _) = RawHeader::read_from_prefix(prefix).map_err(|_| ImageError::TooShort)?;
        if file_len < HEADER_SIZE as u64 {
            return Err(ImageError::TooShort);
        }
        if raw.magic.get() != MAGIC {
            return Err(ImageError::BadMagic);
        }
        let flags = raw.flags.get();
        if flags & 1 != 0 {
            return Err(ImageError::BigEndian);
        }
        if flags >> 4 != 0 {
            return Err(ImageError::ReservedFlags);
        }
        let page_size = match (flags >> 1) & 0b11 {
            0 => PageSize::Unspecified,
            1 => PageSize::K4,
            2 => PageSize::K16,
            _ => PageSize::K64,
        };
        let file = file_len;
        let (text_offset, image_size) = match raw.image_size.get() {
            // Before v3.17: text_offset's endianness was unspecified and
            // image_size absent; the file is all there is to place.
            0 => (LEGACY_TEXT_OFFSET, file),
            size => (raw.text_offset.get(), size),
        };
        // The Image sits inside the 2 MiB block above its aligned base;
        // a page-aligned offset keeps its first page whole.
        if text_offset >= IMAGE_ALIGN || !text_offset.is_multiple_of(0x1000) || image_size < file {
            return Err(ImageError::BadSize);
        }
        Ok(ImageHeader {
            text_offset,
            image_size,
            page_size,
            placement_anywhere: flags & (1 << 3) != 0,
        })
    }
}

/// Where everything goes and how the boot vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootPlan {
    /// Where the Image file is loaded (its first instruction).
    pub kernel: GuestAddress,
    /// The RAM the Image claims (`image_size` bytes from `kernel`).
    pub kernel_footprint: GuestRange,
    /// Where the DTB goes (8-byte aligned, in a 2 MiB region of its own).
    pub dtb: GuestAddress,
    /// Where the initrd goes, if there is one (for `/chosen`'s
    /// `linux,initrd-start` and `-end`).
    pub initrd: Option<GuestRange>,
    /// The boot vCPU's registers: pc at the Image, x0 = the DTB.
    pub entry: EntryState,
}

/// Lays out an Image with header `header`, a DTB of `dtb_len` bytes and an
/// initrd of `initrd_len` bytes (0: none) in `ram`:
///
/// - the Image at the first 2 MiB boundary of RAM plus `text_offset`, so
///   that kernels before v4.6, which cannot use memory below themselves,
///   lose none;
/// - the DTB alone in the last 2 MiB block of RAM;
/// - the initrd right below that block, page aligned.
///
/// The DTB's size must be known first, but not its contents: the device
/// tree names the initrd's place, so the caller computes the plan with the
/// DTB's size bound (at most 2 MiB), then builds the tree.
pub fn plan(
    header: &ImageHeader,
    ram: GuestRange,
    dtb_len: u64,
    initrd_len: u64,
) -> Result<BootPlan, ImageError> {
    if dtb_len == 0 || dtb_len > DTB_MAX {
        return Err(ImageError::BadDtb);
    }
    let base = ram
        .start()
        .align_up(IMAGE_ALIGN)
        .ok_or(ImageError::ImageTooLarge)?;
    let kernel = base
        .checked_add(header.text_offset)
        .ok_or(ImageError::ImageTooLarge)?;
    let kernel_footprint =
        GuestRange::new(kernel, header.image_size).ok_or(ImageError::ImageTooLarge)?;
    if !ram.covers(kernel_footprint) {
        return Err(ImageError::ImageTooLarge);
    }
    // The DTB's block: the last whole 2 MiB block of RAM, above the Image.
    let dtb_block = ram
        .end()
        .raw()
        .checked_sub(DTB_MAX)
        .map(|a| GuestAddress(a).align_down(IMAGE_ALIGN))
        .filter(|&b| b >= ram.start() && b >= kernel_footprint.end())
        .ok_or(ImageError::NoRoom)?;
    let initrd = match initrd_len {
        0 => None,
        len => {
            let start = dtb_block
                .raw()
                .checked_sub(len)
                .map(|s| GuestAddress(s).align_down(INITRD_ALIGN))
                .filter(|&s| s >= kernel_footprint.end())
                .ok_or(ImageError::NoRoom)?;
            let range = GuestRange::new(start, len).ok_or(ImageError::NoRoom)?;
            // One 1 GiB aligned window of at most 32 GiB covers the Image
            // and the initrd.
            let window = kernel_footprint.start().align_down(1 << 30).raw();
            if range.end().raw() - window > 32 << 30 {
                return Err(ImageError::NoRoom);
            }
            Some(range)
        }
    };
    Ok(BootPlan {
        kernel,
        kernel_footprint,
        dtb: dtb_block,
        initrd,
        entry: EntryState::kernel(kernel.raw(), dtb_block.raw()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    fn header(text_offset: u64, image_size: u64, flags: u64) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[0..4].copy_from_slice(&0x1400_0000u32.to_le_bytes()); // b +0 (code0)
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[56..60].copy_from_slice(&MAGIC.to_le_bytes());
        h
    }

    fn ram(size: u64) -> GuestRange {
        GuestRange::new(GuestAddress(0x4000_0000), size).unwrap()
    }

    #[test]
    fn a_debian_like_header_parses() {
        // 4 KiB pages, placement anywhere (flags 0xa), text_offset 0,
        // 30 MiB image_size: what current kernels carry.
        let h = header(0, 30 * MIB, 0xa);
        let parsed = ImageHeader::parse(&h).unwrap();
        assert_eq!(
            parsed,
            ImageHeader {
                text_offset: 0,
                image_size: 30 * MIB,
                page_size: PageSize::K4,
                placement_anywhere: true,
            }
        );
        let plan = plan(&parsed, ram(512 * MIB), 0x4000, 12 * MIB).unwrap();
        assert_eq!(plan.kernel, GuestAddress(0x4000_0000));
        assert_eq!(plan.dtb, GuestAddress(0x5fe0_0000));
        let initrd = plan.initrd.unwrap();
        assert_eq!(initrd.end().raw(), 0x5fe0_0000);
        assert_eq!(initrd.start().raw() % 0x1000, 0);
        assert!(initrd.start() >= plan.kernel_footprint.end());
        assert_eq!(plan.entry.pc, 0x4000_0000);
        assert_eq!(plan.entry.x, [0x5fe0_0000, 0, 0, 0]);
    }

    #[test]
    fn old_kernels_use_the_legacy_offset() {
        let mut file = std::vec![0u8; 0x1000];
        file[..64].copy_from_slice(&header(0xdead_beef, 0, 0));
        let parsed = ImageHeader::parse(&file).unwrap();
        assert_eq!(parsed.text_offset, LEGACY_TEXT_OFFSET);
        assert_eq!(parsed.image_size, 0x1000);
        let p = plan(&parsed, ram(64 * MIB), 8, 0).unwrap();
        assert_eq!(p.kernel, GuestAddress(0x4008_0000));
        assert_eq!(p.initrd, None);
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert_eq!(ImageHeader::parse(&[0; 63]), Err(ImageError::TooShort));
        let mut h = header(0, MIB, 0);
        h[56] = b'B';
        assert_eq!(ImageHeader::parse(&h), Err(ImageError::BadMagic));
        assert_eq!(
            ImageHeader::parse(&header(0, MIB, 1)),
            Err(ImageError::BigEndian)
        );
        assert_eq!(
            ImageHeader::parse(&header(0, MIB, 1 << 4)),
            Err(ImageError::ReservedFlags)
        );
        assert_eq!(
            ImageHeader::parse(&header(2 * MIB, MIB, 0)),
            Err(ImageError::BadSize)
        );
        assert_eq!(
            ImageHeader::parse(&header(0x80, MIB, 0)),
            Err(ImageError::BadSize)
        );
        // image_size smaller than the file itself.
        assert_eq!(
            ImageHeader::parse(&header(0, 32, 0)),
            Err(ImageError::BadSize)
        );
        assert_eq!(
            ImageHeader::parse(&header(0, MIB, 3 << 1)).map(|h| h.page_size),
            Ok(PageSize::K64)
        );
    }

    #[test]
    fn layouts_that_do_not_fit_are_refused() {
        let h = ImageHeader::parse(&header(0, 30 * MIB, 0)).unwrap();
        assert_eq!(
            plan(&h, ram(16 * MIB), 8, 0),
            Err(ImageError::ImageTooLarge)
        );
        // 30 MiB of Image and the DTB's 2 MiB block fill 32 MiB exactly.
        assert_eq!(
            plan(&h, ram(32 * MIB), 8, 0).map(|p| p.dtb),
            Ok(GuestAddress(0x41e0_0000))
        );
        assert_eq!(plan(&h, ram(32 * MIB), 8, 1), Err(ImageError::NoRoom));
        assert_eq!(plan(&h, ram(31 * MIB), 8, 0), Err(ImageError::NoRoom));
        let p = plan(&h, ram(34 * MIB), 8, 1).unwrap();
        assert_eq!(p.initrd.map(|i| i.start()), Some(GuestAddress(0x41ff_f000)));
        assert_eq!(plan(&h, ram(512 * MIB), 0, 0), Err(ImageError::BadDtb));
        assert_eq!(
            plan(&h, ram(512 * MIB), DTB_MAX + 1, 0),
            Err(ImageError::BadDtb)
        );
        assert_eq!(
            plan(&h, ram(512 * MIB), 8, 600 * MIB),
            Err(ImageError::NoRoom)
        );
        // RAM smaller than the DTB's block, at address 0: no underflow.
        let tiny = ImageHeader::parse(&header(0, 64, 0)).unwrap();
        let low = GuestRange::new(GuestAddress(0), 0x1000).unwrap();
        assert_eq!(plan(&tiny, low, 8, 0), Err(ImageError::NoRoom));
        // Huge image_size values neither wrap nor panic.
        let huge = ImageHeader::parse(&header(0, u64::MAX, 0)).unwrap();
        assert_eq!(
            plan(&huge, ram(512 * MIB), 8, 0),
            Err(ImageError::ImageTooLarge)
        );
    }

    proptest! {
        /// Any 64+ bytes: no panic; an accepted header yields either an
        /// error or a plan whose pieces are in RAM, aligned and disjoint.
        #[test]
        fn any_header(bytes in proptest::collection::vec(any::<u8>(), 0..128), magic: bool,
                      ram_base in 0u64..1 << 36, ram_size in 1u64..1 << 32,
                      dtb_len in 0u64..3 * MIB, initrd_len in 0u64..1 << 32) {
            let mut bytes = bytes;
            if magic && bytes.len() >= 64 {
                bytes[56..60].copy_from_slice(&MAGIC.to_le_bytes());
                bytes[24] &= 0b1110; // little-endian, no reserved flags
                bytes[25..32].fill(0);
            }
            let Ok(h) = ImageHeader::parse(&bytes) else { return Ok(()); };
            prop_assert!(h.image_size >= bytes.len() as u64);
            let ram = GuestRange::new(GuestAddress(ram_base), ram_size).unwrap();
            let Ok(p) = plan(&h, ram, dtb_len, initrd_len) else { return Ok(()); };
            prop_assert!(ram.covers(p.kernel_footprint));
            prop_assert_eq!(p.kernel.raw() % IMAGE_ALIGN, h.text_offset);
            let dtb = GuestRange::new(p.dtb, dtb_len).unwrap();
            prop_assert!(ram.covers(dtb) && p.dtb.is_aligned(8));
            prop_assert!(!dtb.overlaps(p.kernel_footprint));
            if let Some(i) = p.initrd {
                prop_assert!(ram.covers(i) && !i.overlaps(dtb) && !i.overlaps(p.kernel_footprint));
            }
            prop_assert_eq!(p.entry.x[0], p.dtb.raw());
        }
    }
}
