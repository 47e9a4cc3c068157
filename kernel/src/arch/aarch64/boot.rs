//! First instructions: from QEMU's EL2 entry to Rust in the upper half.
//!
//! QEMU enters the ELF entry point at EL2 with the MMU off. The code below
//! turns on VHE (HCR_EL2.E2H, so EL2 uses the two-range EL1-style
//! translation regime and EL0 runs under it with TGE=1), clears BSS, builds
//! a one-table boot map of the first 4 GiB with 1 GiB blocks, enables the
//! MMU and jumps to the kernel's upper-half link address. The same L1 table
//! serves TTBR0 (identity, used for the jump) and TTBR1 (upper half), since
//! with a 39-bit VA both index the table with VA bits [38:30]. Rust code in
//! `mmu` then replaces this map with a precise one (W^X, guard page).

use super::mmu::{KERNEL_VIRT_OFFSET, MAIR_VALUE, TCR_BASE, boot_block};

/// HCR_EL2 for the host (`skyscope_el2::config::HCR_HOST`).
pub const HCR_HOST: u64 = skyscope_el2::config::HCR_HOST;

/// SCTLR_EL2 with E2H=1, TGE=1 (EL1 layout, Arm ARM D23.2.120): M, C, SA,
/// SA0, I, DZE, UCT, nTWE, UCI, plus the RES1-when-unimplemented bits EOS,
/// TSCXT, EIS, nTLSMD, LSMAOE. nTWI=0 traps EL0 `wfi` to the kernel; SPAN=0
/// sets PSTATE.PAN on entry so the kernel cannot touch user memory by
/// accident. WXN is set once the final kernel map is in place.
pub const SCTLR_HOST: u64 = (1 << 0)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 11)
    | (1 << 12)
    | (1 << 14)
    | (1 << 15)
    | (1 << 18)
    | (1 << 20)
    | (1 << 22)
    | (1 << 26)
    | (1 << 28)
    | (1 << 29);

/// End of the physical memory the boot map covers: boot code that reads
/// RAM before the final map is in place (the device tree, the boot-module
/// bundle's header) can reach only below this.
pub const BOOT_MAP_END: u64 = 4 << 30;

/// CPTR_EL2 with E2H=1 (CPACR layout, Arm ARM D23.2.36): FPEN=0b11, so
/// FP/SIMD at EL0 does not trap; SVE (ZEN) and SME stay trapped.
pub const CPTR_HOST: u64 = 0b11 << 20;

core::arch::global_asm!(
    ".section .text.boot, \"ax\"",
    ".global _start",
    "_start:",
    // Only EL2 is supported: the kernel is a hypervisor.
    "mrs x9, CurrentEL",
    "lsr x9, x9, #2",
    "cmp x9, #2",
    "b.ne 9f",
    "mov x19, x0", // a DTB pointer, if the loader passed one
    "msr daifset, #0xf",
    "ldr x9, ={hcr}",
    "msr hcr_el2, x9",
    "isb",
    // Clear BSS through its physical address.
    "adrp x9, __bss_start",
    "add x9, x9, :lo12:__bss_start",
    "adrp x10, __bss_end",
    "add x10, x10, :lo12:__bss_end",
    "1: cmp x9, x10",
    "b.hs 2f",
    "str xzr, [x9], #8",
    "b 1b",
    "2:",
    // Boot map: [0, 1 GiB) device memory, [1, 4 GiB) normal memory.
    "adrp x9, __boot_l1_table",
    "add x9, x9, :lo12:__boot_l1_table",
    "ldr x10, ={device_block}",
    "str x10, [x9]",
    "ldr x10, ={normal_block}",
    "mov x11, #1",
    "3: orr x12, x10, x11, lsl #30",
    "str x12, [x9, x11, lsl #3]",
    "add x11, x11, #1",
    "cmp x11, #{boot_map_gib}",
    "b.lo 3b",
    "ldr x10, ={mair}",
    "msr mair_el2, x10",
    // TCR: the fixed fields, plus IPS = min(PARange, 48 bits) and 16-bit
    // ASIDs when the CPU has them (ID_AA64MMFR0_EL1.ASIDBits == 0b0010).
    "ldr x10, ={tcr}",
    "mrs x11, id_aa64mmfr0_el1",
    "and x12, x11, #0xf",
    "mov x13, #5",
    "cmp x12, x13",
    "csel x12, x12, x13, lo",
    "bfi x10, x12, #32, #3",
    "ubfx x12, x11, #4, #4",
    "cmp x12, #2",
    "b.ne 4f",
    "orr x10, x10, #(1 << 36)",
    "4: msr tcr_el2, x10",
    "msr ttbr0_el2, x9",
    "msr S3_4_C2_C0_1, x9", // TTBR1_EL2 (exists with E2H=1)
    "dsb ish",
    "tlbi alle2",
    "dsb ish",
    "isb",
    "ldr x10, ={cptr}",
    "msr cptr_el2, x10",
    "ldr x10, ={sctlr}",
    "msr sctlr_el2, x10",
    "isb",
    // MMU on, still at the physical address through the identity map.
    "ldr x10, =5f",
    "br x10",
    "5:",
    "ldr x10, =__stack_top",
    "mov sp, x10",
    "ldr x10, ={vectors}",
    "msr vbar_el2, x10",
    "isb",
    "mov x0, x19",
    "bl {main}",
    "9: wfe",
    "b 9b",
    "",
    ".section .bss.boot_table, \"aw\", %nobits",
    ".balign 4096",
    "__boot_l1_table:",
    ".space 4096",
    hcr = const HCR_HOST,
    sctlr = const SCTLR_HOST,
    cptr = const CPTR_HOST,
    mair = const MAIR_VALUE,
    tcr = const TCR_BASE,
    device_block = const boot_block(0, true),
    normal_block = const boot_block(0, false),
    boot_map_gib = const BOOT_MAP_END >> 30,
    vectors = sym super::exception::exception_vectors,
    main = sym crate::kernel_main,
);

/// Physical address of the kernel's first byte, from the link map.
pub fn kernel_image_phys() -> (u64, u64) {
    unsafe extern "C" {
        static __kernel_start: u8;
        static __kernel_end: u8;
    }
    let start = &raw const __kernel_start as u64;
    let end = &raw const __kernel_end as u64;
    (start - KERNEL_VIRT_OFFSET, end - KERNEL_VIRT_OFFSET)
}
