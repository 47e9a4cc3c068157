//! What the boot-module scenarios and the xtask that packs their bundles
//! agree on: module names, sizes and the byte pattern each holds.
//!
//! The pattern depends on each word's position in its module and on the
//! module's seed, so a frame handed over from the wrong place (shifted,
//! swapped, from the other module, or not the loaded bytes at all) does
//! not match.

/// A generated test module.
#[derive(Clone, Copy, Debug)]
pub struct PatternModule {
    /// Its name in the bundle.
    pub name: &'static str,
    /// Its length in bytes.
    pub size: u64,
    /// Seed of its pattern.
    pub seed: u64,
}

/// The large module: at least 128 MiB, and not a whole number of 2 MiB
/// frames, so its last frame is partly padding.
pub const BIG: PatternModule = PatternModule {
    name: "pattern-big",
    size: (128 << 20) + 0x1005,
    seed: 0x5eed_0000_0000_0b16,
};

/// The small module: less than one page.
pub const SMALL: PatternModule = PatternModule {
    name: "pattern-small",
    size: 3001,
    seed: 0x5eed_0000_5a11_0000,
};

/// The modules of `BootModules::Pattern`, in bundle order.
pub const PATTERN_MODULES: [PatternModule; 2] = [BIG, SMALL];

/// Word `index` (counting 8-byte words from the module's start) of the
/// module with `seed`: SplitMix64 of the two (a strong mix, so neighbours
/// and other seeds share no structure), stored little-endian.
#[inline(always)]
pub fn pattern_word(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Byte `offset` of a module with `seed`.
pub fn pattern_byte(seed: u64, offset: u64) -> u8 {
    pattern_word(seed, offset / 8).to_le_bytes()[(offset % 8) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_differ_by_position_and_seed() {
        assert_ne!(pattern_word(BIG.seed, 0), pattern_word(BIG.seed, 1));
        assert_ne!(pattern_word(BIG.seed, 7), pattern_word(SMALL.seed, 7));
        // One 2 MiB frame later is a different word too.
        assert_ne!(
            pattern_word(BIG.seed, 5),
            pattern_word(BIG.seed, 5 + (2 << 20) / 8)
        );
        assert_eq!(
            pattern_byte(BIG.seed, 9),
            pattern_word(BIG.seed, 1).to_le_bytes()[1]
        );
    }
}
