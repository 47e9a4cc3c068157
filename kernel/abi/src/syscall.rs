//! Syscall numbers and the safe user-space wrappers that issue them.
//!
//! Only syscalls the kernel implements are listed; the kernel answers any
//! other number with [`Error::InvalidSyscall`].

#[cfg(any(target_arch = "aarch64", doc))]
use crate::Error;

/// A syscall number, passed in `x7` (see [`crate::regs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Syscall {
    /// Invoke the capability at `x0` with the message described by `x1`
    /// (words in `x2..x5` and the IPC buffer), and wait for the answer.
    /// On a kernel object the kernel answers at once (reply label 0 or an
    /// [`Error`] code); on an endpoint the message goes to a receiver and
    /// the caller waits for its reply (the endpoint capability needs WRITE
    /// and GRANT or GRANT_REPLY).
    Call = 1,
    /// Reply through the reply object at `x6`, then receive on `x0` (as
    /// `Recv`) in one trap: the server loop's only syscall.
    ReplyRecv = 2,
    /// Send the message to the endpoint at `x0`, waiting until a receiver
    /// takes it; on a notification, signal it.
    Send = 3,
    /// As `Send`, but drop the message if no receiver is waiting.
    NBSend = 4,
    /// Receive on the endpoint at `x0` (reply object at `x6`, 0 for none),
    /// waiting for a sender; on a notification, wait for a signal. Out:
    /// badge (or notification word) in `x0`, message info in `x1`, words in
    /// `x2..x5` and the IPC buffer.
    Recv = 5,
    /// As `Recv`, but return `WouldBlock` in `x6` if nothing is there.
    NBRecv = 6,
    /// Reply through the reply object at `x6` with the message in `x1..x5`.
    Reply = 7,
    /// Give up the rest of the current time slice to threads of equal
    /// priority. Always succeeds.
    Yield = 8,
    /// Write `x2` bytes at user address `x1` to the kernel console, with
    /// the console capability (WRITE) at `x0`. Returns 0 or an error in
    /// `x0` (the buffer is not mapped readable, the capability is wrong).
    ConsoleWrite = 0x100,
    /// Power the machine off with the power-control capability at `x0`.
    /// `x1 = 0` reports success to the host (the emulator's exit status),
    /// anything else failure. Returns only with an error in `x0`.
    PowerOff = 0x101,
    /// Debug (capability at `x0`): the number of kernel timer interrupts
    /// taken since boot.
    DebugTimerTicks = 0x102,
    /// Debug (capability at `x0`): `x1 = 0` turns the IPC fastpath off, 1
    /// on; returns how many syscalls the fastpath has completed since boot.
    DebugFastpath = 0x103,
    /// Debug (capability at `x0`): check the kernel's structural invariants
    /// over everything reachable from the root task's CSpace; returns 0, or
    /// 1 after printing the first violation.
    DebugCheckInvariants = 0x104,
    /// Debug (capability at `x0`): make the next guest exit find a
    /// physical SError pending, as if the guest had caused one (QEMU's
    /// TCG never raises physical SErrors; this exercises everything the
    /// kernel does after the hardware reports one).
    DebugInjectGuestSError = 0x105,
    /// Take up to `x1` (at most [`CONSOLE_READ_MAX`]) bytes the user
    /// typed, with the console capability (READ) at `x0`. Returns 0 or an
    /// error in `x0`, the count in `x1` (0 when nothing is waiting: it
    /// never blocks; wait on the notification set with `ConsoleNotify`),
    /// the bytes in `x2..x5`, little-endian, and how many bytes are still
    /// waiting in `x6` (so `x1 = 0` only looks). Registers, not a user
    /// buffer: the kernel never writes user memory for this.
    ConsoleRead = 0x106,
    /// With the console capability (READ) at `x0`, have the kernel signal
    /// the notification capability at `x1` (WRITE; its badge is the
    /// signal) whenever input arrives; `x1 = 0` stops it. One listener at
    /// a time: a new one replaces the old.
    ConsoleNotify = 0x107,
}

impl Syscall {
    /// Every syscall, for decoding.
    pub const ALL: [Syscall; 16] = [
        Syscall::Call,
        Syscall::ReplyRecv,
        Syscall::Send,
        Syscall::NBSend,
        Syscall::Recv,
        Syscall::NBRecv,
        Syscall::Reply,
        Syscall::Yield,
        Syscall::ConsoleWrite,
        Syscall::PowerOff,
        Syscall::DebugTimerTicks,
        Syscall::DebugFastpath,
        Syscall::DebugCheckInvariants,
        Syscall::DebugInjectGuestSError,
        Syscall::ConsoleRead,
        Syscall::ConsoleNotify,
    ];

    /// Decodes a syscall number.
    pub fn from_number(n: u64) -> Option<Syscall> {
        Syscall::ALL.into_iter().find(|s| *s as u64 == n)
    }
}

/// Longest buffer [`console_write`] passes in one trap; longer writes are split.
pub const CONSOLE_WRITE_MAX: usize = 4096;

impl Syscall {
    /// Whether this syscall needs the debug capability (and does not
    /// exist in the `hardened` kernel).
    pub const fn is_debug(self) -> bool {
        matches!(
            self,
            Syscall::DebugTimerTicks
                | Syscall::DebugFastpath
                | Syscall::DebugCheckInvariants
                | Syscall::DebugInjectGuestSError
        )
    }
}

#[cfg(target_arch = "aarch64")]
pub(crate) mod imp {
    use super::Syscall;

    /// Issues `svc #0` with up to two argument words; returns `x0, x1`.
    ///
    /// The kernel may overwrite `x0..x6` (results and message registers) and
    /// preserves every other register.
    #[inline(always)]
    pub fn raw2(number: Syscall, a0: u64, a1: u64) -> (u64, u64) {
        let r0: u64;
        let r1: u64;
        // SAFETY: `svc` traps into the kernel, which only touches the
        // registers declared here and user memory the arguments name, after
        // checking it is mapped for this thread.
        unsafe {
            core::arch::asm!(
                "svc #0",
                inlateout("x0") a0 => r0,
                inlateout("x1") a1 => r1,
                lateout("x2") _, lateout("x3") _, lateout("x4") _,
                lateout("x5") _, lateout("x6") _,
                in("x7") number as u64,
                options(nostack),
            );
        }
        (r0, r1)
    }

    /// Issues `svc #0` with three argument words; returns `x0`.
    #[inline(always)]
    pub fn raw3(number: Syscall, a0: u64, a1: u64, a2: u64) -> u64 {
        let r0: u64;
        // SAFETY: as in `raw2`.
        unsafe {
            core::arch::asm!(
                "svc #0",
                inlateout("x0") a0 => r0,
                inlateout("x1") a1 => _,
                inlateout("x2") a2 => _,
                lateout("x3") _, lateout("x4") _,
                lateout("x5") _, lateout("x6") _,
                in("x7") number as u64,
                options(nostack),
            );
        }
        r0
    }

    /// Any syscall with the full register convention: `x0..x6` in and out.
    #[inline(always)]
    pub fn full(number: Syscall, regs: [u64; 7]) -> [u64; 7] {
        let [mut x0, mut x1, mut x2, mut x3, mut x4, mut x5, mut x6] = regs;
        // SAFETY: as in `raw2`; the kernel touches only these registers and
        // this thread's IPC buffer, which it reaches through its own mapping.
        unsafe {
            core::arch::asm!(
                "svc #0",
                inlateout("x0") x0,
                inlateout("x1") x1,
                inlateout("x2") x2,
                inlateout("x3") x3,
                inlateout("x4") x4,
                inlateout("x5") x5,
                inlateout("x6") x6,
                in("x7") number as u64,
                options(nostack),
            );
        }
        [x0, x1, x2, x3, x4, x5, x6]
    }

    /// `Call`: the capability address, message info and four message
    /// registers in; the reply's info and four message registers out.
    #[inline(always)]
    pub fn call(cptr: u64, info: u64, mrs: [u64; 4]) -> (u64, [u64; 4]) {
        let (mut x1, mut x2, mut x3, mut x4, mut x5) = (info, mrs[0], mrs[1], mrs[2], mrs[3]);
        // SAFETY: as in `raw2`; the kernel reads this thread's IPC buffer
        // through its own mapping of the buffer's frame, never through
        // pointers passed here.
        unsafe {
            core::arch::asm!(
                "svc #0",
                inlateout("x0") cptr => _,
                inlateout("x1") x1,
                inlateout("x2") x2,
                inlateout("x3") x3,
                inlateout("x4") x4,
                inlateout("x5") x5,
                lateout("x6") _,
                in("x7") Syscall::Call as u64,
                options(nostack),
            );
        }
        (x1, [x2, x3, x4, x5])
    }
}

/// Yields the processor to another ready thread of the same priority.
#[cfg(target_arch = "aarch64")]
pub fn yield_now() {
    imp::raw2(Syscall::Yield, 0, 0);
}

/// Waits for an interrupt: the kernel traps `wfi` at EL0 and runs other
/// threads or idles until an interrupt arrives, then resumes this thread.
#[cfg(target_arch = "aarch64")]
pub fn wait_for_interrupt() {
    // SAFETY: `wfi` has no effect on memory; at EL0 it traps to the kernel.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
}

/// Reads the architectural virtual counter (CNTVCT_EL0), which the kernel
/// lets user code read; its frequency is in the boot info.
#[cfg(target_arch = "aarch64")]
pub fn counter_now() -> u64 {
    let v: u64;
    // SAFETY: reading CNTVCT_EL0 has no side effects; `isb` keeps the read
    // from being hoisted above earlier instructions.
    unsafe { core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Writes bytes to the kernel console through the console capability at
/// `console`.
#[cfg(target_arch = "aarch64")]
pub fn console_write(console: u64, bytes: &[u8]) -> Result<(), Error> {
    for chunk in bytes.chunks(CONSOLE_WRITE_MAX) {
        let r0 = imp::raw3(
            Syscall::ConsoleWrite,
            console,
            chunk.as_ptr() as u64,
            chunk.len() as u64,
        );
        Error::check(r0)?;
    }
    Ok(())
}

/// Writes a raw `(address, length)` pair to the console without checking
/// it; for tests of the kernel's own validation.
#[cfg(target_arch = "aarch64")]
pub fn console_write_raw(console: u64, address: u64, length: u64) -> Result<(), Error> {
    Error::check(imp::raw3(Syscall::ConsoleWrite, console, address, length))
}

/// Most bytes one `ConsoleRead` returns (four registers' worth).
pub const CONSOLE_READ_MAX: usize = 32;

/// Takes what the user typed (up to [`CONSOLE_READ_MAX`] bytes) with the
/// console capability at `console`; returns how many bytes of `buffer`
/// were filled (0 if nothing is waiting).
#[cfg(target_arch = "aarch64")]
pub fn console_read(console: u64, buffer: &mut [u8; CONSOLE_READ_MAX]) -> Result<usize, Error> {
    let out = imp::full(
        Syscall::ConsoleRead,
        [console, CONSOLE_READ_MAX as u64, 0, 0, 0, 0, 0],
    );
    Error::check(out[0])?;
    for (chunk, word) in buffer.chunks_mut(8).zip(&out[2..6]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    Ok((out[1] as usize).min(CONSOLE_READ_MAX))
}

/// How many typed bytes wait to be read (nothing is taken), with the
/// console capability at `console`.
#[cfg(target_arch = "aarch64")]
pub fn console_waiting(console: u64) -> Result<usize, Error> {
    let out = imp::full(Syscall::ConsoleRead, [console, 0, 0, 0, 0, 0, 0]);
    Error::check(out[0]).map(|()| out[6] as usize)
}

/// Has the kernel signal `notification` whenever console input arrives
/// (`0` stops it), with the console capability at `console`.
#[cfg(target_arch = "aarch64")]
pub fn console_notify(console: u64, notification: u64) -> Result<(), Error> {
    Error::check(imp::raw2(Syscall::ConsoleNotify, console, notification).0)
}

/// Powers the machine off through the power-control capability at
/// `power`, reporting `status` (0 = success) to the host. Returns the
/// error if the capability does not allow it.
#[cfg(target_arch = "aarch64")]
pub fn power_off(power: u64, status: u64) -> Error {
    let r0 = imp::raw2(Syscall::PowerOff, power, status).0;
    Error::check(r0).err().unwrap_or(Error::IllegalOperation)
}

/// Turns the IPC fastpath on or off (for tests comparing both paths) and
/// returns how many syscalls it has completed since boot; the debug
/// capability is at `debug`.
#[cfg(target_arch = "aarch64")]
pub fn debug_fastpath(debug: u64, enabled: bool) -> u64 {
    imp::raw2(Syscall::DebugFastpath, debug, u64::from(enabled)).0
}

/// Makes the next guest exit report a (simulated) pending SError; the
/// debug capability is at `debug`.
#[cfg(target_arch = "aarch64")]
pub fn debug_inject_guest_serror(debug: u64) -> Result<(), Error> {
    Error::check(imp::raw2(Syscall::DebugInjectGuestSError, debug, 0).0)
}

/// Asks the kernel to check its invariants; `true` if they hold.
#[cfg(target_arch = "aarch64")]
pub fn debug_check_invariants(debug: u64) -> bool {
    imp::raw2(Syscall::DebugCheckInvariants, debug, 0).0 == 0
}

/// Issues any syscall number with registers `x0..x6`; returns them after.
/// For the syscall fuzzer.
#[cfg(target_arch = "aarch64")]
pub fn raw_syscall7(number: u64, regs: [u64; 7]) -> [u64; 7] {
    let [mut x0, mut x1, mut x2, mut x3, mut x4, mut x5, mut x6] = regs;
    // SAFETY: as in `imp::raw2`: whatever the number and arguments, the
    // kernel only touches these registers and memory this thread may access.
    unsafe {
        core::arch::asm!(
            "svc #0",
            inlateout("x0") x0,
            inlateout("x1") x1,
            inlateout("x2") x2,
            inlateout("x3") x3,
            inlateout("x4") x4,
            inlateout("x5") x5,
            inlateout("x6") x6,
            in("x7") number,
            options(nostack),
        );
    }
    [x0, x1, x2, x3, x4, x5, x6]
}

/// Number of kernel timer interrupts since boot (debug capability at
/// `debug`).
#[cfg(target_arch = "aarch64")]
pub fn debug_timer_ticks(debug: u64) -> u64 {
    imp::raw2(Syscall::DebugTimerTicks, debug, 0).0
}

/// Issues a syscall by raw number with two argument words and returns
/// `x0`; for tests of the kernel's handling of unknown numbers.
#[cfg(target_arch = "aarch64")]
pub fn raw_syscall(number: u64, a0: u64, a1: u64) -> u64 {
    let r0: u64;
    // SAFETY: as in `imp::raw2`; an unknown number only makes the kernel
    // return an error code.
    unsafe {
        core::arch::asm!(
            "svc #0",
            inlateout("x0") a0 => r0,
            inlateout("x1") a1 => _,
            lateout("x2") _, lateout("x3") _, lateout("x4") _,
            lateout("x5") _, lateout("x6") _,
            in("x7") number,
            options(nostack),
        );
    }
    r0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_decode() {
        for s in Syscall::ALL {
            assert_eq!(Syscall::from_number(s as u64), Some(s));
        }
        assert_eq!(Syscall::from_number(0), None);
        assert_eq!(Syscall::from_number(u64::MAX), None);
    }
}
