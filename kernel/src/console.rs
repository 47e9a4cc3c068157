//! The kernel console: `kprint!`/`kprintln!` to the PL011, and what the
//! user types, kept for `ConsoleRead`.
//!
//! Output: the UART is stateless from the kernel's point of view, so it
//! needs no lock: the kernel runs on one CPU with interrupts masked, and a
//! panic may print at any point. Input: the UART's receive interrupt
//! drains its FIFO into a fixed ring ([`INPUT_CAPACITY`] bytes; when full,
//! new bytes are dropped and counted, never waited for), and the kernel
//! signals the listener the core keeps (`ConsoleNotify`).

use crate::cell::KernelCell;
use crate::drivers::pl011::Pl011;
use crate::kprintln;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use skyscope_core::console::InputRing;

/// Virtual address of the console UART's registers; 0 until initialised.
static UART_BASE: AtomicU64 = AtomicU64::new(0);

/// Bytes of typed input the kernel holds for user space.
pub const INPUT_CAPACITY: usize = 4096;
/// Most bytes taken from the receive FIFO per interrupt: a device that
/// keeps refilling it cannot hold the kernel (what is left is picked up
/// by the next interrupt or the next tick, see [`receive_input`]).
const RECEIVE_BURST: usize = 256;
/// No console input interrupt.
const NO_INTID: u32 = u32::MAX;

/// The console UART's interrupt, once input is enabled.
static INPUT_INTID: AtomicU32 = AtomicU32::new(NO_INTID);

/// Typed input waiting for `ConsoleRead`, and whether the current overflow
/// has been reported.
struct Input {
    ring: InputRing<INPUT_CAPACITY>,
    overflow_reported: bool,
}

static INPUT: KernelCell<Input> = KernelCell::new(Input {
    ring: InputRing::new(),
    overflow_reported: false,
});

/// Runs `f` on the input state.
fn with_input<R>(f: impl FnOnce(&mut Input) -> R) -> R {
    // SAFETY: only the UART interrupt (`receive_input`) and `ConsoleRead`
    // (`read_input`) reach the input state, both inside one kernel entry
    // (the kernel is single-CPU and not reentrant); neither holds the
    // borrow beyond `f`.
    f(unsafe { INPUT.get() })
}

/// Makes the UART mapped at `base` the console.
///
/// # Safety
/// As for [`Pl011::new`].
pub unsafe fn init(base: u64) {
    // SAFETY: forwarded from the caller.
    let uart = unsafe { Pl011::new(base) };
    uart.init();
    UART_BASE.store(base, Ordering::Relaxed);
}

fn uart() -> Option<Pl011> {
    match UART_BASE.load(Ordering::Relaxed) {
        0 => None,
        // SAFETY: only `init` stores a non-zero base, with its guarantee.
        base => Some(unsafe { Pl011::new(base) }),
    }
}

/// Writes raw bytes (user output is passed through unchanged except that
/// `\n` becomes `\r\n`).
pub fn write_bytes(bytes: &[u8]) {
    if let Some(uart) = uart() {
        for &b in bytes {
            if b == b'\n' {
                uart.write_byte(b'\r');
            }
            uart.write_byte(b);
        }
    }
}

/// Unmasks the UART's receive interrupts; `intid` is its GIC line, which
/// from now on belongs to the kernel ([`input_intid`]).
pub fn enable_input(intid: u32) {
    if let Some(uart) = uart() {
        uart.enable_receive_interrupts();
        INPUT_INTID.store(intid, Ordering::Relaxed);
    }
}

/// The console UART's interrupt, if input is enabled (never given to
/// user space).
pub fn input_intid() -> Option<u32> {
    match INPUT_INTID.load(Ordering::Relaxed) {
        NO_INTID => None,
        intid => Some(intid),
    }
}

/// The UART's interrupt: moves what it received into the input ring;
/// returns whether anything new is there for a reader.
pub fn receive_input() -> bool {
    let Some(uart) = uart() else { return false };
    // The interrupt is cleared before the FIFO is drained, not after:
    // QEMU's PL011 raises it only when a byte lands in an empty FIFO (its
    // trigger level is 1 whatever UARTIFLS says), so clearing it after a
    // byte arrived mid-drain would leave that byte, and everything behind
    // it, without an interrupt.
    uart.clear_receive_interrupts();
    with_input(|input| {
        let mut stored = false;
        for _ in 0..RECEIVE_BURST {
            match uart.read_byte() {
                None => break,
                Some(None) => {} // a framing, parity or break error
                Some(Some(byte)) => {
                    if input.ring.push(byte) {
                        stored = true;
                    } else if !input.overflow_reported {
                        input.overflow_reported = true;
                        kprintln!(
                            "console: input buffer full ({INPUT_CAPACITY} bytes unread); dropping input ({} bytes so far)",
                            input.ring.dropped()
                        );
                    }
                }
            }
        }
        stored
    })
}

/// Whether the receive FIFO holds bytes no interrupt has announced (the
/// kernel tick looks, in case a burst stopped short of emptying it).
pub fn input_left_in_fifo() -> bool {
    uart().is_some_and(|uart| uart.has_received())
}

/// `ConsoleRead`: takes up to `out.len()` typed bytes.
pub fn read_input(out: &mut [u8]) -> usize {
    with_input(|input| {
        let n = input.ring.take(out);
        if n > 0 {
            input.overflow_reported = false;
        }
        n
    })
}

/// How many typed bytes wait in the input ring.
pub fn input_waiting() -> usize {
    with_input(|input| input.ring.len())
}

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Formats to the console.
pub fn print(args: fmt::Arguments<'_>) {
    let _ = Console.write_fmt(args);
}

/// Prints to the kernel console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the kernel console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
