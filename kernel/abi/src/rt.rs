//! Minimal user-space runtime: entry point, console printing, panic handler.
//!
//! A user program enables the `rt` feature and names its main function
//! with [`entry!`](crate::entry). The kernel (for the root task) or a
//! parent (for a process it builds) starts the first thread at `_start`
//! with the stack pointer set and the address of a read-only start page
//! in `x0`; `main` takes the record that page holds
//! ([`StartPage`]: the [`BootInfo`](crate::BootInfo) for the root task).

use crate::bootinfo::slots;
use crate::start::StartPage;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

/// Where this program's console and power-control capabilities are: the
/// root task's fixed slots unless the program says otherwise (a process
/// with its own CSpace, given copies elsewhere).
static CONSOLE_CAP: AtomicU64 = AtomicU64::new(slots::CONSOLE);
static POWER_CAP: AtomicU64 = AtomicU64::new(slots::POWER);

/// Sets the capability address `print!` writes through.
pub fn set_console(cptr: u64) {
    CONSOLE_CAP.store(cptr, Ordering::Relaxed);
}

/// Sets the capability address [`exit`] powers off through.
pub fn set_power(cptr: u64) {
    POWER_CAP.store(cptr, Ordering::Relaxed);
}

/// Ends the program by powering the machine off with `status` (0 =
/// success). A program without the power-control capability (any process
/// but the root task) cannot; it stops on an undefined instruction
/// instead, with `status` in `x0`: the kernel stops the thread and reports
/// the fault to its fault handler — the parent that started it, which may
/// read `x0` — or prints it if there is none. Spinning or waiting here
/// would keep the thread runnable at its priority.
pub fn exit(status: u64) -> ! {
    let _ = crate::syscall::power_off(POWER_CAP.load(Ordering::Relaxed), status);
    // SAFETY: `udf` only raises an exception; the kernel stops the thread
    // and restarts it, if a handler asks, at this same instruction, so
    // control never passes it.
    unsafe { core::arch::asm!("udf #0", in("x0") status, options(nomem, nostack, noreturn)) }
}

core::arch::global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    // Terminate the frame-pointer chain for debuggers and backtraces.
    "mov x29, xzr",
    "mov x30, xzr",
    "bl {start}",
    "1: b 1b",
    start = sym rt_start,
);

unsafe extern "Rust" {
    /// Defined by the [`entry!`](crate::entry) macro in the program.
    safe fn __skyscope_user_main(start_page: &'static [u8]) -> !;
}

extern "C" fn rt_start(start_page_address: usize) -> ! {
    // SAFETY: whoever starts a program (the kernel for the root task, the
    // parent for a process it builds) maps a read-only start page of 4 KiB
    // at this address first and never unmaps it while the program runs;
    // nothing in the program writes it (it is mapped read-only).
    let page: &'static [u8] =
        unsafe { core::slice::from_raw_parts(start_page_address as *const u8, 4096) };
    __skyscope_user_main(page)
}

/// Runs `main` with the record of kind `T` on the start page, or stops
/// the program if the page does not hold one (wrong magic or version).
/// Called by [`entry!`](crate::entry).
pub fn start<T: StartPage>(page: &'static [u8], main: fn(&'static T) -> !) -> ! {
    match T::from_page(page) {
        Some(record) => main(record),
        None => {
            print(format_args!(
                "user runtime: no valid start record at {:#x}\n",
                page.as_ptr() as usize
            ));
            exit(PANIC_EXIT_STATUS)
        }
    }
}

/// Declares the program's main function: `fn(&'static R) -> !` where `R`
/// is the [`StartPage`] record the program is started with.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        fn __skyscope_user_main(start_page: &'static [u8]) -> ! {
            $crate::rt::start(start_page, $main)
        }
    };
}

/// Exit status the runtime reports when a user program panics.
pub const PANIC_EXIT_STATUS: u64 = 101;

/// A `core::fmt::Write` sink that buffers and writes through the console
/// syscall.
struct Console {
    buffer: [u8; 256],
    used: usize,
}

impl Console {
    fn flush(&mut self) {
        // Console output is best effort: a failure here has nowhere to go.
        let _ = crate::syscall::console_write(
            CONSOLE_CAP.load(Ordering::Relaxed),
            &self.buffer[..self.used],
        );
        self.used = 0;
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.used == self.buffer.len() {
                self.flush();
            }
            self.buffer[self.used] = b;
            self.used += 1;
        }
        Ok(())
    }
}

/// Prints formatted text to the debug console (one syscall per 256 bytes).
pub fn print(args: core::fmt::Arguments<'_>) {
    let mut console = Console {
        buffer: [0; 256],
        used: 0,
    };
    let _ = console.write_fmt(args);
    console.flush();
}

/// Prints to the debug console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::rt::print(format_args!($($arg)*)) };
}

/// Prints a line to the debug console.
#[macro_export]
macro_rules! println {
    () => { $crate::rt::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::rt::print(format_args!("{}\n", format_args!($($arg)*))) };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    print(format_args!("user panic: {info}\n"));
    exit(PANIC_EXIT_STATUS)
}
