//! Tiny bare-metal arm64 guests: position-independent EL1 programs that
//! the VMM copies to guest-physical address [`LOAD_ADDRESS`] and starts
//! there with the guest MMU off.
//!
//! Each program talks to its VMM only through what a real guest kernel
//! would use: stores and loads to device addresses (MMIO exits) and
//! hypercalls (`hvc #n`, with values in `x0`). What they do, step by step,
//! is listed at each program; the VMM in the tests checks every step.
//! The programs are assembled with the crate when it is built for arm64;
//! for other targets they are empty.
#![no_std]

/// Guest-physical address the programs are loaded at (the start of guest
/// RAM on the `virt` layout the VMM presents).
pub const LOAD_ADDRESS: u64 = 0x4000_0000;
/// Guest RAM the programs need: code at [`LOAD_ADDRESS`], a scratch page
/// right after it.
pub const RAM_BYTES: u64 = 0x2000;
/// Guest-physical address of the PL011 UART they print on.
pub const UART: u64 = 0x0900_0000;
/// What [`hello`] prints.
pub const GREETING: &str = "hello from the guest at EL1\n";
/// Sum [`hello`] reports after writing `0..512` over its scratch page.
pub const SCRATCH_SUM: u64 = 511 * 512 / 2;
/// Guest-physical address [`hello`] reads although nothing is mapped there.
pub const UNMAPPED_READ: u64 = 0x5000_0000;
/// Guest-physical address [`hostile`] reads: host RAM sits at this
/// physical address, which must not make it reachable.
pub const HOST_RAM_PROBE: u64 = 0x4100_0000;
/// PSCI `SYSTEM_OFF` function ID (SMC Calling Convention, PSCI 0.2+).
pub const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;

/// The well-behaved guest. In order:
/// 1. `hvc #1` with `x0` = CurrentEL (4: EL1);
/// 2. prints [`GREETING`] byte by byte to the UART data register;
/// 3. loads the UART's PeriphID0 (offset 0xfe0) and reports it with `hvc #2`;
/// 4. writes `0..512` over its scratch page, sums it back, `hvc #3`;
/// 5. loads from [`UNMAPPED_READ`] and reports the value with `hvc #4`;
/// 6. `hvc #0` with `x0` = [`PSCI_SYSTEM_OFF`].
pub fn hello() -> &'static [u8] {
    program::hello()
}

/// The guest that tries to get out. In order:
/// 1. `smc #0` with `x0` = [`PSCI_SYSTEM_OFF`] (would power the machine
///    off if it reached the firmware);
/// 2. writes PMCR_EL0 (a trapped system register);
/// 3. loads from [`HOST_RAM_PROBE`];
/// 4. `hvc #1`, then spins forever, storing a growing count at the start
///    of its scratch page.
pub fn hostile() -> &'static [u8] {
    program::hostile()
}

/// The guest that uses pointer authentication's key registers. Entered
/// with `x0` = its own key value. In order:
/// 1. reads APIAKeyLo_EL1 and APGAKeyHi_EL1 into `x0`, `x1`, `hvc #1`
///    (a fresh Vcpu's keys are 0: never another guest's);
/// 2. sets both registers to its key;
/// 3. forever: reads them back into `x0`, `x1` and `hvc #2`.
pub fn keys() -> &'static [u8] {
    program::keys()
}

/// The guest that only makes hypercalls: forever `hvc #5` with `x0` = a
/// count of the calls made so far.
pub fn caller() -> &'static [u8] {
    program::caller()
}

#[cfg(target_arch = "aarch64")]
mod program {
    core::arch::global_asm!(
        ".section .rodata.skyscope_guests, \"a\"",
        ".balign 4",
        ".global skyscope_guest_hello_start",
        ".global skyscope_guest_hello_end",
        "skyscope_guest_hello_start:",
        "mrs x0, CurrentEL",
        "hvc #1",
        "mov x1, #0x09000000",
        "adr x2, 3f",
        "1: ldrb w3, [x2], #1",
        "cbz w3, 2f",
        "strb w3, [x1]",
        "b 1b",
        "2: ldr w4, [x1, #0xfe0]",
        "mov x0, x4",
        "hvc #2",
        "adr x5, skyscope_guest_hello_start",
        "add x5, x5, #0x1000",
        "mov x6, #0",
        "mov x7, #0",
        "4: str x6, [x5, x6, lsl #3]",
        "add x6, x6, #1",
        "cmp x6, #512",
        "b.ne 4b",
        "mov x6, #0",
        "5: ldr x8, [x5, x6, lsl #3]",
        "add x7, x7, x8",
        "add x6, x6, #1",
        "cmp x6, #512",
        "b.ne 5b",
        "mov x0, x7",
        "hvc #3",
        "mov x9, #0x50000000",
        "ldr x0, [x9]",
        "hvc #4",
        "mov x0, #0x0008",
        "movk x0, #0x8400, lsl #16",
        "hvc #0",
        "6: b 6b",
        "3: .asciz \"hello from the guest at EL1\\n\"",
        ".balign 4",
        "skyscope_guest_hello_end:",
        "",
        ".global skyscope_guest_hostile_start",
        ".global skyscope_guest_hostile_end",
        "skyscope_guest_hostile_start:",
        "mov x0, #0x0008",
        "movk x0, #0x8400, lsl #16",
        "smc #0",
        "msr S3_3_C9_C12_0, xzr", // PMCR_EL0
        "mov x9, #0x41000000",
        "ldr x1, [x9]",
        "hvc #1",
        "adr x5, skyscope_guest_hostile_start",
        "add x5, x5, #0x1000",
        "mov x2, #0",
        "7: add x2, x2, #1",
        "str x2, [x5]",
        "b 7b",
        "skyscope_guest_hostile_end:",
        "",
        ".global skyscope_guest_keys_start",
        ".global skyscope_guest_keys_end",
        "skyscope_guest_keys_start:",
        "mov x19, x0",
        "mrs x0, S3_0_C2_C1_0", // APIAKeyLo_EL1
        "mrs x1, S3_0_C2_C3_1", // APGAKeyHi_EL1
        "hvc #1",
        "msr S3_0_C2_C1_0, x19",
        "msr S3_0_C2_C3_1, x19",
        "isb",
        "8: mrs x0, S3_0_C2_C1_0",
        "mrs x1, S3_0_C2_C3_1",
        "hvc #2",
        "b 8b",
        "skyscope_guest_keys_end:",
        "",
        ".global skyscope_guest_caller_start",
        ".global skyscope_guest_caller_end",
        "skyscope_guest_caller_start:",
        "mov x0, #0",
        "9: hvc #5",
        "add x0, x0, #1",
        "b 9b",
        "skyscope_guest_caller_end:",
    );

    unsafe extern "C" {
        static skyscope_guest_hello_start: u8;
        static skyscope_guest_hello_end: u8;
        static skyscope_guest_hostile_start: u8;
        static skyscope_guest_hostile_end: u8;
        static skyscope_guest_keys_start: u8;
        static skyscope_guest_keys_end: u8;
        static skyscope_guest_caller_start: u8;
        static skyscope_guest_caller_end: u8;
    }

    /// The bytes between two symbols of the program section.
    fn between(start: *const u8, end: *const u8) -> &'static [u8] {
        let len = (end as usize).saturating_sub(start as usize);
        // SAFETY: both symbols bracket one program in a read-only section
        // of this image, which lives for the whole program.
        unsafe { core::slice::from_raw_parts(start, len) }
    }

    pub fn hello() -> &'static [u8] {
        between(
            &raw const skyscope_guest_hello_start,
            &raw const skyscope_guest_hello_end,
        )
    }

    pub fn hostile() -> &'static [u8] {
        between(
            &raw const skyscope_guest_hostile_start,
            &raw const skyscope_guest_hostile_end,
        )
    }

    pub fn keys() -> &'static [u8] {
        between(
            &raw const skyscope_guest_keys_start,
            &raw const skyscope_guest_keys_end,
        )
    }

    pub fn caller() -> &'static [u8] {
        between(
            &raw const skyscope_guest_caller_start,
            &raw const skyscope_guest_caller_end,
        )
    }
}

#[cfg(not(target_arch = "aarch64"))]
mod program {
    pub fn hello() -> &'static [u8] {
        &[]
    }

    pub fn hostile() -> &'static [u8] {
        &[]
    }

    pub fn keys() -> &'static [u8] {
        &[]
    }

    pub fn caller() -> &'static [u8] {
        &[]
    }
}
