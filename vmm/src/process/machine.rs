//! The machine a VMM process presents to a Linux guest: QEMU `virt`'s
//! GICv3, PL011 and PL031 on the MMIO bus ([`crate::arch::aarch64::layout`]),
//! PSCI 1.1 behind `hvc #0`, SGIs from trapped ICC_SGI1R_EL1 writes, and
//! the architecture's answers for what nothing implements. Every exit
//! becomes one [`Step`] for the program's loop.
//!
//! Unlike the small [`Board`](super::Board), nothing is answered by a
//! made-up default:
//!
//! - a load or store at a guest-physical address no device claims, a
//!   fetch from one, and an access the syndrome does not describe take a
//!   synchronous external abort in the guest, as a bus with nothing
//!   behind it gives on hardware ([`crate::arch::aarch64::inject`]);
//! - trapped system registers are emulated where the architecture says
//!   what they hold, else the guest takes an undefined instruction
//!   exception: the self-hosted debug registers are kept per vCPU
//!   (breakpoint, watchpoint, MDSCR_EL1, OS lock and claim tags; no
//!   debug event is ever generated from them), set/way cache maintenance
//!   does nothing (guest RAM is normal cacheable memory that the VMM
//!   reaches coherently, so there is nothing for it to write back),
//!   PMUSERENR_EL0 keeps what is written (the one PMU register Linux's CPU
//!   set-up writes when ID_AA64DFR0_EL1 reports a PMU, to deny EL0 access;
//!   the device tree names no PMU, so Linux uses none), and everything
//!   else — the other PMU registers, implementation-defined registers,
//!   reads of write-only registers — is UNDEFINED;
//! - SMCCC calls other than PSCI return NOT_SUPPORTED, the SMC Calling
//!   Convention's answer for an unknown function;
//! - a guest whose exception vector itself cannot be fetched (an
//!   injected exception at a VBAR_EL1 where nothing is) would take the same
//!   abort forever: it is stopped instead ([`Step::GuestFault`]).
//!
//! The PL031 counts from the wall-clock time the start record gives; its
//! match interrupt is brought up to date when the guest touches the RTC
//! (the VMM has no timer of its own, and Linux arms RTC alarms only when
//! user space asks).
//!
//! Interrupts are delivered by the kernel: the GIC model's
//! [`Signal`]s become `Vcpu::SetIrq` calls and timer-PPI register
//! writes through [`Vm`], which is also how the machine reads and writes
//! vCPU registers. It makes no syscall itself, so the host tests drive it
//! with a mock.

use super::board::Step;
use super::report::Stats;
use crate::arch::aarch64::{
    cpu::EntryState,
    exit::{Exit, MmioAccess, SystemRegister, SystemRegisterAccess},
    inject::{Exception, GuestState, inject},
    layout::{self, Layout},
    psci::{self, Action, Psci},
};
use crate::bus::{MmioBus, Target};
use crate::channel::Resume;
use crate::devices::gicv3::{Gicv3, SgiRegister, Signal};
use crate::devices::{pl011::Pl011, pl031::Pl031};
use crate::vcpu::{MAX_VCPUS, VcpuId};
use skyscope_abi::{Error, vcpu::aarch64 as vreg};

/// What the machine needs from the kernel for the guest's vCPUs.
pub trait Vm {
    /// General register `x<n>` of `vcpu` (stopped at its exit).
    fn general(&mut self, vcpu: VcpuId, n: u8) -> Result<u64, Error>;
    /// `x0..x3` of `vcpu`: an SMCCC call's function ID and arguments.
    fn call_arguments(&mut self, vcpu: VcpuId) -> Result<[u64; 4], Error>;
    /// A Vcpu register ([`skyscope_abi::vcpu::aarch64`]).
    fn read_vcpu(&mut self, vcpu: VcpuId, register: u64) -> Result<u64, Error>;
    /// Writes a Vcpu register.
    fn write_vcpu(&mut self, vcpu: VcpuId, register: u64, value: u64) -> Result<(), Error>;
    /// Sets `vcpu`'s PC (it resumes there when its exit is answered
    /// without skipping).
    fn set_pc(&mut self, vcpu: VcpuId, pc: u64) -> Result<(), Error>;
    /// `Vcpu::SetIrq` on `vcpu`.
    fn set_irq(&mut self, vcpu: VcpuId, intid: u32, priority: u8, flags: u64) -> Result<(), Error>;
}

/// The devices on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Device {
    Distributor,
    Redistributors,
    Uart,
    Rtc,
}

/// The UART's and RTC's interrupt lines (INTIDs).
const UART_INTID: u32 = layout::irq::SPI_BASE + layout::irq::UART_SPI;
const RTC_INTID: u32 = layout::irq::SPI_BASE + layout::irq::RTC_SPI;
/// UARTDR and UARTFR offsets (DDI 0183 3.2): the accesses of a byte
/// stream, during which output is held back to go out in one write.
const UART_DR: u64 = 0x000;
const UART_FR: u64 = 0x018;

/// SMCCC's answer to an unknown function (DEN0028: -1).
const NOT_SUPPORTED: u64 = psci::code::NOT_SUPPORTED as i64 as u64;

/// Guest output held for one console write.
const OUTPUT_CAPACITY: usize = 512;
/// Typed input the UART's FIFO has no room for yet.
const INPUT_CAPACITY: usize = 256;

/// The self-hosted debug registers of one vCPU (Arm ARM D23.3, the
/// debug registers: DBGBVR<n>_EL1, DBGBCR<n>_EL1, DBGWVR<n>_EL1,
/// DBGWCR<n>_EL1, MDSCR_EL1, MDCCINT_EL1, OSLAR_EL1/OSLSR_EL1,
/// OSDLR_EL1, DBGPRCR_EL1, DBGCLAIMSET/CLR_EL1).
#[derive(Clone, Copy, Debug)]
struct DebugRegisters {
    breakpoint_value: [u64; 16],
    breakpoint_control: [u64; 16],
    watchpoint_value: [u64; 16],
    watchpoint_control: [u64; 16],
    mdscr: u64,
    mdccint: u64,
    /// OSLSR_EL1.OSLK: the OS lock, locked at reset.
    os_lock: bool,
    osdlr: u64,
    dbgprcr: u64,
    claim: u64,
}

impl Default for DebugRegisters {
    fn default() -> Self {
        DebugRegisters {
            breakpoint_value: [0; 16],
            breakpoint_control: [0; 16],
            watchpoint_value: [0; 16],
            watchpoint_control: [0; 16],
            mdscr: 0,
            mdccint: 0,
            os_lock: true,
            osdlr: 0,
            dbgprcr: 0,
            claim: 0,
        }
    }
}

/// What a trapped system-register access is answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// A read's value (or a write done).
    Value(u64),
    /// The guest takes an undefined instruction exception.
    Undefined,
}

impl DebugRegisters {
    /// Emulates an access to `r` (op0 = 2: debug registers, or MDCCSR_EL0).
    fn access(&mut self, r: SystemRegister, read: bool, value: u64) -> Answer {
        let n = usize::from(r.crm);
        let store = |slot: &mut u64| {
            if !read {
                *slot = value;
            }
            Answer::Value(*slot)
        };
        match (r.op0, r.op1, r.crn, r.crm, r.op2) {
            (2, 0, 0, _, 4) => store(&mut self.breakpoint_value[n]),
            (2, 0, 0, _, 5) => store(&mut self.breakpoint_control[n]),
            (2, 0, 0, _, 6) => store(&mut self.watchpoint_value[n]),
            (2, 0, 0, _, 7) => store(&mut self.watchpoint_control[n]),
            (2, 0, 0, 2, 2) => store(&mut self.mdscr),
            (2, 0, 0, 2, 0) => store(&mut self.mdccint),
            // MDRAR_EL1: no ROM table (Valid = 0b00).
            (2, 0, 1, 0, 0) if read => Answer::Value(0),
            // OSLAR_EL1 (write-only): OSLK from bit 0.
            (2, 0, 1, 0, 4) if !read => {
                self.os_lock = value & 1 != 0;
                Answer::Value(0)
            }
            // OSLSR_EL1 (read-only): OSLM = 0b10 (bit 3), OSLK (bit 1).
            (2, 0, 1, 1, 4) if read => Answer::Value(0b1000 | u64::from(self.os_lock) << 1),
            (2, 0, 1, 3, 4) => store(&mut self.osdlr),
            (2, 0, 1, 4, 4) => store(&mut self.dbgprcr),
            // DBGCLAIMSET_EL1 reads as the implemented claim bits (eight);
            // DBGCLAIMCLR_EL1 as the tags set.
            (2, 0, 7, 8, 6) if read => Answer::Value(0xff),
            (2, 0, 7, 8, 6) => {
                self.claim |= value & 0xff;
                Answer::Value(0)
            }
            (2, 0, 7, 9, 6) if read => Answer::Value(self.claim),
            (2, 0, 7, 9, 6) => {
                self.claim &= !value;
                Answer::Value(0)
            }
            // DBGAUTHSTATUS_EL1: no debug authentication implemented.
            (2, 0, 7, 14, 6) if read => Answer::Value(0),
            // MDCCSR_EL0: the debug communications channel is empty.
            (2, 3, 0, 1, 0) if read => Answer::Value(0),
            _ => Answer::Undefined,
        }
    }
}

/// Whether `r` is a data-cache maintenance by set/way (DC ISW, DC CSW, DC
/// CISW: op0 1, op1 0, CRn 7, CRm 6/10/14, op2 2).
fn is_set_way(r: SystemRegister) -> bool {
    r.op0 == 1 && r.op1 == 0 && r.crn == 7 && matches!(r.crm, 6 | 10 | 14) && r.op2 == 2
}

/// How many exits of each kind the machine handled (what `cargo xtask
/// bench boot` reports per second).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts {
    /// PSCI calls (`hvc #0`).
    pub psci: u64,
    /// Other hypercalls and `smc`s (answered NOT_SUPPORTED).
    pub other_calls: u64,
    /// Accesses to the GIC distributor and redistributors.
    pub gic: u64,
    /// Accesses to the PL011.
    pub uart: u64,
    /// Accesses to the PL031.
    pub rtc: u64,
    /// Accesses nothing backs (an abort injected).
    pub unbacked: u64,
    /// SGIs sent (trapped ICC_SGI1R_EL1 writes and friends).
    pub sgi: u64,
    /// Other trapped system registers (debug, PMU, set/way, ...).
    pub system_registers: u64,
    /// Instructions the guest may not execute (UNDEFINED injected), SErrors.
    pub other: u64,
}

impl ExitCounts {
    /// One line: the counts by kind.
    pub fn summary(&self) -> impl core::fmt::Display + '_ {
        struct Line<'a>(&'a ExitCounts);
        impl core::fmt::Display for Line<'_> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                let c = self.0;
                write!(
                    f,
                    "psci={} calls={} gic={} uart={} rtc={} unbacked={} sgi={} sysreg={} other={}",
                    c.psci,
                    c.other_calls,
                    c.gic,
                    c.uart,
                    c.rtc,
                    c.unbacked,
                    c.sgi,
                    c.system_registers,
                    c.other
                )
            }
        }
        Line(self)
    }
}

/// The machine of one Linux guest.
#[derive(Clone, Debug)]
pub struct Machine {
    bus: MmioBus<Device, 4>,
    gic: Gicv3,
    uart: Pl011,
    rtc: Pl031,
    psci: Psci,
    debug: [DebugRegisters; MAX_VCPUS],
    output: [u8; OUTPUT_CAPACITY],
    output_len: usize,
    /// The last exit was part of a byte stream to the UART.
    streaming: bool,
    input: [u8; INPUT_CAPACITY],
    input_head: usize,
    input_len: usize,
    /// PMUSERENR_EL0 per vCPU.
    pmuserenr: [u64; MAX_VCPUS],
    /// Where the last exception injected into each vCPU sent it, until
    /// its next exit elsewhere.
    vector: [Option<u64>; MAX_VCPUS],
    stats: Stats,
    counts: ExitCounts,
}

/// PMUSERENR_EL0 (op0 3, op1 3, CRn 9, CRm 14, op2 0).
const PMUSERENR_EL0: SystemRegister = SystemRegister::new(3, 3, 9, 14, 0);

impl Machine {
    /// The machine of `layout`, its RTC reading `seconds` (since 1970) at
    /// counter value `now`, the counter ticking at `frequency`.
    pub fn new(layout: Layout, seconds: u64, now: u64, frequency: u64) -> Machine {
        let mut bus = MmioBus::new();
        // Four fixed, disjoint ranges on a bus of capacity four.
        for (range, device) in [
            (layout::GICD, Device::Distributor),
            (layout.gicr(), Device::Redistributors),
            (layout::UART, Device::Uart),
            (layout::RTC, Device::Rtc),
        ] {
            let _ = bus.insert(range.into(), device);
        }
        Machine {
            bus,
            gic: Gicv3::new(layout.vcpus()),
            uart: Pl011::default(),
            // The PL031 counts 32-bit seconds (it wraps in 2106).
            rtc: Pl031::new(seconds as u32, now, frequency),
            psci: Psci::new(layout.vcpus(), layout.ram()),
            debug: [DebugRegisters::default(); MAX_VCPUS],
            output: [0; OUTPUT_CAPACITY],
            output_len: 0,
            streaming: false,
            input: [0; INPUT_CAPACITY],
            input_head: 0,
            input_len: 0,
            pmuserenr: [0; MAX_VCPUS],
            vector: [None; MAX_VCPUS],
            stats: Stats::default(),
            counts: ExitCounts::default(),
        }
    }

    /// What the machine counted: exits, bytes the guest printed, and
    /// exits answered with an injected exception or NOT_SUPPORTED (in
    /// `defaulted`).
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The exits handled so far, by kind.
    pub fn exit_counts(&self) -> ExitCounts {
        self.counts
    }

    /// The VMM started `vcpu` after a [`Step::StartVcpu`].
    pub fn vcpu_started(&mut self, vcpu: VcpuId) {
        self.psci.vcpu_started(vcpu);
    }

    /// Handles `exit` of `vcpu`, whose trapping instruction is at `pc`;
    /// `now` is the counter (for the RTC).
    pub fn handle(
        &mut self,
        vcpu: VcpuId,
        pc: u64,
        exit: Exit,
        now: u64,
        vm: &mut impl Vm,
    ) -> Result<Step, Error> {
        self.stats.exits += 1;
        // Set again below if this exit continues a byte stream.
        self.streaming = false;
        // The vector the last injection sent this vCPU to faults too:
        // nothing can be delivered to it.
        let at_vector = self.vector[vcpu.index()].take() == Some(pc);
        if at_vector && matches!(exit, Exit::Abort(_) | Exit::Mmio(_)) {
            return Ok(Step::GuestFault);
        }
        let c = &mut self.counts;
        match exit {
            Exit::Hypercall { imm: 0 } => c.psci += 1,
            Exit::Hypercall { .. } | Exit::MonitorCall { .. } => c.other_calls += 1,
            Exit::Mmio(access) => match self.bus.find_access(access.address, access.size.into()) {
                Some(Target {
                    device: Device::Distributor | Device::Redistributors,
                    ..
                }) => c.gic += 1,
                Some(Target {
                    device: Device::Uart,
                    ..
                }) => c.uart += 1,
                Some(Target {
                    device: Device::Rtc,
                    ..
                }) => c.rtc += 1,
                None => c.unbacked += 1,
            },
            Exit::Abort(_) => c.unbacked += 1,
            Exit::SystemRegister(access) => {
                if SgiRegister::from_system_register(access.register).is_some() {
                    c.sgi += 1;
                } else {
                    c.system_registers += 1;
                }
            }
            Exit::Undefined { .. } | Exit::SError { .. } | Exit::Unsupported => c.other += 1,
        }
        let step = match exit {
            Exit::Hypercall { imm: 0 } => self.psci_call(vcpu, vm.call_arguments(vcpu)?),
            Exit::Hypercall { .. } | Exit::MonitorCall { .. } => {
                self.stats.defaulted += 1;
                resume(Resume::skip_setting(Some(0), NOT_SUPPORTED))
            }
            Exit::Mmio(access) => match self.bus.find_access(access.address, access.size.into()) {
                Some(target) => self.mmio(vcpu, target, access, now, vm)?,
                None => self.inject(
                    vcpu,
                    pc,
                    Exception::DataAbort {
                        write: access.write,
                    },
                    vm,
                )?,
            },
            Exit::Abort(abort) => {
                let exception = if abort.fetch {
                    Exception::InstructionAbort
                } else {
                    Exception::DataAbort { write: abort.write }
                };
                self.inject(vcpu, pc, exception, vm)?
            }
            Exit::SystemRegister(access) => self.system_register(vcpu, pc, access, vm)?,
            Exit::Undefined { .. } => self.inject(vcpu, pc, Exception::Undefined, vm)?,
            Exit::SError { .. } | Exit::Unsupported => Step::GuestFault,
        };
        Ok(step)
    }

    /// Whether held output should be written now: it ends a line, the
    /// buffer is nearly full, or the guest did something other than write
    /// the next byte (so a prompt goes out without waiting for more).
    pub fn output_due(&self) -> bool {
        self.output_len > 0
            && (!self.streaming
                || self.output[self.output_len - 1] == b'\n'
                || self.output_len >= OUTPUT_CAPACITY - 1)
    }

    /// Hands held output to `write` if it is due ([`Machine::output_due`]),
    /// or whatever is held if `all`.
    pub fn flush_output(&mut self, all: bool, write: impl FnOnce(&[u8])) {
        if self.output_len > 0 && (all || self.output_due()) {
            write(&self.output[..self.output_len]);
            self.output_len = 0;
        }
    }

    /// Room for typed input ([`Machine::receive`] takes at most this).
    pub fn input_room(&self) -> usize {
        INPUT_CAPACITY - self.input_len
    }

    /// Input from the console: queued (as much as fits; returns how much)
    /// and moved into the UART's receive FIFO as it has room, raising its
    /// interrupt.
    pub fn receive(&mut self, bytes: &[u8], vm: &mut impl Vm) -> Result<usize, Error> {
        let n = bytes.len().min(self.input_room());
        for &b in &bytes[..n] {
            self.input[(self.input_head + self.input_len) % INPUT_CAPACITY] = b;
            self.input_len += 1;
        }
        self.feed_uart();
        self.gic.set_spi_level(UART_INTID, self.uart.irq_line());
        self.sync(vm)?;
        Ok(n)
    }

    fn feed_uart(&mut self) {
        while self.input_len > 0 {
            let byte = self.input[self.input_head];
            if self.uart.receive(&[byte]).value == 0 {
                break;
            }
            self.input_head = (self.input_head + 1) % INPUT_CAPACITY;
            self.input_len -= 1;
        }
    }

    /// Passes what the GIC model wants the kernel to know.
    fn sync(&mut self, vm: &mut impl Vm) -> Result<(), Error> {
        let mut result = Ok(());
        self.gic.sync(&mut |signal| {
            let r = match signal {
                Signal::SetIrq {
                    vcpu,
                    intid,
                    priority,
                    flags,
                } => vm.set_irq(vcpu, intid, priority, flags),
                Signal::TimerIrq {
                    vcpu,
                    register,
                    value,
                } => vm.write_vcpu(vcpu, register, value),
            };
            if result.is_ok() {
                result = r;
            }
        });
        result
    }

    fn psci_call(&mut self, vcpu: VcpuId, x: [u64; 4]) -> Step {
        let outcome = self.psci.call(vcpu, x);
        let answer = Resume::skip_setting(Some(0), outcome.x0.unwrap_or(0));
        match outcome.action {
            // CPU_SUSPEND as a standby that a wake-up event ends at once
            // (PSCI lets one arrive at any time); Linux uses WFI, which
            // the kernel handles, when the tree names no idle states.
            Action::None | Action::WaitForInterrupt(_) => resume(answer),
            Action::StartVcpu {
                vcpu,
                entry,
                context_id,
            } => Step::StartVcpu {
                vcpu,
                entry: EntryState::kernel(entry.raw(), context_id),
                resume: answer,
            },
            Action::StopVcpu(_) => Step::StopVcpu,
            Action::SystemOff => Step::PowerOff { reset: false },
            Action::SystemReset => Step::PowerOff { reset: true },
        }
    }

    fn mmio(
        &mut self,
        vcpu: VcpuId,
        target: Target<Device>,
        access: MmioAccess,
        now: u64,
        vm: &mut impl Vm,
    ) -> Result<Step, Error> {
        let offset = target.offset;
        let stored = if access.write {
            let value = match access.register {
                Some(r) => vm.general(vcpu, r)?,
                None => 0,
            };
            Some(access.store_value(value))
        } else {
            None
        };
        let loaded: u64 = match (target.device, stored) {
            (Device::Distributor, Some(v)) => {
                self.gic.write_distributor(offset, access.size, v);
                0
            }
            (Device::Distributor, None) => self.gic.read_distributor(offset, access.size),
            (Device::Redistributors, Some(v)) => {
                self.gic.write_redistributor(offset, access.size, v);
                0
            }
            (Device::Redistributors, None) => self.gic.read_redistributor(offset, access.size),
            (Device::Uart, Some(v)) => {
                if let Some(byte) = self.uart.write(offset, v).value {
                    // The program flushes before the buffer fills
                    // (`output_due`); a byte that found it full is lost
                    // rather than overwrite anything.
                    if let Some(slot) = self.output.get_mut(self.output_len) {
                        *slot = byte;
                        self.output_len += 1;
                    }
                    self.stats.console_bytes += 1;
                }
                self.streaming = offset == UART_DR;
                self.gic.set_spi_level(UART_INTID, self.uart.irq_line());
                0
            }
            (Device::Uart, None) => {
                let value = self.uart.read(offset, access.size).value;
                // A byte read makes room for queued input.
                self.feed_uart();
                self.streaming = offset == UART_FR;
                self.gic.set_spi_level(UART_INTID, self.uart.irq_line());
                value.into()
            }
            (Device::Rtc, Some(v)) => {
                let line = self.rtc.write(offset, v, now).irq_line;
                self.gic.set_spi_level(RTC_INTID, line);
                0
            }
            (Device::Rtc, None) => {
                let r = self.rtc.read(offset, now);
                self.gic.set_spi_level(RTC_INTID, r.irq_line);
                r.value.into()
            }
        };
        self.sync(vm)?;
        Ok(resume(if access.write {
            Resume::SKIP
        } else {
            Resume::skip_setting(access.register, access.load_result(loaded))
        }))
    }

    fn system_register(
        &mut self,
        vcpu: VcpuId,
        pc: u64,
        access: SystemRegisterAccess,
        vm: &mut impl Vm,
    ) -> Result<Step, Error> {
        // The value a write stores (xzr stores zero).
        let value = if access.read || access.rt == 31 {
            0
        } else {
            vm.general(vcpu, access.rt)?
        };
        let answer = if let Some(sgi) = SgiRegister::from_system_register(access.register) {
            if access.read {
                // The SGI registers are write-only.
                Answer::Undefined
            } else {
                self.gic.write_sgi(vcpu, sgi, value);
                self.sync(vm)?;
                Answer::Value(0)
            }
        } else if access.register.op0 == 2 {
            self.debug[vcpu.index()].access(access.register, access.read, value)
        } else if is_set_way(access.register) && !access.read {
            Answer::Value(0)
        } else if access.register == PMUSERENR_EL0 {
            let slot = &mut self.pmuserenr[vcpu.index()];
            if !access.read {
                *slot = value;
            }
            Answer::Value(*slot)
        } else {
            Answer::Undefined
        };
        match answer {
            Answer::Value(v) => Ok(resume(if access.read {
                Resume::skip_setting((access.rt != 31).then_some(access.rt), v)
            } else {
                Resume::SKIP
            })),
            Answer::Undefined => self.inject(vcpu, pc, Exception::Undefined, vm),
        }
    }

    /// Makes `vcpu` take `exception` at the instruction at `pc`.
    fn inject(
        &mut self,
        vcpu: VcpuId,
        pc: u64,
        exception: Exception,
        vm: &mut impl Vm,
    ) -> Result<Step, Error> {
        self.stats.defaulted += 1;
        let state = GuestState {
            pc,
            pstate: vm.read_vcpu(vcpu, vreg::PSTATE)?,
            vbar: vm.read_vcpu(vcpu, vreg::VBAR_EL1)?,
            sctlr: vm.read_vcpu(vcpu, vreg::SCTLR_EL1)?,
        };
        let i = inject(exception, state);
        vm.write_vcpu(vcpu, vreg::ESR_EL1, i.esr)?;
        if let Some(far) = i.far {
            vm.write_vcpu(vcpu, vreg::FAR_EL1, far)?;
        }
        vm.write_vcpu(vcpu, vreg::ELR_EL1, i.elr)?;
        vm.write_vcpu(vcpu, vreg::SPSR_EL1, i.spsr)?;
        vm.write_vcpu(vcpu, vreg::PSTATE, i.pstate)?;
        vm.set_pc(vcpu, i.pc)?;
        self.vector[vcpu.index()] = Some(i.pc);
        // Resumed where the exception put it, without skipping.
        Ok(resume(Resume::default()))
    }
}

fn resume(resume: Resume) -> Step {
    Step::Resume {
        resume,
        output: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::exit::Abort;
    use crate::memory::GuestAddress;
    use proptest::prelude::*;
    use skyscope_abi::vcpu::irq as virq;
    use std::vec::Vec;

    /// What the machine asked of the kernel.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Call {
        SetIrq(usize, u32, u8, u64),
        Write(usize, u64, u64),
        Pc(usize, u64),
    }

    /// A mock kernel: general registers per vCPU, Vcpu registers, and a
    /// log of every call that changes something.
    struct Mock {
        x: [[u64; 31]; 4],
        vcpu_registers: [[u64; vreg::COUNT as usize]; 4],
        calls: Vec<Call>,
    }

    impl Mock {
        fn new() -> Mock {
            let mut m = Mock {
                x: [[0; 31]; 4],
                vcpu_registers: [[0; vreg::COUNT as usize]; 4],
                calls: Vec::new(),
            };
            for r in &mut m.vcpu_registers {
                r[vreg::PSTATE as usize] = 0x6000_0005; // EL1h, Z and C set
                r[vreg::VBAR_EL1 as usize] = 0xffff_8000_8001_0800;
                r[vreg::SCTLR_EL1 as usize] = 0x3050_198d; // SPAN (bit 23) clear
            }
            m
        }

        fn irqs(&mut self) -> Vec<(usize, u32, u64)> {
            let calls = core::mem::take(&mut self.calls);
            calls
                .into_iter()
                .filter_map(|c| match c {
                    Call::SetIrq(v, i, _, f) => Some((v, i, f)),
                    _ => None,
                })
                .collect()
        }
    }

    impl Vm for Mock {
        fn general(&mut self, vcpu: VcpuId, n: u8) -> Result<u64, Error> {
            self.x[vcpu.index()]
                .get(usize::from(n))
                .copied()
                .ok_or(Error::RangeError)
        }
        fn call_arguments(&mut self, vcpu: VcpuId) -> Result<[u64; 4], Error> {
            let x = &self.x[vcpu.index()];
            Ok([x[0], x[1], x[2], x[3]])
        }
        fn read_vcpu(&mut self, vcpu: VcpuId, register: u64) -> Result<u64, Error> {
            self.vcpu_registers[vcpu.index()]
                .get(register as usize)
                .copied()
                .ok_or(Error::RangeError)
        }
        fn write_vcpu(&mut self, vcpu: VcpuId, register: u64, value: u64) -> Result<(), Error> {
            *self.vcpu_registers[vcpu.index()]
                .get_mut(register as usize)
                .ok_or(Error::RangeError)? = value;
            self.calls.push(Call::Write(vcpu.index(), register, value));
            Ok(())
        }
        fn set_pc(&mut self, vcpu: VcpuId, pc: u64) -> Result<(), Error> {
            self.calls.push(Call::Pc(vcpu.index(), pc));
            Ok(())
        }
        fn set_irq(
            &mut self,
            vcpu: VcpuId,
            intid: u32,
            priority: u8,
            flags: u64,
        ) -> Result<(), Error> {
            assert!(intid < 1020);
            self.calls
                .push(Call::SetIrq(vcpu.index(), intid, priority, flags));
            Ok(())
        }
    }

    const PC: u64 = 0xffff_8000_8123_0000;

    fn v(i: usize) -> VcpuId {
        VcpuId::new(i).unwrap()
    }

    fn machine(vcpus: usize) -> Machine {
        let layout = Layout::new(layout::RAM_BASE, 512 << 20, vcpus).unwrap();
        Machine::new(layout, 1_700_000_000, 0, 62_500_000)
    }

    fn mmio(address: u64, write: bool, size: u8, register: Option<u8>) -> Exit {
        Exit::Mmio(MmioAccess {
            address: GuestAddress(address),
            write,
            size,
            register,
            sign_extend: false,
            sixty_four: false,
        })
    }

    /// A store of `value` (through x1) from `vcpu`.
    fn store(m: &mut Machine, k: &mut Mock, vcpu: usize, address: u64, value: u64) -> Step {
        k.x[vcpu][1] = value;
        m.handle(v(vcpu), PC, mmio(address, true, 4, Some(1)), 0, k)
            .unwrap()
    }

    /// A load into x2 from `vcpu`; returns the value loaded.
    fn load(m: &mut Machine, k: &mut Mock, vcpu: usize, address: u64) -> u64 {
        match m.handle(v(vcpu), PC, mmio(address, false, 4, Some(2)), 0, k) {
            Ok(Step::Resume {
                resume:
                    Resume {
                        skip: true,
                        set: Some((2, value)),
                    },
                ..
            }) => value,
            other => panic!("{other:?}"),
        }
    }

    fn sysreg(register: SystemRegister, rt: u8, read: bool) -> Exit {
        Exit::SystemRegister(SystemRegisterAccess { register, rt, read })
    }

    /// Linux's GIC set-up, shortened: distributor on with both groups,
    /// every SPI Group 1 at priority 0xa0 on vCPU 0, each redistributor
    /// awake with its SGIs and PPIs in Group 1.
    fn gic_up(m: &mut Machine, k: &mut Mock, vcpus: usize) {
        store(m, k, 0, 0x0800_0000, 0b10011);
        for i in 1..4 {
            store(m, k, 0, 0x0800_0080 + 4 * i, u64::from(u32::MAX));
        }
        for i in 8..32 {
            store(m, k, 0, 0x0800_0400 + 4 * i, 0xa0a0_a0a0);
        }
        for cpu in 0..vcpus as u64 {
            let rd = 0x080a_0000 + cpu * 0x2_0000;
            store(m, k, cpu as usize, rd + 0x14, 0);
            store(m, k, cpu as usize, rd + 0x1_0080, u64::from(u32::MAX));
            for i in 0..8 {
                store(m, k, cpu as usize, rd + 0x1_0400 + 4 * i, 0xa0a0_a0a0);
            }
        }
        k.calls.clear();
    }

    #[test]
    fn a_load_from_nothing_takes_an_external_abort() {
        let mut m = machine(1);
        let mut k = Mock::new();
        // Where QEMU would have virtio-mmio: nothing here.
        let step = m.handle(v(0), PC, mmio(0x0a00_0000, false, 4, Some(3)), 0, &mut k);
        assert_eq!(
            step,
            Ok(Step::Resume {
                resume: Resume::default(),
                output: None
            })
        );
        let vbar = 0xffff_8000_8001_0800;
        assert_eq!(
            k.calls,
            [
                Call::Write(0, vreg::ESR_EL1, 0x9600_0410),
                Call::Write(0, vreg::FAR_EL1, 0),
                Call::Write(0, vreg::ELR_EL1, PC),
                Call::Write(0, vreg::SPSR_EL1, 0x6000_0005),
                Call::Write(0, vreg::PSTATE, 0x6040_03c5),
                Call::Pc(0, vbar + 0x200),
            ]
        );
        // A fetch from nothing, from EL0: the lower-EL vector.
        k.calls.clear();
        k.vcpu_registers[0][vreg::PSTATE as usize] = 0;
        let fetch = Exit::Abort(Abort {
            address: GuestAddress(0x1000),
            fetch: true,
            write: false,
        });
        m.handle(v(0), 0x40_0000, fetch, 0, &mut k).unwrap();
        assert!(
            k.calls
                .contains(&Call::Write(0, vreg::ESR_EL1, 0x8200_0410))
        );
        assert!(k.calls.contains(&Call::Pc(0, vbar + 0x400)));
        assert_eq!(m.stats().defaulted, 2);
        // VBAR_EL1 at nothing: the vector faults in turn, and the guest is
        // stopped rather than sent round again.
        k.vcpu_registers[0][vreg::VBAR_EL1 as usize] = 0;
        m.handle(v(0), 0x40_0000, fetch, 0, &mut k).unwrap();
        // (The mock keeps what was written: the guest is at EL1h now.)
        assert_eq!(k.calls.last(), Some(&Call::Pc(0, 0x200)));
        let at_vector = Exit::Abort(Abort {
            address: GuestAddress(0x200),
            fetch: true,
            write: false,
        });
        assert_eq!(
            m.handle(v(0), 0x200, at_vector, 0, &mut k),
            Ok(Step::GuestFault)
        );
    }

    #[test]
    fn psci_starts_vcpus_and_powers_off() {
        let mut m = machine(2);
        let mut k = Mock::new();
        k.x[0][..4].copy_from_slice(&[0xc400_0003, 1, 0x4020_0000, 0x99]);
        assert_eq!(
            m.handle(v(0), PC, Exit::Hypercall { imm: 0 }, 0, &mut k),
            Ok(Step::StartVcpu {
                vcpu: v(1),
                entry: EntryState::kernel(0x4020_0000, 0x99),
                resume: Resume::skip_setting(Some(0), 0),
            })
        );
        m.vcpu_started(v(1));
        k.x[0][..3].copy_from_slice(&[0xc400_0004, 1, 0]); // AFFINITY_INFO, level 0
        assert_eq!(
            m.handle(v(0), PC, Exit::Hypercall { imm: 0 }, 0, &mut k),
            Ok(resume(Resume::skip_setting(Some(0), 0)))
        );
        k.x[0][0] = 0x8400_0008;
        assert_eq!(
            m.handle(v(0), PC, Exit::Hypercall { imm: 0 }, 0, &mut k),
            Ok(Step::PowerOff { reset: false })
        );
        // Not PSCI: NOT_SUPPORTED, as SMCCC says.
        assert_eq!(
            m.handle(v(0), PC, Exit::MonitorCall { imm: 0 }, 0, &mut k),
            Ok(resume(Resume::skip_setting(Some(0), u64::MAX)))
        );
    }

    #[test]
    fn typed_input_raises_the_uart_line_until_read() {
        let mut m = machine(1);
        let mut k = Mock::new();
        gic_up(&mut m, &mut k, 1);
        store(&mut m, &mut k, 0, 0x0800_0104, 1 << 1); // enable INTID 33
        store(&mut m, &mut k, 0, 0x0900_0038, 0x50); // UARTIMSC: RX, RT
        assert_eq!(k.irqs(), []);
        assert_eq!(m.receive(b"ls\n", &mut k), Ok(3));
        assert_eq!(k.irqs(), [(0, 33, virq::LEVEL | virq::HIGH | virq::GROUP1)]);
        let mut got = Vec::new();
        while load(&mut m, &mut k, 0, 0x0900_0018) & (1 << 4) == 0 {
            got.push(load(&mut m, &mut k, 0, 0x0900_0000) as u8);
        }
        assert_eq!(got, b"ls\n");
        assert_eq!(k.irqs(), [(0, 33, virq::LEVEL | virq::GROUP1)]);
        // More than the FIFO holds waits in the machine, then follows.
        let long = [b'x'; 40];
        assert_eq!(m.receive(&long, &mut k), Ok(40));
        let mut n = 0;
        while load(&mut m, &mut k, 0, 0x0900_0018) & (1 << 4) == 0 {
            load(&mut m, &mut k, 0, 0x0900_0000);
            n += 1;
        }
        assert_eq!(n, 40);
        assert_eq!(m.input_room(), INPUT_CAPACITY);
    }

    #[test]
    fn output_goes_out_in_batches() {
        let mut m = machine(1);
        let mut k = Mock::new();
        let mut written: Vec<Vec<u8>> = Vec::new();
        for &b in b"/ # " {
            load(&mut m, &mut k, 0, 0x0900_0018); // FR: room?
            assert!(!m.output_due());
            store(&mut m, &mut k, 0, 0x0900_0000, u64::from(b));
            m.flush_output(false, |o| written.push(o.to_vec()));
        }
        assert!(written.is_empty(), "held while the bytes stream in");
        // The driver stops transmitting (UARTIMSC): the prompt goes out.
        store(&mut m, &mut k, 0, 0x0900_0038, 0);
        m.flush_output(false, |o| written.push(o.to_vec()));
        assert_eq!(written, [b"/ # ".to_vec()]);
        // A line goes out at its end.
        for &b in b"ok\n" {
            store(&mut m, &mut k, 0, 0x0900_0000, u64::from(b));
        }
        m.flush_output(false, |o| written.push(o.to_vec()));
        assert_eq!(written[1], b"ok\n");
        assert_eq!(m.stats().console_bytes, 7);
    }

    #[test]
    fn sgis_reach_their_targets_through_the_kernel() {
        let mut m = machine(4);
        let mut k = Mock::new();
        gic_up(&mut m, &mut k, 4);
        store(&mut m, &mut k, 1, 0x080c_0000 + 0x1_0100, 0xffff); // vCPU 1: SGIs on
        store(&mut m, &mut k, 3, 0x0810_0000 + 0x1_0100, 0xffff);
        k.calls.clear();
        // msr ICC_SGI1R_EL1, x5: SGI 1 to vCPUs 1 and 3.
        k.x[0][5] = (1 << 24) | 0b1010;
        let step = m.handle(
            v(0),
            PC,
            sysreg(SystemRegister::ICC_SGI1R_EL1, 5, false),
            0,
            &mut k,
        );
        assert_eq!(step, Ok(resume(Resume::SKIP)));
        assert_eq!(
            k.irqs(),
            [
                (1, 1, virq::HIGH | virq::GROUP1),
                (3, 1, virq::HIGH | virq::GROUP1)
            ]
        );
        // Reading it is undefined.
        m.handle(
            v(0),
            PC,
            sysreg(SystemRegister::ICC_SGI1R_EL1, 5, true),
            0,
            &mut k,
        )
        .unwrap();
        assert!(
            k.calls
                .contains(&Call::Write(0, vreg::ESR_EL1, 0x0200_0000))
        );
    }

    #[test]
    fn timer_ppis_are_configured_through_vcpu_registers() {
        let mut m = machine(2);
        let mut k = Mock::new();
        gic_up(&mut m, &mut k, 2);
        // vCPU 1 enables its virtual timer PPI (27).
        store(&mut m, &mut k, 1, 0x080c_0000 + 0x1_0100, 1 << 27);
        let word = vreg::timer_irq::ENABLED
            | vreg::timer_irq::GROUP1
            | (0xa0 << vreg::timer_irq::PRIORITY_SHIFT);
        assert_eq!(k.calls, [Call::Write(1, vreg::VTIMER_IRQ, word)]);
    }

    #[test]
    fn system_registers_follow_the_policy() {
        let mut m = machine(1);
        let mut k = Mock::new();
        let dbgbvr3 = SystemRegister::new(2, 0, 0, 3, 4);
        k.x[0][7] = 0xffff_8000_1234_0000;
        m.handle(v(0), PC, sysreg(dbgbvr3, 7, false), 0, &mut k)
            .unwrap();
        assert_eq!(
            m.handle(v(0), PC, sysreg(dbgbvr3, 9, true), 0, &mut k),
            Ok(resume(Resume::skip_setting(Some(9), 0xffff_8000_1234_0000)))
        );
        // The OS lock: locked at reset, unlocked by OSLAR_EL1 = 0.
        let oslsr = SystemRegister::new(2, 0, 1, 1, 4);
        let oslar = SystemRegister::new(2, 0, 1, 0, 4);
        assert_eq!(
            m.handle(v(0), PC, sysreg(oslsr, 1, true), 0, &mut k),
            Ok(resume(Resume::skip_setting(Some(1), 0b1010)))
        );
        m.handle(v(0), PC, sysreg(oslar, 31, false), 0, &mut k)
            .unwrap();
        assert_eq!(
            m.handle(v(0), PC, sysreg(oslsr, 1, true), 0, &mut k),
            Ok(resume(Resume::skip_setting(Some(1), 0b1000)))
        );
        // DC CISW: nothing to do.
        let cisw = SystemRegister::new(1, 0, 7, 14, 2);
        assert_eq!(
            m.handle(v(0), PC, sysreg(cisw, 0, false), 0, &mut k),
            Ok(resume(Resume::SKIP))
        );
        assert!(k.calls.is_empty());
        // PMUSERENR_EL0 keeps its value.
        k.x[0][3] = 0;
        m.handle(v(0), PC, sysreg(PMUSERENR_EL0, 31, false), 0, &mut k)
            .unwrap();
        assert_eq!(
            m.handle(v(0), PC, sysreg(PMUSERENR_EL0, 4, true), 0, &mut k),
            Ok(resume(Resume::skip_setting(Some(4), 0)))
        );
        // Other PMU and implementation-defined registers are undefined.
        for r in [
            SystemRegister::PMCR_EL0,
            SystemRegister::new(3, 0, 15, 2, 1),
        ] {
            k.calls.clear();
            m.handle(v(0), PC, sysreg(r, 0, true), 0, &mut k).unwrap();
            assert_eq!(k.calls[0], Call::Write(0, vreg::ESR_EL1, 0x0200_0000));
            assert_eq!(k.calls.last(), Some(&Call::Pc(0, 0xffff_8000_8001_0a00)));
        }
        // So is an SVE instruction (the guest's ID registers show no SVE).
        k.calls.clear();
        let sve = Exit::Undefined {
            syndrome: 0x6600_0000,
        };
        m.handle(v(0), PC, sve, 0, &mut k).unwrap();
        assert_eq!(k.calls[0], Call::Write(0, vreg::ESR_EL1, 0x0200_0000));
        assert_eq!(m.stats().defaulted, 3);
    }

    #[test]
    fn the_rtc_reads_the_wall_clock() {
        let layout = Layout::new(layout::RAM_BASE, 512 << 20, 1).unwrap();
        let mut m = Machine::new(layout, 1_700_000_000, 1000, 100);
        let mut k = Mock::new();
        let at = |m: &mut Machine, k: &mut Mock, now| match m.handle(
            v(0),
            PC,
            mmio(0x0901_0000, false, 4, Some(2)),
            now,
            k,
        ) {
            Ok(Step::Resume {
                resume:
                    Resume {
                        set: Some((2, value)),
                        ..
                    },
                ..
            }) => value,
            other => panic!("{other:?}"),
        };
        assert_eq!(at(&mut m, &mut k, 1000), 1_700_000_000);
        assert_eq!(at(&mut m, &mut k, 1000 + 250), 1_700_000_002);
    }

    proptest! {
        /// Any exit words and MMIO anywhere in the device window, from any
        /// vCPU: no panic, and the kernel is only ever asked about
        /// implemented INTIDs other than the timer PPIs.
        #[test]
        fn any_exit(ops in proptest::collection::vec((any::<[u64; 4]>(), 0usize..2, any::<u64>()), 0..100)) {
            let mut m = machine(2);
            let mut k = Mock::new();
            for (words, who, value) in ops {
                k.x[who] = [value; 31];
                let exit = if words[3] & 1 == 0 {
                    Exit::decode([PC, words[1], words[2], words[3] >> 1 & 7])
                } else {
                    mmio(0x0800_0000 + words[2] % 0x0102_0000, words[1] & 1 == 1, [1, 2, 4, 8][(words[1] >> 1) as usize % 4], Some(1))
                };
                let _ = m.handle(v(who), PC, exit, words[0] >> 8, &mut k);
                let _ = m.receive(&value.to_le_bytes()[..(words[0] % 9) as usize], &mut k);
                m.flush_output(false, |o| assert!(o.len() <= OUTPUT_CAPACITY));
                for c in k.calls.drain(..) {
                    if let Call::SetIrq(_, intid, _, _) = c {
                        prop_assert!(intid < 128 && intid != 27 && intid != 30);
                    }
                }
            }
        }
    }
}
