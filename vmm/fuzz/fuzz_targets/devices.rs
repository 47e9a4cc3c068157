//! Fuzz target: what a guest can do to the Linux machine a VMM process
//! presents — MMIO loads and stores of any size at any offset of the GIC
//! distributor and redistributors, the PL011 and the PL031, any exit
//! syndrome (system registers, SGI writes, aborts, hypercalls), PSCI
//! calls from any vCPU — mixed with what the VMM feeds it (console input,
//! time). Nothing may panic; the kernel may only be asked to raise
//! implemented INTIDs other than the timer PPIs, and never to write a
//! Vcpu register outside the register file; held output never exceeds
//! its buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyscope_abi::{Error, vcpu::aarch64 as vreg};
use skyscope_vmm::arch::aarch64::{
    exit::{Exit, MmioAccess},
    layout::{self, Layout},
};
use skyscope_vmm::memory::GuestAddress;
use skyscope_vmm::process::{Machine, Step, Vm};
use skyscope_vmm::vcpu::VcpuId;

const VCPUS: usize = 4;
const SIZES: [u8; 4] = [1, 2, 4, 8];

/// A kernel whose vCPUs' registers are whatever the input says.
struct Fake {
    value: u64,
}

impl Vm for Fake {
    fn general(&mut self, _: VcpuId, n: u8) -> Result<u64, Error> {
        assert!(n < 31);
        Ok(self.value)
    }
    fn call_arguments(&mut self, _: VcpuId) -> Result<[u64; 4], Error> {
        let v = self.value;
        Ok([v, v.rotate_left(17), v.rotate_left(29), v.rotate_left(41)])
    }
    fn read_vcpu(&mut self, _: VcpuId, register: u64) -> Result<u64, Error> {
        assert!(register < vreg::COUNT);
        Ok(self.value)
    }
    fn write_vcpu(&mut self, _: VcpuId, register: u64, _: u64) -> Result<(), Error> {
        assert!(register < vreg::COUNT);
        Ok(())
    }
    fn set_pc(&mut self, _: VcpuId, _: u64) -> Result<(), Error> {
        Ok(())
    }
    fn set_irq(&mut self, vcpu: VcpuId, intid: u32, _: u8, _: u64) -> Result<(), Error> {
        assert!(vcpu.index() < VCPUS);
        assert!(intid < 128 && intid != 27 && intid != 30);
        Ok(())
    }
}

fuzz_target!(|ops: Vec<(u8, u64, u64, u64)>| {
    let layout = Layout::new(layout::RAM_BASE, 64 << 20, VCPUS).unwrap();
    let mut machine = Machine::new(layout, 1_700_000_000, 0, 62_500_000);
    let mut now = 0u64;
    for (kind, a, b, c) in ops {
        let vcpu = VcpuId::new((a >> 56) as usize % VCPUS).unwrap();
        now = now.saturating_add(a >> 40);
        let mut kernel = Fake { value: c };
        let exit = match kind % 4 {
            // A guest load or store somewhere in and around the devices.
            0 | 1 => Exit::Mmio(MmioAccess {
                address: GuestAddress(0x0800_0000 + a % 0x0102_0000),
                write: kind % 4 == 1,
                size: SIZES[(b >> 62) as usize],
                register: Some((b % 31) as u8),
                sign_extend: b & 2 != 0,
                sixty_four: b & 4 != 0,
            }),
            // Any exit the kernel could report.
            2 => Exit::decode([a, b, c, a % 8]),
            _ => {
                let bytes = b.to_le_bytes();
                let _ = machine.receive(&bytes[..(a % 9) as usize], &mut kernel);
                continue;
            }
        };
        if let Ok(Step::StartVcpu { vcpu: started, .. }) =
            machine.handle(vcpu, a, exit, now, &mut kernel)
        {
            machine.vcpu_started(started);
        }
        machine.flush_output(b & 1 == 0, |out| assert!(out.len() <= 512));
    }
});
