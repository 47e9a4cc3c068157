//! arm64 vCPU identity and entry state: the MPIDR each vCPU reports (how
//! the guest names it in PSCI calls, the device tree's `/cpus` nodes,
//! GICR_TYPER, SGI target lists and GICD_IROUTER), and the registers a vCPU
//! starts with.

use crate::vcpu::{MAX_VCPUS, VcpuId};
use skyscope_abi::vcpu::aarch64 as vreg;

/// MPIDR_EL1 bits that name a CPU: Aff3 (39:32), Aff2 (23:16), Aff1
/// (15:8), Aff0 (7:0) (Arm ARM D23.2 "MPIDR_EL1, Multiprocessor Affinity
/// Register").
pub const AFFINITY_MASK: u64 = 0xff_00ff_ffff;
/// MPIDR_EL1 bit 31: RES1.
const MPIDR_RES1: u64 = 1 << 31;

/// Aff0 values per Aff1 cluster: GICv3 SGI target lists (ICC_SGI1R_EL1
/// TargetList) reach Aff0 0..15 only without the range selector.
const CLUSTER: usize = 16;

/// The MPIDR_EL1 value vCPU `vcpu` reads (what the VMM writes to its
/// VMPIDR_EL2): Aff0 = index mod 16, Aff1 = index / 16, U = 0, MT = 0.
pub fn mpidr(vcpu: VcpuId) -> u64 {
    let i = vcpu.index();
    MPIDR_RES1 | (((i / CLUSTER) as u64) << 8) | (i % CLUSTER) as u64
}

/// The affinity of `vcpu` packed as Aff3.Aff2.Aff1.Aff0 in 32 bits, the
/// form GICR_TYPER.Affinity_Value and the device tree use.
pub fn packed_affinity(vcpu: VcpuId) -> u32 {
    let m = mpidr(vcpu);
    (((m >> 32) & 0xff) << 24 | (m & 0xff_ffff)) as u32
}

/// The vCPU (of the first `count`) whose MPIDR affinity fields are those
/// of `mpidr` (other bits ignored).
pub fn vcpu_with_affinity(mpidr: u64, count: usize) -> Option<VcpuId> {
    (0..count.min(MAX_VCPUS))
        .filter_map(VcpuId::new)
        .find(|&v| self::mpidr(v) & AFFINITY_MASK == mpidr & AFFINITY_MASK)
}

/// The registers a vCPU starts with: PC, `x0..x3`, and PSTATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    /// Where it starts.
    pub pc: u64,
    /// `x0..x3` (the Linux boot protocol and PSCI CPU_ON pass arguments
    /// in `x0`; the others are zero for both).
    pub x: [u64; 4],
    /// PSTATE, as the Vcpu's [`vreg::PSTATE`] register holds it.
    pub pstate: u64,
}

impl EntryState {
    /// Entry at EL1h with D, A, I and F masked and `x0 = argument`: what
    /// both Linux's boot protocol (booting.rst, "Call the kernel image":
    /// all forms of interrupts masked in PSTATE.DAIF) and PSCI CPU_ON
    /// (DEN0022 6.4.3 "CPU_ON": the entry context is the caller's EL with
    /// interrupts masked) require. The MMU and caches are off because
    /// the vCPU's SCTLR_EL1 starts at its reset value.
    pub fn kernel(pc: u64, argument: u64) -> EntryState {
        EntryState {
            pc,
            x: [argument, 0, 0, 0],
            pstate: vreg::mode::EL1H | vreg::PSTATE_DAIF,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vcpu_has_its_own_affinity() {
        for i in 0..MAX_VCPUS {
            let v = VcpuId::new(i).unwrap();
            assert_eq!(mpidr(v) & 0xff, i as u64 % 16);
            assert_eq!(mpidr(v) >> 31 & 1, 1);
            assert_eq!(vcpu_with_affinity(mpidr(v), MAX_VCPUS), Some(v));
            // Bits outside the affinity fields do not change the answer.
            assert_eq!(vcpu_with_affinity(mpidr(v) | 1 << 30, MAX_VCPUS), Some(v));
            assert_eq!(packed_affinity(v), i as u32);
        }
        assert_eq!(vcpu_with_affinity(mpidr(VcpuId::new(3).unwrap()), 3), None);
        assert_eq!(vcpu_with_affinity(0x100, MAX_VCPUS), None);
    }

    #[test]
    fn kernels_start_at_el1h_masked() {
        let s = EntryState::kernel(0x4020_0000, 0x5fe0_0000);
        assert_eq!(s.pstate, 0x3c5);
        assert_eq!(s.x, [0x5fe0_0000, 0, 0, 0]);
    }
}
