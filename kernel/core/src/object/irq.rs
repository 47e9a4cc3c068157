//! Interrupts: IRQ control issues one handler capability per line.

use crate::{
    cap::{Cap, SlotRef},
    kernel::{Invocation, Kernel, MAX_IRQS, Reply},
    machine::Machine,
};
use skyscope_abi::{Error, Label};

impl<M: Machine> Kernel<M> {
    pub(crate) fn invoke_irq_control(
        &mut self,
        control: SlotRef,
        inv: &Invocation<'_>,
    ) -> Result<Reply, Error> {
        if Label::from_word(inv.label) != Some(Label::IrqControlGet) {
            return Err(Error::IllegalOperation);
        }
        let irq = inv.arg(0)?;
        let (root, _) = inv.extra_cap(0)?;
        let dest = self.lookup_slot_arg(&root, inv.arg(1)?, inv.arg(2)?)?;
        let irq = u16::try_from(irq)
            .ok()
            .filter(|&i| usize::from(i) < MAX_IRQS)
            .ok_or(Error::RangeError)?;
        if self.machine.irq_reserved(irq) {
            return Err(Error::InvalidArgument);
        }
        if self.irq_is_issued(irq) {
            return Err(Error::RevokeFirst);
        }
        if !self.machine.slot(dest).cap.is_null() {
            return Err(Error::DeleteFirst);
        }
        self.install_derived(control, dest, Cap::IrqHandler { irq });
        self.irq_issued[usize::from(irq) / 64] |= 1 << (irq % 64);
        self.audit_event(
            crate::audit::AuditKind::Issued,
            u64::from(irq),
            skyscope_abi::audit::ISSUED_IRQ_HANDLER,
            1,
        );
        Ok(Reply::empty())
    }

    pub(crate) fn invoke_irq_handler(
        &mut self,
        irq: u16,
        inv: &Invocation<'_>,
    ) -> Result<Reply, Error> {
        match Label::from_word(inv.label) {
            Some(Label::IrqHandlerAck) => {
                self.machine.set_irq_enabled(irq, true);
                Ok(Reply::empty())
            }
            Some(Label::IrqHandlerSetNotification) => {
                let (cap, _) = inv.extra_cap(0)?;
                let Cap::Notification { ptr, badge, rights } = cap else {
                    return Err(if cap.is_null() {
                        Error::InvalidCapability
                    } else {
                        Error::WrongType
                    });
                };
                if !rights.contains(skyscope_abi::CapRights::WRITE) {
                    return Err(Error::InsufficientRights);
                }
                self.irq_notifications[usize::from(irq)] = (ptr, badge);
                self.machine.set_irq_enabled(irq, true);
                Ok(Reply::empty())
            }
            _ => Err(Error::IllegalOperation),
        }
    }

    /// An interrupt from a line user space handles: signal its notification
    /// and keep the line masked until the handler acknowledges it. Returns
    /// `false` if nobody handles the line (it is then masked for good).
    pub fn handle_irq(&mut self, irq: u16) -> bool {
        self.machine.set_irq_enabled(irq, false);
        match self.irq_notifications.get(usize::from(irq)) {
            Some(&(n, badge)) if n.0 != 0 => {
                self.signal(n, badge);
                true
            }
            _ => false,
        }
    }

    /// Notification `n` is gone: no IRQ signals it any more.
    pub(crate) fn forget_irq_notification(&mut self, n: crate::PhysAddr) {
        for entry in self.irq_notifications.iter_mut().filter(|(p, _)| *p == n) {
            *entry = (crate::PhysAddr(0), 0);
        }
    }

    fn irq_is_issued(&self, irq: u16) -> bool {
        self.irq_issued[usize::from(irq) / 64] & (1 << (irq % 64)) != 0
    }

    /// The last handler capability for `irq` is gone.
    pub(crate) fn release_irq(&mut self, irq: u16) {
        self.irq_issued[usize::from(irq) / 64] &= !(1 << (irq % 64));
        self.irq_notifications[usize::from(irq)] = (crate::PhysAddr(0), 0);
        self.machine.set_irq_enabled(irq, false);
    }
}
