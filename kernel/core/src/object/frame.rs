//! Frames: memory that user space maps into address spaces.
//!
//! A frame capability holds at most one mapping; to map a frame twice,
//! copy the capability and map the copy. Deleting a capability removes its
//! mapping, so revoking an untyped region unmaps everything made from it.

use crate::{
    cap::{Cap, Mapping, SlotRef},
    kernel::{Invocation, Kernel, Reply},
    machine::{Access, Machine, SpaceKind},
};
use skyscope_abi::{
    CapRights, Error, Label,
    invocation::{MAP_DEVICE, MAP_EXECUTE},
};

impl<M: Machine> Kernel<M> {
    pub(crate) fn invoke_frame(
        &mut self,
        slot: SlotRef,
        inv: &Invocation<'_>,
    ) -> Result<Reply, Error> {
        let Cap::Frame {
            base,
            size,
            device,
            rights,
            mapping,
        } = self.machine.slot(slot).cap
        else {
            return Err(Error::InvalidCapability);
        };
        match Label::from_word(inv.label) {
            Some(Label::FrameMap) => {
                let vaddr = inv.arg(0)?;
                let requested = CapRights::from_word(inv.arg(1)?);
                let attributes = inv.arg(2)?;
                let (space_cap, _) = inv.extra_cap(0)?;
                if mapping != Mapping::NONE {
                    return Err(Error::IllegalOperation);
                }
                let space = self.writable_space(&space_cap)?;
                if !rights.contains(CapRights::READ) || !requested.contains(CapRights::READ) {
                    return Err(Error::InsufficientRights);
                }
                if !vaddr.is_multiple_of(size.bytes()) {
                    return Err(Error::AlignmentError);
                }
                let access = Access {
                    write: requested.contains(CapRights::WRITE)
                        && rights.contains(CapRights::WRITE),
                    execute: attributes & MAP_EXECUTE != 0,
                    device: device || attributes & MAP_DEVICE != 0,
                };
                // W^X for native threads: never both. A guest's memory is
                // both (its kernel loads and runs code); the guest's own
                // stage-1 tables enforce its policy.
                if access.write && access.execute && space.kind == SpaceKind::User {
                    return Err(Error::InvalidArgument);
                }
                if access.execute && access.device {
                    return Err(Error::InvalidArgument);
                }
                self.machine.map_frame(space, vaddr, base, size, access)?;
                if let Cap::Frame { mapping, .. } = &mut self.machine.slot_mut(slot).cap {
                    *mapping = Mapping::new(space.id, vaddr);
                }
                self.audit_event(
                    crate::audit::AuditKind::Mapped,
                    base.0,
                    vaddr,
                    u64::from(space.id),
                );
                Ok(Reply::empty())
            }
            Some(Label::FrameUnmap) => {
                if let Some((id, vaddr)) = mapping.get()
                    && let Some(space) = self.space_of(id)
                {
                    self.machine.unmap_frame(space, vaddr, base, size);
                    self.audit_event(
                        crate::audit::AuditKind::Unmapped,
                        base.0,
                        vaddr,
                        u64::from(id),
                    );
                }
                if let Cap::Frame { mapping, .. } = &mut self.machine.slot_mut(slot).cap {
                    *mapping = Mapping::NONE;
                }
                Ok(Reply::empty())
            }
            Some(Label::FrameGetAddress) => Ok(Reply::word(base.0)),
            _ => Err(Error::IllegalOperation),
        }
    }
}
