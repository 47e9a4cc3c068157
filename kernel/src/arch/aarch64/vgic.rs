//! The GICv3 virtual CPU interface's registers (ICH_*_EL2): moving a
//! Vcpu's list registers, virtual machine control and active-priority
//! state between its object and the CPU.
//!
//! Encodings: GIC architecture specification (IHI 0069H) §12.5: `ICH_LR<n>_EL2`
//! is S3_4_C12_C12_n (n < 8) and S3_4_C12_C13_(n-8); `ICH_AP0R<n>_EL2`
//! S3_4_C12_C8_n; `ICH_AP1R<n>_EL2` S3_4_C12_C9_n; ICH_HCR_EL2 S3_4_C12_C11_0;
//! ICH_VTR_EL2 S3_4_C12_C11_1; ICH_EISR_EL2 S3_4_C12_C11_3; ICH_VMCR_EL2
//! S3_4_C12_C11_7.
//!
//! Like the EL1 registers, this state stays in the CPU while its Vcpu is
//! the loaded one (native threads run with TGE set, where the virtual
//! interface delivers nothing), and moves only when another Vcpu loads.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use skyscope_el2::vgic::{ListRegister, Vtr};

/// Most list registers the architecture allows.
pub const MAX_LIST_REGISTERS: usize = 16;

/// The virtual interface state of one Vcpu while it is not loaded.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct InterfaceState {
    /// `ICH_LR<n>_EL2`.
    pub list_registers: [ListRegister; MAX_LIST_REGISTERS],
    /// ICH_VMCR_EL2: the guest's priority mask, binary points, group
    /// enables, EOI mode (all it set through its ICC_* registers).
    pub vmcr: u64,
    /// `ICH_AP0R<n>_EL2`: Group 0 active priorities.
    pub ap0r: [u64; 4],
    /// `ICH_AP1R<n>_EL2`: Group 1 active priorities.
    pub ap1r: [u64; 4],
}

/// List registers this CPU implements (read at boot).
static LIST_REGISTERS: AtomicUsize = AtomicUsize::new(0);
/// Active-priority registers per group this CPU implements.
static ACTIVE_PRIORITY_REGISTERS: AtomicUsize = AtomicUsize::new(0);

/// Reads ICH_VTR_EL2 and remembers the interface's size; returns it.
pub fn init() -> Vtr {
    let vtr = Vtr::decode(read_sysreg!("S3_4_C12_C11_1"));
    LIST_REGISTERS.store(vtr.list_registers, Relaxed);
    ACTIVE_PRIORITY_REGISTERS.store(vtr.active_priority_registers(), Relaxed);
    write_sysreg!("S3_4_C12_C11_0", 0); // ICH_HCR_EL2: off until a Vcpu loads
    vtr
}

/// Number of list registers.
pub fn list_register_count() -> usize {
    LIST_REGISTERS.load(Relaxed)
}

/// Reads `ICH_LR<n>_EL2`.
pub fn read_lr(n: usize) -> ListRegister {
    ListRegister(match n {
        0 => read_sysreg!("S3_4_C12_C12_0"),
        1 => read_sysreg!("S3_4_C12_C12_1"),
        2 => read_sysreg!("S3_4_C12_C12_2"),
        3 => read_sysreg!("S3_4_C12_C12_3"),
        4 => read_sysreg!("S3_4_C12_C12_4"),
        5 => read_sysreg!("S3_4_C12_C12_5"),
        6 => read_sysreg!("S3_4_C12_C12_6"),
        7 => read_sysreg!("S3_4_C12_C12_7"),
        8 => read_sysreg!("S3_4_C12_C13_0"),
        9 => read_sysreg!("S3_4_C12_C13_1"),
        10 => read_sysreg!("S3_4_C12_C13_2"),
        11 => read_sysreg!("S3_4_C12_C13_3"),
        12 => read_sysreg!("S3_4_C12_C13_4"),
        13 => read_sysreg!("S3_4_C12_C13_5"),
        14 => read_sysreg!("S3_4_C12_C13_6"),
        15 => read_sysreg!("S3_4_C12_C13_7"),
        _ => 0,
    })
}

/// Writes `ICH_LR<n>_EL2`.
pub fn write_lr(n: usize, lr: ListRegister) {
    let v = lr.0;
    match n {
        0 => write_sysreg!("S3_4_C12_C12_0", v),
        1 => write_sysreg!("S3_4_C12_C12_1", v),
        2 => write_sysreg!("S3_4_C12_C12_2", v),
        3 => write_sysreg!("S3_4_C12_C12_3", v),
        4 => write_sysreg!("S3_4_C12_C12_4", v),
        5 => write_sysreg!("S3_4_C12_C12_5", v),
        6 => write_sysreg!("S3_4_C12_C12_6", v),
        7 => write_sysreg!("S3_4_C12_C12_7", v),
        8 => write_sysreg!("S3_4_C12_C13_0", v),
        9 => write_sysreg!("S3_4_C12_C13_1", v),
        10 => write_sysreg!("S3_4_C12_C13_2", v),
        11 => write_sysreg!("S3_4_C12_C13_3", v),
        12 => write_sysreg!("S3_4_C12_C13_4", v),
        13 => write_sysreg!("S3_4_C12_C13_5", v),
        14 => write_sysreg!("S3_4_C12_C13_6", v),
        15 => write_sysreg!("S3_4_C12_C13_7", v),
        _ => {}
    }
}

fn read_ap(group1: bool, n: usize) -> u64 {
    match (group1, n) {
        (false, 0) => read_sysreg!("S3_4_C12_C8_0"),
        (false, 1) => read_sysreg!("S3_4_C12_C8_1"),
        (false, 2) => read_sysreg!("S3_4_C12_C8_2"),
        (false, 3) => read_sysreg!("S3_4_C12_C8_3"),
        (true, 0) => read_sysreg!("S3_4_C12_C9_0"),
        (true, 1) => read_sysreg!("S3_4_C12_C9_1"),
        (true, 2) => read_sysreg!("S3_4_C12_C9_2"),
        (true, 3) => read_sysreg!("S3_4_C12_C9_3"),
        _ => 0,
    }
}

fn write_ap(group1: bool, n: usize, v: u64) {
    match (group1, n) {
        (false, 0) => write_sysreg!("S3_4_C12_C8_0", v),
        (false, 1) => write_sysreg!("S3_4_C12_C8_1", v),
        (false, 2) => write_sysreg!("S3_4_C12_C8_2", v),
        (false, 3) => write_sysreg!("S3_4_C12_C8_3", v),
        (true, 0) => write_sysreg!("S3_4_C12_C9_0", v),
        (true, 1) => write_sysreg!("S3_4_C12_C9_1", v),
        (true, 2) => write_sysreg!("S3_4_C12_C9_2", v),
        (true, 3) => write_sysreg!("S3_4_C12_C9_3", v),
        _ => {}
    }
}

/// Puts `state` in the CPU and turns the interface on (`hcr`: En plus
/// whatever maintenance the caller wants).
pub fn load(state: &InterfaceState, hcr: u64) {
    for (n, &lr) in state.list_registers[..list_register_count()]
        .iter()
        .enumerate()
    {
        write_lr(n, lr);
    }
    for n in 0..ACTIVE_PRIORITY_REGISTERS.load(Relaxed) {
        write_ap(false, n, state.ap0r[n]);
        write_ap(true, n, state.ap1r[n]);
    }
    write_sysreg!("S3_4_C12_C11_7", state.vmcr);
    write_sysreg!("S3_4_C12_C11_0", hcr);
}

/// Takes the CPU's state into `state` and turns the interface off, its
/// list registers cleared (nothing of this Vcpu's is left for the next).
pub fn save(state: &mut InterfaceState) {
    write_sysreg!("S3_4_C12_C11_0", 0);
    for n in 0..list_register_count() {
        state.list_registers[n] = read_lr(n);
        write_lr(n, ListRegister(0));
    }
    for n in 0..ACTIVE_PRIORITY_REGISTERS.load(Relaxed) {
        state.ap0r[n] = read_ap(false, n);
        state.ap1r[n] = read_ap(true, n);
        write_ap(false, n, 0);
        write_ap(true, n, 0);
    }
    state.vmcr = read_sysreg!("S3_4_C12_C11_7");
    write_sysreg!("S3_4_C12_C11_7", 0);
}

/// Clears the CPU's interface without keeping anything (the Vcpu whose
/// state it held is gone).
pub fn discard() {
    save(&mut InterfaceState::default());
}

/// Writes ICH_HCR_EL2.
pub fn set_hcr(hcr: u64) {
    write_sysreg!("S3_4_C12_C11_0", hcr);
}

/// ICH_EISR_EL2: list registers whose interrupt the guest ended and that
/// asked for EOI maintenance.
pub fn ended_list_registers() -> u64 {
    read_sysreg!("S3_4_C12_C11_3")
}
