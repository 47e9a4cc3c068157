//! Page tables: the intermediate translation tables user space supplies.
//!
//! The kernel allocates no memory of its own for address spaces: before a
//! frame can be mapped, user space retypes page tables from untyped memory
//! and installs them along the walk to the frame's address. The same
//! tables serve VSpaces and GuestSpaces; which format their entries take
//! is decided by the space they are installed in.

use crate::{
    PhysAddr,
    cap::{Cap, Mapping, SlotRef},
    kernel::{Invocation, Kernel, Reply},
    machine::Machine,
};
use skyscope_abi::{Error, Label};

impl<M: Machine> Kernel<M> {
    pub(crate) fn invoke_page_table(
        &mut self,
        slot: SlotRef,
        inv: &Invocation<'_>,
    ) -> Result<Reply, Error> {
        let Cap::PageTable {
            ptr,
            mapping,
            level,
        } = self.machine.slot(slot).cap
        else {
            return Err(Error::InvalidCapability);
        };
        match Label::from_word(inv.label) {
            Some(Label::PageTableMap) => {
                let vaddr = inv.arg(0)? & !0xfff;
                let (space_cap, _) = inv.extra_cap(0)?;
                if mapping != Mapping::NONE {
                    return Err(Error::IllegalOperation);
                }
                let space = self.writable_space(&space_cap)?;
                let level = self.machine.map_table(space, vaddr, ptr)?;
                self.machine.slot_mut(slot).cap = Cap::PageTable {
                    ptr,
                    mapping: Mapping::new(space.id, vaddr),
                    level,
                };
                self.audit_event(
                    crate::audit::AuditKind::Mapped,
                    ptr.0,
                    vaddr,
                    u64::from(space.id),
                );
                Ok(Reply::empty())
            }
            Some(Label::PageTableUnmap) => {
                self.take_table_out(ptr, mapping, level)?;
                if let Some((id, vaddr)) = mapping.get() {
                    self.audit_event(
                        crate::audit::AuditKind::Unmapped,
                        ptr.0,
                        vaddr,
                        u64::from(id),
                    );
                }
                self.machine.slot_mut(slot).cap = Cap::PageTable {
                    ptr,
                    mapping: Mapping::NONE,
                    level: 0,
                };
                Ok(Reply::empty())
            }
            _ => Err(Error::IllegalOperation),
        }
    }

    /// Takes the table at `ptr` out of the space its capability records:
    /// empties it (and the tables below it) while it is still installed,
    /// so every table stays consistent at each preemption point, then
    /// removes it from its parent. A table that is not installed anywhere
    /// (never mapped, or its space was deleted, which empties it) is empty
    /// already. Afterwards no entry anywhere leads through this table, and
    /// it holds none: mapping it again cannot bring back stale entries.
    pub(crate) fn take_table_out(
        &mut self,
        ptr: PhysAddr,
        mapping: Mapping,
        level: u8,
    ) -> Result<(), Error> {
        let Some((id, vaddr)) = mapping.get() else {
            return Ok(());
        };
        let space = self.space_of(id);
        while !self.machine.empty_table(space, ptr, level) {
            self.preemption_point()?;
        }
        if let Some(space) = space {
            self.machine.unmap_table(space, vaddr, level, ptr);
        }
        Ok(())
    }
}
