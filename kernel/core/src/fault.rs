//! Faults as messages: a thread that faults "calls" its fault handler.

use crate::{
    PhysAddr,
    cap::Cap,
    kernel::Kernel,
    machine::Machine,
    object::tcb::{self, ipc_flags},
};
use skyscope_abi::{CapRights, fault::WORDS};

impl<M: Machine> Kernel<M> {
    /// Delivers a fault of thread `t` (`label` and `words` per
    /// `skyscope_abi::fault`) to its fault endpoint, as a `Call` the
    /// handler answers to restart the thread. Returns `false` if the
    /// thread has no usable fault endpoint; it is then stopped.
    pub fn deliver_fault(&mut self, t: PhysAddr, label: u64, words: [u64; WORDS]) -> bool {
        self.audit.record(
            crate::audit::AuditKind::Fault,
            self.machine.now(),
            t,
            words[0],
            label,
            0,
        );
        let handler = self
            .machine
            .slot(tcb::slot_ref(t, tcb::slots::FAULT_HANDLER))
            .cap;
        let Cap::Endpoint { ptr, badge, rights } = handler else {
            self.suspend(t);
            return false;
        };
        if !rights.contains(CapRights::WRITE) {
            self.suspend(t);
            return false;
        }
        let tcb = self.machine.tcb_mut(t);
        tcb.fault_label = label;
        tcb.fault = words;
        // The kernel always lets the handler answer a fault.
        let flags = ipc_flags::CALL | ipc_flags::GRANT_REPLY | ipc_flags::FAULT;
        self.send_ipc(t, ptr, badge, flags, true);
        true
    }
}
