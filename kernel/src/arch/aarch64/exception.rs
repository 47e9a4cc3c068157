//! Exception vectors, user context save/restore and trap decoding.
//!
//! While a thread runs at EL0, SP_EL2 points at that thread's
//! [`UserContext`], so the vector code stores the user registers straight
//! into the thread (as seL4 does) and then switches to the kernel stack.
//! The kernel is not reentrant: it runs with interrupts masked, except in
//! the idle loop, and every entry from EL0 starts on an empty kernel stack.

use core::mem::offset_of;

/// The user-visible register state of a thread, saved on every kernel entry.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct UserContext {
    /// General-purpose registers x0..x30.
    pub x: [u64; 31],
    /// Stack pointer (SP_EL0).
    pub sp: u64,
    /// Program counter to resume at (ELR_EL2).
    pub pc: u64,
    /// Saved program status (SPSR_EL2).
    pub spsr: u64,
    /// Thread pointer (TPIDR_EL0).
    pub tpidr: u64,
    /// FP/SIMD registers, saved only when another thread needs the unit.
    pub fp: FpState,
}

/// The FP/SIMD register file (V0-V31, FPSR, FPCR).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(16))]
pub struct FpState {
    /// V0..V31.
    pub v: [u128; 32],
    /// Floating-point status register.
    pub fpsr: u64,
    /// Floating-point control register.
    pub fpcr: u64,
}

impl FpState {
    /// Stores the live FP/SIMD registers here.
    pub fn save(&mut self) {
        let base = self.v.as_mut_ptr();
        // SAFETY: `base` points at 32 writable 16-byte slots followed by
        // FPSR and FPCR (repr(C)); the kernel itself never uses FP/SIMD
        // (softfloat target), so the registers hold the owning thread's values.
        unsafe {
            core::arch::asm!(
                ".arch_extension fp",
                ".arch_extension simd",
                "stp q0, q1, [{b}, #0]", "stp q2, q3, [{b}, #32]",
                "stp q4, q5, [{b}, #64]", "stp q6, q7, [{b}, #96]",
                "stp q8, q9, [{b}, #128]", "stp q10, q11, [{b}, #160]",
                "stp q12, q13, [{b}, #192]", "stp q14, q15, [{b}, #224]",
                "stp q16, q17, [{b}, #256]", "stp q18, q19, [{b}, #288]",
                "stp q20, q21, [{b}, #320]", "stp q22, q23, [{b}, #352]",
                "stp q24, q25, [{b}, #384]", "stp q26, q27, [{b}, #416]",
                "stp q28, q29, [{b}, #448]", "stp q30, q31, [{b}, #480]",
                "mrs {t}, fpsr", "str {t}, [{b}, #512]",
                "mrs {t}, fpcr", "str {t}, [{b}, #520]",
                b = in(reg) base,
                t = out(reg) _,
                options(nostack),
            );
        }
    }

    /// Loads the FP/SIMD registers from here.
    pub fn restore(&self) {
        let base = self.v.as_ptr();
        // SAFETY: as for `save`, reading instead of writing.
        unsafe {
            core::arch::asm!(
                ".arch_extension fp",
                ".arch_extension simd",
                "ldp q0, q1, [{b}, #0]", "ldp q2, q3, [{b}, #32]",
                "ldp q4, q5, [{b}, #64]", "ldp q6, q7, [{b}, #96]",
                "ldp q8, q9, [{b}, #128]", "ldp q10, q11, [{b}, #160]",
                "ldp q12, q13, [{b}, #192]", "ldp q14, q15, [{b}, #224]",
                "ldp q16, q17, [{b}, #256]", "ldp q18, q19, [{b}, #288]",
                "ldp q20, q21, [{b}, #320]", "ldp q22, q23, [{b}, #352]",
                "ldp q24, q25, [{b}, #384]", "ldp q26, q27, [{b}, #416]",
                "ldp q28, q29, [{b}, #448]", "ldp q30, q31, [{b}, #480]",
                "ldr {t}, [{b}, #512]", "msr fpsr, {t}",
                "ldr {t}, [{b}, #520]", "msr fpcr, {t}",
                b = in(reg) base,
                t = out(reg) _,
                options(nostack),
            );
        }
    }
}

const _: () = assert!(core::mem::offset_of!(FpState, fpsr) == 512);

impl skyscope_core::machine::ThreadContext for UserContext {
    #[inline(always)]
    fn arg(&self, i: usize) -> u64 {
        self.x[i]
    }

    #[inline(always)]
    fn set_arg(&mut self, i: usize, value: u64) {
        self.x[i] = value;
    }

    // Element by element: a slice copy of this size becomes a `memcpy`
    // call in the kernel (no FP/SIMD registers to inline it with).
    #[inline(always)]
    fn syscall_args(&self) -> [u64; 7] {
        core::array::from_fn(|i| self.x[i])
    }

    #[inline(always)]
    fn set_syscall_results(&mut self, values: [u64; 7]) {
        for (x, v) in self.x.iter_mut().zip(values) {
            *x = v;
        }
    }

    /// Every A64 instruction is 4 bytes (`svc` already returns past itself).
    fn skip_instruction(&mut self) {
        self.pc = self.pc.wrapping_add(4);
    }

    fn restart_syscall(&mut self) {
        // ELR_EL2 of an `svc` points after it (Arm ARM D1.10.1, preferred
        // exception return for SVC); every A64 instruction is 4 bytes.
        self.pc = self.pc.wrapping_sub(4);
    }

    fn register(&self, index: usize) -> u64 {
        use skyscope_abi::invocation::{REG_FLAGS, REG_PC, REG_SP, REG_TPIDR, REG_X0};
        match index {
            REG_PC => self.pc,
            REG_SP => self.sp,
            REG_FLAGS => self.spsr & SPSR_USER_FLAGS,
            REG_TPIDR => self.tpidr,
            i if (REG_X0..REG_X0 + 31).contains(&i) => self.x[i - REG_X0],
            _ => 0,
        }
    }

    fn set_register(&mut self, index: usize, value: u64) {
        use skyscope_abi::invocation::{REG_FLAGS, REG_PC, REG_SP, REG_TPIDR, REG_X0};
        match index {
            REG_PC => self.pc = value,
            REG_SP => self.sp = value,
            // Only the condition flags: the mode and interrupt masks are
            // the kernel's (native threads) or the Vcpu's PSTATE register.
            REG_FLAGS => self.spsr = (self.spsr & !SPSR_USER_FLAGS) | (value & SPSR_USER_FLAGS),
            REG_TPIDR => self.tpidr = value,
            i if (REG_X0..REG_X0 + 31).contains(&i) => self.x[i - REG_X0] = value,
            _ => {}
        }
    }
}

/// SPSR bits a thread may set: N, Z, C, V.
pub const SPSR_USER_FLAGS: u64 = 0xf << 28;

/// SPSR for a thread at EL0t (AArch64) with interrupts unmasked.
pub const SPSR_EL0: u64 = 0;

const OFF_SP: usize = offset_of!(UserContext, sp);
const OFF_PC: usize = offset_of!(UserContext, pc);
const OFF_TPIDR: usize = offset_of!(UserContext, tpidr);
const _: () = assert!(OFF_SP == 31 * 8 && OFF_PC == OFF_SP + 8);
const _: () = assert!(offset_of!(UserContext, spsr) == OFF_PC + 8);

/// Why EL0 entered the kernel (passed from the vector stubs).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Synchronous exception: syscall, fault, trapped instruction.
    Sync = 0,
    /// IRQ.
    Irq = 1,
    /// FIQ (not used on this platform; reported).
    Fiq = 2,
    /// SError (asynchronous abort; reported).
    SError = 3,
}

unsafe extern "C" {
    /// The EL2 vector table (2 KiB aligned), for VBAR_EL2.
    pub fn exception_vectors();
    /// Restores `context` and enters EL0; never returns.
    fn return_to_user(context: *const UserContext) -> !;
}

/// Resumes the thread whose saved registers are `context` at EL0.
///
/// The context must stay at this address until the thread next enters the
/// kernel: the vector code saves the registers back into it.
#[inline(always)]
pub fn enter_user(context: &mut UserContext) -> ! {
    // SAFETY: `context` is a valid, exclusively borrowed register save area
    // that lives in a kernel object (a TCB) for as long as the thread
    // exists; `return_to_user` makes the SPSR EL0t with interrupts
    // unmasked, so `eret` cannot raise privilege.
    unsafe { return_to_user(context) }
}

core::arch::global_asm!(
    // Saves the user registers but x0/x1 (already saved) into the
    // UserContext at SP, using x9..x12 as scratch once they are saved: on
    // exit x0..x8 still hold the thread's values.
    ".macro save_user_registers",
    "stp x2, x3, [sp, #16 * 1]",
    "stp x4, x5, [sp, #16 * 2]",
    "stp x6, x7, [sp, #16 * 3]",
    "stp x8, x9, [sp, #16 * 4]",
    "stp x10, x11, [sp, #16 * 5]",
    "stp x12, x13, [sp, #16 * 6]",
    "stp x14, x15, [sp, #16 * 7]",
    "stp x16, x17, [sp, #16 * 8]",
    "stp x18, x19, [sp, #16 * 9]",
    "stp x20, x21, [sp, #16 * 10]",
    "stp x22, x23, [sp, #16 * 11]",
    "stp x24, x25, [sp, #16 * 12]",
    "stp x26, x27, [sp, #16 * 13]",
    "stp x28, x29, [sp, #16 * 14]",
    "mrs x9, sp_el0",
    "stp x30, x9, [sp, #{off_x30}]",
    "mrs x10, elr_el2",
    "mrs x11, spsr_el2",
    "stp x10, x11, [sp, #{off_pc}]",
    "mrs x12, tpidr_el0",
    "str x12, [sp, #{off_tpidr}]",
    ".endm",
    "",
    ".section .text.vectors, \"ax\"",
    ".balign 2048",
    ".global exception_vectors",
    "exception_vectors:",
    // Current EL with SP_EL0: never used (the kernel runs on SP_EL2).
    ".balign 0x80", "b __sky_kernel_fault_entry",
    ".balign 0x80", "b __sky_kernel_fault_entry",
    ".balign 0x80", "b __sky_kernel_fault_entry",
    ".balign 0x80", "b __sky_kernel_fault_entry",
    // Current EL with SP_EL2: a kernel bug, or an IRQ in the idle loop.
    ".balign 0x80", "b __sky_kernel_fault_entry",
    ".balign 0x80", "b __sky_kernel_irq_entry",
    ".balign 0x80", "b __sky_kernel_fault_entry",
    ".balign 0x80", "b __sky_kernel_fault_entry",
    // Lower EL, AArch64: the thread's context is at SP.
    ".balign 0x80", "stp x0, x1, [sp]", "b __sky_user_sync",
    ".balign 0x80", "stp x0, x1, [sp]", "mov x0, #1", "b __sky_user_entry",
    ".balign 0x80", "stp x0, x1, [sp]", "mov x0, #2", "b __sky_user_entry",
    ".balign 0x80", "stp x0, x1, [sp]", "mov x0, #3", "b __sky_user_entry",
    // Lower EL, AArch32: never used (EL0 is AArch64 only).
    ".balign 0x80", "b __sky_kernel_fault_entry",
    ".balign 0x80", "b __sky_kernel_fault_entry",
    ".balign 0x80", "b __sky_kernel_fault_entry",
    ".balign 0x80", "b __sky_kernel_fault_entry",
    "",
    // A synchronous exception from EL0 or a guest; user x0/x1 saved.
    "__sky_user_sync:",
    "save_user_registers",
    // The IPC fastpath is decided here, before anything else: an `svc`
    // (ESR_EL2.EC = 0x15, SVC in AArch64) whose x7 is Call (1) goes to
    // `fast_call`, one whose x7 is ReplyRecv (2) to `fast_reply_recv`,
    // with x0..x7 as the thread left them. They never return, so they are
    // branched to (not called) and the thread's frame pointer is left as
    // it is (nothing walks the kernel's frames). An SVC reaches EL2 only
    // from EL0 with HCR_EL2.TGE set (Arm
    // ARM, pseudocode AArch64.CallSupervisor: route_to_el2 = PSTATE.EL ==
    // EL0 && EL2Enabled() && HCR_EL2.TGE == '1'; a guest's SVC at EL0 or
    // EL1 is taken to its EL1), so this is always a native thread, never a
    // guest whose exit must first take a pending SError and restore
    // HCR_EL2. EC is ESR_EL2 bits 31:26 (Arm ARM D23.2, ESR_EL2).
    "mrs x8, esr_el2",
    "lsr x8, x8, #26",
    "cmp x8, #0x15",
    "b.ne 1f",
    "cmp x7, #1",
    "b.eq 2f",
    "cmp x7, #2",
    "b.ne 1f",
    "ldr x8, =__stack_top",
    "mov sp, x8",
    "b {fast_reply_recv}",
    "2:",
    "ldr x8, =__stack_top",
    "mov sp, x8",
    "b {fast_call}",
    "1:",
    "mov x0, #0",
    "b __sky_user_saved",
    "",
    // x0 = entry kind; user x0/x1 already saved; SP = &UserContext.
    "__sky_user_entry:",
    "save_user_registers",
    "__sky_user_saved:",
    "mov x1, sp",
    "ldr x9, =__stack_top",
    "mov sp, x9",
    "mov x29, xzr",
    "bl {handle_user_entry}",
    "b .",
    "",
    // An IRQ while the kernel idles: save what a call may clobber.
    "__sky_kernel_irq_entry:",
    "sub sp, sp, #16 * 12",
    "stp x0, x1, [sp, #16 * 0]",
    "stp x2, x3, [sp, #16 * 1]",
    "stp x4, x5, [sp, #16 * 2]",
    "stp x6, x7, [sp, #16 * 3]",
    "stp x8, x9, [sp, #16 * 4]",
    "stp x10, x11, [sp, #16 * 5]",
    "stp x12, x13, [sp, #16 * 6]",
    "stp x14, x15, [sp, #16 * 7]",
    "stp x16, x17, [sp, #16 * 8]",
    "stp x18, x29, [sp, #16 * 9]",
    "mrs x10, elr_el2",
    "mrs x11, spsr_el2",
    "stp x30, x10, [sp, #16 * 10]",
    "str x11, [sp, #16 * 11]",
    "bl {handle_kernel_irq}",
    "ldr x11, [sp, #16 * 11]",
    "ldp x30, x10, [sp, #16 * 10]",
    "msr elr_el2, x10",
    "msr spsr_el2, x11",
    "ldp x18, x29, [sp, #16 * 9]",
    "ldp x16, x17, [sp, #16 * 8]",
    "ldp x14, x15, [sp, #16 * 7]",
    "ldp x12, x13, [sp, #16 * 6]",
    "ldp x10, x11, [sp, #16 * 5]",
    "ldp x8, x9, [sp, #16 * 4]",
    "ldp x6, x7, [sp, #16 * 3]",
    "ldp x4, x5, [sp, #16 * 2]",
    "ldp x2, x3, [sp, #16 * 1]",
    "ldp x0, x1, [sp, #16 * 0]",
    "add sp, sp, #16 * 12",
    "eret",
    "",
    // A synchronous exception or SError in the kernel is a bug: report it
    // from a separate stack (the fault may be a kernel stack overflow).
    "__sky_kernel_fault_entry:",
    "mov x0, sp",
    "ldr x1, =__emergency_stack_top",
    "mov sp, x1",
    "bl {kernel_fault}",
    "b .",
    "",
    ".section .text.return_to_user, \"ax\"",
    ".global return_to_user",
    ".global return_to_context",
    // x0 = &UserContext whose SPSR the caller checked (a guest's, which
    // `vcpu::enter_guest` sanitised): restores it and returns to it.
    "return_to_context:",
    "mov sp, x0",
    "ldp x10, x11, [sp, #{off_pc}]",
    "b 3f",
    // x0 = &UserContext of a native thread. Restores it and enters EL0;
    // SP_EL2 stays pointing at the context for the next entry. The SPSR is
    // made EL0t (M[4:0] = 0) with DAIF clear whatever the context holds,
    // so `eret` can only reach EL0 with interrupts unmasked (Arm ARM D23.2,
    // SPSR_EL2: M[4:0] is bits 4:0, bit 5 is RES0 on a return to AArch64,
    // D, A, I, F are bits 9:6: one mask clears bits 9:0); the condition
    // flags are the thread's own.
    "return_to_user:",
    "mov sp, x0",
    "ldp x10, x11, [sp, #{off_pc}]",
    "and x11, x11, #~0x3ff",
    "3:",
    "msr elr_el2, x10",
    "msr spsr_el2, x11",
    "ldp x30, x9, [sp, #{off_x30}]",
    "msr sp_el0, x9",
    "ldr x12, [sp, #{off_tpidr}]",
    "msr tpidr_el0, x12",
    "ldp x2, x3, [sp, #16 * 1]",
    "ldp x4, x5, [sp, #16 * 2]",
    "ldp x6, x7, [sp, #16 * 3]",
    "ldp x8, x9, [sp, #16 * 4]",
    "ldp x10, x11, [sp, #16 * 5]",
    "ldp x12, x13, [sp, #16 * 6]",
    "ldp x14, x15, [sp, #16 * 7]",
    "ldp x16, x17, [sp, #16 * 8]",
    "ldp x18, x19, [sp, #16 * 9]",
    "ldp x20, x21, [sp, #16 * 10]",
    "ldp x22, x23, [sp, #16 * 11]",
    "ldp x24, x25, [sp, #16 * 12]",
    "ldp x26, x27, [sp, #16 * 13]",
    "ldp x28, x29, [sp, #16 * 14]",
    "ldp x0, x1, [sp]",
    "eret",
    off_x30 = const OFF_SP - 8,
    off_pc = const OFF_PC,
    off_tpidr = const OFF_TPIDR,
    fast_call = sym super::trap::fast_call,
    fast_reply_recv = sym super::trap::fast_reply_recv,
    handle_user_entry = sym super::trap::handle_user_entry,
    handle_kernel_irq = sym super::trap::handle_kernel_irq,
    kernel_fault = sym super::trap::kernel_fault,
);
