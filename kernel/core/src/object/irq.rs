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
            _ => Err(Error::IllegalOperation),
        }
    }

    fn irq_is_issued(&self, irq: u16) -> bool {
        self.irq_issued[usize::from(irq) / 64] & (1 << (irq % 64)) != 0
    }

    /// The last handler capability for `irq` is gone.
    pub(crate) fn release_irq(&mut self, irq: u16) {
        self.irq_issued[usize::from(irq) / 64] &= !(1 << (irq % 64));
        self.machine.set_irq_enabled(irq, false);
    }
}
