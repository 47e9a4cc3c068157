//! The board a VMM process presents to a small guest: a PL011 UART on the
//! MMIO bus at QEMU `virt`'s address and PSCI firmware behind `hvc #0`,
//! with every exit turned into one [`Step`] for the program's loop.
//!
//! What the board does not model is answered the way firmware and
//! unpopulated buses answer, and counted ([`Stats::defaulted`]): an SMCCC
//! call it does not know (any `hvc` immediate but 0, any `smc` — the
//! device tree names `hvc` as the conduit) returns NOT_SUPPORTED, a load
//! from an address no device claims reads zero and a store there is
//! dropped, and a trapped system register reads as zero and ignores
//! writes. What cannot be answered at all (an SError, an instruction fetch
//! from a hole, an access the syndrome does not describe) stops the guest.
//! The board makes no syscalls: register values come through
//! [`Registers`], so the host tests drive it with a fake.

use super::report::Stats;
use crate::arch::aarch64::{
    cpu::EntryState,
    exit::{Exit, MmioAccess},
    layout,
    psci::{self, Action, Psci},
};
use crate::bus::{MmioBus, Target};
use crate::channel::Resume;
use crate::devices::pl011::Pl011;
use crate::memory::GuestRange;
use crate::vcpu::VcpuId;
use skyscope_abi::Error;

/// The devices on the board's bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Device {
    Uart,
}

/// The general registers of the vCPU that exited (it waits for its
/// answer, so they hold still).
pub trait Registers {
    /// `x<n>`.
    fn general(&mut self, n: u8) -> Result<u64, Error>;
    /// `x0..x3`: an SMCCC call's function ID and arguments.
    fn call_arguments(&mut self) -> Result<[u64; 4], Error>;
}

/// What the VMM does for one exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Answer the exit with `resume`; `output` is a byte the guest sent
    /// out of its UART.
    Resume {
        /// The answer.
        resume: Resume,
        /// A transmitted byte.
        output: Option<u8>,
    },
    /// Start `vcpu` with `entry` (PSCI CPU_ON), report it started with
    /// [`Board::vcpu_started`], then answer the caller with `resume`.
    StartVcpu {
        /// The vCPU to start.
        vcpu: VcpuId,
        /// Its registers.
        entry: EntryState,
        /// The caller's answer.
        resume: Resume,
    },
    /// Stop the calling vCPU and do not answer it (PSCI CPU_OFF).
    StopVcpu,
    /// The guest is done: stop every vCPU and report (PSCI SYSTEM_OFF, or
    /// SYSTEM_RESET if `reset`).
    PowerOff {
        /// A reset was asked for.
        reset: bool,
    },
    /// The guest did what the board cannot answer: stop it.
    GuestFault,
}

/// The board of one guest.
#[derive(Clone, Debug)]
pub struct Board {
    bus: MmioBus<Device, 1>,
    uart: Pl011,
    psci: Psci,
    stats: Stats,
}

/// SMCCC's answer to an unknown function (SMC Calling Convention, DEN0028,
/// "Unknown Function Identifier": -1 in `w0`/`x0`).
const NOT_SUPPORTED: u64 = psci::code::NOT_SUPPORTED as i64 as u64;

impl Board {
    /// A board for a guest of `vcpus` vCPUs (vCPU 0 running) whose RAM is
    /// `ram` (PSCI CPU_ON entry points must lie in it).
    pub fn new(vcpus: usize, ram: GuestRange) -> Board {
        let mut bus = MmioBus::new();
        // One device on an empty bus of capacity one cannot be refused.
        let _ = bus.insert(layout::UART.into(), Device::Uart);
        Board {
            bus,
            uart: Pl011::default(),
            psci: Psci::new(vcpus, ram),
            stats: Stats::default(),
        }
    }

    /// What the board counted so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The VMM started `vcpu` after a [`Step::StartVcpu`].
    pub fn vcpu_started(&mut self, vcpu: VcpuId) {
        self.psci.vcpu_started(vcpu);
    }

    /// Handles `exit` of vCPU `vcpu`.
    pub fn handle(
        &mut self,
        vcpu: VcpuId,
        exit: Exit,
        regs: &mut impl Registers,
    ) -> Result<Step, Error> {
        self.stats.exits += 1;
        let step = match exit {
            Exit::Hypercall { imm: 0 } => self.psci_call(vcpu, regs.call_arguments()?),
            Exit::Hypercall { .. } | Exit::MonitorCall { .. } => {
                self.defaulted(Resume::skip_setting(Some(0), NOT_SUPPORTED))
            }
            Exit::Mmio(access) => self.mmio(access, regs)?,
            Exit::SystemRegister(access) => {
                let resume = if access.read {
                    Resume::skip_setting((access.rt != 31).then_some(access.rt), 0)
                } else {
                    Resume::SKIP
                };
                self.defaulted(resume)
            }
            Exit::SError { .. } | Exit::Abort(_) | Exit::Undefined { .. } | Exit::Unsupported => {
                Step::GuestFault
            }
        };
        if let Step::Resume {
            output: Some(_), ..
        } = step
        {
            self.stats.console_bytes += 1;
        }
        Ok(step)
    }

    fn defaulted(&mut self, resume: Resume) -> Step {
        self.stats.defaulted += 1;
        Step::Resume {
            resume,
            output: None,
        }
    }

    fn psci_call(&mut self, vcpu: VcpuId, x: [u64; 4]) -> Step {
        let outcome = self.psci.call(vcpu, x);
        let resume = Resume::skip_setting(Some(0), outcome.x0.unwrap_or(0));
        match outcome.action {
            // No interrupt controller on this board, so nothing would wake
            // a suspended vCPU: the standby ends at once, as a wake-up
            // event PSCI lets arrive at any time.
            Action::None | Action::WaitForInterrupt(_) => Step::Resume {
                resume,
                output: None,
            },
            Action::StartVcpu {
                vcpu,
                entry,
                context_id,
            } => Step::StartVcpu {
                vcpu,
                entry: EntryState::kernel(entry.raw(), context_id),
                resume,
            },
            Action::StopVcpu(_) => Step::StopVcpu,
            Action::SystemOff => Step::PowerOff { reset: false },
            Action::SystemReset => Step::PowerOff { reset: true },
        }
    }

    fn mmio(&mut self, access: MmioAccess, regs: &mut impl Registers) -> Result<Step, Error> {
        let target = self.bus.find_access(access.address, u64::from(access.size));
        Ok(match (target, access.write) {
            (
                Some(Target {
                    device: Device::Uart,
                    offset,
                }),
                true,
            ) => {
                let value = match access.register {
                    Some(r) => regs.general(r)?,
                    None => 0,
                };
                Step::Resume {
                    resume: Resume::SKIP,
                    output: self.uart.write(offset, access.store_value(value)).value,
                }
            }
            (
                Some(Target {
                    device: Device::Uart,
                    offset,
                }),
                false,
            ) => {
                let raw = self.uart.read(offset, access.size).value;
                Step::Resume {
                    resume: Resume::skip_setting(access.register, access.load_result(raw.into())),
                    output: None,
                }
            }
            (None, true) => self.defaulted(Resume::SKIP),
            (None, false) => self.defaulted(Resume::skip_setting(access.register, 0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::exit::{SystemRegister, SystemRegisterAccess};
    use crate::memory::GuestAddress;

    /// A stopped vCPU's registers.
    struct Regs([u64; 31]);

    impl Registers for Regs {
        fn general(&mut self, n: u8) -> Result<u64, Error> {
            self.0.get(usize::from(n)).copied().ok_or(Error::RangeError)
        }
        fn call_arguments(&mut self) -> Result<[u64; 4], Error> {
            Ok([self.0[0], self.0[1], self.0[2], self.0[3]])
        }
    }

    fn board() -> Board {
        Board::new(
            2,
            GuestRange::new(GuestAddress(0x4000_0000), 0x2000).unwrap(),
        )
    }

    fn access(address: u64, write: bool, register: Option<u8>) -> Exit {
        Exit::Mmio(MmioAccess {
            address: GuestAddress(address),
            write,
            size: 4,
            register,
            sign_extend: false,
            sixty_four: false,
        })
    }

    const BOOT: VcpuId = VcpuId::BOOT;

    #[test]
    fn uart_output_and_id_registers() {
        let mut b = board();
        let mut regs = Regs([0; 31]);
        regs.0[3] = 0x168; // 'h' with junk above the byte
        let step = b.handle(BOOT, access(0x0900_0000, true, Some(3)), &mut regs);
        assert_eq!(
            step,
            Ok(Step::Resume {
                resume: Resume::SKIP,
                output: Some(b'h')
            })
        );
        // PeriphID0 of a PL011, into w4.
        let step = b.handle(BOOT, access(0x0900_0fe0, false, Some(4)), &mut regs);
        assert_eq!(
            step,
            Ok(Step::Resume {
                resume: Resume::skip_setting(Some(4), 0x11),
                output: None
            })
        );
        assert_eq!(
            b.stats(),
            Stats {
                exits: 2,
                console_bytes: 1,
                defaulted: 0
            }
        );
    }

    #[test]
    fn what_is_not_modelled_is_answered_by_default_and_counted() {
        let mut b = board();
        let mut regs = Regs([0; 31]);
        let not_supported = Resume::skip_setting(Some(0), u64::MAX);
        let quiet = |resume| {
            Ok(Step::Resume {
                resume,
                output: None,
            })
        };
        assert_eq!(
            b.handle(BOOT, Exit::Hypercall { imm: 3 }, &mut regs),
            quiet(not_supported)
        );
        assert_eq!(
            b.handle(BOOT, Exit::MonitorCall { imm: 0 }, &mut regs),
            quiet(not_supported)
        );
        assert_eq!(
            b.handle(BOOT, access(0x5000_0000, false, Some(7)), &mut regs),
            quiet(Resume::skip_setting(Some(7), 0))
        );
        assert_eq!(
            b.handle(BOOT, access(0x5000_0000, true, None), &mut regs),
            quiet(Resume::SKIP)
        );
        // An access running off the UART's window reaches no device.
        assert_eq!(
            b.handle(BOOT, access(0x0900_0ffe, true, Some(1)), &mut regs),
            quiet(Resume::SKIP)
        );
        let pmcr = |read, rt| {
            Exit::SystemRegister(SystemRegisterAccess {
                register: SystemRegister::PMCR_EL0,
                rt,
                read,
            })
        };
        assert_eq!(
            b.handle(BOOT, pmcr(false, 31), &mut regs),
            quiet(Resume::SKIP)
        );
        assert_eq!(
            b.handle(BOOT, pmcr(true, 5), &mut regs),
            quiet(Resume::skip_setting(Some(5), 0))
        );
        assert_eq!(
            b.handle(BOOT, pmcr(true, 31), &mut regs),
            quiet(Resume::SKIP)
        );
        assert_eq!(
            b.stats(),
            Stats {
                exits: 8,
                console_bytes: 0,
                defaulted: 8
            }
        );
        assert_eq!(
            b.handle(BOOT, Exit::SError { syndrome: 1 }, &mut regs),
            Ok(Step::GuestFault)
        );
        assert_eq!(
            b.handle(BOOT, Exit::Unsupported, &mut regs),
            Ok(Step::GuestFault)
        );
    }

    #[test]
    fn psci_starts_stops_and_powers_off() {
        let mut b = board();
        let mut regs = Regs([0; 31]);
        let call = |regs: &mut Regs, x: [u64; 4]| regs.0[..4].copy_from_slice(&x);
        // PSCI_VERSION: 1.1 in x0.
        call(&mut regs, [0x8400_0000, 0, 0, 0]);
        assert_eq!(
            b.handle(BOOT, Exit::Hypercall { imm: 0 }, &mut regs),
            Ok(Step::Resume {
                resume: Resume::skip_setting(Some(0), 0x1_0001),
                output: None
            })
        );
        // CPU_ON of vCPU 1 (MPIDR 0x8000_0001 -> affinity 1) at 0x4000_0100.
        call(&mut regs, [0xc400_0003, 1, 0x4000_0100, 0x77]);
        let one = VcpuId::new(1).unwrap();
        assert_eq!(
            b.handle(BOOT, Exit::Hypercall { imm: 0 }, &mut regs),
            Ok(Step::StartVcpu {
                vcpu: one,
                entry: EntryState::kernel(0x4000_0100, 0x77),
                resume: Resume::skip_setting(Some(0), 0)
            })
        );
        b.vcpu_started(one);
        // CPU_OFF from vCPU 1: stopped, not answered.
        call(&mut regs, [0x8400_0002, 0, 0, 0]);
        assert_eq!(
            b.handle(one, Exit::Hypercall { imm: 0 }, &mut regs),
            Ok(Step::StopVcpu)
        );
        call(&mut regs, [0x8400_0008, 0, 0, 0]);
        assert_eq!(
            b.handle(BOOT, Exit::Hypercall { imm: 0 }, &mut regs),
            Ok(Step::PowerOff { reset: false })
        );
        call(&mut regs, [0x8400_0009, 0, 0, 0]);
        assert_eq!(
            b.handle(BOOT, Exit::Hypercall { imm: 0 }, &mut regs),
            Ok(Step::PowerOff { reset: true })
        );
        assert_eq!(b.stats().defaulted, 0);
    }

    #[test]
    fn register_failures_are_passed_on() {
        struct Broken;
        impl Registers for Broken {
            fn general(&mut self, _: u8) -> Result<u64, Error> {
                Err(Error::InvalidCapability)
            }
            fn call_arguments(&mut self) -> Result<[u64; 4], Error> {
                Err(Error::InvalidCapability)
            }
        }
        let mut b = board();
        assert_eq!(
            b.handle(BOOT, Exit::Hypercall { imm: 0 }, &mut Broken),
            Err(Error::InvalidCapability)
        );
        assert_eq!(
            b.handle(BOOT, access(0x0900_0000, true, Some(1)), &mut Broken),
            Err(Error::InvalidCapability)
        );
    }
}
