//! The kernel console: `kprint!`/`kprintln!` to the PL011.
//!
//! The UART is stateless from the kernel's point of view, so the console
//! needs no lock: the kernel runs on one CPU with interrupts masked, and a
//! panic may print at any point.

use crate::drivers::pl011::Pl011;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

/// Virtual address of the console UART's registers; 0 until initialised.
static UART_BASE: AtomicU64 = AtomicU64::new(0);

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
