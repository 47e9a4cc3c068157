//! Stage-2 translation descriptors (Arm ARM D8.3.2 "Block and page
//! descriptors"; attributes D8.5.5 "Stage 2 memory type and Cacheability
//! attributes", with FEAT_S2FWB off and on, D8.4.2 "Stage 2 data access
//! permissions", D8.4.3 execute-never).

use bitflags::bitflags;

bitflags! {
    /// Stage-2 block/page descriptor bits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Stage2Descriptor: u64 {
        /// Entry is valid.
        const VALID = 1 << 0;
        /// MemAttr[5:2] = 0b1111: normal memory, outer and inner write-back.
        const NORMAL = 0b1111 << 2;
        /// MemAttr[5:2] = 0b0001: Device-nGnRE (the same with FWB on).
        const DEVICE = 0b0001 << 2;
        /// With HCR_EL2.FWB set, MemAttr[5:2] = 0b0110: normal write-back
        /// whatever the guest's stage 1 says, so a guest mapping its RAM
        /// non-cacheable still sees what the caches hold.
        const NORMAL_FORCED_WRITE_BACK = 0b0110 << 2;
        /// S2AP[0] (bit 6): readable.
        const READ = 1 << 6;
        /// S2AP[1] (bit 7): writable.
        const WRITE = 1 << 7;
        /// SH = inner shareable.
        const INNER_SHAREABLE = 0b11 << 8;
        /// Access flag (set, so no access-flag faults).
        const ACCESSED = 1 << 10;
        /// XN[1] (bit 54): not executable at EL1 or EL0.
        const EXECUTE_NEVER = 1 << 54;
    }
}

use skyscope_core::machine::Access;

/// Leaf attribute bits for a guest mapping (the caller adds the
/// descriptor type and output address); `fwb`: HCR_EL2.FWB is set, which
/// changes the MemAttr encoding. Always readable: stage 2 has no
/// write-only use for a VMM.
pub fn leaf_bits(access: Access, fwb: bool) -> Stage2Descriptor {
    let mut d = Stage2Descriptor::VALID | Stage2Descriptor::ACCESSED | Stage2Descriptor::READ;
    if access.device {
        d |= Stage2Descriptor::DEVICE;
    } else if fwb {
        d |= Stage2Descriptor::NORMAL_FORCED_WRITE_BACK | Stage2Descriptor::INNER_SHAREABLE;
    } else {
        d |= Stage2Descriptor::NORMAL | Stage2Descriptor::INNER_SHAREABLE;
    }
    if access.write {
        d |= Stage2Descriptor::WRITE;
    }
    if !access.execute {
        d |= Stage2Descriptor::EXECUTE_NEVER;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_and_devices_encode_as_the_manual_says() {
        let rwx = Access {
            write: true,
            execute: true,
            device: false,
        };
        // MemAttr 0b1111, S2AP 0b11, SH 0b11, AF, executable.
        assert_eq!(leaf_bits(rwx, false).bits(), 0x7fd);
        // FWB: MemAttr 0b0110 forces write-back.
        assert_eq!(leaf_bits(rwx, true).bits(), 0x7d9);
        let device = Access {
            write: true,
            execute: false,
            device: true,
        };
        assert_eq!(leaf_bits(device, false).bits(), (1 << 54) | 0x4c5);
        assert_eq!(leaf_bits(device, true), leaf_bits(device, false));
        let read_only = leaf_bits(
            Access {
                write: false,
                execute: false,
                device: false,
            },
            false,
        );
        assert!(!read_only.contains(Stage2Descriptor::WRITE));
        assert!(read_only.contains(Stage2Descriptor::EXECUTE_NEVER));
    }
}
