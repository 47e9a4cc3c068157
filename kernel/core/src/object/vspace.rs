//! VSpaces: user address spaces, each tagged with an ASID; and the table
//! of address-space identifiers they share with GuestSpaces.
//!
//! The kernel assigns the identifier when a VSpace or GuestSpace is created
//! and frees it when the last capability to it goes; mappings made through
//! frame and page-table capabilities name their space by identifier, so a
//! mapping into a deleted space is recognised and ignored. One pool serves
//! both kinds: an identifier is an ASID for a VSpace and a VMID for a
//! GuestSpace, never both at once.

use crate::{
    PhysAddr,
    cap::{ASID_COUNT, Asid, Cap},
    kernel::Kernel,
    machine::{AddressSpace, Machine, SpaceKind},
};
use skyscope_abi::{CapRights, Error};

/// Marks an identifier-table entry as a GuestSpace's (top-level tables are
/// page-aligned, so the low bit of the address is free): one table holds
/// both kinds of space.
const GUEST_TAG: u64 = 1;

impl<M: Machine> Kernel<M> {
    /// Number of identifiers not in use (0 is never assigned).
    pub fn free_asids(&self) -> u64 {
        self.asids[1..].iter().filter(|v| v.0 == 0).count() as u64
    }

    /// Assigns the lowest free identifier to the space at `root`. Callers
    /// check [`Kernel::free_asids`] first.
    pub(crate) fn allocate_asid(&mut self, root: PhysAddr, kind: SpaceKind) -> Asid {
        let asid = (1..ASID_COUNT).find(|&a| self.asids[a].0 == 0).unwrap_or(0);
        if asid != 0 {
            debug_assert!(root.0.is_multiple_of(4096));
            let tag = if kind == SpaceKind::Guest {
                GUEST_TAG
            } else {
                0
            };
            self.asids[asid] = PhysAddr(root.0 | tag);
            self.spaces_changed();
        }
        asid as Asid
    }

    /// Records a VSpace made outside retype (the root task's, at boot).
    pub fn register_boot_vspace(&mut self, vspace: PhysAddr) -> Asid {
        self.allocate_asid(vspace, SpaceKind::User)
    }

    /// The space an identifier currently names.
    #[inline(always)]
    pub(crate) fn space_of(&self, id: Asid) -> Option<AddressSpace> {
        let entry = *self.asids.get(usize::from(id))?;
        if entry.0 == 0 {
            return None;
        }
        let kind = if entry.0 & GUEST_TAG != 0 {
            SpaceKind::Guest
        } else {
            SpaceKind::User
        };
        Some(AddressSpace {
            root: PhysAddr(entry.0 & !GUEST_TAG),
            id,
            kind,
        })
    }

    /// Empties the top-level table of the space `root` whose last
    /// capability is going, and every table below it (preemptibly): a
    /// table left holding entries could later be mapped again, bringing
    /// back translations to memory that has been reused.
    pub(crate) fn empty_space(&mut self, root: PhysAddr, id: Asid) -> Result<(), Error> {
        let space = self.space_of(id).filter(|s| s.root == root);
        while !self.machine.empty_table(space, root, 1) {
            self.preemption_point()?;
        }
        Ok(())
    }

    /// Frees the identifier of a space whose last capability is gone.
    pub(crate) fn release_space(&mut self, id: Asid) {
        if let Some(space) = self.space_of(id) {
            // No `spaces_changed` here: the one caller, `Kernel::release`,
            // advances the generation for the capability leaving.
            self.asids[usize::from(id)] = PhysAddr(0);
            self.machine.flush_space(space);
        }
    }

    /// The space a VSpace or GuestSpace capability names, if it allows
    /// mapping (`WRITE`) and still exists.
    pub(crate) fn writable_space(&self, cap: &Cap) -> Result<AddressSpace, Error> {
        let (ptr, id, rights) = match *cap {
            Cap::VSpace { ptr, asid, rights } => (ptr, asid, rights),
            Cap::GuestSpace { ptr, vmid, rights } => (ptr, vmid, rights),
            Cap::Null => return Err(Error::InvalidCapability),
            _ => return Err(Error::WrongType),
        };
        if !rights.contains(CapRights::WRITE) {
            return Err(Error::InsufficientRights);
        }
        match self.space_of(id) {
            Some(space) if space.root == ptr => Ok(space),
            _ => Err(Error::InvalidCapability),
        }
    }
}
