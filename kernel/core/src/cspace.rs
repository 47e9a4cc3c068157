//! Capability addresses: resolving a `CPtr` through guarded CNodes.
//!
//! The algorithm is seL4's `resolveAddressBits`: starting at a CNode
//! capability with `depth` address bits to consume, each CNode first
//! matches its guard against the next `guard_bits` bits, then indexes its
//! slots with the next `radix` bits. If bits remain and the slot holds
//! another CNode capability, resolution continues there.

use crate::{
    PhysAddr,
    cap::{Cap, SlotRef},
    slot::{SLOT_BITS, SlotStore},
};
use skyscope_abi::Error;

/// Number of bits in a capability address.
pub const WORD_BITS: u32 = 64;

/// The slot `cptr` names, consuming exactly `depth` bits from the CNode
/// capability `root`. Errors: `RangeError` for a depth outside 1..=64,
/// `FailedLookup` if the address does not resolve to a slot at that depth.
pub fn lookup_slot<S: SlotStore + ?Sized>(
    store: &S,
    root: &Cap,
    cptr: u64,
    depth: u32,
) -> Result<SlotRef, Error> {
    if depth == 0 || depth > WORD_BITS {
        return Err(Error::RangeError);
    }
    match resolve(store, root, cptr, depth)? {
        (slot, 0) => Ok(slot),
        _ => Err(Error::FailedLookup),
    }
}

/// The slot of the capability `cptr` names with all 64 bits available; as
/// in seL4, resolution stops at the first non-CNode capability even if bits
/// remain. Used for the capability a syscall invokes.
pub fn lookup_cap_slot<S: SlotStore + ?Sized>(
    store: &S,
    root: &Cap,
    cptr: u64,
) -> Result<SlotRef, Error> {
    if let Some(slot) = flat_slot(root, cptr) {
        return slot;
    }
    resolve(store, root, cptr, WORD_BITS).map(|(slot, _)| slot)
}

/// What `resolve` finds for all 64 bits of `cptr` when `root` is a
/// CNode whose guard and radix consume them all in one step (the usual
/// layout: every capability address a plain slot index), without its
/// loop; `None` for any other root.
#[inline(always)]
pub fn flat_slot(root: &Cap, cptr: u64) -> Option<Result<SlotRef, Error>> {
    FlatCSpace::of(root).map(|flat| flat.slot(cptr))
}

/// A CSpace root that resolves every address in one step (see
/// [`flat_slot`]), decoded once so that several lookups in it (the
/// fastpath's `ReplyRecv` makes two) do not decode the root again.
#[derive(Clone, Copy)]
pub struct FlatCSpace {
    slots: PhysAddr,
    radix: u32,
    guard: u64,
}

impl FlatCSpace {
    /// `root` decoded, if it is such a CNode.
    #[inline(always)]
    pub fn of(root: &Cap) -> Option<FlatCSpace> {
        let &Cap::CNode {
            ptr,
            radix,
            guard_bits,
            guard,
            ..
        } = root
        else {
            return None;
        };
        let radix = u32::from(radix);
        if radix + u32::from(guard_bits) != WORD_BITS || radix >= WORD_BITS {
            return None;
        }
        Some(FlatCSpace {
            slots: ptr,
            radix,
            guard,
        })
    }

    /// The slot `cptr` names, as `resolve` finds it.
    #[inline(always)]
    pub fn slot(self, cptr: u64) -> Result<SlotRef, Error> {
        if cptr >> self.radix != self.guard {
            Err(Error::FailedLookup)
        } else {
            // A CNode's slots lie inside it: no overflow.
            Ok(SlotRef(self.slots.0.wrapping_add(
                (cptr & !(u64::MAX << self.radix)) << SLOT_BITS,
            )))
        }
    }
}

/// The `count` bits of `value` just below bit position `top` (exclusive),
/// for `1 <= count <= top <= 64`.
#[inline]
fn bits_of(value: u64, top: u32, count: u32) -> u64 {
    let shifted = value.checked_shr(top - count).unwrap_or(0);
    if count >= 64 {
        shifted
    } else {
        shifted & ((1u64 << count) - 1)
    }
}

/// Resolves `cptr`; returns the slot and the number of bits left over.
/// Works on references into the slots (a capability is 40 bytes; copying
/// one is a `memcpy` call in the kernel).
#[inline]
fn resolve<S: SlotStore + ?Sized>(
    store: &S,
    root: &Cap,
    cptr: u64,
    mut bits: u32,
) -> Result<(SlotRef, u32), Error> {
    let mut node = root;
    loop {
        let &Cap::CNode {
            ptr,
            radix,
            guard_bits,
            guard,
            ..
        } = node
        else {
            return Err(Error::FailedLookup);
        };
        let (radix, guard_bits) = (u32::from(radix), u32::from(guard_bits));
        // Guard and index together are the next `level` bits (1..=64).
        let level = radix + guard_bits;
        if level > bits {
            return Err(Error::FailedLookup);
        }
        let field = bits_of(cptr, bits, level);
        if field.checked_shr(radix).unwrap_or(0) != guard {
            return Err(Error::FailedLookup);
        }
        let index = field & 1u64.checked_shl(radix).unwrap_or(0).wrapping_sub(1);
        // A CNode's slots lie inside it: no overflow.
        let slot = SlotRef(ptr.0.wrapping_add(index << SLOT_BITS));
        bits -= level;
        if bits == 0 {
            return Ok((slot, 0));
        }
        let next = &store.slot(slot).cap;
        if !matches!(next, Cap::CNode { .. }) {
            return Ok((slot, bits));
        }
        node = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flat_step_is_what_resolve_finds() {
        use crate::{PhysAddr, cap::Cap, slot::Slot};
        struct NoSlots;
        impl SlotStore for NoSlots {
            fn slot(&self, _: SlotRef) -> &Slot {
                unreachable!("a flat lookup reads no slot")
            }
            fn slot_mut(&mut self, _: SlotRef) -> &mut Slot {
                unreachable!()
            }
        }
        for (radix, guard) in [(12u8, 0u64), (12, 5), (1, 0), (20, 0xabc)] {
            let root = Cap::CNode {
                ptr: PhysAddr(0x10_0000),
                radix,
                guard_bits: 64 - radix,
                guard,
                rights: skyscope_abi::CapRights::ALL,
            };
            for cptr in [
                0,
                1,
                7,
                (guard << radix) | 3,
                (guard << radix) + (1 << radix) - 1,
                u64::MAX,
            ] {
                let flat = flat_slot(&root, cptr).unwrap();
                let general = resolve(&NoSlots, &root, cptr, WORD_BITS).map(|(s, _)| s);
                assert_eq!(
                    flat, general,
                    "radix {radix} guard {guard:#x} cptr {cptr:#x}"
                );
            }
        }
        let two_level = Cap::CNode {
            ptr: PhysAddr(0x10_0000),
            radix: 4,
            guard_bits: 0,
            guard: 0,
            rights: skyscope_abi::CapRights::ALL,
        };
        assert_eq!(flat_slot(&two_level, 3), None);
    }

    #[test]
    fn bit_extraction() {
        assert_eq!(bits_of(0xabcd, 16, 4), 0xa);
        assert_eq!(bits_of(0xabcd, 4, 4), 0xd);
        assert_eq!(bits_of(u64::MAX, 64, 64), u64::MAX);
        assert_eq!(bits_of(0x8000_0000_0000_0000, 64, 1), 1);
    }
}
