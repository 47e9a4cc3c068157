//! The kernel's state and its reaction to each event.

use crate::arch::{self, PageTables, gicv3::Gic, power::PowerControl, timer};
use crate::cell::KernelCell;
use crate::thread::{Thread, ThreadState};
use crate::trap::{Event, UserFault};
use crate::{console, kprintln};
use skyscope_abi::{Error, Syscall, syscall::DEBUG_WRITE_MAX};
use skyscope_core::VirtAddr;

/// What to do after handling an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Resume the current thread (or idle if it cannot run).
    Resume,
    /// Wait for an interrupt, then resume.
    WaitThenResume,
}

/// Everything the kernel knows at run time.
pub struct Kernel {
    /// How to end the machine.
    pub power: PowerControl,
    /// The interrupt controller.
    pub gic: Gic,
    /// INTID of the kernel tick.
    pub timer_intid: u32,
    /// Counter ticks between kernel timer interrupts.
    pub tick_interval: u64,
    /// Kernel timer interrupts taken since boot.
    pub ticks: u64,
    /// The running thread (the root task; the only thread for now).
    pub thread: Thread,
}

static KERNEL: KernelCell<Option<Kernel>> = KernelCell::new(None);

/// Installs the kernel state at the end of boot.
pub fn install(kernel: Kernel) {
    // SAFETY: called once from `kernel_main` before any exception can
    // reach the kernel state (interrupts are masked, no thread has run).
    unsafe { *KERNEL.get() = Some(kernel) };
}

/// Runs `f` with exclusive access to the kernel state.
pub fn with_kernel<R>(f: impl FnOnce(&mut Kernel) -> R) -> R {
    // SAFETY: every caller is a kernel entry point (trap, idle IRQ) or the
    // resume path, none of which nest: the kernel is not reentrant, runs
    // with IRQs masked, and `wait_for_interrupt` is only called outside
    // `with_kernel`. The borrow ends when `f` returns (or, for
    // `enter_current_thread`, is abandoned at the return to EL0).
    let state = unsafe { KERNEL.get() };
    match state {
        Some(kernel) => f(kernel),
        None => panic!("kernel entered before initialisation finished"),
    }
}

/// Enters the current thread if it can run; returns if nothing can.
pub fn enter_current_thread() {
    with_kernel(|k| {
        if k.thread.state == ThreadState::Runnable {
            arch::mmu::activate_user_tables(&k.thread.address_space, k.thread.asid);
            arch::enter_user(&mut k.thread.context);
        }
    });
}

impl Kernel {
    /// Reacts to an event from the current thread.
    pub fn handle(&mut self, event: Event) -> Next {
        match event {
            Event::Syscall => self.syscall(),
            Event::Interrupt => {
                self.interrupt();
                Next::Resume
            }
            Event::WaitForInterrupt => {
                self.thread.context.skip_instruction();
                Next::WaitThenResume
            }
            Event::Yield => {
                self.thread.context.skip_instruction();
                Next::Resume
            }
            Event::Fault(fault) => {
                self.fault(fault);
                Next::Resume
            }
        }
    }

    /// Handles every pending interrupt.
    pub fn interrupt(&mut self) {
        while let Some(intid) = self.gic.acknowledge() {
            if intid == self.timer_intid {
                self.ticks += 1;
                timer::arm(self.tick_interval);
            } else {
                // No driver owns this line yet: silence it rather than storm.
                kprintln!("kernel: unexpected interrupt {intid}, disabled");
                self.gic.disable(intid);
            }
            self.gic.end_of_interrupt(intid);
        }
    }

    fn fault(&mut self, fault: UserFault) {
        let t = &mut self.thread;
        kprintln!(
            "fault: thread '{}' {}; no fault handler, thread stopped",
            t.name,
            fault
        );
        t.state = ThreadState::Inactive;
    }

    fn syscall(&mut self) -> Next {
        let context = &self.thread.context;
        let (number, a0, a1) = (context.syscall_number(), context.arg(0), context.arg(1));
        let result = match Syscall::from_number(number) {
            None => Err(Error::InvalidSyscall),
            Some(Syscall::Yield) => Ok(0),
            Some(Syscall::DebugWrite) => self.debug_write(a0, a1).map(|()| 0),
            Some(Syscall::DebugTimerTicks) => Ok(self.ticks),
            Some(Syscall::DebugShutdown) => {
                kprintln!(
                    "kernel: shutdown requested by '{}' with status {}",
                    self.thread.name,
                    a0
                );
                self.power.shutdown(a0)
            }
        };
        let value = match result {
            Ok(v) => v,
            Err(e) => e.code(),
        };
        self.thread.context.set_result(0, value);
        Next::Resume
    }

    /// Copies `length` bytes at user address `address` to the console,
    /// checking each page is mapped readable for the thread.
    fn debug_write(&mut self, address: u64, length: u64) -> Result<(), Error> {
        if length > DEBUG_WRITE_MAX as u64 {
            return Err(Error::RangeError);
        }
        let end = address
            .checked_add(length)
            .ok_or(Error::InvalidUserBuffer)?;
        let mut buffer = [0u8; DEBUG_WRITE_MAX];
        copy_from_user(
            &self.thread.address_space,
            address,
            &mut buffer[..length as usize],
        )?;
        debug_assert!(end >= address);
        console::write_bytes(&buffer[..length as usize]);
        Ok(())
    }
}

/// Copies user memory at `address` into `out`, page by page, through the
/// physmap after checking the thread's own page tables allow EL0 to read.
pub fn copy_from_user(space: &PageTables, address: u64, out: &mut [u8]) -> Result<(), Error> {
    let mut done = 0;
    while done < out.len() {
        let va = address
            .checked_add(done as u64)
            .ok_or(Error::InvalidUserBuffer)?;
        let pa = space
            .user_access(VirtAddr(va), false)
            .ok_or(Error::InvalidUserBuffer)?;
        let in_page = (skyscope_core::addr::PAGE_SIZE - (va & 0xfff)) as usize;
        let n = in_page.min(out.len() - done);
        arch::copy_from_phys(pa, &mut out[done..done + n]);
        done += n;
    }
    Ok(())
}
