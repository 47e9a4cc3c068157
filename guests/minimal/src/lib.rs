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

/// The timed caller's layout: samples after the program page.
pub mod timed {
    /// Guest RAM it needs: the program page and the samples.
    pub const RAM_BYTES: u64 = 0x1000 + SAMPLES * 16;
    /// Where the samples start (guest-physical).
    pub const SAMPLES_AT: u64 = super::LOAD_ADDRESS + 0x1000;
    /// How many `(start, end)` pairs fit (a power of two: the index wraps).
    pub const SAMPLES: u64 = 8192;
    /// The hypercall it makes.
    pub const HYPERCALL: u16 = 6;
}

/// The guest the exit benchmark times: forever reads the virtual counter
/// (`isb; mrs`), `hvc #6`, reads it again, and stores the two readings as
/// pair `i` (modulo [`timed::SAMPLES`]) at [`timed::SAMPLES_AT`]; the
/// reply's `x0` is ignored.
pub fn timed_caller() -> &'static [u8] {
    program::timed_caller()
}

/// The guest that takes interrupts. In order:
/// 1. points VBAR_EL1 at its vectors, opens its virtual CPU interface
///    (priority mask 0xff, Group 1 on), unmasks IRQs, `hvc #1`;
/// 2. forever `wfi`. Each IRQ: acknowledges it (ICC_IAR1_EL1 into `x0`),
///    reads the running priority (ICC_RPR_EL1 into `x1`), `hvc #2`, then
///    ends it (ICC_EOIR1_EL1) and returns.
///
/// Any synchronous exception: `hvc #9` with ESR_EL1 in `x0`.
pub fn interrupts() -> &'static [u8] {
    program::interrupts()
}

/// Scratch-page words of [`ticker()`] (byte offsets from the page start).
pub mod ticker {
    /// Set by the VMM before the start: the interval, in counter ticks.
    pub const INTERVAL: u64 = 0;
    /// Set by the VMM: ticks after which the timer is turned off (0:
    /// never).
    pub const WANTED: u64 = 8;
    /// Written by the guest: ticks taken so far.
    pub const COUNT: u64 = 16;
    /// Mode bit in `x0`: use the EL1 physical timer (else the virtual one).
    pub const PHYSICAL: u64 = 1 << 0;
    /// Mode bit in `x0`: report nothing (no `hvc` at all), only count.
    pub const QUIET: u64 = 1 << 1;
}

/// The guest that runs on its timer. Entered with a [`mod@ticker`] mode in
/// `x0`, interval and wanted ticks in its scratch page. In order:
/// 1. sets up its vectors and virtual CPU interface as [`interrupts`]
///    does, arms the chosen timer one interval ahead (TVAL), (unless
///    quiet) `hvc #1`, and unmasks IRQs;
/// 2. forever `wfi`. Each IRQ: acknowledges it (`x0` = INTID, `x1` =
///    running priority), computes how late the timer fired (`x2` = count
///    minus compare value, negative if early), counts it (`x4`), unless
///    quiet `hvc #2`; then re-arms one interval ahead, or turns the timer
///    off once the wanted ticks are reached, and ends the interrupt.
pub fn ticker() -> &'static [u8] {
    program::ticker()
}

/// The guest that only computes: forever increments a count at the start
/// of its scratch page. No exits, no interrupts.
pub fn spinner() -> &'static [u8] {
    program::spinner()
}

/// The guest that looks at its CPU. In order:
/// 1. reads ID_AA64PFR0_EL1, ID_AA64PFR1_EL1, ID_AA64DFR0_EL1 and
///    ID_AA64ZFR0_EL1 into `x0..x3`, `hvc #1`;
/// 2. reads ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1, ID_AA64SMFR0_EL1 and
///    ID_AA64MMFR3_EL1 into `x0..x3`, `hvc #2`;
/// 3. reads MIDR_EL1 and MPIDR_EL1 into `x0`, `x1`, `hvc #3`, then spins.
pub fn features() -> &'static [u8] {
    program::features()
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
        "",
        ".global skyscope_guest_timed_caller_start",
        ".global skyscope_guest_timed_caller_end",
        "skyscope_guest_timed_caller_start:",
        "adr x4, skyscope_guest_timed_caller_start",
        "add x4, x4, #0x1000",
        "mov x6, #0",
        "10: isb",
        "mrs x1, cntvct_el0",
        "hvc #6",
        "isb",
        "mrs x2, cntvct_el0",
        "add x7, x4, x6, lsl #4",
        "stp x1, x2, [x7]",
        "add x6, x6, #1",
        "and x6, x6, #(8192 - 1)",
        "b 10b",
        "skyscope_guest_timed_caller_end:",
        "",
        ".global skyscope_guest_spinner_start",
        ".global skyscope_guest_spinner_end",
        "skyscope_guest_spinner_start:",
        "adr x5, skyscope_guest_spinner_start",
        "add x5, x5, #0x1000",
        "mov x2, #0",
        "10: add x2, x2, #1",
        "str x2, [x5]",
        "b 10b",
        "skyscope_guest_spinner_end:",
        "",
        ".global skyscope_guest_features_start",
        ".global skyscope_guest_features_end",
        "skyscope_guest_features_start:",
        "mrs x0, S3_0_C0_C4_0", // ID_AA64PFR0_EL1
        "mrs x1, S3_0_C0_C4_1", // ID_AA64PFR1_EL1
        "mrs x2, S3_0_C0_C5_0", // ID_AA64DFR0_EL1
        "mrs x3, S3_0_C0_C4_4", // ID_AA64ZFR0_EL1
        "hvc #1",
        "mrs x0, S3_0_C0_C7_0", // ID_AA64MMFR0_EL1
        "mrs x1, S3_0_C0_C7_1", // ID_AA64MMFR1_EL1
        "mrs x2, S3_0_C0_C4_5", // ID_AA64SMFR0_EL1
        "mrs x3, S3_0_C0_C7_3", // ID_AA64MMFR3_EL1
        "hvc #2",
        "mrs x0, midr_el1",
        "mrs x1, mpidr_el1",
        "hvc #3",
        "13: b 13b",
        "skyscope_guest_features_end:",
        "",
        // The vector tables below sit 2 KiB into their programs (VBAR_EL1
        // bits 10:0 are RES0), so each program starts 2 KiB aligned.
        ".balign 2048",
        ".global skyscope_guest_interrupts_start",
        ".global skyscope_guest_interrupts_end",
        "skyscope_guest_interrupts_start:",
        "adr x1, 12f",
        "msr vbar_el1, x1",
        "mov x1, #0xff",
        "msr S3_0_C4_C6_0, x1", // ICC_PMR_EL1
        "mov x1, #1",
        "msr S3_0_C12_C12_7, x1", // ICC_IGRPEN1_EL1
        "isb",
        "msr daifclr, #2",
        "hvc #1",
        "11: wfi",
        "b 11b",
        ".balign 2048",
        "12: .skip 0x200",
        // Current EL with SP_EL1: synchronous at 0x200, IRQ at 0x280.
        "mrs x0, esr_el1",
        "hvc #9",
        "b .",
        ".balign 128",
        "mrs x0, S3_0_C12_C12_0", // ICC_IAR1_EL1
        "mrs x1, S3_0_C12_C11_3", // ICC_RPR_EL1
        "hvc #2",
        "msr S3_0_C12_C12_1, x0", // ICC_EOIR1_EL1
        "eret",
        "skyscope_guest_interrupts_end:",
        "",
        ".balign 2048",
        ".global skyscope_guest_ticker_start",
        ".global skyscope_guest_ticker_end",
        "skyscope_guest_ticker_start:",
        "mov x19, x0",
        "adr x20, skyscope_guest_ticker_start",
        "add x20, x20, #0x1000",
        "ldr x21, [x20]",
        "adr x1, 22f",
        "msr vbar_el1, x1",
        "mov x1, #0xff",
        "msr S3_0_C4_C6_0, x1", // ICC_PMR_EL1
        "mov x1, #1",
        "msr S3_0_C12_C12_7, x1", // ICC_IGRPEN1_EL1
        "isb",
        "bl 24f",
        // Ready before IRQs are unmasked: a tick that is due by then
        // (the Vcpu may have been switched out meanwhile) comes after.
        "tbnz x19, #1, 21f",
        "hvc #1",
        "21: msr daifclr, #2",
        "31: wfi",
        "b 31b",
        // Arm the chosen timer x21 ticks ahead.
        "24: tbnz x19, #0, 25f",
        "msr cntv_tval_el0, x21",
        "mov x1, #1",
        "msr cntv_ctl_el0, x1",
        "isb",
        "ret",
        "25: msr cntp_tval_el0, x21",
        "mov x1, #1",
        "msr cntp_ctl_el0, x1",
        "isb",
        "ret",
        ".balign 2048",
        "22: .skip 0x200",
        "mrs x0, esr_el1",
        "hvc #9",
        "b .",
        ".balign 128",
        "mrs x0, S3_0_C12_C12_0", // ICC_IAR1_EL1
        "mrs x1, S3_0_C12_C11_3", // ICC_RPR_EL1
        "tbnz x19, #0, 26f",
        "mrs x2, cntvct_el0",
        "mrs x3, cntv_cval_el0",
        "b 27f",
        "26: mrs x2, cntpct_el0",
        "mrs x3, cntp_cval_el0",
        "27: sub x2, x2, x3",
        "ldr x4, [x20, #16]",
        "add x4, x4, #1",
        "str x4, [x20, #16]",
        "tbnz x19, #1, 28f",
        "hvc #2",
        "28: ldr x5, [x20, #8]",
        "cbz x5, 29f",
        "cmp x4, x5",
        "b.lo 29f",
        "msr cntv_ctl_el0, xzr",
        "msr cntp_ctl_el0, xzr",
        "isb",
        "b 30f",
        "29: bl 24b",
        "30: msr S3_0_C12_C12_1, x0", // ICC_EOIR1_EL1
        "eret",
        "skyscope_guest_ticker_end:",
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
        static skyscope_guest_timed_caller_start: u8;
        static skyscope_guest_timed_caller_end: u8;
        static skyscope_guest_features_start: u8;
        static skyscope_guest_features_end: u8;
        static skyscope_guest_spinner_start: u8;
        static skyscope_guest_spinner_end: u8;
        static skyscope_guest_interrupts_start: u8;
        static skyscope_guest_interrupts_end: u8;
        static skyscope_guest_ticker_start: u8;
        static skyscope_guest_ticker_end: u8;
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

    pub fn timed_caller() -> &'static [u8] {
        between(
            &raw const skyscope_guest_timed_caller_start,
            &raw const skyscope_guest_timed_caller_end,
        )
    }

    pub fn features() -> &'static [u8] {
        between(
            &raw const skyscope_guest_features_start,
            &raw const skyscope_guest_features_end,
        )
    }

    pub fn spinner() -> &'static [u8] {
        between(
            &raw const skyscope_guest_spinner_start,
            &raw const skyscope_guest_spinner_end,
        )
    }

    pub fn interrupts() -> &'static [u8] {
        between(
            &raw const skyscope_guest_interrupts_start,
            &raw const skyscope_guest_interrupts_end,
        )
    }

    pub fn ticker() -> &'static [u8] {
        between(
            &raw const skyscope_guest_ticker_start,
            &raw const skyscope_guest_ticker_end,
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

    pub fn timed_caller() -> &'static [u8] {
        &[]
    }

    pub fn spinner() -> &'static [u8] {
        &[]
    }

    pub fn features() -> &'static [u8] {
        &[]
    }

    pub fn interrupts() -> &'static [u8] {
        &[]
    }

    pub fn ticker() -> &'static [u8] {
        &[]
    }
}
