//! Fuzz target: the boot-module bundle header and its placement in RAM.
//! Any bytes as a header never panic the parser; an accepted header is
//! self-consistent; placing it anywhere (address, RAM banks and regions
//! in use taken from the input too) never panics, and an accepted
//! placement is inside RAM, clear of what is in use, and `reserve`
//! removes exactly the modules' frames from free memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyscope_abi::bundle::{HEADER_READ_SIZE, MAX_BUNDLE_FRAMES, MODULE_ALIGN, parse};
use skyscope_core::{
    bootmodules::{place, reserve},
    memory::{FreeRegions, Region},
};

fn word(data: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    for (k, byte) in b.iter_mut().enumerate() {
        *byte = data.get(i * 8 + k).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    // The first 64 bytes choose the place and the memory map; the rest is
    // the header the kernel would read.
    let (layout, header) = data.split_at(data.len().min(64));
    let header = &header[..header.len().min(HEADER_READ_SIZE)];
    let Ok(bundle) = parse(header) else { return };
    let mut end = MODULE_ALIGN;
    for m in bundle.modules() {
        assert!(m.offset % MODULE_ALIGN == 0 && m.offset >= end && m.size > 0);
        end = m.offset + m.span();
    }
    assert!(end <= bundle.total_size && bundle.frames() <= MAX_BUNDLE_FRAMES);

    let base = word(layout, 0);
    let mut ram = FreeRegions::new();
    for i in 1..4 {
        let w = word(layout, i);
        let start = (w & 0xffff_ffff) << 12;
        let len = (w >> 32) << 12;
        if let Some(r) = Region::new(start, len) {
            let _ = ram.add(r);
        }
    }
    let in_use: Vec<Region> = (4..8)
        .filter_map(|i| {
            let w = word(layout, i);
            Region::new((w & 0xffff_ffff) << 8, w >> 40)
        })
        .collect();
    let Ok(placement) = place(&bundle, base, &ram, &in_use) else {
        return;
    };
    let free = match reserve(&ram, &placement) {
        Ok(f) => f,
        Err(_) => return,
    };
    for m in placement.modules() {
        let r = m.region();
        assert!(r.start.0 % MODULE_ALIGN == 0);
        assert!(ram.iter().any(|b| b.start <= r.start && r.end <= b.end));
        for u in &in_use {
            assert!(u.is_empty() || u.end <= r.start || r.end <= u.start);
        }
        for f in free.iter() {
            assert!(f.end <= r.start || r.end <= f.start, "module memory still free");
        }
    }
    let removed: u64 = placement.modules().iter().map(|m| m.region().size()).sum();
    assert_eq!(free.total() + removed, ram.total());
});
