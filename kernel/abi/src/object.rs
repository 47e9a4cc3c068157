//! Kernel object types, their sizes, and capability rights.

use bitflags::bitflags;

/// A kernel object type, as passed to `Untyped::Retype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u64)]
pub enum ObjectType {
    /// Untyped memory (a smaller region carved from a larger one).
    Untyped = 0,
    /// A thread control block.
    Tcb = 1,
    /// A synchronous IPC endpoint.
    Endpoint = 2,
    /// An asynchronous notification word.
    Notification = 3,
    /// A table of capability slots (`size_bits` = log2 of the slot count).
    CNode = 4,
    /// A reply object (the right to answer one `Call`).
    Reply = 5,
    /// A scheduling context (CPU budget and period).
    SchedContext = 6,
    /// A 4 KiB frame of memory.
    Frame4K = 7,
    /// A 2 MiB frame of memory.
    Frame2M = 8,
    /// An intermediate translation table.
    PageTable = 9,
    /// The top-level translation table of a user address space.
    VSpace = 10,
    /// The top-level translation table of a guest-physical address space
    /// (arm64: stage-2, 39-bit IPA; x86_64: EPT), with its VMID.
    GuestSpace = 11,
    /// A virtual CPU: the guest-kernel register state a TCB runs with.
    Vcpu = 12,
}

/// log2 of the size of one capability slot in bytes.
pub const SLOT_BITS: u8 = 6;
/// Smallest untyped region a retype may create (16 bytes).
pub const MIN_UNTYPED_BITS: u8 = 4;
/// Largest untyped region (128 TiB).
pub const MAX_UNTYPED_BITS: u8 = 47;
/// Largest CNode radix (2^24 slots = 1 GiB of slots).
pub const MAX_CNODE_RADIX: u8 = 24;
/// log2 of the size of a Vcpu object (the architecture's guest register
/// file and virtual interrupt state must fit: on arm64 the list
/// registers and a pending set over every INTID).
pub const VCPU_BITS: u8 = 12;
/// Most objects one retype may create.
pub const MAX_RETYPE_COUNT: u64 = 256;

impl ObjectType {
    /// Every object type, in ABI order.
    pub const ALL: [ObjectType; 13] = [
        ObjectType::Untyped,
        ObjectType::Tcb,
        ObjectType::Endpoint,
        ObjectType::Notification,
        ObjectType::CNode,
        ObjectType::Reply,
        ObjectType::SchedContext,
        ObjectType::Frame4K,
        ObjectType::Frame2M,
        ObjectType::PageTable,
        ObjectType::VSpace,
        ObjectType::GuestSpace,
        ObjectType::Vcpu,
    ];

    /// Decodes an ABI word.
    pub fn from_word(w: u64) -> Option<ObjectType> {
        ObjectType::ALL.get(usize::try_from(w).ok()?).copied()
    }

    /// log2 of the object's size in bytes. `size_bits` is the caller's
    /// parameter, used by the variable-size types (untyped: the size
    /// itself; CNode: log2 of the slot count). `None` if it is out of range.
    pub fn object_bits(self, size_bits: u64) -> Option<u8> {
        let fixed = |bits: u8| Some(bits);
        match self {
            ObjectType::Untyped => {
                let b = u8::try_from(size_bits).ok()?;
                (MIN_UNTYPED_BITS..=MAX_UNTYPED_BITS)
                    .contains(&b)
                    .then_some(b)
            }
            ObjectType::CNode => {
                let radix = u8::try_from(size_bits).ok()?;
                (1..=MAX_CNODE_RADIX)
                    .contains(&radix)
                    .then_some(radix + SLOT_BITS)
            }
            ObjectType::Tcb => fixed(11),
            ObjectType::Endpoint => fixed(5),
            ObjectType::Notification => fixed(6),
            ObjectType::Reply => fixed(5),
            ObjectType::SchedContext => fixed(8),
            ObjectType::Frame4K
            | ObjectType::PageTable
            | ObjectType::VSpace
            | ObjectType::GuestSpace => fixed(12),
            ObjectType::Vcpu => fixed(VCPU_BITS),
            ObjectType::Frame2M => fixed(21),
        }
    }

    /// Whether objects of this type may be carved from device memory
    /// (only frames: the kernel never keeps its own state in MMIO).
    pub fn allowed_from_device_memory(self) -> bool {
        matches!(
            self,
            ObjectType::Frame4K | ObjectType::Frame2M | ObjectType::Untyped
        )
    }
}

/// Rights carried by a capability.
///
/// For endpoints: `WRITE` sends, `READ` receives, `GRANT` lets messages
/// carry capabilities, `GRANT_REPLY` lets a `Call` carry a reply right.
/// For notifications: `WRITE` signals, `READ` waits. For frames: `READ`
/// and `WRITE` bound the mapping's access. For every other object,
/// `READ` allows the invocations that only inspect it and `WRITE` those
/// that change it. Copying or minting a capability can only remove
/// rights, never add them.
///
/// A plain byte (so kernel structures holding it can be checked by
/// `zerocopy`), with the flag operations from `bitflags`.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable,
)]
#[repr(transparent)]
pub struct CapRights(u8);

bitflags! {
    impl CapRights: u8 {
        /// Read / receive / inspect.
        const READ = 1 << 0;
        /// Write / send / modify.
        const WRITE = 1 << 1;
        /// Transfer capabilities in messages.
        const GRANT = 1 << 2;
        /// Let a `Call` through this endpoint grant a reply right.
        const GRANT_REPLY = 1 << 3;
    }
}

impl core::fmt::Debug for CapRights {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CapRights(")?;
        bitflags::parser::to_writer(self, &mut *f)?;
        f.write_str(")")
    }
}

impl CapRights {
    /// Every right.
    pub const ALL: CapRights = CapRights::all();

    /// Decodes an argument word, ignoring undefined bits.
    pub fn from_word(w: u64) -> CapRights {
        CapRights::from_bits_truncate(w as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_sizes() {
        assert_eq!(ObjectType::CNode.object_bits(4), Some(10));
        assert_eq!(ObjectType::CNode.object_bits(0), None);
        assert_eq!(ObjectType::CNode.object_bits(25), None);
        assert_eq!(ObjectType::Untyped.object_bits(3), None);
        assert_eq!(ObjectType::Untyped.object_bits(u64::MAX), None);
        assert_eq!(ObjectType::Tcb.object_bits(999), Some(11));
        for (i, t) in ObjectType::ALL.iter().enumerate() {
            assert_eq!(ObjectType::from_word(i as u64), Some(*t));
        }
        assert_eq!(ObjectType::from_word(13), None);
    }
}
