//! Fuzz target: any bytes as a Linux arm64 Image. The header parser must
//! refuse or accept without panicking, and an accepted Image laid out in
//! RAM must land wholly in RAM, aligned as booting.rst asks, apart from
//! the DTB and initrd, with x0 naming the DTB.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyscope_vmm::arch::aarch64::image::{IMAGE_ALIGN, ImageHeader, plan};
use skyscope_vmm::memory::{GuestAddress, GuestRange};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = ImageHeader::parse(data) else {
        return;
    };
    assert!(header.image_size >= data.len() as u64);
    assert!(header.text_offset < IMAGE_ALIGN);
    // RAM base and size, DTB and initrd sizes from the tail of the input.
    let word = |i: usize| {
        let mut b = [0u8; 8];
        for (j, byte) in b.iter_mut().enumerate() {
            *byte = data
                .get(data.len().saturating_sub(32) + 8 * i + j)
                .copied()
                .unwrap_or(0);
        }
        u64::from_le_bytes(b)
    };
    let ram_size = (word(0) % (4 << 30)).max(1);
    let Some(ram) = GuestRange::new(GuestAddress(word(3) >> (word(3) % 64)), ram_size) else {
        return;
    };
    let (dtb_len, initrd_len) = (word(1) % (3 << 20), word(2) >> (word(2) % 64));
    let Ok(p) = plan(&header, ram, dtb_len, initrd_len) else {
        return;
    };
    assert!(ram.covers(p.kernel_footprint));
    assert_eq!(p.kernel.raw() % IMAGE_ALIGN, header.text_offset);
    let dtb = GuestRange::new(p.dtb, dtb_len).unwrap();
    assert!(ram.covers(dtb) && p.dtb.is_aligned(8) && !dtb.overlaps(p.kernel_footprint));
    if let Some(initrd) = p.initrd {
        assert_eq!(initrd.size(), initrd_len);
        assert!(ram.covers(initrd));
        assert!(!initrd.overlaps(dtb) && !initrd.overlaps(p.kernel_footprint));
    }
    assert_eq!(p.entry.pc, p.kernel.raw());
    assert_eq!(p.entry.x, [p.dtb.raw(), 0, 0, 0]);
});
