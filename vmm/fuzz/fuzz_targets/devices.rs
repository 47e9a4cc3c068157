//! Fuzz target: what a guest can do to the VMM's device models and
//! firmware — MMIO loads and stores of any size at any offset of the GIC
//! distributor and redistributors, the PL011 and the PL031, trapped
//! ICC_SGI*R_EL1 writes, PSCI calls from any vCPU — mixed with what the
//! VMM feeds them (interrupt lines, console input, time, list-register
//! hand-overs). Nothing may panic; interrupt lines must equal the masked
//! status the device reports; the GIC may only offer interrupts in
//! priority order; PSCI may only stop the caller.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyscope_vmm::arch::aarch64::layout;
use skyscope_vmm::arch::aarch64::psci::{Action, Psci};
use skyscope_vmm::bus::MmioBus;
use skyscope_vmm::devices::gicv3::{Delivery, Gicv3, SgiRegister};
use skyscope_vmm::devices::{pl011::Pl011, pl031::Pl031};
use skyscope_vmm::memory::GuestAddress;
use skyscope_vmm::vcpu::VcpuId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Device {
    Gicd,
    Gicr,
    Uart,
    Rtc,
}

const VCPUS: usize = 4;
const SIZES: [u8; 4] = [1, 2, 4, 8];

fuzz_target!(|ops: Vec<(u8, u64, u64)>| {
    let layout = layout::Layout::new(layout::RAM_BASE, 64 << 20, VCPUS).unwrap();
    let mut bus = MmioBus::<Device, 4>::new();
    bus.insert(layout::GICD.into(), Device::Gicd).unwrap();
    bus.insert(layout.gicr().into(), Device::Gicr).unwrap();
    bus.insert(layout::UART.into(), Device::Uart).unwrap();
    bus.insert(layout::RTC.into(), Device::Rtc).unwrap();
    let mut gic = Gicv3::new(VCPUS);
    let mut uart = Pl011::default();
    let mut rtc = Pl031::new(1_700_000_000, 0, 62_500_000);
    let mut psci = Psci::new(VCPUS, layout.ram());
    let mut now = 0u64;
    for (kind, a, b) in ops {
        let vcpu = VcpuId::new((a >> 56) as usize % VCPUS).unwrap();
        let size = SIZES[(b >> 62) as usize];
        now = now.saturating_add(a >> 40);
        match kind % 8 {
            // A guest load or store somewhere in the device window.
            0 | 1 => {
                let address = GuestAddress(0x0800_0000 + a % 0x0102_0000);
                let Some(t) = bus.find_access(address, u64::from(size)) else {
                    continue;
                };
                let write = kind % 8 == 1;
                match (t.device, write) {
                    (Device::Gicd, false) => {
                        let _ = gic.read_distributor(t.offset, size);
                    }
                    (Device::Gicd, true) => {
                        let _ = gic.write_distributor(t.offset, size, b);
                    }
                    (Device::Gicr, false) => {
                        let _ = gic.read_redistributor(t.offset, size);
                    }
                    (Device::Gicr, true) => {
                        let _ = gic.write_redistributor(t.offset, size, b);
                    }
                    (Device::Uart, false) => {
                        let line = uart.read(t.offset, size).irq_line;
                        assert_eq!(line, uart.irq_line());
                        gic.set_spi_level(33, line);
                    }
                    (Device::Uart, true) => {
                        let line = uart.write(t.offset, b).irq_line;
                        gic.set_spi_level(33, line);
                    }
                    (Device::Rtc, false) => {
                        let _ = rtc.read(t.offset, now);
                    }
                    (Device::Rtc, true) => {
                        let _ = rtc.write(t.offset, b, now);
                    }
                }
            }
            2 => {
                let _ = gic.write_sgi(vcpu, SgiRegister::Group1, b);
            }
            3 => {
                let line = uart.receive(&b.to_le_bytes()[..(a % 9) as usize]).irq_line;
                gic.set_spi_level(33, line);
            }
            4 => {
                let out = psci.call(vcpu, [a, b, a.rotate_left(17), b.rotate_left(29)]);
                if let Action::StopVcpu(who) = out.action {
                    assert_eq!(who, vcpu);
                }
                if let Action::StartVcpu { vcpu: started, .. } = out.action {
                    psci.vcpu_started(started);
                }
            }
            5 => {
                let line = rtc.poll(now).irq_line;
                gic.set_spi_level(34, line);
            }
            6 => {
                // The VMM fills list registers, or gets one back.
                let mut lrs = [Delivery {
                    intid: 0,
                    priority: 0,
                    group1: false,
                    level: false,
                }; 4];
                let n = gic.pending(vcpu, &mut lrs);
                for w in lrs[..n].windows(2) {
                    assert!(w[0].priority <= w[1].priority);
                }
                if let Some(d) = lrs[..n].first() {
                    assert!(gic.acknowledge(vcpu, d.intid));
                }
            }
            _ => {
                let _ = gic.end_of_interrupt(vcpu, (b % 140) as u32);
            }
        }
        assert_eq!(uart.irq_line(), uart.read(0x40, 4).value != 0);
        assert_eq!(rtc.irq_line(), rtc.read(0x18, now).value != 0);
    }
});
