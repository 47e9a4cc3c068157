//! Capabilities: what a slot can hold, and how capabilities are derived.

use crate::addr::PhysAddr;
use skyscope_abi::{CapRights, Error, ObjectType};

/// The physical address of a capability slot (in a CNode or a TCB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SlotRef(pub u64);

impl SlotRef {
    /// "No slot" in MDB links.
    pub const NONE: SlotRef = SlotRef(0);

    /// Whether this is [`SlotRef::NONE`].
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// Size of a mappable frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameSize {
    /// 4 KiB.
    Small,
    /// 2 MiB.
    Large,
}

impl FrameSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            FrameSize::Small => 1 << 12,
            FrameSize::Large => 1 << 21,
        }
    }

    /// log2 of the size.
    pub const fn bits(self) -> u8 {
        match self {
            FrameSize::Small => 12,
            FrameSize::Large => 21,
        }
    }
}

/// Address-space identifier (12 bits: up to 4095 live address spaces).
pub type Asid = u16;
/// Number of ASIDs; ASID 0 is never assigned.
pub const ASID_COUNT: usize = 4096;

/// Where one capability's frame or page table is mapped: the address space
/// (by ASID) and the page-aligned virtual address, packed in one word.
/// ASID 0 is never assigned, so zero means "not mapped".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Mapping(u64);

impl Mapping {
    /// Not mapped.
    pub const NONE: Mapping = Mapping(0);

    /// Mapping at page-aligned `vaddr` in `asid`.
    pub fn new(asid: Asid, vaddr: u64) -> Mapping {
        debug_assert!(vaddr & 0xfff == 0 && asid != 0 && (asid as usize) < ASID_COUNT);
        Mapping(vaddr | u64::from(asid))
    }

    /// The mapping, if any: `(asid, vaddr)`.
    pub fn get(self) -> Option<(Asid, u64)> {
        let asid = (self.0 & 0xfff) as Asid;
        (asid != 0).then_some((asid, self.0 & !0xfff))
    }
}

/// An object whose destruction is in progress; see `Kernel::delete`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    /// A CNode with this radix.
    CNode {
        /// log2 of its slot count.
        radix: u8,
    },
    /// A TCB.
    Tcb,
}

/// A capability: an unforgeable reference to a kernel object with rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Cap {
    /// An empty slot.
    #[default]
    Null,
    /// Untyped memory `[base, base + 2^size_bits)`; objects are carved from
    /// `free_offset` upwards.
    Untyped {
        /// First byte.
        base: PhysAddr,
        /// log2 of the size.
        size_bits: u8,
        /// Device memory (can only become frames).
        device: bool,
        /// Offset of the first free byte (the watermark).
        free_offset: u64,
    },
    /// A CNode of 2^radix slots, with a guard consumed before indexing.
    CNode {
        /// The slot array.
        ptr: PhysAddr,
        /// log2 of the slot count.
        radix: u8,
        /// Number of guard bits.
        guard_bits: u8,
        /// Guard value.
        guard: u64,
        /// Rights.
        rights: CapRights,
    },
    /// A thread.
    Tcb {
        /// The TCB.
        ptr: PhysAddr,
        /// Rights.
        rights: CapRights,
    },
    /// An IPC endpoint.
    Endpoint {
        /// The endpoint.
        ptr: PhysAddr,
        /// Badge delivered to receivers (0 = unbadged).
        badge: u64,
        /// Rights.
        rights: CapRights,
    },
    /// A notification.
    Notification {
        /// The notification.
        ptr: PhysAddr,
        /// Badge OR-ed into the word on signal (0 = unbadged).
        badge: u64,
        /// Rights.
        rights: CapRights,
    },
    /// A reply object.
    Reply {
        /// The reply object.
        ptr: PhysAddr,
        /// Rights.
        rights: CapRights,
    },
    /// A scheduling context.
    SchedContext {
        /// The scheduling context.
        ptr: PhysAddr,
        /// Rights.
        rights: CapRights,
    },
    /// The right to configure scheduling contexts (no object).
    SchedControl,
    /// A frame of memory, mapped at most once through this capability.
    Frame {
        /// First byte.
        base: PhysAddr,
        /// Size.
        size: FrameSize,
        /// Device memory.
        device: bool,
        /// Rights (bound the mapping's access).
        rights: CapRights,
        /// Where this capability's mapping is, if any.
        mapping: Mapping,
    },
    /// An intermediate translation table.
    PageTable {
        /// The table.
        ptr: PhysAddr,
        /// Where it is installed (the virtual address it covers), if any.
        mapping: Mapping,
        /// Level it is installed at (meaningful when mapped).
        level: u8,
    },
    /// A user address space (top-level table), with its ASID.
    VSpace {
        /// The top-level table.
        ptr: PhysAddr,
        /// Its address-space identifier.
        asid: Asid,
        /// Rights (`WRITE` to map into it).
        rights: CapRights,
    },
    /// A guest-physical address space (top-level stage-2/EPT table), with
    /// its VMID (drawn from the same pool as ASIDs).
    GuestSpace {
        /// The top-level table.
        ptr: PhysAddr,
        /// Its identifier (the VMID).
        vmid: Asid,
        /// Rights (`WRITE` to map into it).
        rights: CapRights,
    },
    /// A virtual CPU.
    Vcpu {
        /// The Vcpu object.
        ptr: PhysAddr,
        /// Rights (`READ` to read registers, `WRITE` to change them or bind).
        rights: CapRights,
    },
    /// The right to create IRQ handler capabilities (no object).
    IrqControl,
    /// The right to read the kernel's audit stream (no object).
    AuditLog {
        /// Rights (`READ` to drain the stream).
        rights: CapRights,
    },
    /// The right to handle one interrupt line.
    IrqHandler {
        /// The interrupt number.
        irq: u16,
    },
    /// Kernel-internal: a container being destroyed (never user-visible).
    Zombie {
        /// The container.
        ptr: PhysAddr,
        /// What it is.
        kind: ContainerKind,
        /// Slot holding the zombie of the enclosing container, or NONE.
        back: SlotRef,
    },
}

impl Cap {
    /// Whether the slot is empty.
    pub fn is_null(&self) -> bool {
        matches!(self, Cap::Null)
    }

    /// The object type this capability refers to (`None` for Null, the
    /// object-less control capabilities and zombies).
    pub fn object_type(&self) -> Option<ObjectType> {
        Some(match self {
            Cap::Untyped { .. } => ObjectType::Untyped,
            Cap::CNode { .. } => ObjectType::CNode,
            Cap::Tcb { .. } => ObjectType::Tcb,
            Cap::Endpoint { .. } => ObjectType::Endpoint,
            Cap::Notification { .. } => ObjectType::Notification,
            Cap::Reply { .. } => ObjectType::Reply,
            Cap::SchedContext { .. } => ObjectType::SchedContext,
            Cap::Frame {
                size: FrameSize::Small,
                ..
            } => ObjectType::Frame4K,
            Cap::Frame {
                size: FrameSize::Large,
                ..
            } => ObjectType::Frame2M,
            Cap::PageTable { .. } => ObjectType::PageTable,
            Cap::VSpace { .. } => ObjectType::VSpace,
            Cap::GuestSpace { .. } => ObjectType::GuestSpace,
            Cap::Vcpu { .. } => ObjectType::Vcpu,
            _ => return None,
        })
    }

    /// The memory the referenced object occupies: `(base, log2 size)`.
    pub fn region(&self) -> Option<(PhysAddr, u8)> {
        let bits = |t: ObjectType, p: u64| t.object_bits(p);
        match *self {
            Cap::Untyped {
                base, size_bits, ..
            } => Some((base, size_bits)),
            Cap::CNode { ptr, radix, .. } => {
                Some((ptr, bits(ObjectType::CNode, u64::from(radix))?))
            }
            Cap::Frame { base, size, .. } => Some((base, size.bits())),
            Cap::Tcb { ptr, .. }
            | Cap::Endpoint { ptr, .. }
            | Cap::Notification { ptr, .. }
            | Cap::Reply { ptr, .. }
            | Cap::SchedContext { ptr, .. }
            | Cap::PageTable { ptr, .. }
            | Cap::VSpace { ptr, .. }
            | Cap::GuestSpace { ptr, .. }
            | Cap::Vcpu { ptr, .. } => Some((ptr, bits(self.object_type()?, 0)?)),
            _ => None,
        }
    }

    /// The rights this capability carries (all rights for capabilities
    /// without a rights field: untyped, control caps, page tables).
    pub fn rights(&self) -> CapRights {
        match *self {
            Cap::CNode { rights, .. }
            | Cap::Tcb { rights, .. }
            | Cap::Endpoint { rights, .. }
            | Cap::Notification { rights, .. }
            | Cap::Reply { rights, .. }
            | Cap::SchedContext { rights, .. }
            | Cap::Frame { rights, .. }
            | Cap::VSpace { rights, .. }
            | Cap::GuestSpace { rights, .. }
            | Cap::Vcpu { rights, .. }
            | Cap::AuditLog { rights } => rights,
            Cap::Null | Cap::Zombie { .. } => CapRights::empty(),
            _ => CapRights::ALL,
        }
    }

    /// The same capability with rights `self.rights() & mask`.
    pub fn masked(mut self, mask: CapRights) -> Cap {
        match &mut self {
            Cap::CNode { rights, .. }
            | Cap::Tcb { rights, .. }
            | Cap::Endpoint { rights, .. }
            | Cap::Notification { rights, .. }
            | Cap::Reply { rights, .. }
            | Cap::SchedContext { rights, .. }
            | Cap::Frame { rights, .. }
            | Cap::VSpace { rights, .. }
            | Cap::GuestSpace { rights, .. }
            | Cap::Vcpu { rights, .. }
            | Cap::AuditLog { rights } => *rights &= mask,
            _ => {}
        }
        self
    }

    /// The badge of an endpoint or notification capability (0 otherwise).
    pub fn badge(&self) -> u64 {
        match *self {
            Cap::Endpoint { badge, .. } | Cap::Notification { badge, .. } => badge,
            _ => 0,
        }
    }

    /// Whether both refer to the same object (or the same control right).
    pub fn same_object(&self, other: &Cap) -> bool {
        match (self, other) {
            (Cap::SchedControl, Cap::SchedControl)
            | (Cap::IrqControl, Cap::IrqControl)
            | (Cap::AuditLog { .. }, Cap::AuditLog { .. }) => true,
            (Cap::IrqHandler { irq: a }, Cap::IrqHandler { irq: b }) => a == b,
            (
                Cap::Untyped {
                    base: a,
                    size_bits: x,
                    ..
                },
                Cap::Untyped {
                    base: b,
                    size_bits: y,
                    ..
                },
            ) => a == b && x == y,
            _ => match (self.region(), other.region()) {
                (Some(a), Some(b)) => a == b && self.object_type() == other.object_type(),
                _ => false,
            },
        }
    }

    /// seL4's "same region": `other` lies within what `self` covers. For
    /// untyped this is containment in the memory region; for IRQ control
    /// every handler; otherwise the same object.
    pub fn covers(&self, other: &Cap) -> bool {
        match self {
            Cap::Untyped {
                base, size_bits, ..
            } => match other.region() {
                Some((b, bits)) => {
                    let end = base.0 + (1u64 << size_bits);
                    b.0 >= base.0 && b.0 + (1u64 << bits) <= end
                }
                None => false,
            },
            Cap::IrqControl => matches!(other, Cap::IrqHandler { .. } | Cap::IrqControl),
            _ => self.same_object(other),
        }
    }

    /// The capability a plain copy of `self` gets, or why it cannot be
    /// copied. Mappings are not copied (one mapping per capability);
    /// untyped capabilities are never copied (their watermark lives in the
    /// capability, so a copy could hand out the same memory twice: move or
    /// split them by retyping instead).
    pub fn derive(&self) -> Result<Cap, Error> {
        match *self {
            Cap::Null => Err(Error::FailedLookup),
            Cap::Untyped { .. } | Cap::Zombie { .. } | Cap::Reply { .. } | Cap::IrqControl => {
                Err(Error::IllegalOperation)
            }
            Cap::Frame { mapping, .. } if mapping != Mapping::NONE => {
                let mut copy = *self;
                if let Cap::Frame { mapping, .. } = &mut copy {
                    *mapping = Mapping::NONE;
                }
                Ok(copy)
            }
            Cap::PageTable { mapping, .. } if mapping != Mapping::NONE => {
                Err(Error::IllegalOperation)
            }
            _ => Ok(*self),
        }
    }

    /// Applies a mint/mutate data word: the badge of an unbadged endpoint
    /// or notification, or the guard of a CNode. Other types accept only 0.
    pub fn with_data(self, data: u64) -> Result<Cap, Error> {
        match self {
            Cap::Endpoint {
                ptr,
                badge: 0,
                rights,
            } => Ok(Cap::Endpoint {
                ptr,
                badge: data,
                rights,
            }),
            Cap::Notification {
                ptr,
                badge: 0,
                rights,
            } => Ok(Cap::Notification {
                ptr,
                badge: data,
                rights,
            }),
            Cap::Endpoint { .. } | Cap::Notification { .. } if data == self.badge() => Ok(self),
            Cap::Endpoint { .. } | Cap::Notification { .. } => Err(Error::IllegalOperation),
            Cap::CNode {
                ptr, radix, rights, ..
            } => {
                let guard_bits = (data >> skyscope_abi::invocation::GUARD_BITS_SHIFT) as u8;
                let guard = data & ((1u64 << skyscope_abi::invocation::GUARD_BITS_SHIFT) - 1);
                if u32::from(guard_bits) + u32::from(radix) > 64
                    || (guard_bits < 58 && guard >> guard_bits != 0)
                {
                    return Err(Error::InvalidArgument);
                }
                Ok(Cap::CNode {
                    ptr,
                    radix,
                    guard_bits,
                    guard,
                    rights,
                })
            }
            _ if data == 0 => Ok(self),
            _ => Err(Error::InvalidArgument),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(badge: u64) -> Cap {
        Cap::Endpoint {
            ptr: PhysAddr(0x1000),
            badge,
            rights: CapRights::ALL,
        }
    }

    #[test]
    fn rights_only_shrink() {
        let c = ep(0)
            .masked(CapRights::READ | CapRights::WRITE)
            .masked(CapRights::WRITE | CapRights::GRANT);
        assert_eq!(c.rights(), CapRights::WRITE);
    }

    #[test]
    fn badges_are_set_once() {
        let badged = ep(0).with_data(7).unwrap();
        assert_eq!(badged.badge(), 7);
        assert_eq!(badged.with_data(9), Err(Error::IllegalOperation));
        assert_eq!(badged.with_data(7), Ok(badged));
        assert!(badged.same_object(&ep(0)));
    }

    #[test]
    fn untyped_covers_objects_inside_it() {
        let ut = Cap::Untyped {
            base: PhysAddr(0x10000),
            size_bits: 16,
            device: false,
            free_offset: 0,
        };
        let inside = Cap::Tcb {
            ptr: PhysAddr(0x10000 + 0x800),
            rights: CapRights::ALL,
        };
        let outside = Cap::Tcb {
            ptr: PhysAddr(0x20000),
            rights: CapRights::ALL,
        };
        assert!(ut.covers(&inside));
        assert!(!ut.covers(&outside));
        assert_eq!(ut.derive(), Err(Error::IllegalOperation));
    }

    #[test]
    fn mapped_frames_copy_unmapped() {
        let f = Cap::Frame {
            base: PhysAddr(0x4000_0000),
            size: FrameSize::Small,
            device: false,
            rights: CapRights::ALL,
            mapping: Mapping::new(3, 0x40_0000),
        };
        match f.derive().unwrap() {
            Cap::Frame { mapping, .. } => assert_eq!(mapping, Mapping::NONE),
            other => panic!("{other:?}"),
        }
        assert_eq!(Mapping::new(3, 0x40_0000).get(), Some((3, 0x40_0000)));
    }

    #[test]
    fn cnode_guards_validated() {
        let cn = Cap::CNode {
            ptr: PhysAddr(0x1000),
            radix: 8,
            guard_bits: 0,
            guard: 0,
            rights: CapRights::ALL,
        };
        let g = cn
            .with_data(skyscope_abi::invocation::guard_word(0b11, 2))
            .unwrap();
        assert!(matches!(
            g,
            Cap::CNode {
                guard_bits: 2,
                guard: 3,
                ..
            }
        ));
        assert_eq!(
            cn.with_data(skyscope_abi::invocation::guard_word(0b111, 2)),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            cn.with_data(skyscope_abi::invocation::guard_word(0, 57)),
            Err(Error::InvalidArgument)
        );
    }
}
