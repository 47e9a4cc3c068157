//! The kernel's run-time state and its reaction to each event.

use crate::arch::{self, KernelMachine, ThreadMode, power::PowerControl, timer};
use crate::cell::KernelCell;
use crate::kprintln;
use crate::trap::Event;
use skyscope_core::{
    Kernel, PhysAddr, fault::UserFault, machine::prelude::*, syscall::SyscallOutcome,
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

/// Everything the kernel knows at run time (the core first: see
/// `Kernel`'s layout).
#[repr(C)]
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
}

static STATE: KernelCell<Option<State>> = KernelCell::new(None);

/// Installs the kernel state at the end of boot.
pub fn install(state: State) {
    // SAFETY: called once from `kernel_main` before any exception can
    // reach the kernel state (interrupts are masked, no thread has run).
    unsafe { *STATE.get() = Some(state) };
}

/// Runs `f` with exclusive access to the kernel state.
#[inline(always)]
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
            // The common case first: a native thread.
            if s.fast_switch_native(t, true) {
                s.program_timer();
                if cfg!(feature = "dev") {
                    check_scheduler(s);
                }
                s.enter(t, ThreadMode::Native);
            }
            match s.switch_to(t) {
                Ok(guest) => {
                    s.program_timer();
                    if cfg!(feature = "dev") {
                        check_scheduler(s);
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

/// The IPC fastpath for `Call`, tried before anything else with the
/// capability address and message info from the syscall's registers (all
/// of them are saved in the current thread's context too): on success it
/// enters the thread to run next and does not return. It returns (having
/// changed nothing) if the fastpath does not apply.
#[inline(always)]
pub fn fast_call(cptr: u64, info: u64) {
    // SAFETY: as for `with_state`; the fastpath is entered only from a
    // user thread's `svc`, and user threads run only after `install`.
    let s = crate::cell::in_register(unsafe { STATE.get().as_mut().unwrap_unchecked() });
    if let Some(switch) = s.core.fastpath_call(cptr, info) {
        // A native thread's `svc`: no guest ran last.
        fast_exit(s, switch, false)
    }
}

/// [`fast_call`] for `ReplyRecv`, with the reply capability's address.
#[inline(always)]
pub fn fast_reply_recv(cptr: u64, info: u64, reply_cptr: u64) {
    // SAFETY: as in `fast_call`.
    let s = crate::cell::in_register(unsafe { STATE.get().as_mut().unwrap_unchecked() });
    if let Some(switch) = s.core.fastpath_reply_recv(cptr, info, reply_cptr) {
        fast_exit(s, switch, false)
    }
}

/// The fault fastpath, tried first on a thread's fault or a guest's exit
/// with its message (`label`, `words`): on success it enters the handler
/// waiting for it and does not return. It returns `false` (having changed
/// nothing) if the fastpath does not apply.
pub fn fast_fault(label: u64, words: [u64; skyscope_abi::fault::WORDS]) -> bool {
    // SAFETY: as in `fast_call`: only user threads fault, and they run only
    // after `install`.
    let s = crate::cell::in_register(unsafe { STATE.get().as_mut().unwrap_unchecked() });
    let Some(switch) = s.core.fastpath_fault(label, words) else {
        return false;
    };
    fast_exit(s, switch, true)
}

/// Enters the thread a fastpath switched to.
#[inline(always)]
fn fast_exit(s: &mut State, switch: skyscope_core::fastpath::FastSwitch, from_guest: bool) -> ! {
    // The common case: no budget to account for, a native thread.
    if !switch.budget {
        if cfg!(feature = "dev") {
            check_scheduler(s);
        }
        if s.fast_switch_native(switch.next, from_guest) {
            s.enter(switch.next, ThreadMode::Native);
        }
    }
    finish_fastpath(s, switch.next, switch.budget)
}

/// The dev kernel's check of the scheduler's invariants before a return
/// to user space.
#[inline(never)]
fn check_scheduler(s: &mut State) {
    if let Err(violation) = s.core.check_scheduler() {
        panic!("scheduler invariant violated: {violation}");
    }
}

/// The rest of a fastpath exit that is not a native thread's: a guest
/// whose Vcpu is in the CPU, the timer when a budget moved its deadline,
/// and anything that needs the general switch.
#[inline(never)]
fn finish_fastpath(s: &mut State, next: PhysAddr, budget: bool) -> ! {
    if !budget && s.fast_switch_guest(next) {
        s.enter(next, ThreadMode::Guest);
    }
    // Loading another Vcpu's state changes which guest timers the kernel
    // watches, so the deadline may move then too.
    let vcpu = s.core.machine.tcb(next).vcpu;
    let reload = vcpu.0 != 0 && s.core.machine.loaded_vcpu != Some(vcpu);
    if let Ok(mode) = s.switch_to(next) {
        if budget || reload {
            s.program_timer();
        }
        if cfg!(feature = "dev") {
            check_scheduler(s);
        }
        s.enter(next, mode);
    }
    // Cannot run: the general exit path deals with it.
    crate::trap::continue_with(Next::Resume)
}

impl State {
    /// Makes the CPU ready to run `t` (its address space, IPC buffer, FP
    /// state, Vcpu); returns how it runs.
    #[inline(always)]
    fn switch_to(&mut self, t: PhysAddr) -> Result<ThreadMode, &'static str> {
        let space = self
            .core
            .thread_space(t)
            .map_err(|_| "no address space that fits it")?;
        self.core.remember_space(t, space);
        let tcb = self.core.machine.tcb(t);
        let (vcpu, ipc_buffer) = (tcb.vcpu, tcb.ipc_buffer);
        self.core.machine.switch_to(t, space, vcpu, ipc_buffer)
    }

    /// [`State::switch_to`] for the common case, a native thread: its
    /// address space (as `thread_space` found it when the thread last went
    /// through `switch_to`, if nothing could have changed it since), IPC-buffer
    /// pointer and FP/SIMD trap (and, if a guest may have run last —
    /// `from_guest` — what of its state the CPU still holds saved). `false`, having changed nothing,
    /// for anything else (a Vcpu's thread, a space that does not check
    /// out), which `switch_to` handles.
    #[inline(always)]
    fn fast_switch_native(&mut self, t: PhysAddr, from_guest: bool) -> bool {
        let Some(space) = self.core.native_space(t) else {
            return false;
        };
        let machine = &mut self.core.machine;
        // A native thread that entered the kernel (with `from_guest`
        // false) was switched to after the last guest, which saved it.
        debug_assert!(from_guest || machine.in_guest.is_none());
        if from_guest {
            machine.leave_guest();
        }
        let ttbr0 = arch::mmu::user_ttbr(space.root, space.id);
        if machine.active_ttbr0 != ttbr0 {
            arch::mmu::activate_user_space(ttbr0);
            machine.active_ttbr0 = ttbr0;
        }
        arch::set_ipc_buffer_pointer(machine.tcb(t).ipc_buffer);
        machine.set_fp_access(t);
        true
    }

    /// [`State::switch_to`] for a Vcpu's thread `t` whose EL1 state is
    /// already in the CPU (its Vcpu ran last, or a native thread since):
    /// its GuestSpace (checked as `thread_space` checks it) and FP/SIMD
    /// state, as `KernelMachine::switch_to` makes them current. `false`,
    /// having changed nothing, for anything else.
    #[inline(always)]
    fn fast_switch_guest(&mut self, t: PhysAddr) -> bool {
        let vcpu = self.core.machine.tcb(t).vcpu;
        if vcpu.0 == 0 || self.core.machine.loaded_vcpu != Some(vcpu) {
            return false;
        }
        match self.core.thread_space(t) {
            Ok(space) => matches!(
                self.core.machine.switch_to(t, space, vcpu, 0),
                Ok(ThreadMode::Guest)
            ),
            Err(_) => false,
        }
    }

    /// Enters thread `t` (already switched to).
    #[inline(always)]
    fn enter(&mut self, t: PhysAddr, mode: ThreadMode) -> ! {
        let machine = &mut self.core.machine;
        let context: *mut arch::UserContext = &mut machine.tcb_mut(t).context;
        // SAFETY: the context lives in the TCB, which outlives the return
        // to the thread; the machine only reads its guest configuration.
        machine.enter(unsafe { &mut *context }, mode)
    }

    /// The current thread touched the FP/SIMD unit while another thread's
    /// state was loaded: switch the unit's contents over.
    fn take_fp(&mut self) {
        if let Some(t) = self.core.current {
            self.core.machine.load_fp(t);
        }
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
        let guest = self.core.machine.next_guest_timer().unwrap_or(u64::MAX);
        let deadline = self.next_tick.min(budget).min(guest);
        if deadline != self.armed_at {
            timer::arm_at(deadline);
            self.armed_at = deadline;
        }
    }

    /// Reacts to an event from the current thread.
    pub fn handle(&mut self, event: Event) -> Next {
        let now = timer::now();
        let entered = self.core.current;
        self.core.charge(now);
        if let (Event::Syscall { .. }, Some(t)) = (event, entered)
            && self.core.current != Some(t)
        {
            // Its budget ran out as it entered: nothing is done now, and
            // it issues the syscall again when it next runs (every other
            // event retries its trapping instruction by itself).
            self.core.machine.tcb_mut(t).context.restart_syscall();
            self.core.release_due(now);
            return Next::Resume;
        }
        self.core.release_due(now);
        match event {
            Event::Syscall { number } => match self.core.syscall(number) {
                SyscallOutcome::Done => Next::Resume,
                SyscallOutcome::PowerOff(status) => {
                    if let Some(t) = self.core.current {
                        kprintln!(
                            "kernel: power off requested by thread {} with status {}",
                            self.thread_name(t),
                            status
                        );
                    }
                    self.power.shutdown(status)
                }
            },
            Event::Interrupt => {
                self.interrupt();
                Next::Resume
            }
            Event::WaitForInterrupt => {
                if let Some(t) = self.core.current {
                    self.core.machine.tcb_mut(t).context.skip_instruction();
                    let vcpu = self.core.machine.tcb(t).vcpu;
                    if vcpu.0 != 0 {
                        // A guest's `wfi` completes at once if an interrupt
                        // is pending for it; otherwise its thread stops
                        // until one is (injected, or its timer fires).
                        if !self.core.machine.virtual_irq_pending(vcpu) {
                            self.core.idle_in_guest(t);
                        }
                        return Next::Resume;
                    }
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
            Event::GuestFeatureRead { index, rt } => {
                if let Some(t) = self.core.current {
                    let value = self.core.machine.guest_ids.by_index(index);
                    let context = &mut self.core.machine.tcb_mut(t).context;
                    if rt < 31 {
                        context.set_register(
                            skyscope_abi::invocation::REG_X0 + usize::from(rt),
                            value,
                        );
                    }
                    context.skip_instruction();
                }
                Next::Resume
            }
            Event::GuestExit(exit) => {
                if let Some(t) = self.core.current {
                    if !self.core.has_fault_handler(t) {
                        kprintln!(
                            "vcpu: thread {} guest exit ({:?}) at pc {:#x}, address {:#x} \
                             (syndrome {:#x}); no VMM (fault handler), thread stopped",
                            self.thread_name(t),
                            exit.kind,
                            exit.pc,
                            exit.address,
                            exit.syndrome
                        );
                    }
                    self.core
                        .deliver_fault(t, skyscope_abi::fault::GUEST_EXIT, exit.words());
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
                    self.core.machine.ticks += 1;
                    self.next_tick = now + self.tick_interval;
                    // Round robin among threads of the running thread's priority.
                    self.core.rotate_current();
                }
                self.core.charge(now);
                self.core.release_due(now);
                if crate::console::input_left_in_fifo() && crate::console::receive_input() {
                    self.core.console_input_arrived();
                }
                while let Some((vcpu, pending)) = self.core.machine.take_fired_guest_timer(now) {
                    if pending {
                        self.core.wake_vcpu(vcpu);
                    }
                }
                // The timer line stays asserted until the compare value
                // moves past the counter: re-arm before the end of interrupt.
                self.armed_at = 0;
                self.program_timer();
            } else if intid == self.core.machine.guest_interrupts.maintenance {
                if let Some(vcpu) = self.core.machine.virtual_interface_maintenance() {
                    self.core.wake_vcpu(vcpu);
                }
            } else if intid == self.core.machine.guest_interrupts.virtual_timer
                || intid == self.core.machine.guest_interrupts.physical_timer
            {
                if let Some(vcpu) = self.core.machine.guest_timer_fired(intid) {
                    self.core.wake_vcpu(vcpu);
                }
            } else if Some(intid) == crate::console::input_intid() {
                if crate::console::receive_input() {
                    self.core.console_input_arrived();
                }
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
        if !self.core.has_fault_handler(t) {
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
