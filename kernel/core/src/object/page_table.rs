//! Page tables: the intermediate translation tables user space supplies.
//!
//! The kernel allocates no memory of its own for address spaces: before a
//! frame can be mapped, user space retypes page tables from untyped memory
//! and installs them along the walk to the frame's address.

use crate::{
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
                let (vspace_cap, _) = inv.extra_cap(0)?;
                if mapping != Mapping::NONE {
                    return Err(Error::IllegalOperation);
                }
                let (vspace, asid) = self.writable_vspace(&vspace_cap)?;
                let level = self.machine.map_table(vspace, vaddr, ptr)?;
                self.machine.slot_mut(slot).cap = Cap::PageTable {
                    ptr,
                    mapping: Mapping::new(asid, vaddr),
                    level,
                };
                Ok(Reply::empty())
            }
            Some(Label::PageTableUnmap) => {
                if let Some((asid, vaddr)) = mapping.get()
                    && let Some(vspace) = self.vspace_of(asid)
                {
                    self.machine.unmap_table(vspace, asid, vaddr, level, ptr);
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
}
