//! Fuzz target: user-image ELF validation never panics, and what it
//! accepts is consistent (segments inside the file and the address range,
//! page-disjoint, never writable and executable, entry in code).
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyscope_core::elf::parse_executable;

const EM_AARCH64: u16 = 183;
const VA_END: u64 = 1 << 39;

fuzz_target!(|data: &[u8]| {
    if let Ok(exe) = parse_executable(data, EM_AARCH64, VA_END) {
        let segments = exe.segments();
        assert!(!segments.is_empty());
        for (i, s) in segments.iter().enumerate() {
            assert!(!(s.write && s.execute));
            assert!(s.file_size <= s.mem_size);
            assert!(s.file_offset + s.file_size <= data.len() as u64);
            let (a, b) = s.pages();
            assert!(a > 0 && b <= VA_END);
            for t in &segments[..i] {
                let (c, d) = t.pages();
                assert!(b <= c || d <= a, "overlapping segments accepted");
            }
        }
        assert!(
            segments
                .iter()
                .any(|s| s.execute && (s.vaddr..s.vaddr + s.mem_size).contains(&exe.entry))
        );
    }
});
