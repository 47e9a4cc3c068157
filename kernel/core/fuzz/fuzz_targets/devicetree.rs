//! Fuzz target: the boot device-tree parser never panics, and what it
//! accepts is self-consistent (regions non-empty and in range, RAM banks
//! disjoint, the summary sized within the blob).
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyscope_core::devicetree::{MAX_TIMER_CELLS, parse};

fuzz_target!(|data: &[u8]| {
    if let Ok(summary) = parse(data) {
        assert!(summary.total_size <= data.len() as u64);
        assert!(summary.timer_cell_count <= MAX_TIMER_CELLS);
        let ram: Vec<_> = summary.ram.iter().collect();
        for (i, r) in ram.iter().enumerate() {
            assert!(r.start < r.end, "empty RAM bank kept");
            for other in &ram[..i] {
                assert!(
                    r.end <= other.start || other.end <= r.start,
                    "overlapping RAM banks"
                );
            }
        }
        let _ = summary.ram.total();
        for device in [summary.uart, summary.gicd, summary.gicr]
            .into_iter()
            .flatten()
        {
            assert!(device.start <= device.end);
        }
    }
});
