//! AArch64 (ARMv8.1+ with VHE) support: the kernel runs at EL2.

#[macro_use]
mod sysreg;
pub mod boot;
pub mod exception;
pub mod guest_irq;
pub mod machine;
pub mod mmu;
pub mod platform;
pub mod power;
pub mod timer;
pub mod trap;
pub mod vcpu;
pub mod vgic;

// The names the rest of the kernel uses (the same set for every
// architecture).
pub use boot::{BOOT_MAP_END, kernel_image_phys};
pub use exception::{SPSR_EL0, UserContext, enter_user};
pub use guest_irq::{GuestInterrupts, MAINTENANCE_INTID};
pub use machine::{KernelMachine, ThreadMode};
pub use mmu::{
    MapError, PageTables, USER_VA_END, activate_kernel_tables, build_kernel_tables, copy_from_phys,
    copy_to_phys, device_virt, set_ram_bounds, zero_phys,
};
pub use platform::{Platform, discover as discover_platform};
pub use power::PowerControl;
pub use trap::wait_for_interrupt;
pub use vcpu::init as init_guest_support;

/// Tells user code where its IPC buffer is (TPIDRRO_EL0: readable, not
/// writable, at EL0).
pub fn set_ipc_buffer_pointer(address: u64) {
    // SAFETY: a plain system-register write with no memory effects.
    unsafe { core::arch::asm!("msr tpidrro_el0, {}", in(reg) address, options(nomem, nostack)) };
}

/// Traps (or stops trapping) EL0 use of the FP/SIMD unit: CPTR_EL2 with
/// E2H=1 has the CPACR layout (Arm ARM D23.2.36), FPEN = 0b01 traps EL0
/// only, 0b11 traps nothing.
pub fn set_fp_trap(trap: bool) {
    let value: u64 = if trap { 0b01 << 20 } else { 0b11 << 20 };
    // SAFETY: only the FP/SIMD trap changes; the kernel does not use FP.
    unsafe { core::arch::asm!("msr cptr_el2, {}", "isb", in(reg) value, options(nomem, nostack)) };
}

/// Whether an IRQ is waiting (ISR_EL1.I, Arm ARM D23.2.92: with
/// HCR_EL2.TGE set it reports physical interrupts), while the kernel runs
/// with interrupts masked: a long operation stops at its next preemption
/// point.
pub fn interrupt_pending() -> bool {
    let isr: u64;
    // SAFETY: reads a status register; no side effects.
    unsafe { core::arch::asm!("mrs {}, isr_el1", out(reg) isr, options(nomem, nostack)) };
    isr & (1 << 7) != 0
}

/// Whether PSTATE.PAN is set (the kernel cannot touch user memory by
/// accident): SCTLR_EL2.SPAN = 0 sets it on every exception entry.
pub fn pan_enabled() -> bool {
    let pan: u64;
    // SAFETY: reading PSTATE.PAN (S3_0_C4_C2_3) has no side effects.
    unsafe { core::arch::asm!("mrs {}, S3_0_C4_C2_3", out(reg) pan, options(nomem, nostack)) };
    pan & (1 << 22) != 0
}

impl UserContext {
    /// A fresh context that starts at `pc` with stack `sp` and `arg0` in x0.
    pub fn new_thread(pc: u64, sp: u64, arg0: u64) -> UserContext {
        let mut c = UserContext {
            pc,
            sp,
            spsr: SPSR_EL0,
            ..UserContext::default()
        };
        c.x[0] = arg0;
        c
    }
}

/// Human-readable name of the CPU, for the boot banner.
pub fn cpu_description() -> (u64, bool) {
    let midr: u64;
    let mmfr1: u64;
    // SAFETY: reading ID registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, midr_el1", out(reg) midr, options(nomem, nostack));
        core::arch::asm!("mrs {}, id_aa64mmfr1_el1", out(reg) mmfr1, options(nomem, nostack));
    }
    let vhe = (mmfr1 >> 8) & 0xf != 0;
    (midr, vhe)
}

/// Whether HCR_EL2.E2H is set (VHE active).
pub fn vhe_enabled() -> bool {
    let hcr: u64;
    // SAFETY: reading HCR_EL2 has no side effects.
    unsafe { core::arch::asm!("mrs {}, hcr_el2", out(reg) hcr, options(nomem, nostack)) };
    hcr & (1 << 34) != 0
}
