//! The kernel's run-time state and its reaction to each event.

use crate::arch::{self, power::PowerControl, timer};
use crate::cell::KernelCell;
use crate::machine::KernelMachine;
use crate::trap::{Event, UserFault};
use crate::{kprintln, syscall};
use skyscope_core::{
    Kernel, PhysAddr,
    machine::{Machine, ThreadContext},
};

/// What to do after handling an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run the chosen thread (or idle if none can run).
    Resume,
    /// Wait for an interrupt first (the thread executed `wfi` and nothing
    /// else is ready).
    WaitThenResume,
}

/// Everything the kernel knows at run time.
pub struct State {
    /// The capability kernel: objects, CSpaces, scheduler.
    pub core: Kernel<KernelMachine>,
    /// How to end the machine.
    pub power: PowerControl,
    /// Counter ticks between kernel timer interrupts.
    pub tick_interval: u64,
    /// Counter value of the next tick.
    pub next_tick: u64,
    /// Deadline the timer is armed for.
    pub armed_at: u64,
    /// The address space in TTBR0 (top-level table, ASID).
    pub active_space: (PhysAddr, u16),
    /// Whether EL0 may use the FP/SIMD unit without trapping.
    pub fp_enabled: bool,
    /// Kernel timer interrupts taken since boot.
    pub ticks: u64,
    /// What running guests needs of this CPU.
    pub guest: arch::vcpu::GuestSupport,
}

static STATE: KernelCell<Option<State>> = KernelCell::new(None);

/// Installs the kernel state at the end of boot.
pub fn install(state: State) {
    // SAFETY: called once from `kernel_main` before any exception can
    // reach the kernel state (interrupts are masked, no thread has run).
    unsafe { *STATE.get() = Some(state) };
}

/// Runs `f` with exclusive access to the kernel state.
pub fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    // SAFETY: every caller is a kernel entry point (trap, idle IRQ) or the
    // resume path, none of which nest: the kernel is not reentrant, runs
    // with IRQs masked, and `wait_for_interrupt` is only called outside
    // `with_state`. The borrow ends when `f` returns (or, for
    // `enter_current_thread`, is abandoned at the return to EL0).
    let state = unsafe { STATE.get() };
    match state {
        Some(state) => f(state),
        None => panic!("kernel entered before initialisation finished"),
    }
}

/// Chooses a thread and enters it; returns if nothing can run.
pub fn enter_current_thread() {
    with_state(|s| {
        while let Some(t) = s.core.schedule() {
            match s.switch_to(t) {
                Ok(guest) => {
                    s.program_timer();
                    if cfg!(feature = "dev")
                        && let Err(violation) = s.core.check_scheduler()
                    {
                        panic!("scheduler invariant violated: {violation}");
                    }
                    s.enter(t, guest);
                }
                Err(why) => {
                    kprintln!("kernel: thread {t} cannot run ({why}); suspended");
                    s.core.suspend(t);
                }
            }
        }
        s.program_timer();
    });
}

/// The IPC fastpath, tried before anything else on `Call` and `ReplyRecv`:
/// on success it enters the thread to run next and does not return. It
/// returns `false` (having changed nothing) if the fast path does not
/// apply, and `true` if the syscall was done but the next thread could not
/// be entered directly (the caller then takes the general exit path).
pub fn try_fastpath(number: u64) -> bool {
    with_state(|s| {
        if !s.core.fastpath(number) {
            return false;
        }
        if let Some(t) = s.core.current
            && let Ok(guest) = s.switch_to(t)
        {
            s.enter(t, guest);
        }
        true
    })
}

impl State {
    /// Makes `t`'s address space and IPC buffer pointer current, and lets
    /// it use the FP/SIMD unit directly only if its state is loaded there.
    /// A thread running as a Vcpu gets its GuestSpace, its EL1 state and
    /// (eagerly: a guest's FP use cannot be trapped without trapping the
    /// kernel's own save and restore) its FP/SIMD state. Returns whether
    /// `t` is a guest.
    fn switch_to(&mut self, t: PhysAddr) -> Result<bool, &'static str> {
        use skyscope_core::machine::SpaceKind;
        let space = self
            .core
            .thread_space(t)
            .map_err(|_| "no address space that fits it")?;
        if let Some(v) = self.core.machine.in_guest.take() {
            arch::vcpu::save_tpidrro(&mut self.core.machine.vcpu_object(v).registers);
        }
        match space.kind {
            SpaceKind::User => {
                if self.active_space != (space.root, space.id) {
                    arch::mmu::activate_user_space(space.root, space.id);
                    self.active_space = (space.root, space.id);
                }
                arch::set_ipc_buffer_pointer(self.core.machine.tcb(t).ipc_buffer);
                let owns_fp = self.core.machine.fp_owner == Some(t);
                if owns_fp != self.fp_enabled {
                    arch::set_fp_trap(!owns_fp);
                    self.fp_enabled = owns_fp;
                }
                Ok(false)
            }
            SpaceKind::Guest => {
                if space.id > self.guest.max_vmid {
                    return Err("its GuestSpace's VMID is beyond what this CPU tags");
                }
                let v = self.core.machine.tcb(t).vcpu;
                self.core.machine.load_vcpu(v);
                let tpidrro = self.core.machine.vcpu_object(v).registers
                    [skyscope_abi::vcpu::aarch64::TPIDRRO_EL0 as usize];
                arch::vcpu::activate_guest_space(space.root, space.id, tpidrro);
                self.core.machine.in_guest = Some(v);
                self.load_fp(t);
                Ok(true)
            }
        }
    }

    /// Enters thread `t` (already switched to), as a guest or natively.
    fn enter(&mut self, t: PhysAddr, guest: bool) -> ! {
        let support = self.guest;
        let context = &mut self.core.machine.tcb_mut(t).context;
        if guest {
            arch::vcpu::enter_guest(context, &support)
        } else {
            arch::enter_user(context)
        }
    }

    /// The current thread touched the FP/SIMD unit while another thread's
    /// state was loaded: switch the unit's contents over (lazily, so
    /// threads that never use FP never pay for it).
    fn take_fp(&mut self) {
        if let Some(t) = self.core.current {
            self.load_fp(t);
        }
    }

    /// Puts `t`'s FP/SIMD state in the unit and stops trapping its use.
    fn load_fp(&mut self, t: PhysAddr) {
        let m = &mut self.core.machine;
        if m.fp_owner != Some(t) {
            arch::set_fp_trap(false); // the kernel itself may now move FP registers
            if let Some(owner) = m.fp_owner {
                m.tcb_mut(owner).context.fp.save();
            }
            m.tcb(t).context.fp.restore();
            m.fp_owner = Some(t);
        }
        arch::set_fp_trap(false);
        self.fp_enabled = true;
    }

    /// Arms the timer for the next tick or budget event, whichever is first
    /// (the hardware is only touched when the deadline changes).
    pub fn program_timer(&mut self) {
        let now = if self.core.release_pending() || self.core.current_constrained() {
            timer::now()
        } else {
            0
        };
        let budget = self.core.next_budget_event(now).unwrap_or(u64::MAX);
        let deadline = self.next_tick.min(budget);
        if deadline != self.armed_at {
            timer::arm_at(deadline);
            self.armed_at = deadline;
        }
    }

    /// Reacts to an event from the current thread.
    pub fn handle(&mut self, event: Event) -> Next {
        let now = timer::now();
        self.core.charge(now);
        self.core.release_due(now);
        match event {
            Event::Syscall => syscall::handle(self),
            Event::Interrupt => {
                self.interrupt();
                Next::Resume
            }
            Event::WaitForInterrupt => {
                if let Some(t) = self.core.current {
                    self.core.machine.tcb_mut(t).context.skip_instruction();
                }
                if self.core.scheduler.peek().is_some() {
                    self.core.rotate_current();
                    Next::Resume
                } else {
                    Next::WaitThenResume
                }
            }
            Event::Yield => {
                if let Some(t) = self.core.current {
                    self.core.machine.tcb_mut(t).context.skip_instruction();
                }
                self.core.rotate_current();
                Next::Resume
            }
            Event::Fault(fault) => {
                self.fault(fault);
                Next::Resume
            }
            Event::FpAccess => {
                self.take_fp();
                Next::Resume
            }
            Event::GuestExit(exit) => {
                if let Some(t) = self.core.current {
                    if !crate::syscall::has_fault_handler(self, t) {
                        kprintln!(
                            "vcpu: thread {} {}; no VMM (fault handler), thread stopped",
                            self.thread_name(t),
                            exit
                        );
                    }
                    let (label, words) = exit.message();
                    self.core.deliver_fault(t, label, words);
                }
                Next::Resume
            }
        }
    }

    /// Handles every pending interrupt.
    pub fn interrupt(&mut self) {
        while let Some(intid) = self.core.machine.gic.acknowledge() {
            if intid == self.core.machine.timer_intid {
                let now = timer::now();
                if now >= self.next_tick {
                    self.ticks += 1;
                    self.next_tick = now + self.tick_interval;
                    // Round robin among threads of the running thread's priority.
                    self.core.rotate_current();
                }
                self.core.charge(now);
                self.core.release_due(now);
                // The timer line stays asserted until the compare value
                // moves past the counter: re-arm before the end of interrupt.
                self.armed_at = 0;
                self.program_timer();
            } else if !self.core.handle_irq(intid as u16) {
                kprintln!("kernel: interrupt {intid} has no handler, disabled");
                self.core.machine.gic.disable(intid);
            }
            self.core.machine.gic.end_of_interrupt(intid);
        }
    }

    fn fault(&mut self, fault: UserFault) {
        let Some(t) = self.core.current else { return };
        let (label, words) = fault.message();
        if !crate::syscall::has_fault_handler(self, t) {
            kprintln!(
                "fault: thread {} {}; no fault handler, thread stopped",
                self.thread_name(t),
                fault
            );
        }
        self.core.deliver_fault(t, label, words);
    }

    /// A name for diagnostics: `'root'` for the root task, else the TCB address.
    pub fn thread_name(&self, t: PhysAddr) -> ThreadName {
        ThreadName(t, Some(t) == self.root_tcb())
    }

    fn root_tcb(&self) -> Option<PhysAddr> {
        ROOT_TCB.get()
    }
}

/// The root task's TCB, for diagnostics.
pub static ROOT_TCB: RootTcb = RootTcb(core::sync::atomic::AtomicU64::new(0));

/// Remembers which TCB is the root task's.
pub struct RootTcb(core::sync::atomic::AtomicU64);

impl RootTcb {
    /// Records the root task's TCB.
    pub fn set(&self, t: PhysAddr) {
        self.0.store(t.0, core::sync::atomic::Ordering::Relaxed);
    }

    /// The root task's TCB, once set.
    pub fn get(&self) -> Option<PhysAddr> {
        match self.0.load(core::sync::atomic::Ordering::Relaxed) {
            0 => None,
            t => Some(PhysAddr(t)),
        }
    }
}

/// Formats a thread for messages.
pub struct ThreadName(PhysAddr, bool);

impl core::fmt::Display for ThreadName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.1 {
            write!(f, "'root'")
        } else {
            write!(f, "{:#x}", self.0.0)
        }
    }
}
