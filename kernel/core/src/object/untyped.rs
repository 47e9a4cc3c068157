//! Untyped memory: the only source of kernel objects.
//!
//! `Retype` carves `count` objects of one type from the untyped region at
//! its watermark, aligned to the object size, and places an original
//! capability to each in consecutive empty slots of a CNode. When the
//! untyped capability has no children left (everything made from it was
//! deleted or revoked), its watermark goes back to zero and the memory is
//! reused. An untyped child must be smaller than its parent.
//!
//! Objects start from zeroed memory. The capability records how far above
//! the watermark memory is known to be zero; retype zeroes the rest of
//! what it needs in chunks, with a preemption point after each, and the
//! progress is kept in the capability, so a retype of 256 frames or of a
//! 1 GiB CNode restarted after an interrupt continues where it stopped.

use crate::{
    PhysAddr,
    addr::RamRange,
    cap::{Asid, Cap, FrameSize, Mapping, SlotRef},
    kernel::{Invocation, Kernel, Reply},
    machine::{Machine, SpaceKind},
    slot::{self, SLOT_BITS},
};
use skyscope_abi::{
    CapRights, Error, Label, ObjectType,
    object::{MAX_RETYPE_COUNT, MIN_UNTYPED_BITS},
};

/// The capability retype gives for a new object at `base`.
fn new_object_cap(
    ty: ObjectType,
    base: PhysAddr,
    size_bits: u8,
    device: bool,
    asid: Asid,
    zeroed: u64,
) -> Cap {
    let rights = CapRights::ALL;
    match ty {
        ObjectType::Untyped => Cap::Untyped {
            base,
            free_offset: 0,
            zeroed_to: zeroed,
            size_bits,
            device,
        },
        ObjectType::Tcb => Cap::Tcb { ptr: base, rights },
        ObjectType::Endpoint => Cap::Endpoint {
            ptr: base,
            badge: 0,
            rights,
        },
        ObjectType::Notification => Cap::Notification {
            ptr: base,
            badge: 0,
            rights,
        },
        ObjectType::CNode => Cap::CNode {
            ptr: base,
            radix: size_bits - SLOT_BITS,
            guard_bits: 0,
            guard: 0,
            rights,
        },
        ObjectType::Reply => Cap::Reply { ptr: base, rights },
        ObjectType::SchedContext => Cap::SchedContext { ptr: base, rights },
        ObjectType::Frame4K | ObjectType::Frame2M => Cap::Frame {
            base,
            size: if ty == ObjectType::Frame4K {
                FrameSize::Small
            } else {
                FrameSize::Large
            },
            device,
            rights,
            mapping: Mapping::NONE,
        },
        ObjectType::PageTable => Cap::PageTable {
            ptr: base,
            mapping: Mapping::NONE,
            level: 0,
        },
        ObjectType::VSpace => Cap::VSpace {
            ptr: base,
            asid,
            rights,
        },
        ObjectType::GuestSpace => Cap::GuestSpace {
            ptr: base,
            vmid: asid,
            rights,
        },
        ObjectType::Vcpu => Cap::Vcpu { ptr: base, rights },
    }
}

/// Bytes zeroed between preemption points.
const ZERO_CHUNK: u64 = 64 * 1024;
/// Zeroing granule (the smallest object; every object is aligned to it).
const MIN_ZERO: u64 = 1 << MIN_UNTYPED_BITS;

impl<M: Machine> Kernel<M> {
    /// Records an untyped capability's watermark and zeroed mark.
    fn set_untyped_marks(&mut self, ut_slot: SlotRef, watermark: u64, zeroed: u64) {
        if let Cap::Untyped {
            free_offset,
            zeroed_to,
            ..
        } = &mut self.machine.slot_mut(ut_slot).cap
        {
            *free_offset = watermark;
            *zeroed_to = zeroed;
        }
    }

    pub(crate) fn invoke_untyped(
        &mut self,
        ut_slot: SlotRef,
        inv: &Invocation<'_>,
    ) -> Result<Reply, Error> {
        if Label::from_word(inv.label) != Some(Label::UntypedRetype) {
            return Err(Error::IllegalOperation);
        }
        let ty = ObjectType::from_word(inv.arg(0)?).ok_or(Error::InvalidArgument)?;
        let size_param = inv.arg(1)?;
        let (node_index, node_depth) = (inv.arg(2)?, inv.arg(3)?);
        let offset = inv.arg(4)?;
        let count = inv.arg(5)?;
        let (root, _) = inv.extra_cap(0)?;
        self.retype(
            ut_slot, ty, size_param, &root, node_index, node_depth, offset, count,
        )?;
        Ok(Reply::empty())
    }

    /// Retypes part of the untyped in `ut_slot` into `count` objects placed
    /// in slots `offset..offset + count` of the destination CNode (found at
    /// `(node_index, node_depth)` from `root`; depth 0 means `root` itself).
    /// Every check happens before anything changes.
    #[allow(clippy::too_many_arguments)]
    pub fn retype(
        &mut self,
        ut_slot: SlotRef,
        ty: ObjectType,
        size_param: u64,
        root: &Cap,
        node_index: u64,
        node_depth: u64,
        offset: u64,
        count: u64,
    ) -> Result<(), Error> {
        let ut_cap = self.machine.slot(ut_slot).cap;
        let Cap::Untyped {
            base,
            size_bits,
            device,
            free_offset,
            zeroed_to,
        } = ut_cap
        else {
            return Err(Error::InvalidCapability);
        };
        let bits = ty.object_bits(size_param).ok_or(match ty {
            ObjectType::Untyped | ObjectType::CNode => Error::RangeError,
            _ => Error::InvalidArgument,
        })?;
        if !(1..=MAX_RETYPE_COUNT).contains(&count) {
            return Err(Error::RangeError);
        }
        if device && !ty.allowed_from_device_memory() {
            return Err(Error::InvalidArgument);
        }
        if bits > size_bits {
            return Err(Error::NotEnoughMemory);
        }
        // An untyped child covering all of its parent would be the same
        // object under another capability; moving the capability does that.
        if ty == ObjectType::Untyped && bits == size_bits {
            return Err(Error::RangeError);
        }
        let dest_node = if node_depth == 0 {
            *root
        } else {
            let s = self.lookup_slot_arg(root, node_index, node_depth)?;
            self.machine.slot(s).cap
        };
        let Cap::CNode {
            ptr: node, radix, ..
        } = dest_node
        else {
            return Err(if dest_node.is_null() {
                Error::FailedLookup
            } else {
                Error::WrongType
            });
        };
        let slots = 1u64 << radix;
        if offset >= slots || count > slots - offset {
            return Err(Error::RangeError);
        }
        let dest = |i: u64| SlotRef(node.0 + ((offset + i) << SLOT_BITS));
        if (0..count).any(|i| !self.machine.slot(dest(i)).cap.is_null()) {
            return Err(Error::DeleteFirst);
        }
        // Reuse the whole region once nothing made from it remains; what
        // those objects left in it must be zeroed again before reuse (a
        // watermark already at zero means nothing was used since).
        let size = 1u64 << size_bits;
        let (watermark, zeroed) = if slot::has_children(&self.machine, ut_slot) || free_offset == 0
        {
            (free_offset, zeroed_to)
        } else if device {
            (0, size)
        } else {
            (0, 0)
        };
        let start = (base.0 + watermark).next_multiple_of(1 << bits);
        let end = start
            .checked_add(count << bits)
            .filter(|&e| e <= base.0 + size)
            .ok_or(Error::NotEnoughMemory)?;
        let tagged = matches!(ty, ObjectType::VSpace | ObjectType::GuestSpace);
        if tagged && self.free_asids() < count {
            return Err(Error::NotEnoughMemory);
        }
        debug_assert!(bits >= MIN_UNTYPED_BITS);

        // Every check passed. Zero what the new objects need (untyped
        // children inherit the record instead), recording progress.
        let (start_offset, end_offset) = (start - base.0, end - base.0);
        let mut zeroed = zeroed;
        self.set_untyped_marks(ut_slot, watermark, zeroed);
        if !device && ty != ObjectType::Untyped {
            while zeroed < end_offset {
                let chunk_end = (zeroed + ZERO_CHUNK)
                    .min(end_offset)
                    .next_multiple_of(MIN_ZERO)
                    .min(size);
                let range = RamRange::inside(&ut_cap, zeroed, chunk_end - zeroed)
                    .ok_or(Error::InvalidCapability)?;
                self.machine.zero_memory(range);
                zeroed = chunk_end;
                self.set_untyped_marks(ut_slot, watermark, zeroed);
                if zeroed < end_offset {
                    self.preemption_point()?;
                }
            }
        }

        self.set_untyped_marks(ut_slot, end_offset, zeroed.max(end_offset));
        for i in 0..count {
            let object = PhysAddr(start + (i << bits));
            self.machine.create_object(ty, object, bits, device);
            self.counters.objects_created += 1;
            let asid = match ty {
                ObjectType::VSpace => self.allocate_asid(object, SpaceKind::User),
                ObjectType::GuestSpace => self.allocate_asid(object, SpaceKind::Guest),
                _ => 0,
            };
            // A child untyped knows zero what its parent knew zero.
            let child_start = start_offset + (i << bits);
            let child_zeroed = if device {
                1u64 << bits
            } else {
                zeroed.saturating_sub(child_start).min(1u64 << bits)
            };
            let cap = new_object_cap(ty, object, bits, device, asid, child_zeroed);
            self.install_original(ut_slot, dest(i), cap);
        }
        self.audit_event(crate::audit::AuditKind::Issued, start, ty as u64, count);
        Ok(())
    }
}
