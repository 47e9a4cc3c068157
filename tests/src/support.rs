//! Helpers for scenarios: slot allocation, untyped selection, and the
//! root CNode addressing convention.

use skyscope_abi::{
    BootInfo, Error, ObjectType,
    bootinfo::{ROOT_CNODE_RADIX, slots},
    invocation as inv,
};

/// Depth of a slot argument in the root CNode: its capability has a guard
/// making every address a plain 64-bit slot index.
pub const ROOT_DEPTH: u64 = 64;
/// The root CNode.
pub const ROOT: u64 = slots::CNODE;

/// A scenario's view of the root task's resources.
pub struct Env {
    /// The boot info.
    pub info: &'static BootInfo,
    next_slot: u64,
}

impl Env {
    /// Starts handing out the boot info's empty slots.
    pub fn new(info: &'static BootInfo) -> Env {
        Env {
            info,
            next_slot: info.empty.start,
        }
    }

    /// A fresh empty slot of the root CNode.
    pub fn slot(&mut self) -> u64 {
        assert!(
            self.next_slot < (1 << ROOT_CNODE_RADIX),
            "out of root CNode slots"
        );
        self.next_slot += 1;
        self.next_slot - 1
    }

    /// `n` consecutive fresh slots; returns the first.
    pub fn slots(&mut self, n: u64) -> u64 {
        let first = self.next_slot;
        self.next_slot += n;
        assert!(
            self.next_slot <= (1 << ROOT_CNODE_RADIX),
            "out of root CNode slots"
        );
        first
    }

    /// The slot of a RAM untyped of at least `2^bits` bytes.
    pub fn ram_untyped(&self, bits: u8) -> Option<u64> {
        self.info
            .untyped_regions()
            .iter()
            .enumerate()
            .find(|(_, d)| d.is_device == 0 && d.size_bits >= bits)
            .map(|(i, _)| self.info.untyped.start + i as u64)
    }

    /// Carves a private untyped of `2^bits` bytes (so the scenario can
    /// revoke everything it made at once) and returns its slot.
    pub fn private_untyped(&mut self, bits: u8) -> Result<u64, Error> {
        let parent = self.ram_untyped(bits + 1).ok_or(Error::NotEnoughMemory)?;
        let slot = self.slot();
        inv::untyped_retype(
            parent,
            ObjectType::Untyped,
            u64::from(bits),
            ROOT,
            0,
            0,
            slot,
            1,
        )?;
        Ok(slot)
    }

    /// Retypes `count` objects from `untyped` into fresh slots; returns the first.
    pub fn retype(
        &mut self,
        untyped: u64,
        ty: ObjectType,
        size_bits: u64,
        count: u64,
    ) -> Result<u64, Error> {
        let first = self.slots(count);
        inv::untyped_retype(untyped, ty, size_bits, ROOT, 0, 0, first, count)?;
        Ok(first)
    }

    /// Copies root slot `src` to a fresh slot with `rights`.
    pub fn copy(&mut self, src: u64, rights: skyscope_abi::CapRights) -> Result<u64, Error> {
        let dst = self.slot();
        inv::cnode_copy(ROOT, dst, ROOT_DEPTH, ROOT, src, ROOT_DEPTH, rights)?;
        Ok(dst)
    }

    /// Mints root slot `src` into a fresh slot.
    pub fn mint(
        &mut self,
        src: u64,
        rights: skyscope_abi::CapRights,
        data: u64,
    ) -> Result<u64, Error> {
        let dst = self.slot();
        inv::cnode_mint(ROOT, dst, ROOT_DEPTH, ROOT, src, ROOT_DEPTH, rights, data)?;
        Ok(dst)
    }
}

/// Whether root slot `cptr` is empty: copying from an empty slot is the
/// one way to get `FailedLookup` for a valid slot address.
pub fn is_empty(cptr: u64) -> bool {
    const PROBE: u64 = (1 << ROOT_CNODE_RADIX) - 1; // kept free for this probe
    match inv::cnode_copy(
        ROOT,
        PROBE,
        ROOT_DEPTH,
        ROOT,
        cptr,
        ROOT_DEPTH,
        skyscope_abi::CapRights::ALL,
    ) {
        Err(Error::FailedLookup) => true,
        Ok(()) => {
            let _ = inv::cnode_delete(ROOT, PROBE, ROOT_DEPTH);
            false
        }
        Err(_) => false,
    }
}

/// Reads a word of user memory.
pub fn read(address: u64) -> u64 {
    // SAFETY: scenarios only pass addresses of pages they mapped readable.
    unsafe { (address as *const u64).read_volatile() }
}

/// Gives thread `tcb` a scheduling context (made from `untyped` into a
/// fresh slot) with `budget_us` of CPU per `period_us`; returns its slot.
pub fn give_sched_context(
    env: &mut Env,
    untyped: u64,
    tcb: u64,
    budget_us: u64,
    period_us: u64,
) -> Result<u64, Error> {
    let sc = env.retype(untyped, ObjectType::SchedContext, 0, 1)?;
    inv::sched_control_configure(slots::SCHED_CONTROL, sc, budget_us, period_us)?;
    inv::sched_context_bind(sc, tcb)?;
    Ok(sc)
}
