//! VSpaces: user address spaces, each tagged with an ASID.
//!
//! The kernel assigns the ASID when the VSpace is created and frees it
//! when the last capability to it goes; mappings made through frame and
//! page-table capabilities name their VSpace by ASID, so a mapping into a
//! deleted VSpace is recognised and ignored.

use crate::{
    PhysAddr,
    cap::{ASID_COUNT, Asid},
    kernel::Kernel,
    machine::Machine,
};

impl<M: Machine> Kernel<M> {
    /// Number of ASIDs not in use (ASID 0 is never assigned).
    pub fn free_asids(&self) -> u64 {
        self.asids[1..].iter().filter(|v| v.0 == 0).count() as u64
    }

    /// Assigns the lowest free ASID to the VSpace at `vspace`. Callers
    /// check [`Kernel::free_asids`] first.
    pub(crate) fn allocate_asid(&mut self, vspace: PhysAddr) -> Asid {
        let asid = (1..ASID_COUNT).find(|&a| self.asids[a].0 == 0).unwrap_or(0);
        if asid != 0 {
            self.asids[asid] = vspace;
        }
        asid as Asid
    }

    /// Records a VSpace made outside retype (the root task's, at boot).
    pub fn register_boot_vspace(&mut self, vspace: PhysAddr) -> Asid {
        self.allocate_asid(vspace)
    }
}
