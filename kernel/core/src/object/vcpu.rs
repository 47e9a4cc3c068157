//! Vcpus: the guest-kernel state a thread runs with.
//!
//! A Vcpu bound to a TCB (`Vcpu::SetTcb`) makes that thread a virtual CPU:
//! its registers are the guest's general registers, its VSpace slot holds
//! a GuestSpace, and the Vcpu holds the rest of the guest's CPU state
//! (system registers, interrupt-controller and timer state), whose layout
//! belongs to the architecture: the core keeps only the binding and
//! forwards register access to the machine. Exits from the guest travel
//! the thread's fault path, as messages to its fault handler (the VMM).
//! A thread whose binding and address space disagree (a Vcpu with a VSpace,
//! a GuestSpace without a Vcpu) cannot run.

use crate::{
    PhysAddr,
    cap::Cap,
    kernel::{Invocation, Kernel, Reply},
    machine::{AddressSpace, Machine, SpaceKind},
    object::tcb::{self, slots},
};
use skyscope_abi::{CapRights, Error, Label};

/// The architecture-neutral head of a Vcpu object (the architecture's
/// register file follows it).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Vcpu {
    /// The thread running as this Vcpu (0 = none).
    pub tcb: PhysAddr,
}

impl<M: Machine> Kernel<M> {
    pub(crate) fn invoke_vcpu(
        &mut self,
        vcpu: PhysAddr,
        rights: CapRights,
        inv: &Invocation<'_>,
    ) -> Result<Reply, Error> {
        let label = Label::from_word(inv.label).ok_or(Error::IllegalOperation)?;
        let need = |r: CapRights| {
            if rights.contains(r) {
                Ok(())
            } else {
                Err(Error::InsufficientRights)
            }
        };
        let bound = |k: &mut Self| {
            let t = k.machine.vcpu_mut(vcpu).tcb;
            (t.0 != 0).then_some(t)
        };
        match label {
            Label::VcpuSetTcb => {
                need(CapRights::WRITE)?;
                let (cap, _) = inv.extra_cap(0)?;
                let Cap::Tcb { ptr: t, rights } = cap else {
                    return Err(if cap.is_null() {
                        Error::InvalidCapability
                    } else {
                        Error::WrongType
                    });
                };
                if !rights.contains(CapRights::WRITE) {
                    return Err(Error::InsufficientRights);
                }
                if self.machine.vcpu_mut(vcpu).tcb == t {
                    return Ok(Reply::empty());
                }
                self.dissociate_vcpu(vcpu, true);
                // The thread changes Vcpu without stopping.
                let old = self.machine.tcb(t).vcpu;
                if old.0 != 0 {
                    self.dissociate_vcpu(old, false);
                }
                self.machine.vcpu_mut(vcpu).tcb = t;
                self.machine.tcb_mut(t).vcpu = vcpu;
                self.spaces_changed();
                self.audit_event(crate::audit::AuditKind::Bound, vcpu.0, t.0, 0);
                Ok(Reply::empty())
            }
            Label::VcpuReadRegister => {
                need(CapRights::READ)?;
                let index = inv.arg(0)?;
                let t = bound(self);
                self.check_not_running(t)?;
                let value = self.machine.vcpu_register(vcpu, t, index, None)?;
                Ok(Reply::word(value))
            }
            Label::VcpuWriteRegister => {
                need(CapRights::WRITE)?;
                let (index, value) = (inv.arg(0)?, inv.arg(1)?);
                let t = bound(self);
                self.check_not_running(t)?;
                self.machine.vcpu_register(vcpu, t, index, Some(value))?;
                Ok(Reply::empty())
            }
            Label::VcpuSetIrq => {
                use skyscope_abi::vcpu::irq::{GROUP1, HIGH, INTID_LIMIT, LEVEL};
                need(CapRights::WRITE)?;
                let (intid, priority, flags) = (inv.arg(0)?, inv.arg(1)?, inv.arg(2)?);
                if intid >= INTID_LIMIT || priority > 0xff || flags & !(LEVEL | HIGH | GROUP1) != 0
                {
                    return Err(Error::InvalidArgument);
                }
                if self
                    .machine
                    .vcpu_set_irq(vcpu, intid as u32, priority as u8, flags)
                {
                    self.wake_vcpu(vcpu);
                }
                Ok(Reply::empty())
            }
            _ => Err(Error::IllegalOperation),
        }
    }

    /// The running thread's guest executed `wfi` and its Vcpu has nothing
    /// pending: the thread stops using the CPU until [`Self::wake_vcpu`].
    pub fn idle_in_guest(&mut self, t: PhysAddr) {
        if self.machine.tcb(t).vcpu.0 != 0 {
            self.block(t, tcb::ThreadState::IdleInGuest, PhysAddr(0));
        }
    }

    /// Something is pending for `vcpu` (an injected interrupt, its timer):
    /// its thread, if idle in the guest, runs again.
    pub fn wake_vcpu(&mut self, vcpu: PhysAddr) {
        let t = self.machine.vcpu_mut(vcpu).tcb;
        if t.0 != 0 && self.machine.tcb(t).state == tcb::ThreadState::IdleInGuest {
            self.wake(t);
        }
    }

    /// A Vcpu's registers cannot change under the thread that invokes it
    /// (a thread cannot be its own VMM).
    fn check_not_running(&self, bound: Option<PhysAddr>) -> Result<(), Error> {
        if bound.is_some() && bound == self.current {
            return Err(Error::IllegalOperation);
        }
        Ok(())
    }

    /// Breaks the binding of `vcpu`, if any. With `stop`, a thread that was
    /// running as it (its VSpace slot holds a GuestSpace) is suspended: it
    /// cannot continue without a Vcpu.
    pub(crate) fn dissociate_vcpu(&mut self, vcpu: PhysAddr, stop: bool) {
        let t = core::mem::take(&mut self.machine.vcpu_mut(vcpu).tcb);
        if t.0 == 0 {
            return;
        }
        self.machine.tcb_mut(t).vcpu = PhysAddr(0);
        self.spaces_changed();
        let space = self.machine.slot(tcb::slot_ref(t, slots::VSPACE)).cap;
        if stop && matches!(space, Cap::GuestSpace { .. }) {
            self.suspend(t);
        }
    }

    /// The last capability to a Vcpu is gone.
    pub(crate) fn retire_vcpu(&mut self, vcpu: PhysAddr) {
        self.dissociate_vcpu(vcpu, true);
    }

    /// The user address space thread `t` runs in as last found by
    /// [`Kernel::remember_space`], if nothing that could change it has
    /// happened since (`None` otherwise, or for a Vcpu's thread: the
    /// caller then takes the general switch, which looks it up again).
    /// The IPC fastpath's switch uses it.
    #[inline(always)]
    pub fn native_space(&self, t: PhysAddr) -> Option<AddressSpace> {
        let cache = self.machine.tcb(t).space;
        (cache.generation == self.space_generation).then_some(AddressSpace {
            root: cache.root,
            id: cache.asid,
            kind: SpaceKind::User,
        })
    }

    /// Remembers `space`, which [`Kernel::thread_space`] just found for
    /// thread `t`, for [`Kernel::native_space`] if it is a user space (the
    /// general switch calls it for every thread it switches to).
    pub fn remember_space(&mut self, t: PhysAddr, space: AddressSpace) {
        if space.kind == SpaceKind::User {
            self.machine.tcb_mut(t).space = crate::object::tcb::SpaceCache {
                root: space.root,
                asid: space.id,
                generation: self.space_generation,
            };
        }
    }

    /// Something that may change the space a thread runs in happened:
    /// every remembered space is stale.
    #[inline(always)]
    pub(crate) fn spaces_changed(&mut self) {
        self.space_generation = self.space_generation.wrapping_add(1);
    }

    /// The address space thread `t` runs in: its VSpace if it has no Vcpu,
    /// its GuestSpace if it has one. Anything else (no space, a deleted
    /// space, a mismatch) means the thread cannot run.
    #[inline(always)]
    pub fn thread_space(&self, t: PhysAddr) -> Result<AddressSpace, Error> {
        let cap = &self.machine.slot(tcb::slot_ref(t, slots::VSPACE)).cap;
        let guest = self.machine.tcb(t).vcpu.0 != 0;
        let (ptr, id, kind) = match *cap {
            Cap::VSpace { ptr, asid, .. } if !guest => (ptr, asid, SpaceKind::User),
            Cap::GuestSpace { ptr, vmid, .. } if guest => (ptr, vmid, SpaceKind::Guest),
            Cap::Null => return Err(Error::FailedLookup),
            _ => return Err(Error::IllegalOperation),
        };
        match self.space_of(id) {
            Some(space) if space.root == ptr && space.kind == kind => Ok(space),
            _ => Err(Error::InvalidCapability),
        }
    }
}
