//! Capabilities: what a slot can hold, and how capabilities are derived.

use crate::addr::PhysAddr;
use skyscope_abi::{CapRights, Error, ObjectType};
use zerocopy::FromZeros;

/// The physical address of a capability slot (in a CNode or a TCB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, FromZeros)]
#[repr(transparent)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, zerocopy::TryFromBytes)]
#[repr(u8)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, zerocopy::FromBytes)]
#[repr(transparent)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, zerocopy::TryFromBytes)]
#[repr(u8)]
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
///
/// `repr(u8)` with `Null` as discriminant 0 makes all-zero bytes a valid
/// `Null` (`FromZeros` checks that at compile time), so zeroed memory is a
/// CNode of empty slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, FromZeros)]
#[repr(u8)]
pub enum Cap {
    /// An empty slot.
    #[default]
    Null = 0,
    /// Untyped memory `[base, base + 2^size_bits)`; objects are carved from
    /// `free_offset` upwards. Memory in `[free_offset, zeroed_to)` is known
    /// to be zero; above `zeroed_to` it may hold what earlier objects left
    /// there, and retype zeroes it (preemptibly) before use.
    Untyped {
        /// First byte.
        base: PhysAddr,
        /// Offset of the first free byte (the watermark).
        free_offset: u64,
        /// Offset up to which free memory is known to be zero (at least
        /// `free_offset`; the whole region for device memory, which is
        /// never zeroed).
        zeroed_to: u64,
        /// log2 of the size.
        size_bits: u8,
        /// Device memory (can only become frames).
        device: bool,
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
    /// The right to write to (and, with `READ`, read from) the kernel's
    /// console (no object).
    Console {
        /// Rights (`WRITE` to print, `READ` to read input).
        rights: CapRights,
    },
    /// The right to power the machine off or reset it (no object).
    PowerControl,
    /// The right to use the kernel's debugging syscalls (no object; the
    /// `hardened` kernel has none).
    Debug,
    /// A container whose last capability was deleted and whose contents
    /// are being destroyed. It keeps the slot (and its place in the
    /// derivation list) until the container is empty, so a destruction
    /// preempted half-way resumes where it stopped: deleting the zombie
    /// again continues it. Nothing else can be done with a zombie.
    Zombie {
        /// The container.
        ptr: PhysAddr,
        /// The zombie of the enclosing container being destroyed (whose
        /// slot this zombie sits in), or NONE.
        back: SlotRef,
        /// Slots `0..cursor` of the container are empty, except a zombie
        /// at `cursor` itself (a container being destroyed inside this one).
        cursor: u64,
        /// What it is.
        kind: ContainerKind,
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
            // A zombie still owns its container's memory: an untyped above
            // it must not be reused until the zombie is gone.
            Cap::Zombie { ptr, kind, .. } => Some((ptr, kind.object_bits())),
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
            | Cap::AuditLog { rights }
            | Cap::Console { rights } => rights,
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
            | Cap::AuditLog { rights }
            | Cap::Console { rights } => *rights &= mask,
            _ => {}
        }
        self
    }

    /// What the audit stream names the capability's object by: its
    /// address, the IRQ number of a handler, 0 for other object-less
    /// capabilities.
    pub fn audit_object(&self) -> u64 {
        match *self {
            Cap::IrqHandler { irq } => u64::from(irq),
            _ => self.region().map_or(0, |(base, _)| base.0),
        }
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
            | (Cap::AuditLog { .. }, Cap::AuditLog { .. })
            | (Cap::Console { .. }, Cap::Console { .. })
            | (Cap::PowerControl, Cap::PowerControl)
            | (Cap::Debug, Cap::Debug) => true,
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
            // A zombie is the only capability left to its container.
            (Cap::Zombie { .. }, _) | (_, Cap::Zombie { .. }) => false,
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

    /// The capability a copy of `self` gets, or why it cannot be copied
    /// (see [`DERIVATION_TABLE`]).
    pub fn derive(&self) -> Result<Cap, Error> {
        self.derive_for(Derivation::Copy)
    }

    /// The capability `op` would put in the destination (before rights
    /// masking and mint data), or why `op` is refused, per
    /// [`DERIVATION_TABLE`].
    pub fn derive_for(&self, op: Derivation) -> Result<Cap, Error> {
        let Some(class) = CapClass::of(self) else {
            return Err(Error::FailedLookup); // an empty slot
        };
        let mapped = match *self {
            Cap::Frame { mapping, .. } | Cap::PageTable { mapping, .. } => mapping != Mapping::NONE,
            _ => false,
        };
        match derivation_rule(class, mapped, op) {
            Rule::Allow => Ok(*self),
            Rule::AllowUnmapped => {
                let mut copy = *self;
                if let Cap::Frame { mapping, .. } = &mut copy {
                    *mapping = Mapping::NONE;
                }
                Ok(copy)
            }
            Rule::Refuse(e) => Err(e),
        }
    }

    /// `CNode::Mutate`'s data word: as [`Cap::with_data`], except that an
    /// endpoint's or notification's badge stays what it is (only a data
    /// word equal to it is accepted). Only `Mint` badges, as in seL4
    /// (whose Mutate preserves badges): a capability badged in place keeps
    /// its position in the derivation list without being its badge's first
    /// capability, so a later `Mint` of the same badge from the original
    /// would take it for its own child, with rights the child may lack.
    pub fn mutated(self, data: u64) -> Result<Cap, Error> {
        match self {
            Cap::Endpoint { badge, .. } | Cap::Notification { badge, .. } if data != badge => {
                Err(Error::IllegalOperation)
            }
            _ => self.with_data(data),
        }
    }

    /// Applies a mint data word: the badge of an unbadged endpoint or
    /// notification, or the guard of a CNode. Other types accept only 0.
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

/// A way of making a capability from another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Derivation {
    /// `CNode::Copy`, capability transfer in a message, and the copies a
    /// TCB keeps of its CSpace, VSpace, IPC buffer and fault endpoint:
    /// a child capability, rights masked.
    Copy,
    /// `CNode::Mint`: a child capability with rights masked and a badge or
    /// guard set.
    Mint,
    /// `CNode::Move` / `Mutate`: the capability changes slot; no new
    /// capability exists afterwards.
    Move,
}

/// The verdict of the derivation table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Allowed; the new capability is the source's.
    Allow,
    /// Allowed; the new capability starts unmapped (each capability holds
    /// at most one mapping).
    AllowUnmapped,
    /// Refused with this error.
    Refuse(Error),
}

/// The kinds of capability the derivation table distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapClass {
    /// [`Cap::Untyped`].
    Untyped,
    /// [`Cap::CNode`].
    CNode,
    /// [`Cap::Tcb`].
    Tcb,
    /// [`Cap::Endpoint`].
    Endpoint,
    /// [`Cap::Notification`].
    Notification,
    /// [`Cap::Reply`].
    Reply,
    /// [`Cap::SchedContext`].
    SchedContext,
    /// [`Cap::Frame`] (RAM or device).
    Frame,
    /// [`Cap::PageTable`].
    PageTable,
    /// [`Cap::VSpace`].
    VSpace,
    /// [`Cap::GuestSpace`].
    GuestSpace,
    /// [`Cap::Vcpu`].
    Vcpu,
    /// [`Cap::IrqControl`].
    IrqControl,
    /// [`Cap::IrqHandler`].
    IrqHandler,
    /// [`Cap::SchedControl`].
    SchedControl,
    /// [`Cap::AuditLog`].
    AuditLog,
    /// [`Cap::Console`].
    Console,
    /// [`Cap::PowerControl`].
    PowerControl,
    /// [`Cap::Debug`].
    Debug,
    /// [`Cap::Zombie`].
    Zombie,
}

impl CapClass {
    /// The class of `cap` (`None` for an empty slot).
    pub fn of(cap: &Cap) -> Option<CapClass> {
        Some(match cap {
            Cap::Null => return None,
            Cap::Untyped { .. } => CapClass::Untyped,
            Cap::CNode { .. } => CapClass::CNode,
            Cap::Tcb { .. } => CapClass::Tcb,
            Cap::Endpoint { .. } => CapClass::Endpoint,
            Cap::Notification { .. } => CapClass::Notification,
            Cap::Reply { .. } => CapClass::Reply,
            Cap::SchedContext { .. } => CapClass::SchedContext,
            Cap::SchedControl => CapClass::SchedControl,
            Cap::Frame { .. } => CapClass::Frame,
            Cap::PageTable { .. } => CapClass::PageTable,
            Cap::VSpace { .. } => CapClass::VSpace,
            Cap::GuestSpace { .. } => CapClass::GuestSpace,
            Cap::Vcpu { .. } => CapClass::Vcpu,
            Cap::IrqControl => CapClass::IrqControl,
            Cap::AuditLog { .. } => CapClass::AuditLog,
            Cap::IrqHandler { .. } => CapClass::IrqHandler,
            Cap::Console { .. } => CapClass::Console,
            Cap::PowerControl => CapClass::PowerControl,
            Cap::Debug => CapClass::Debug,
            Cap::Zombie { .. } => CapClass::Zombie,
        })
    }
}

use Rule::{Allow, AllowUnmapped, Refuse};
const ILLEGAL: Rule = Refuse(Error::IllegalOperation);
const SAME: [Rule; 3] = [Allow, Allow, Allow];

/// Every capability derivation rule: for each class, the verdict for
/// `[Copy, Mint, Move]` of an unmapped capability and of a mapped one
/// (only frames and page tables are ever mapped). Reasons:
/// - untyped: the watermark lives in the capability, so a copy could hand
///   out the same memory twice (split it by retyping instead);
/// - reply objects and IRQ control: exactly one capability each;
/// - page tables: a second capability could install the same table a
///   second time (at another level, or in a space of the other format),
///   turning memory the user writes into translation entries — seL4
///   refuses the same;
/// - mapped frames: each capability holds at most one mapping, so a copy
///   starts unmapped;
/// - zombies: the slot belongs to an unfinished destruction; only
///   deleting it (which resumes the destruction) is possible.
///
/// Mint additionally requires the class to take a data word (badge or
/// guard) when the word is not 0; that is [`Cap::with_data`]'s check.
pub const DERIVATION_TABLE: [(CapClass, [Rule; 3], [Rule; 3]); 20] = [
    //                      unmapped: copy, mint, move      mapped: copy, mint, move
    (
        CapClass::Untyped,
        [ILLEGAL, ILLEGAL, Allow],
        [ILLEGAL, ILLEGAL, Allow],
    ),
    (CapClass::CNode, SAME, SAME),
    (CapClass::Tcb, SAME, SAME),
    (CapClass::Endpoint, SAME, SAME),
    (CapClass::Notification, SAME, SAME),
    (
        CapClass::Reply,
        [ILLEGAL, ILLEGAL, Allow],
        [ILLEGAL, ILLEGAL, Allow],
    ),
    (CapClass::SchedContext, SAME, SAME),
    (CapClass::Frame, SAME, [AllowUnmapped, AllowUnmapped, Allow]),
    (
        CapClass::PageTable,
        [ILLEGAL, ILLEGAL, Allow],
        [ILLEGAL, ILLEGAL, Allow],
    ),
    (CapClass::VSpace, SAME, SAME),
    (CapClass::GuestSpace, SAME, SAME),
    (CapClass::Vcpu, SAME, SAME),
    (
        CapClass::IrqControl,
        [ILLEGAL, ILLEGAL, Allow],
        [ILLEGAL, ILLEGAL, Allow],
    ),
    (CapClass::IrqHandler, SAME, SAME),
    (CapClass::SchedControl, SAME, SAME),
    (CapClass::AuditLog, SAME, SAME),
    (CapClass::Console, SAME, SAME),
    (CapClass::PowerControl, SAME, SAME),
    (CapClass::Debug, SAME, SAME),
    (
        CapClass::Zombie,
        [ILLEGAL, ILLEGAL, ILLEGAL],
        [ILLEGAL, ILLEGAL, ILLEGAL],
    ),
];

/// Looks up [`DERIVATION_TABLE`].
pub fn derivation_rule(class: CapClass, mapped: bool, op: Derivation) -> Rule {
    let column = match op {
        Derivation::Copy => 0,
        Derivation::Mint => 1,
        Derivation::Move => 2,
    };
    DERIVATION_TABLE.iter().find(|(c, ..)| *c == class).map_or(
        ILLEGAL,
        |(_, unmapped, mapped_rules)| {
            if mapped {
                mapped_rules[column]
            } else {
                unmapped[column]
            }
        },
    )
}

impl ContainerKind {
    /// log2 of the container object's size.
    pub fn object_bits(self) -> u8 {
        match self {
            ContainerKind::CNode { radix } => radix + skyscope_abi::object::SLOT_BITS,
            ContainerKind::Tcb => ObjectType::Tcb.object_bits(0).unwrap_or(11),
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
    fn mutate_keeps_badges_and_sets_guards() {
        assert_eq!(ep(0).mutated(7), Err(Error::IllegalOperation));
        assert_eq!(ep(0).mutated(0), Ok(ep(0)));
        let badged = ep(0).with_data(7).unwrap();
        assert_eq!(badged.mutated(7), Ok(badged));
        assert_eq!(badged.mutated(9), Err(Error::IllegalOperation));
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
            zeroed_to: 0,
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
    fn page_tables_are_never_copied() {
        for mapping in [Mapping::NONE, Mapping::new(3, 0x20_0000)] {
            let pt = Cap::PageTable {
                ptr: PhysAddr(0x5000),
                mapping,
                level: 3,
            };
            assert_eq!(pt.derive(), Err(Error::IllegalOperation));
            assert_eq!(
                pt.derive_for(Derivation::Mint),
                Err(Error::IllegalOperation)
            );
            assert_eq!(pt.derive_for(Derivation::Move), Ok(pt));
        }
    }

    #[test]
    fn zombies_cannot_be_derived_or_moved() {
        let z = Cap::Zombie {
            ptr: PhysAddr(0x8000),
            back: SlotRef::NONE,
            cursor: 0,
            kind: ContainerKind::Tcb,
        };
        for op in [Derivation::Copy, Derivation::Mint, Derivation::Move] {
            assert_eq!(z.derive_for(op), Err(Error::IllegalOperation));
        }
        assert_eq!(Cap::Null.derive(), Err(Error::FailedLookup));
    }

    #[test]
    fn every_class_has_one_table_row() {
        for (i, (class, ..)) in DERIVATION_TABLE.iter().enumerate() {
            assert!(
                DERIVATION_TABLE[i + 1..].iter().all(|(c, ..)| c != class),
                "{class:?} twice"
            );
        }
    }

    #[test]
    fn zeroed_memory_is_an_empty_slot() {
        use zerocopy::FromZeros;
        assert_eq!(
            crate::slot::Slot::new_zeroed(),
            crate::slot::Slot::default()
        );
        assert_eq!(Cap::new_zeroed(), Cap::Null);
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
