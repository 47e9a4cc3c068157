//! arm64 virtual CPUs: the guest's EL1 register file, moving it between a
//! Vcpu object and the CPU, entering the guest at EL1 and decoding its exits.
//!
//! The kernel runs at EL2 with VHE (HCR_EL2.E2H = 1). Native threads run
//! with TGE = 1 in the EL2&0 regime; a thread bound to a Vcpu runs with
//! TGE = 0 and stage 2 on (HCR_EL2.VM), in the EL1&0 regime behind its
//! GuestSpace. Only while a guest runs is HCR_EL2 in its guest setting:
//! every exit switches straight back, so TLB maintenance and everything
//! else the kernel does always happens in the host setting.
//!
//! The guest's EL1 registers stay in the CPU after an exit (native threads
//! cannot reach EL1 registers), and are saved only when another Vcpu is
//! loaded or the VMM reads them. From EL2 with E2H = 1 the `*_EL12` and
//! `*_EL02` encodings reach the EL1 registers (Arm ARM D23, "Redirection
//! and accessing EL1/EL0 registers from EL2", and the register list in
//! D23.2); TPIDR_EL1, SP_EL1 and PAR_EL1 are not redirected and are
//! reached directly; TPIDRRO_EL0 also carries native threads' IPC-buffer
//! pointers, so it is written on every guest entry.

use super::vgic::InterfaceState;
use crate::arch::exception::UserContext;
use skyscope_abi::vcpu::aarch64 as reg;
use skyscope_core::object::vcpu::Vcpu;
use skyscope_el2::vgic::VirtualIrqs;

/// SCTLR_EL1 of a new Vcpu: MMU and caches off, the RES1 bits set (the
/// value Linux expects to find at boot).
const SCTLR_EL1_RESET: u64 = 0x30C5_0838;
/// VMPIDR_EL2 of a new Vcpu: affinity 0, bit 31 RES1.
const VMPIDR_RESET: u64 = 1 << 31;

/// A Vcpu object: the core's head, then the guest's EL1 registers indexed
/// as `skyscope_abi::vcpu::aarch64` (index 0, PSTATE, lives in the bound
/// thread's saved SPSR instead), then its virtual interrupt state.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct VcpuObject {
    /// Binding (core-owned).
    pub head: Vcpu,
    /// Guest registers.
    pub registers: [u64; reg::COUNT as usize],
    /// The virtual CPU interface while the Vcpu is not loaded.
    pub interface: InterfaceState,
    /// Virtual interrupts waiting for a list register, level lines.
    pub irqs: VirtualIrqs,
    /// While switched out: the physical count at which one of its timers
    /// fires (`u64::MAX`: none armed).
    pub timer_deadline: u64,
    /// The next switched-out Vcpu with an armed timer (a list the kernel
    /// timer watches; 0 ends it).
    pub next_armed: skyscope_core::PhysAddr,
}

impl VcpuObject {
    /// A Vcpu as retype creates it.
    pub fn new() -> VcpuObject {
        let mut registers = [0; reg::COUNT as usize];
        registers[reg::SCTLR_EL1 as usize] = SCTLR_EL1_RESET;
        registers[reg::VMPIDR_EL2 as usize] = VMPIDR_RESET;
        VcpuObject {
            head: Vcpu::default(),
            registers,
            interface: InterfaceState::default(),
            irqs: VirtualIrqs::default(),
            timer_deadline: u64::MAX,
            next_armed: skyscope_core::PhysAddr(0),
        }
    }
}

/// Hardware facts read once at boot.
pub type GuestSupport = skyscope_el2::config::GuestConfig;

/// Configures the CPU for running guests (once, at boot): stage-2
/// translation control, what the guest reads as its CPU ID and ID
/// registers, the debug and performance-monitor traps, the virtual GIC
/// interface. Returns what `enter` needs, the guest's ID registers and
/// the virtual interface's size.
pub fn init() -> (
    GuestSupport,
    skyscope_el2::idregs::GuestIdRegisters,
    skyscope_el2::vgic::Vtr,
) {
    let support = skyscope_el2::config::guest_config(skyscope_el2::config::IdRegisters {
        mmfr0: read_sysreg!("S3_0_C0_C7_0"), // ID_AA64MMFR0_EL1
        mmfr1: read_sysreg!("S3_0_C0_C7_1"), // ID_AA64MMFR1_EL1
        mmfr2: read_sysreg!("S3_0_C0_C7_2"), // ID_AA64MMFR2_EL1
        isar1: read_sysreg!("S3_0_C0_C6_1"), // ID_AA64ISAR1_EL1
        pfr0: read_sysreg!("S3_0_C0_C4_0"),  // ID_AA64PFR0_EL1
    });
    FORCED_WRITE_BACK.store(support.fwb, core::sync::atomic::Ordering::Relaxed);
    POINTER_AUTH.store(support.pauth, core::sync::atomic::Ordering::Relaxed);
    RAS.store(support.ras, core::sync::atomic::Ordering::Relaxed);
    write_sysreg!("S3_4_C2_C1_2", support.vtcr); // VTCR_EL2
    write_sysreg!("S3_4_C2_C1_0", 0); // VTTBR_EL2
    let midr = read_sysreg!("S3_0_C0_C0_0"); // MIDR_EL1
    write_sysreg!("S3_4_C0_C0_0", midr); // VPIDR_EL2
    let mdcr = read_sysreg!("S3_4_C1_C1_1"); // MDCR_EL2: HPMN keeps its value
    write_sysreg!(
        "S3_4_C1_C1_1",
        mdcr | skyscope_el2::config::MDCR_GUEST_TRAPS
    );
    // SAFETY: a synchronisation barrier only.
    unsafe { core::arch::asm!("isb", options(nostack)) };
    let ids = skyscope_el2::idregs::GuestIdRegisters::new(read_id_register);
    (support, ids, super::vgic::init())
}

/// Reads the host's ID register S3_0_C0_C`crm`_`op2` (CRm 1..7): the
/// encodings an `mrs` needs are immediates, hence the table.
fn read_id_register(crm: u8, op2: u8) -> u64 {
    macro_rules! row {
        ($crm:literal) => {
            match op2 {
                0 => read_sysreg!(concat!("S3_0_C0_C", $crm, "_0")),
                1 => read_sysreg!(concat!("S3_0_C0_C", $crm, "_1")),
                2 => read_sysreg!(concat!("S3_0_C0_C", $crm, "_2")),
                3 => read_sysreg!(concat!("S3_0_C0_C", $crm, "_3")),
                4 => read_sysreg!(concat!("S3_0_C0_C", $crm, "_4")),
                5 => read_sysreg!(concat!("S3_0_C0_C", $crm, "_5")),
                6 => read_sysreg!(concat!("S3_0_C0_C", $crm, "_6")),
                7 => read_sysreg!(concat!("S3_0_C0_C", $crm, "_7")),
                _ => 0,
            }
        };
    }
    // The unallocated encodings of this space read as zero (Arm ARM
    // D23.3.1), so reading all of them is safe.
    match crm {
        1 => row!("1"),
        2 => row!("2"),
        3 => row!("3"),
        4 => row!("4"),
        5 => row!("5"),
        6 => row!("6"),
        7 => row!("7"),
        _ => 0,
    }
}

/// Whether stage 2 forces write-back (HCR_EL2.FWB); set once at boot.
static FORCED_WRITE_BACK: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);
/// Whether the CPU has pointer authentication; set once at boot.
static POINTER_AUTH: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// Whether the CPU has FEAT_RAS (`esb`, DISR_EL1); set once at boot.
static RAS: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether guest RAM mappings get forced write-back attributes (else the
/// frame is cleaned to the point of coherency when mapped).
pub fn forced_write_back() -> bool {
    FORCED_WRITE_BACK.load(core::sync::atomic::Ordering::Relaxed)
}

/// Loads `registers` into the CPU's EL1 state. With pointer
/// authentication, the keys belong to the Vcpu: a guest may read and set
/// its own keys, so another guest's must never be left in the registers.
pub fn load(registers: &[u64; reg::COUNT as usize]) {
    let pauth = POINTER_AUTH.load(core::sync::atomic::Ordering::Relaxed);
    let r = |i: u64| registers[i as usize];
    write_sysreg!("S3_5_C1_C0_0", r(reg::SCTLR_EL1));
    write_sysreg!("S3_5_C2_C0_0", r(reg::TTBR0_EL1));
    write_sysreg!("S3_5_C2_C0_1", r(reg::TTBR1_EL1));
    write_sysreg!("S3_5_C2_C0_2", r(reg::TCR_EL1));
    write_sysreg!("S3_5_C10_C2_0", r(reg::MAIR_EL1));
    write_sysreg!("S3_5_C10_C3_0", r(reg::AMAIR_EL1));
    write_sysreg!("S3_5_C12_C0_0", r(reg::VBAR_EL1));
    write_sysreg!("S3_5_C13_C0_1", r(reg::CONTEXTIDR_EL1));
    write_sysreg!("S3_0_C13_C0_4", r(reg::TPIDR_EL1));
    write_sysreg!("S3_4_C4_C1_0", r(reg::SP_EL1));
    write_sysreg!("S3_5_C4_C0_1", r(reg::ELR_EL1));
    write_sysreg!("S3_5_C4_C0_0", r(reg::SPSR_EL1));
    write_sysreg!("S3_5_C5_C2_0", r(reg::ESR_EL1));
    write_sysreg!("S3_5_C6_C0_0", r(reg::FAR_EL1));
    write_sysreg!("S3_5_C5_C1_0", r(reg::AFSR0_EL1));
    write_sysreg!("S3_5_C5_C1_1", r(reg::AFSR1_EL1));
    write_sysreg!("S3_0_C7_C4_0", r(reg::PAR_EL1));
    write_sysreg!("S3_5_C1_C0_2", r(reg::CPACR_EL1));
    write_sysreg!("S3_5_C14_C1_0", r(reg::CNTKCTL_EL1));
    // The timers: offset and compare values before the controls, so
    // neither fires on a stale value.
    write_sysreg!("S3_4_C14_C0_3", r(reg::CNTVOFF_EL2));
    write_sysreg!("S3_5_C14_C3_2", r(reg::CNTV_CVAL_EL0));
    write_sysreg!("S3_5_C14_C2_2", r(reg::CNTP_CVAL_EL0));
    write_sysreg!("S3_5_C14_C3_1", r(reg::CNTV_CTL_EL0));
    write_sysreg!("S3_5_C14_C2_1", r(reg::CNTP_CTL_EL0));
    write_sysreg!("S3_4_C0_C0_5", r(reg::VMPIDR_EL2));
    write_sysreg!("S3_2_C0_C0_0", r(reg::CSSELR_EL1));
    if pauth {
        write_sysreg!("S3_0_C2_C1_0", r(reg::APIAKEYLO_EL1));
        write_sysreg!("S3_0_C2_C1_1", r(reg::APIAKEYHI_EL1));
        write_sysreg!("S3_0_C2_C1_2", r(reg::APIBKEYLO_EL1));
        write_sysreg!("S3_0_C2_C1_3", r(reg::APIBKEYHI_EL1));
        write_sysreg!("S3_0_C2_C2_0", r(reg::APDAKEYLO_EL1));
        write_sysreg!("S3_0_C2_C2_1", r(reg::APDAKEYHI_EL1));
        write_sysreg!("S3_0_C2_C2_2", r(reg::APDBKEYLO_EL1));
        write_sysreg!("S3_0_C2_C2_3", r(reg::APDBKEYHI_EL1));
        write_sysreg!("S3_0_C2_C3_0", r(reg::APGAKEYLO_EL1));
        write_sysreg!("S3_0_C2_C3_1", r(reg::APGAKEYHI_EL1));
    }
}

/// Saves the CPU's EL1 state into `registers` (the keys too, see [`load`]).
pub fn save(registers: &mut [u64; reg::COUNT as usize]) {
    let pauth = POINTER_AUTH.load(core::sync::atomic::Ordering::Relaxed);
    let mut w = |i: u64, v: u64| registers[i as usize] = v;
    w(reg::SCTLR_EL1, read_sysreg!("S3_5_C1_C0_0"));
    w(reg::TTBR0_EL1, read_sysreg!("S3_5_C2_C0_0"));
    w(reg::TTBR1_EL1, read_sysreg!("S3_5_C2_C0_1"));
    w(reg::TCR_EL1, read_sysreg!("S3_5_C2_C0_2"));
    w(reg::MAIR_EL1, read_sysreg!("S3_5_C10_C2_0"));
    w(reg::AMAIR_EL1, read_sysreg!("S3_5_C10_C3_0"));
    w(reg::VBAR_EL1, read_sysreg!("S3_5_C12_C0_0"));
    w(reg::CONTEXTIDR_EL1, read_sysreg!("S3_5_C13_C0_1"));
    w(reg::TPIDR_EL1, read_sysreg!("S3_0_C13_C0_4"));
    w(reg::SP_EL1, read_sysreg!("S3_4_C4_C1_0"));
    w(reg::ELR_EL1, read_sysreg!("S3_5_C4_C0_1"));
    w(reg::SPSR_EL1, read_sysreg!("S3_5_C4_C0_0"));
    w(reg::ESR_EL1, read_sysreg!("S3_5_C5_C2_0"));
    w(reg::FAR_EL1, read_sysreg!("S3_5_C6_C0_0"));
    w(reg::AFSR0_EL1, read_sysreg!("S3_5_C5_C1_0"));
    w(reg::AFSR1_EL1, read_sysreg!("S3_5_C5_C1_1"));
    w(reg::PAR_EL1, read_sysreg!("S3_0_C7_C4_0"));
    w(reg::CPACR_EL1, read_sysreg!("S3_5_C1_C0_2"));
    w(reg::CNTKCTL_EL1, read_sysreg!("S3_5_C14_C1_0"));
    w(reg::CNTV_CVAL_EL0, read_sysreg!("S3_5_C14_C3_2"));
    w(reg::CNTV_CTL_EL0, read_sysreg!("S3_5_C14_C3_1"));
    w(reg::CNTP_CVAL_EL0, read_sysreg!("S3_5_C14_C2_2"));
    w(reg::CNTP_CTL_EL0, read_sysreg!("S3_5_C14_C2_1"));
    w(reg::CNTVOFF_EL2, read_sysreg!("S3_4_C14_C0_3"));
    w(reg::VMPIDR_EL2, read_sysreg!("S3_4_C0_C0_5"));
    w(reg::CSSELR_EL1, read_sysreg!("S3_2_C0_C0_0"));
    if pauth {
        w(reg::APIAKEYLO_EL1, read_sysreg!("S3_0_C2_C1_0"));
        w(reg::APIAKEYHI_EL1, read_sysreg!("S3_0_C2_C1_1"));
        w(reg::APIBKEYLO_EL1, read_sysreg!("S3_0_C2_C1_2"));
        w(reg::APIBKEYHI_EL1, read_sysreg!("S3_0_C2_C1_3"));
        w(reg::APDAKEYLO_EL1, read_sysreg!("S3_0_C2_C2_0"));
        w(reg::APDAKEYHI_EL1, read_sysreg!("S3_0_C2_C2_1"));
        w(reg::APDBKEYLO_EL1, read_sysreg!("S3_0_C2_C2_2"));
        w(reg::APDBKEYHI_EL1, read_sysreg!("S3_0_C2_C2_3"));
        w(reg::APGAKEYLO_EL1, read_sysreg!("S3_0_C2_C3_0"));
        w(reg::APGAKEYHI_EL1, read_sysreg!("S3_0_C2_C3_1"));
    }
    // TPIDRRO_EL0 is not kept in the CPU between runs (native threads
    // use it); `enter` loads it and `leave` saves it.
}

/// Stops the loaded guest's timers (after [`save`], or when its Vcpu is
/// destroyed): a switched-out guest's timer must not fire on the CPU;
/// the kernel timer watches it instead.
pub fn stop_timers() {
    write_sysreg!("S3_5_C14_C3_1", 0); // CNTV_CTL_EL02
    write_sysreg!("S3_5_C14_C2_1", 0); // CNTP_CTL_EL02
}

/// The loaded guest's timer controls (virtual, physical), ISTATUS live.
pub fn timer_controls() -> (u64, u64) {
    (read_sysreg!("S3_5_C14_C3_1"), read_sysreg!("S3_5_C14_C2_1"))
}

/// The guest's read-only thread pointer, saved on every exit.
pub fn save_tpidrro(registers: &mut [u64; reg::COUNT as usize]) {
    registers[reg::TPIDRRO_EL0 as usize] = read_sysreg!("S3_3_C13_C0_3");
}

/// A guest PSTATE the kernel can `eret` to (see `skyscope_el2::pstate`).
pub fn sanitize_pstate(spsr: u64) -> u64 {
    skyscope_el2::pstate::sanitize(spsr)
}

/// Makes the guest space `root` with `vmid` current for stage 2 and sets
/// the guest's TPIDRRO_EL0; the caller then enters with [`enter_guest`].
pub fn activate_guest_space(root: skyscope_core::PhysAddr, vmid: u16, tpidrro: u64) {
    write_sysreg!("S3_4_C2_C1_0", root.0 | (u64::from(vmid) << 48)); // VTTBR_EL2
    write_sysreg!("S3_3_C13_C0_3", tpidrro);
}

unsafe extern "C" {
    /// Restores `context`, switches HCR_EL2 to `hcr` and enters the guest.
    fn return_to_guest(context: *const UserContext, hcr: u64) -> !;
}

/// Resumes the Vcpu thread whose registers are `context` in the guest.
pub fn enter_guest(context: &mut UserContext, support: &GuestSupport) -> ! {
    context.spsr = sanitize_pstate(context.spsr);
    // SAFETY: as for `enter_user`: `context` lives in the thread's TCB;
    // SPSR names EL1 or EL0 (never EL2), and HCR_EL2 has TGE clear and
    // stage 2 on, so the guest runs behind its GuestSpace (made current by
    // `activate_guest_space`) and every trap returns to the kernel.
    unsafe { return_to_guest(context, support.hcr) }
}

/// Set by the `DebugInjectGuestSError` syscall: the next guest exit
/// reports an SError as if the hardware had one pending (QEMU's TCG never
/// raises physical SErrors, so the path after the hardware is tested this
/// way). Never set in the `hardened` kernel, which has no debug syscalls.
static SIMULATED_SERROR: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Arms [`SIMULATED_SERROR`].
pub fn simulate_serror_at_next_exit() {
    SIMULATED_SERROR.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// Takes a guest's pending SError at its exit, while the kernel still
/// knows whose it is: with FEAT_RAS, `esb` defers a pending physical
/// SError (masked at EL2) into DISR_EL1 (Arm ARM D23.2.38), which is read
/// and cleared. Returns DISR_EL1 if an SError was pending. Without this, a
/// guest's late SError would be taken by whatever ran next.
pub fn take_pending_serror() -> Option<u64> {
    if SIMULATED_SERROR.swap(false, core::sync::atomic::Ordering::Relaxed) {
        // DISR_EL1.A with AET = 0 (uncontainable) and an implementation
        // defined syndrome marking the simulation.
        return Some((1 << 31) | 0x5e55);
    }
    if !RAS.load(core::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    // SAFETY: `esb` only synchronises errors; PSTATE.A is set in the
    // kernel, so a pending SError is deferred, not taken.
    unsafe { core::arch::asm!(".arch_extension ras", "esb", "isb", options(nostack)) };
    let disr = read_sysreg!("S3_0_C12_C1_1"); // DISR_EL1
    if disr & (1 << 31) == 0 {
        return None;
    }
    write_sysreg!("S3_0_C12_C1_1", 0);
    Some(disr)
}

/// Puts HCR_EL2 back to the host setting after a guest exit.
pub fn restore_host_configuration() {
    set_hcr(skyscope_el2::config::HCR_HOST);
}

/// Writes HCR_EL2 and synchronises.
fn set_hcr(value: u64) {
    // SAFETY: HCR_EL2 does change the kernel's regime; every caller writes
    // the host setting, or (for TLB maintenance, without touching memory
    // through EL1&0 translations meanwhile) the host setting without TGE,
    // which it restores at once.
    unsafe { core::arch::asm!("msr hcr_el2, {}", "isb", in(reg) value, options(nostack)) };
}

/// Reads HPFAR_EL2 (the faulting IPA of a stage-2 abort).
pub fn read_hpfar() -> u64 {
    read_sysreg!("S3_4_C6_C0_4")
}

/// Runs `f` with the guest `vmid` current for TLB maintenance: TLBI
/// operations on the EL1&0 regime then act on that guest (as in Linux's
/// VHE `__tlb_switch_to_guest`, TGE is cleared for the duration).
fn with_guest_tlb_context(vmid: u16, f: impl FnOnce()) {
    let vttbr = read_sysreg!("S3_4_C2_C1_0");
    write_sysreg!("S3_4_C2_C1_0", u64::from(vmid) << 48);
    set_hcr(skyscope_el2::config::HCR_HOST & !skyscope_el2::config::HCR_TGE);
    f();
    set_hcr(skyscope_el2::config::HCR_HOST);
    write_sysreg!("S3_4_C2_C1_0", vttbr);
    // SAFETY: a synchronisation barrier only.
    unsafe { core::arch::asm!("isb", options(nostack)) };
}

/// Forgets the guest's translations of the page at `ipa` (stage 2, and the
/// combined stage-1 entries that may hold it).
pub fn flush_guest_page(vmid: u16, ipa: u64) {
    with_guest_tlb_context(vmid, || {
        let operand = (ipa >> 12) & ((1 << 36) - 1);
        // SAFETY: TLB maintenance only; the barriers order it after the
        // table write and before later accesses.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi ipas2e1is, {}",
                "dsb ish",
                "tlbi vmalle1is",
                "dsb ish",
                "isb",
                in(reg) operand,
                options(nostack)
            )
        };
    });
}

/// Forgets every translation of the guest `vmid`.
pub fn flush_guest(vmid: u16) {
    with_guest_tlb_context(vmid, || {
        // SAFETY: as for `flush_guest_page`.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi vmalls12e1is",
                "dsb ish",
                "isb",
                options(nostack)
            )
        };
    });
}

core::arch::global_asm!(
    ".section .text.return_to_guest, \"ax\"",
    ".global return_to_guest",
    // x0 = &UserContext, x1 = HCR_EL2 for the guest. Like `return_to_user`,
    // but switches HCR_EL2 last, with every kernel access done.
    "return_to_guest:",
    "msr hcr_el2, x1",
    "isb",
    "b return_to_user",
);
