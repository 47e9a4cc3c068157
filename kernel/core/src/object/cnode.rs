//! CNodes: tables of capability slots, and the capability operations.

use crate::{
    cap::{Cap, Derivation},
    kernel::{Invocation, Kernel, Reply},
    machine::Machine,
    slot,
};
use skyscope_abi::{CapRights, Error, Label};

impl<M: Machine> Kernel<M> {
    /// Records that `cap` was handed on (`how`: copy, mint or move).
    fn audit_delegation(&mut self, cap: &Cap, how: u64) {
        self.audit_event(
            crate::audit::AuditKind::Delegated,
            cap.audit_object(),
            how,
            u64::from(cap.rights().bits()),
        );
    }

    pub(crate) fn invoke_cnode(
        &mut self,
        cnode: &Cap,
        inv: &Invocation<'_>,
    ) -> Result<Reply, Error> {
        let label = Label::from_word(inv.label).ok_or(Error::IllegalOperation)?;
        if !matches!(
            label,
            Label::CNodeCopy
                | Label::CNodeMint
                | Label::CNodeMove
                | Label::CNodeMutate
                | Label::CNodeDelete
                | Label::CNodeRevoke
        ) {
            return Err(Error::IllegalOperation);
        }
        if !cnode.rights().contains(CapRights::WRITE) {
            return Err(Error::InsufficientRights);
        }
        let dest = self.lookup_slot_arg(cnode, inv.arg(0)?, inv.arg(1)?)?;
        match label {
            Label::CNodeDelete => {
                self.delete(dest)?;
                return Ok(Reply::empty());
            }
            Label::CNodeRevoke => {
                let cap = self.machine.slot(dest).cap;
                self.revoke(dest)?;
                let ty = cap.object_type().map_or(0, |t| t as u64);
                self.audit_event(crate::audit::AuditKind::Revoked, cap.audit_object(), ty, 0);
                return Ok(Reply::empty());
            }
            _ => {}
        }
        let (src_root, _) = inv.extra_cap(0)?;
        let src = self.lookup_slot_arg(&src_root, inv.arg(2)?, inv.arg(3)?)?;
        if !self.machine.slot(dest).cap.is_null() {
            return Err(Error::DeleteFirst);
        }
        let src_cap = self.machine.slot(src).cap;
        if src_cap.is_null() {
            return Err(Error::FailedLookup);
        }
        match label {
            Label::CNodeCopy => {
                let cap = src_cap.derive()?.masked(CapRights::from_word(inv.arg(4)?));
                self.install_derived(src, dest, cap);
                self.audit_delegation(&cap, skyscope_abi::audit::COPY);
            }
            Label::CNodeMint => {
                let cap = src_cap
                    .derive_for(Derivation::Mint)?
                    .masked(CapRights::from_word(inv.arg(4)?))
                    .with_data(inv.arg(5)?)?;
                self.install_derived(src, dest, cap);
                self.audit_delegation(&cap, skyscope_abi::audit::MINT);
            }
            Label::CNodeMove | Label::CNodeMutate => {
                let cap = src_cap.derive_for(Derivation::Move)?;
                let cap = match label {
                    Label::CNodeMutate => cap.mutated(inv.arg(4)?)?,
                    _ => cap,
                };
                // An untyped capability must never sit in memory it covers:
                // revoking it would then destroy its own slot.
                if let Cap::Untyped {
                    base, size_bits, ..
                } = cap
                    && (base.0..base.0 + (1u64 << size_bits)).contains(&dest.0)
                {
                    return Err(Error::IllegalOperation);
                }
                slot::move_slot(&mut self.machine, src, dest);
                self.machine.slot_mut(dest).cap = cap;
                self.audit_delegation(&cap, skyscope_abi::audit::MOVE);
            }
            _ => unreachable!("filtered above"),
        }
        Ok(Reply::empty())
    }
}
