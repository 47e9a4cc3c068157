//! A guest's interrupts, kept by the kernel: what its VMM injects
//! (`Vcpu::SetIrq`), its two EL1 timers forwarded as level-sensitive PPIs,
//! and the maintenance interrupt that lets queued interrupts into list
//! registers and resamples level lines when the guest ends them.
//!
//! Why the kernel forwards the timers itself (as KVM does, not as an
//! event to the VMM as seL4 does): a guest's tick must not depend on its
//! VMM being scheduled, and every tick through the VMM would cost two
//! more context switches. The physical timer PPI is masked while the
//! guest's line is high, and unmasked when the guest's handler has moved
//! the compare value or masked the timer and ended the interrupt.
//!
//! While its Vcpu is loaded a guest's timers run in the CPU and raise
//! their physical PPIs at the kernel even when a native thread runs (its
//! thread may be idle in `wfi`). When another Vcpu loads, the timers are
//! stopped and the Vcpu goes on a list the kernel timer watches, with the
//! physical count at which one would fire.

use super::{
    machine::KernelMachine,
    vcpu::{self, VcpuObject},
    vgic::{self, MAX_LIST_REGISTERS},
};
use skyscope_abi::vcpu::aarch64::{self as reg, timer_irq};
use skyscope_core::PhysAddr;
use skyscope_el2::{
    timer::{SavedTimer, live_output},
    vgic::{HCR_EN, HCR_UIE, IrqLine, ListRegister, VirtualIrqs},
};

/// The interrupt IDs the kernel handles for guests.
#[derive(Clone, Copy, Debug)]
pub struct GuestInterrupts {
    /// The GIC maintenance interrupt (a PPI).
    pub maintenance: u32,
    /// The EL1 virtual timer's PPI, as the platform wires it (and as the
    /// guest sees it).
    pub virtual_timer: u32,
    /// The EL1 physical timer's PPI.
    pub physical_timer: u32,
}

/// The maintenance interrupt's INTID on Arm's base system architecture
/// (BSA 1.0, "PPI assignments": 25); QEMU `virt` wires it there.
pub const MAINTENANCE_INTID: u32 = 25;

/// ICH_HCR_EL2 for a loaded Vcpu: the interface on, and an underflow
/// maintenance interrupt while interrupts wait for a list register.
fn interface_control(irqs: &VirtualIrqs) -> u64 {
    HCR_EN | if irqs.waiting() { HCR_UIE } else { 0 }
}

/// The Vcpu's two timers as saved in its registers: (virtual, physical).
fn saved_timers(object: &VcpuObject) -> [SavedTimer; 2] {
    let r = |i: u64| object.registers[i as usize];
    [
        SavedTimer {
            ctl: r(reg::CNTV_CTL_EL0),
            cval: r(reg::CNTV_CVAL_EL0),
            offset: r(reg::CNTVOFF_EL2),
        },
        SavedTimer {
            ctl: r(reg::CNTP_CTL_EL0),
            cval: r(reg::CNTP_CVAL_EL0),
            offset: 0,
        },
    ]
}

impl KernelMachine {
    /// Runs `f` on `v`'s waiting interrupts and its list registers (the
    /// CPU's, if `v` is loaded: they are written back where `f` changed
    /// them, and the maintenance request follows what still waits).
    fn with_virtual_irqs<R>(
        &mut self,
        v: PhysAddr,
        f: impl FnOnce(&mut VirtualIrqs, &mut [ListRegister]) -> R,
    ) -> R {
        let n = vgic::list_register_count();
        if self.loaded_vcpu != Some(v) {
            let object = self.vcpu_object(v);
            return f(&mut object.irqs, &mut object.interface.list_registers[..n]);
        }
        let mut live = [ListRegister(0); MAX_LIST_REGISTERS];
        for (i, lr) in live[..n].iter_mut().enumerate() {
            *lr = vgic::read_lr(i);
        }
        let before = live;
        let object = self.vcpu_object(v);
        let result = f(&mut object.irqs, &mut live[..n]);
        for i in 0..n {
            if live[i] != before[i] {
                vgic::write_lr(i, live[i]);
            }
        }
        vgic::set_hcr(interface_control(&object.irqs));
        result
    }

    /// `Vcpu::SetIrq`: returns whether `v` now has an interrupt pending.
    pub fn set_virtual_irq(&mut self, v: PhysAddr, intid: u32, priority: u8, flags: u64) -> bool {
        use skyscope_abi::vcpu::irq::{GROUP1, HIGH, LEVEL};
        let line = IrqLine {
            intid,
            priority,
            group1: flags & GROUP1 != 0,
            level: flags & LEVEL != 0,
            high: flags & HIGH != 0,
        };
        self.with_virtual_irqs(v, |irqs, lrs| irqs.set_line(line, lrs))
    }

    /// Whether `v` has a virtual interrupt pending (its `wfi` completes).
    pub fn virtual_irq_pending(&mut self, v: PhysAddr) -> bool {
        self.with_virtual_irqs(v, |irqs, lrs| irqs.anything_pending(lrs))
    }

    /// Sets `v`'s two timer lines from its timers' outputs (live ones if
    /// loaded, whose physical PPIs are masked exactly while the output is
    /// high; saved ones as of physical count `now` otherwise). Returns
    /// whether `v` has an interrupt pending.
    fn sync_timers(&mut self, v: PhysAddr, now: u64) -> bool {
        let loaded = self.loaded_vcpu == Some(v);
        let object = self.vcpu_object(v);
        let saved = saved_timers(object);
        let config = [
            object.registers[reg::VTIMER_IRQ as usize],
            object.registers[reg::PTIMER_IRQ as usize],
        ];
        let outputs = if loaded {
            let (virt, phys) = vcpu::timer_controls();
            [live_output(virt), live_output(phys)]
        } else {
            [saved[0].output(now), saved[1].output(now)]
        };
        let intids = [
            self.guest_interrupts.virtual_timer,
            self.guest_interrupts.physical_timer,
        ];
        let mut pending = false;
        for i in 0..2 {
            let line = IrqLine {
                intid: intids[i],
                priority: (config[i] >> timer_irq::PRIORITY_SHIFT) as u8,
                group1: config[i] & timer_irq::GROUP1 != 0,
                level: true,
                high: outputs[i] && config[i] & timer_irq::ENABLED != 0,
            };
            pending = self.with_virtual_irqs(v, |irqs, lrs| irqs.set_line(line, lrs));
            if loaded {
                if outputs[i] {
                    self.gic.disable(intids[i]);
                } else {
                    self.gic.enable(intids[i]);
                }
            }
        }
        pending
    }

    /// Puts `v`'s virtual interface in the CPU (its EL1 registers, timers
    /// included, were just loaded) and takes over its timers from the
    /// kernel timer.
    pub(super) fn load_virtual_interrupts(&mut self, v: PhysAddr) {
        self.disarm_guest_timer(v);
        let object = self.vcpu_object(v);
        vgic::load(&object.interface, interface_control(&object.irqs));
        self.sync_timers(v, super::timer::now());
    }

    /// Saves `v`'s virtual interface (its EL1 registers, timers included,
    /// were just saved), stops its timers in the CPU and has the kernel
    /// timer watch them.
    pub(super) fn save_virtual_interrupts(&mut self, v: PhysAddr) {
        vcpu::stop_timers();
        self.gic.disable(self.guest_interrupts.virtual_timer);
        self.gic.disable(self.guest_interrupts.physical_timer);
        vgic::save(&mut self.vcpu_object(v).interface);
        // One reading of the clock for both: a timer whose condition is
        // met between two readings would be seen low by the first and not
        // watched by the second (it can no longer rise), and its tick lost.
        let now = super::timer::now();
        self.sync_timers(v, now);
        // A timer that rose since the kernel was entered had its PPI
        // pending here, not taken: the guest may have gone idle (`wfi`)
        // meanwhile, and only the kernel timer can still wake its thread.
        // Have it fire at once (`take_fired_guest_timer` wakes the thread).
        let risen = saved_timers(self.vcpu_object(v))
            .iter()
            .any(|t| t.output(now));
        self.arm_guest_timer(v, if risen { Some(now) } else { None }, now);
    }

    /// The loaded Vcpu `v` is being destroyed: nothing of it stays in the
    /// CPU, and the kernel timer forgets it.
    pub(super) fn discard_virtual_interrupts(&mut self, v: PhysAddr, loaded: bool) {
        if loaded {
            vcpu::stop_timers();
            self.gic.disable(self.guest_interrupts.virtual_timer);
            self.gic.disable(self.guest_interrupts.physical_timer);
            vgic::discard();
        }
        self.disarm_guest_timer(v);
    }

    /// Puts switched-out `v` on the kernel timer's watch list, due at
    /// `due` if given, else when the first of its timers that is low at
    /// physical count `now` rises, if one will (its lines were set as of
    /// the same `now`; the deadline may be past by the time the kernel
    /// timer is armed, which then fires at once).
    fn arm_guest_timer(&mut self, v: PhysAddr, due: Option<u64>, now: u64) {
        let head = self.armed_vcpus;
        let object = self.vcpu_object(v);
        let rises = saved_timers(object)
            .iter()
            .filter_map(|t| t.rises_at(now))
            .min();
        let deadline = due.or(rises).unwrap_or(u64::MAX);
        object.timer_deadline = deadline;
        if deadline != u64::MAX {
            object.next_armed = head;
            self.armed_vcpus = v;
        }
    }

    /// Takes `v` off the watch list, if it is on it.
    fn disarm_guest_timer(&mut self, v: PhysAddr) {
        let mut previous: Option<PhysAddr> = None;
        let mut at = self.armed_vcpus;
        while at.0 != 0 {
            let next = self.vcpu_object(at).next_armed;
            if at == v {
                match previous {
                    None => self.armed_vcpus = next,
                    Some(p) => self.vcpu_object(p).next_armed = next,
                }
                let object = self.vcpu_object(v);
                object.next_armed = PhysAddr(0);
                object.timer_deadline = u64::MAX;
                return;
            }
            previous = Some(at);
            at = next;
        }
    }

    /// The earliest physical count at which a switched-out guest's timer
    /// fires.
    pub fn next_guest_timer(&mut self) -> Option<u64> {
        let mut earliest = None::<u64>;
        let mut at = self.armed_vcpus;
        while at.0 != 0 {
            let object = self.vcpu_object(at);
            earliest =
                Some(earliest.map_or(object.timer_deadline, |e| e.min(object.timer_deadline)));
            at = object.next_armed;
        }
        earliest
    }

    /// Takes one switched-out Vcpu whose timer has fired by `now` off the
    /// watch list and raises its line; returns it and whether it has an
    /// interrupt pending. The caller repeats until `None`.
    pub fn take_fired_guest_timer(&mut self, now: u64) -> Option<(PhysAddr, bool)> {
        let mut at = self.armed_vcpus;
        while at.0 != 0 {
            let object = self.vcpu_object(at);
            if object.timer_deadline <= now {
                self.disarm_guest_timer(at);
                let pending = self.sync_timers(at, now);
                // The other timer may still be due later.
                self.arm_guest_timer(at, None, now);
                return Some((at, pending));
            }
            at = object.next_armed;
        }
        None
    }

    /// A loaded guest's timer PPI `intid` fired: returns the Vcpu if it
    /// now has an interrupt pending.
    pub fn guest_timer_fired(&mut self, intid: u32) -> Option<PhysAddr> {
        // Masked until the guest's line drops (`sync_timers` unmasks it).
        self.gic.disable(intid);
        let v = self.loaded_vcpu?;
        self.sync_timers(v, super::timer::now()).then_some(v)
    }

    /// The maintenance interrupt: list registers the guest ended (level
    /// lines are resampled, the timers' from the timers themselves) and
    /// free registers for waiting interrupts. Returns the loaded Vcpu if
    /// it has an interrupt pending.
    pub fn virtual_interface_maintenance(&mut self) -> Option<PhysAddr> {
        let v = self.loaded_vcpu?;
        let ended = vgic::ended_list_registers();
        let mut ended_ids = [u32::MAX; MAX_LIST_REGISTERS];
        let mut timer_ended = false;
        let timers = [
            self.guest_interrupts.virtual_timer,
            self.guest_interrupts.physical_timer,
        ];
        self.with_virtual_irqs(v, |_, lrs| {
            for (i, lr) in lrs.iter_mut().enumerate() {
                if ended & (1 << i) != 0 {
                    ended_ids[i] = lr.intid();
                    timer_ended |= timers.contains(&lr.intid());
                    *lr = ListRegister(0);
                }
            }
        });
        if timer_ended {
            self.sync_timers(v, super::timer::now());
        }
        let pending = self.with_virtual_irqs(v, |irqs, lrs| {
            for &id in ended_ids.iter().filter(|&&id| id != u32::MAX) {
                irqs.ended(id);
            }
            irqs.fill(lrs);
            irqs.anything_pending(lrs)
        });
        pending.then_some(v)
    }
}
