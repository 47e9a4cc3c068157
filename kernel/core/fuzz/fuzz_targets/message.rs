//! Fuzz target: message-info words and boot-info pages from arbitrary
//! bytes decode without panicking and within the ABI's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyscope_abi::{
    BootInfo, MessageInfo,
    message::{MAX_EXTRA_CAPS, MAX_MESSAGE_WORDS},
};

fuzz_target!(|data: &[u8]| {
    if data.len() >= 8 {
        let word = u64::from_le_bytes(data[..8].try_into().unwrap());
        let info = MessageInfo::from_raw(word);
        assert!(info.length() <= MAX_MESSAGE_WORDS);
        assert!(info.extra_caps() <= MAX_EXTRA_CAPS);
        let _ = skyscope_abi::Error::from_code(word);
        let _ = skyscope_abi::Label::from_word(word);
        let _ = skyscope_abi::ObjectType::from_word(word).map(|t| t.object_bits(word >> 8));
    }
    if let Some(info) = BootInfo::from_page(data) {
        let _ = info.bootargs();
        let _ = info.bootarg("test");
        assert!(info.untyped_regions().len() <= skyscope_abi::bootinfo::MAX_BOOT_UNTYPED);
    }
});
