//! Minimal user-space runtime: entry point, console printing, panic handler.
//!
//! A user program enables the `rt` feature and names its main function
//! with [`entry!`](crate::entry). The kernel starts a thread at `_start` with
//! the stack pointer set and the boot-info address in `x0`.

use crate::bootinfo::{BootInfo, slots};
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
/// success). A program without the power-control capability cannot: it
/// stops here instead (spinning on `wfi`, which costs no CPU).
pub fn exit(status: u64) -> ! {
    let _ = crate::syscall::power_off(POWER_CAP.load(Ordering::Relaxed), status);
    loop {
        crate::syscall::wait_for_interrupt();
    }
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
    safe fn __skyscope_user_main(boot_info: &'static BootInfo) -> !;
}

extern "C" fn rt_start(boot_info_address: usize) -> ! {
    // SAFETY: the kernel maps a read-only boot-info page of 4 KiB at this
    // address before starting the root task and never unmaps it; nothing in
    // user space writes it.
    let page: &'static [u8] =
        unsafe { core::slice::from_raw_parts(boot_info_address as *const u8, 4096) };
    match BootInfo::from_page(page) {
        Some(info) => __skyscope_user_main(info),
        None => {
            print(format_args!(
                "user runtime: invalid boot info at {boot_info_address:#x}\n"
            ));
            exit(PANIC_EXIT_STATUS)
        }
    }
}

/// Declares the program's main function: `fn(&'static BootInfo) -> !`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        fn __skyscope_user_main(boot_info: &'static $crate::BootInfo) -> ! {
            let main: fn(&'static $crate::BootInfo) -> ! = $main;
            main(boot_info)
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
