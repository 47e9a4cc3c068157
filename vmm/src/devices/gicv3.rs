//! An emulated GICv3 distributor and redistributors: the interrupt state a
//! guest programs through MMIO (enables, pending bits, priorities, trigger
//! modes, groups, routing), the inputs devices drive (interrupt lines),
//! SGIs from trapped ICC_SGI*R_EL1 writes, and what the kernel must be
//! told so that the guest's virtual CPU interface sees it ([`Signal`]).
//!
//! The CPU interface (ICC_*_EL1) is not here: with the GICv3 virtual CPU
//! interface the guest's acknowledge, priority-mask and end-of-interrupt
//! accesses are handled by hardware through list registers, which the
//! kernel owns (`Vcpu::SetIrq`: it queues what does not fit and resamples
//! level-sensitive lines at the guest's EOI). So this model decides only
//! what reaches a vCPU's interface and when: [`Gicv3::sync`] compares
//! what each vCPU should see — a level line high while the interrupt is
//! enabled, its group enabled, the redistributor awake and (SPIs) routed
//! there; an edge, SGI or software pending state fired once — with what
//! the kernel was last told, and emits the difference. The two timer PPIs
//! are the kernel's own lines: for them the model reports the guest's
//! enable, group and priority ([`Signal::TimerIrq`]) instead. The active
//! state lives in the list registers and is not mirrored here (GICD and
//! GICR ISACTIVER read back what software wrote).
//!
//! The model is a GIC with a single Security state (GICD_CTLR.DS = 1,
//! GICD_TYPER.SecurityExtn = 0), affinity routing always on (ARE RAO/WI),
//! no LPIs, no ITS, no message-based SPIs, 96 SPIs (INTIDs 32-127), as
//! KVM's emulated GICv3 also presents a single Security state. Register
//! maps and fields: Arm GIC architecture specification (IHI 0069H), 12.8
//! "The GIC Distributor register map", 12.9 "The GIC Distributor register
//! descriptions", 12.10 "The GIC Redistributor register map", 12.11 "The
//! GIC Redistributor register descriptions", and ICC_SGI1R_EL1 in 12.2 (the
//! AArch64 CPU interface registers). Unknown or unimplemented offsets read
//! as zero and ignore writes.

use crate::arch::aarch64::cpu::{AFFINITY_MASK, mpidr, packed_affinity, vcpu_with_affinity};
use crate::vcpu::{MAX_VCPUS, VcpuId, VcpuSet};
use skyscope_abi::vcpu::{aarch64 as vreg, irq as virq};
use skyscope_el2::esr::SystemRegister;
use tock_registers::register_bitfields;

/// Number of INTIDs the model implements: SGIs 0-15, PPIs 16-31, SPIs
/// 32-127.
pub const NR_INTIDS: u32 = 128;
/// First SPI.
pub const SPI_BASE: u32 = 32;
const NR_SPIS: usize = (NR_INTIDS - SPI_BASE) as usize;
/// Size of the distributor frame.
pub const DISTRIBUTOR_SIZE: u64 = 0x1_0000;
/// Size of one redistributor (RD_base and SGI_base frames).
pub const REDISTRIBUTOR_SIZE: u64 = 0x2_0000;
const SGI_BASE: u64 = 0x1_0000;

/// Priority bits implemented: the top five, as many as the virtual CPU
/// interface of common cores uses (ICH_VTR_EL2.PRIbits = 4); the low bits
/// read as zero (IHI 0069 4.8 "Interrupt prioritization").
const PRIORITY_MASK: u8 = 0xf8;

/// GICD_IIDR and GICR_IIDR: implementer 0x43b (Arm's JEP106 code, as KVM's
/// emulated GIC reports) with product ID 0x53 ('S'), so that no quirk Linux
/// keeps for a hardware GIC matches.
const IIDR: u32 = (0x53 << 24) | 0x43b;
/// GICD_PIDR2 / GICR_PIDR2: ArchRev 3 (bits 7:4, GICv3), the JEDEC bit and
/// the designer bits of 0x43b (IHI 0069 12.9 and 12.11, GICD_PIDR2 and
/// GICR_PIDR2; Linux checks ArchRev before anything else).
const PIDR2: u32 = 0x3b;
/// Offset of PIDR2 in either frame.
const PIDR2_OFFSET: u64 = 0xffe8;

/// Distributor register offsets (IHI 0069 12.8).
mod gicd {
    pub const CTLR: u64 = 0x0000;
    pub const TYPER: u64 = 0x0004;
    pub const IIDR: u64 = 0x0008;
    pub const IGROUPR: u64 = 0x0080;
    pub const ISENABLER: u64 = 0x0100;
    pub const ICENABLER: u64 = 0x0180;
    pub const ISPENDR: u64 = 0x0200;
    pub const ICPENDR: u64 = 0x0280;
    pub const ISACTIVER: u64 = 0x0300;
    pub const ICACTIVER: u64 = 0x0380;
    pub const IPRIORITYR: u64 = 0x0400;
    pub const ICFGR: u64 = 0x0c00;
    pub const IROUTER: u64 = 0x6000;
}

/// Redistributor RD_base offsets (IHI 0069 12.10).
mod gicr {
    pub const CTLR: u64 = 0x0000;
    pub const IIDR: u64 = 0x0004;
    pub const TYPER: u64 = 0x0008;
    pub const WAKER: u64 = 0x0014;
}

register_bitfields! {u64,
    /// ICC_SGI1R_EL1 / ICC_SGI0R_EL1 / ICC_ASGI1R_EL1 (IHI 0069 12.2).
    SGIR [
        TARGET_LIST OFFSET(0) NUMBITS(16) [],
        AFF1 OFFSET(16) NUMBITS(8) [],
        INTID OFFSET(24) NUMBITS(4) [],
        AFF2 OFFSET(32) NUMBITS(8) [],
        IRM OFFSET(40) NUMBITS(1) [],
        RS OFFSET(44) NUMBITS(4) [],
        AFF3 OFFSET(48) NUMBITS(8) []
    ],
    /// GICD_TYPER (IHI 0069 12.9).
    TYPER [
        IT_LINES_NUMBER OFFSET(0) NUMBITS(5) [],
        CPU_NUMBER OFFSET(5) NUMBITS(3) [],
        ID_BITS OFFSET(19) NUMBITS(5) [],
        NO_1_OF_N OFFSET(25) NUMBITS(1) []
    ],
    /// GICR_TYPER (IHI 0069 12.11).
    RTYPER [
        LAST OFFSET(4) NUMBITS(1) [],
        PROCESSOR_NUMBER OFFSET(8) NUMBITS(16) [],
        AFFINITY OFFSET(32) NUMBITS(32) []
    ]
}

bitflags::bitflags! {
    /// GICD_CTLR with a single Security state (IHI 0069 12.9).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct DistributorControl: u32 {
        const ENABLE_GRP0 = 1 << 0;
        const ENABLE_GRP1 = 1 << 1;
        /// ARE: affinity routing, always on (RAO/WI).
        const ARE = 1 << 4;
        /// DS: Security disabled, i.e. a single Security state (RAO/WI).
        const DS = 1 << 6;
    }
}

/// GICR_WAKER.ProcessorSleep (bit 1) and ChildrenAsleep (bit 2).
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

/// The state of one interrupt (for SGIs and PPIs: on one vCPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Irq {
    enabled: bool,
    /// Set by an edge, a software write (ISPENDR) or an SGI; cleared when
    /// [`Gicv3::sync`] hands it to the kernel.
    pending_latch: bool,
    /// The input line's level.
    line: bool,
    /// Active as software wrote it (ISACTIVER/ICACTIVER); the real
    /// active state is in the kernel's list registers.
    active: bool,
    priority: u8,
    group1: bool,
    /// Edge-triggered (ICFGR 0b10), else level-sensitive.
    edge: bool,
}

impl Irq {
    /// Pending: latched, or (level-sensitive) while the line is high.
    fn pending(&self) -> bool {
        self.pending_latch || (!self.edge && self.line)
    }

    /// Drives the input line; a rising edge latches an edge-triggered
    /// interrupt.
    fn drive(&mut self, level: bool) {
        if self.edge && level && !self.line {
            self.pending_latch = true;
        }
        self.line = level;
    }
}

#[derive(Clone, Copy, Debug)]
struct Redistributor {
    /// GICR_WAKER.ProcessorSleep: the vCPU's interface is quiescent and
    /// nothing is forwarded to it (the reset state).
    sleeping: bool,
    /// SGIs and PPIs of this vCPU.
    private: [Irq; 32],
}

impl Default for Redistributor {
    fn default() -> Self {
        let mut private = [Irq::default(); 32];
        for (i, irq) in private.iter_mut().enumerate() {
            // SGIs are always edge-triggered (ICFGR0 is read-only); PPIs
            // reset to level-sensitive, as the timers are.
            irq.edge = i < 16;
        }
        Redistributor {
            sleeping: true,
            private,
        }
    }
}

/// Which ICC_*SGI*R_EL1 register generated an SGI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiRegister {
    /// ICC_SGI1R_EL1: Group 1 SGIs. With a single Security state a target
    /// configured as Group 0 receives it too (IHI 0069 "Forwarding an SGI
    /// to a target PE").
    Group1,
    /// ICC_SGI0R_EL1: Group 0 SGIs only.
    Group0,
    /// ICC_ASGI1R_EL1: Group 1 SGIs for the other Security state, which a
    /// single-Security-state GIC does not have: nothing is generated.
    OtherSecurityState,
}

impl SgiRegister {
    /// The SGI register a trapped system-register write names, if any.
    pub fn from_system_register(register: SystemRegister) -> Option<SgiRegister> {
        match register {
            SystemRegister::ICC_SGI1R_EL1 => Some(SgiRegister::Group1),
            SystemRegister::ICC_SGI0R_EL1 => Some(SgiRegister::Group0),
            SystemRegister::ICC_ASGI1R_EL1 => Some(SgiRegister::OtherSecurityState),
            _ => None,
        }
    }
}

/// What the kernel must be told for one vCPU's virtual interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `Vcpu::SetIrq(intid, priority, flags)` on `vcpu`'s Vcpu (`flags`
    /// from [`skyscope_abi::vcpu::irq`]).
    SetIrq {
        /// The target vCPU.
        vcpu: VcpuId,
        /// The INTID.
        intid: u32,
        /// Its priority.
        priority: u8,
        /// LEVEL, HIGH and GROUP1 bits.
        flags: u64,
    },
    /// `Vcpu::WriteRegister(register, value)`: the delivery word of a
    /// timer PPI the kernel raises itself ([`vreg::VTIMER_IRQ`] or
    /// [`vreg::PTIMER_IRQ`], fields in [`vreg::timer_irq`]).
    TimerIrq {
        /// The vCPU.
        vcpu: VcpuId,
        /// Which register.
        register: u64,
        /// Its new value.
        value: u64,
    },
}

/// What the kernel was last told about one vCPU's interrupts.
#[derive(Clone, Copy, Debug)]
struct Told {
    /// Level lines told high.
    high: u128,
    /// Their group when told (bit set: Group 1).
    group1: u128,
    /// Their priority when told.
    priority: [u8; NR_INTIDS as usize],
    /// The two timer delivery words ([`TIMER_PPIS`] order); a new Vcpu
    /// has both 0 (disabled).
    timers: [u64; 2],
}

impl Default for Told {
    fn default() -> Self {
        Told {
            high: 0,
            group1: 0,
            priority: [0; NR_INTIDS as usize],
            timers: [0; 2],
        }
    }
}

/// The timer PPIs the kernel drives itself, with the Vcpu register that
/// says how to deliver each.
const TIMER_PPIS: [(u32, u64); 2] = [
    (vreg::timer_ppi::VIRTUAL, vreg::VTIMER_IRQ),
    (vreg::timer_ppi::PHYSICAL, vreg::PTIMER_IRQ),
];

/// The distributor and the redistributors of one guest.
#[derive(Clone, Debug)]
pub struct Gicv3 {
    vcpus: usize,
    ctlr: DistributorControl,
    spis: [Irq; NR_SPIS],
    /// GICD_IROUTER affinity fields per SPI.
    routes: [u64; NR_SPIS],
    redistributors: [Redistributor; MAX_VCPUS],
    told: [Told; MAX_VCPUS],
}

impl Gicv3 {
    /// A GIC for `vcpus` vCPUs (1 to [`MAX_VCPUS`]), in its reset state.
    pub fn new(vcpus: usize) -> Gicv3 {
        Gicv3 {
            vcpus: vcpus.clamp(1, MAX_VCPUS),
            ctlr: DistributorControl::ARE | DistributorControl::DS,
            spis: [Irq::default(); NR_SPIS],
            routes: [0; NR_SPIS],
            redistributors: [Redistributor::default(); MAX_VCPUS],
            told: [Told::default(); MAX_VCPUS],
        }
    }

    fn all(&self) -> VcpuSet {
        VcpuSet::first(self.vcpus)
    }

    fn vcpu(&self, index: usize) -> Option<VcpuId> {
        VcpuId::new(index).filter(|v| v.index() < self.vcpus)
    }

    /// The state of `intid` as seen from `vcpu` (SGIs and PPIs are per
    /// vCPU), if implemented.
    fn irq(&self, vcpu: VcpuId, intid: u32) -> Option<&Irq> {
        match intid {
            0..SPI_BASE => self.redistributors[vcpu.index()]
                .private
                .get(intid as usize),
            _ => self.spis.get((intid - SPI_BASE) as usize),
        }
    }

    fn irq_mut(&mut self, vcpu: VcpuId, intid: u32) -> Option<&mut Irq> {
        match intid {
            0..SPI_BASE => self.redistributors[vcpu.index()]
                .private
                .get_mut(intid as usize),
            _ => self.spis.get_mut((intid - SPI_BASE) as usize),
        }
    }

    /// The vCPU SPI number `spi` (INTID 32 + `spi`) is routed to (none if
    /// its IROUTER names no vCPU: the interrupt then stays pending and is
    /// not forwarded).
    fn spi_target(&self, spi: usize) -> Option<VcpuId> {
        vcpu_with_affinity(self.routes[spi], self.vcpus)
    }

    /// Whether `intid` reaches `vcpu`'s CPU interface when pending: it is
    /// enabled, its group is enabled, the redistributor is awake and (an
    /// SPI) it is routed to `vcpu`.
    fn forwarded(&self, vcpu: VcpuId, intid: u32) -> bool {
        let Some(irq) = self.irq(vcpu, intid) else {
            return false;
        };
        let routed = match intid.checked_sub(SPI_BASE) {
            Some(spi) => self.spi_target(spi as usize) == Some(vcpu),
            None => true,
        };
        let group_enabled = if irq.group1 {
            self.ctlr.contains(DistributorControl::ENABLE_GRP1)
        } else {
            self.ctlr.contains(DistributorControl::ENABLE_GRP0)
        };
        routed && irq.enabled && group_enabled && !self.redistributors[vcpu.index()].sleeping
    }

    /// Tells the kernel what changed since the last call: fires pending
    /// edges (SGIs, edge-triggered interrupts, software pending states)
    /// that are now forwarded, raises and lowers level lines, re-sends a
    /// high line whose priority or group changed, and rewrites a timer
    /// PPI's delivery word when the guest changed its enable, group or
    /// priority. Call it after every change of the model.
    pub fn sync(&mut self, out: &mut impl FnMut(Signal)) {
        for vcpu in self.all().iter() {
            for (k, &(intid, register)) in TIMER_PPIS.iter().enumerate() {
                let irq = self.redistributors[vcpu.index()].private[intid as usize];
                let mut value = u64::from(irq.priority) << vreg::timer_irq::PRIORITY_SHIFT;
                if irq.group1 {
                    value |= vreg::timer_irq::GROUP1;
                }
                if self.forwarded(vcpu, intid) {
                    value |= vreg::timer_irq::ENABLED;
                }
                let told = &mut self.told[vcpu.index()].timers[k];
                if *told != value {
                    *told = value;
                    out(Signal::TimerIrq {
                        vcpu,
                        register,
                        value,
                    });
                }
            }
            for intid in 0..NR_INTIDS {
                if TIMER_PPIS.iter().any(|&(ppi, _)| ppi == intid) {
                    continue;
                }
                let forwarded = self.forwarded(vcpu, intid);
                let Some(irq) = self.irq_mut(vcpu, intid) else {
                    continue;
                };
                let (priority, group1) = (irq.priority, irq.group1);
                let group = if group1 { virq::GROUP1 } else { 0 };
                if forwarded && irq.pending_latch {
                    // The kernel now holds this pending state.
                    irq.pending_latch = false;
                    out(Signal::SetIrq {
                        vcpu,
                        intid,
                        priority,
                        flags: virq::HIGH | group,
                    });
                }
                let Some(irq) = self.irq(vcpu, intid) else {
                    continue;
                };
                let high = forwarded && !irq.edge && irq.line;
                let bit = 1u128 << intid;
                let told = &mut self.told[vcpu.index()];
                let was_high = told.high & bit != 0;
                let changed =
                    told.priority[intid as usize] != priority || (told.group1 & bit != 0) != group1;
                if high != was_high || (high && changed) {
                    told.high = if high {
                        told.high | bit
                    } else {
                        told.high & !bit
                    };
                    told.group1 = if group1 {
                        told.group1 | bit
                    } else {
                        told.group1 & !bit
                    };
                    told.priority[intid as usize] = priority;
                    out(Signal::SetIrq {
                        vcpu,
                        intid,
                        priority,
                        flags: virq::LEVEL | if high { virq::HIGH } else { 0 } | group,
                    });
                }
            }
        }
    }

    /// Drives the input line of SPI `intid` (32..128), e.g. from a device
    /// model's [`super::Access::irq_line`].
    pub fn set_spi_level(&mut self, intid: u32, level: bool) {
        if let Some(irq) = intid
            .checked_sub(SPI_BASE)
            .and_then(|i| self.spis.get_mut(i as usize))
        {
            irq.drive(level);
        }
    }

    /// Drives the input line of PPI `intid` (16..32) of `vcpu` (the timer
    /// PPIs are the kernel's: driving them here has no effect on the
    /// guest).
    pub fn set_ppi_level(&mut self, vcpu: VcpuId, intid: u32, level: bool) {
        if vcpu.index() >= self.vcpus || !(16..SPI_BASE).contains(&intid) {
            return;
        }
        self.redistributors[vcpu.index()].private[intid as usize].drive(level);
    }

    /// The vCPUs a trapped write of `value` to an SGI-generating register
    /// by vCPU `sender` targets (ICC_SGI1R_EL1 in IHI 0069 12.2:
    /// TargetList, Aff1-3, IRM, RS), and the SGI it names.
    pub fn sgi_targets(&self, sender: VcpuId, value: u64) -> (u32, VcpuSet) {
        let intid = SGIR::INTID.read(value) as u32;
        // GICD_TYPER.RSS = 0: only Aff0 0-15 can be targeted, and a write
        // with a range selector is ignored (one of the two permitted
        // CONSTRAINED UNPREDICTABLE behaviours).
        if SGIR::RS.read(value) != 0 || sender.index() >= self.vcpus {
            return (intid, VcpuSet::EMPTY);
        }
        let mut targets = VcpuSet::EMPTY;
        if SGIR::IRM.is_set(value) {
            targets = self.all();
            targets.remove(sender);
        } else {
            let list = SGIR::TARGET_LIST.read(value);
            let cluster = (SGIR::AFF3.read(value) << 32)
                | (SGIR::AFF2.read(value) << 16)
                | (SGIR::AFF1.read(value) << 8);
            for v in self.all().iter() {
                let m = mpidr(v) & AFFINITY_MASK;
                let aff0 = m & 0xff;
                if m & !0xff == cluster && aff0 < 16 && list & (1 << aff0) != 0 {
                    targets.insert(v);
                }
            }
        }
        (intid, targets)
    }

    /// A trapped write of `value` to an SGI-generating register by vCPU
    /// `sender`: the SGI becomes pending (an edge) on each target. Returns
    /// the targets.
    pub fn write_sgi(&mut self, sender: VcpuId, register: SgiRegister, value: u64) -> VcpuSet {
        if register == SgiRegister::OtherSecurityState {
            return VcpuSet::EMPTY;
        }
        let (intid, targets) = self.sgi_targets(sender, value);
        let mut reached = VcpuSet::EMPTY;
        for t in targets.iter() {
            let irq = &mut self.redistributors[t.index()].private[intid as usize];
            if register == SgiRegister::Group1 || !irq.group1 {
                irq.pending_latch = true;
                reached.insert(t);
            }
        }
        reached
    }

    // ---- MMIO ----

    /// A load of `size` bytes from distributor offset `offset`.
    pub fn read_distributor(&self, offset: u64, size: u8) -> u64 {
        if !aligned(offset, size) {
            return 0;
        }
        match (offset, size) {
            (gicd::IPRIORITYR..0x0800, 1 | 2 | 4) => {
                let first = (offset - gicd::IPRIORITYR) as u32;
                self.priority_bytes(first, size, |gic, intid| {
                    gic.spi_irq(intid).map(|irq| irq.priority)
                })
            }
            (gicd::IROUTER..0x7fe0, 4 | 8) => {
                let spi = ((offset - gicd::IROUTER) / 8) as u32;
                let route = spi
                    .checked_sub(SPI_BASE)
                    .and_then(|i| self.routes.get(i as usize))
                    .copied()
                    .unwrap_or(0);
                split64(route, offset, size)
            }
            (_, 4) => u64::from(self.read_distributor32(offset)),
            _ => 0,
        }
    }

    fn spi_irq(&self, intid: u32) -> Option<&Irq> {
        intid
            .checked_sub(SPI_BASE)
            .and_then(|i| self.spis.get(i as usize))
    }

    fn read_distributor32(&self, offset: u64) -> u32 {
        let bit_reg = |base: u64, get: fn(&Irq) -> bool| -> u32 {
            let first = ((offset - base) * 8) as u32;
            bits32(|i| self.spi_irq(first + i).is_some_and(get))
        };
        match offset {
            gicd::CTLR => self.ctlr.bits(),
            gicd::TYPER => {
                use TYPER::*;
                (IT_LINES_NUMBER.val(u64::from(NR_INTIDS / 32 - 1))
                    + CPU_NUMBER.val(self.vcpus as u64 - 1)
                    // 10 INTID bits (0-1023): no LPIs.
                    + ID_BITS.val(9)
                    // 1 of N routing is not implemented: IRM is ignored.
                    + NO_1_OF_N::SET)
                    .value as u32
            }
            gicd::IIDR => IIDR,
            gicd::IGROUPR..0x0100 => bit_reg(gicd::IGROUPR, |i| i.group1),
            gicd::ISENABLER..0x0180 => bit_reg(gicd::ISENABLER, |i| i.enabled),
            gicd::ICENABLER..0x0200 => bit_reg(gicd::ICENABLER, |i| i.enabled),
            gicd::ISPENDR..0x0280 => bit_reg(gicd::ISPENDR, Irq::pending),
            gicd::ICPENDR..0x0300 => bit_reg(gicd::ICPENDR, Irq::pending),
            gicd::ISACTIVER..0x0380 => bit_reg(gicd::ISACTIVER, |i| i.active),
            gicd::ICACTIVER..0x0400 => bit_reg(gicd::ICACTIVER, |i| i.active),
            gicd::ICFGR..0x0d00 => {
                let first = ((offset - gicd::ICFGR) * 4) as u32;
                config_bits(|i| self.spi_irq(first + i).map(|irq| irq.edge))
            }
            PIDR2_OFFSET => PIDR2,
            // ITARGETSR, SGIR, CPENDSGIR, SPENDSGIR: RAZ/WI with affinity
            // routing; IGRPMODR, NSACR: RAZ/WI with a single Security state;
            // TYPER2, STATUSR, SETSPI/CLRSPI (no message-based SPIs) and
            // the other ID registers: zero.
            _ => 0,
        }
    }

    /// A store of `value` (`size` bytes) to distributor offset `offset`.
    /// Follow it with [`Gicv3::sync`].
    pub fn write_distributor(&mut self, offset: u64, size: u8, value: u64) {
        if !aligned(offset, size) {
            return;
        }
        match (offset, size) {
            (gicd::IPRIORITYR..0x0800, 1 | 2 | 4) => {
                let first = (offset - gicd::IPRIORITYR) as u32;
                for b in 0..u32::from(size) {
                    let byte = (value >> (8 * b)) as u8 & PRIORITY_MASK;
                    if let Some(i) = (first + b).checked_sub(SPI_BASE)
                        && let Some(irq) = self.spis.get_mut(i as usize)
                    {
                        irq.priority = byte;
                    }
                }
            }
            (gicd::IROUTER..0x7fe0, 4 | 8) => {
                let spi = ((offset - gicd::IROUTER) / 8) as u32;
                if let Some(i) = spi.checked_sub(SPI_BASE)
                    && let Some(route) = self.routes.get_mut(i as usize)
                {
                    // Only the affinity fields are kept: IRM (1 of N)
                    // is not implemented.
                    *route = merge64(*route, offset, size, value) & AFFINITY_MASK;
                }
            }
            (_, 4) => self.write_distributor32(offset, value as u32),
            _ => {}
        }
    }

    fn write_distributor32(&mut self, offset: u64, value: u32) {
        let mut each = |base: u64, set: fn(&mut Irq, bool)| {
            let first = ((offset - base) * 8) as u32;
            for b in 0..32 {
                if let Some(i) = (first + b).checked_sub(SPI_BASE)
                    && let Some(irq) = self.spis.get_mut(i as usize)
                {
                    set(irq, value & (1 << b) != 0);
                }
            }
        };
        match offset {
            gicd::CTLR => {
                self.ctlr = DistributorControl::ARE
                    | DistributorControl::DS
                    | (DistributorControl::from_bits_truncate(value)
                        & (DistributorControl::ENABLE_GRP0 | DistributorControl::ENABLE_GRP1));
            }
            gicd::IGROUPR..0x0100 => each(gicd::IGROUPR, |i, b| i.group1 = b),
            gicd::ISENABLER..0x0180 => each(gicd::ISENABLER, |i, b| i.enabled |= b),
            gicd::ICENABLER..0x0200 => each(gicd::ICENABLER, |i, b| i.enabled &= !b),
            gicd::ISPENDR..0x0280 => each(gicd::ISPENDR, |i, b| i.pending_latch |= b),
            gicd::ICPENDR..0x0300 => each(gicd::ICPENDR, |i, b| i.pending_latch &= !b),
            gicd::ISACTIVER..0x0380 => each(gicd::ISACTIVER, |i, b| i.active |= b),
            gicd::ICACTIVER..0x0400 => each(gicd::ICACTIVER, |i, b| i.active &= !b),
            gicd::ICFGR..0x0d00 => {
                let first = ((offset - gicd::ICFGR) * 4) as u32;
                for k in 0..16 {
                    if let Some(i) = (first + k).checked_sub(SPI_BASE)
                        && let Some(irq) = self.spis.get_mut(i as usize)
                    {
                        irq.edge = value & (2 << (2 * k)) != 0;
                    }
                }
            }
            _ => {}
        }
    }

    fn priority_bytes(&self, first: u32, size: u8, get: impl Fn(&Self, u32) -> Option<u8>) -> u64 {
        (0..u32::from(size)).fold(0, |acc, b| {
            acc | u64::from(get(self, first + b).unwrap_or(0)) << (8 * b)
        })
    }

    /// The redistributor and frame offset a region offset falls in.
    fn redistributor_at(&self, offset: u64) -> Option<(VcpuId, u64)> {
        let vcpu = self.vcpu(usize::try_from(offset / REDISTRIBUTOR_SIZE).ok()?)?;
        Some((vcpu, offset % REDISTRIBUTOR_SIZE))
    }

    /// A load of `size` bytes at offset `offset` of the redistributor
    /// region (redistributor n at n × [`REDISTRIBUTOR_SIZE`]).
    pub fn read_redistributor(&self, offset: u64, size: u8) -> u64 {
        let Some((vcpu, offset)) = self.redistributor_at(offset) else {
            return 0;
        };
        if !aligned(offset, size) {
            return 0;
        }
        let r = &self.redistributors[vcpu.index()];
        if offset == gicr::TYPER || offset == gicr::TYPER + 4 {
            let typer = {
                use RTYPER::*;
                (AFFINITY.val(u64::from(packed_affinity(vcpu)))
                    + PROCESSOR_NUMBER.val(vcpu.index() as u64)
                    + if vcpu.index() + 1 == self.vcpus {
                        LAST::SET
                    } else {
                        LAST::CLEAR
                    })
                .value
            };
            return if matches!(size, 4 | 8) {
                split64(typer, offset, size)
            } else {
                0
            };
        }
        if (SGI_BASE + gicd::IPRIORITYR..SGI_BASE + gicd::IPRIORITYR + 32).contains(&offset)
            && matches!(size, 1 | 2 | 4)
        {
            let first = (offset - SGI_BASE - gicd::IPRIORITYR) as u32;
            return self.priority_bytes(first, size, |gic, intid| {
                gic.irq(vcpu, intid).map(|irq| irq.priority)
            });
        }
        if size != 4 {
            return 0;
        }
        let bits = |get: fn(&Irq) -> bool| u64::from(bits32(|i| get(&r.private[i as usize])));
        match offset {
            gicr::CTLR => 0, // no LPIs; RWP and UWP never set
            gicr::IIDR => u64::from(IIDR),
            // The handshake completes at once: asleep as soon as asked,
            // awake as soon as told.
            gicr::WAKER if r.sleeping => u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP),
            gicr::WAKER => 0,
            PIDR2_OFFSET => u64::from(PIDR2),
            o if o >= SGI_BASE => match o - SGI_BASE {
                gicd::IGROUPR => bits(|i| i.group1),
                gicd::ISENABLER | gicd::ICENABLER => bits(|i| i.enabled),
                gicd::ISPENDR | gicd::ICPENDR => bits(Irq::pending),
                gicd::ISACTIVER | gicd::ICACTIVER => bits(|i| i.active),
                0x0c00 => u64::from(config_bits(|i| Some(r.private[i as usize].edge))),
                0x0c04 => u64::from(config_bits(|i| Some(r.private[16 + i as usize].edge))),
                _ => 0,
            },
            _ => 0,
        }
    }

    /// A store of `value` (`size` bytes) at offset `offset` of the
    /// redistributor region. Follow it with [`Gicv3::sync`].
    pub fn write_redistributor(&mut self, offset: u64, size: u8, value: u64) {
        let Some((vcpu, offset)) = self.redistributor_at(offset) else {
            return;
        };
        if !aligned(offset, size) {
            return;
        }
        let r = &mut self.redistributors[vcpu.index()];
        if (SGI_BASE + gicd::IPRIORITYR..SGI_BASE + gicd::IPRIORITYR + 32).contains(&offset)
            && matches!(size, 1 | 2 | 4)
        {
            let first = (offset - SGI_BASE - gicd::IPRIORITYR) as usize;
            for b in 0..usize::from(size) {
                r.private[first + b].priority = (value >> (8 * b)) as u8 & PRIORITY_MASK;
            }
            return;
        }
        if size != 4 {
            return;
        }
        let value = value as u32;
        let mut each = |set: fn(&mut Irq, bool)| {
            for (b, irq) in r.private.iter_mut().enumerate() {
                set(irq, value & (1 << b) != 0);
            }
        };
        match offset {
            gicr::WAKER => r.sleeping = value & WAKER_PROCESSOR_SLEEP != 0,
            o if o >= SGI_BASE => match o - SGI_BASE {
                gicd::IGROUPR => each(|i, b| i.group1 = b),
                gicd::ISENABLER => each(|i, b| i.enabled |= b),
                gicd::ICENABLER => each(|i, b| i.enabled &= !b),
                gicd::ISPENDR => each(|i, b| i.pending_latch |= b),
                gicd::ICPENDR => each(|i, b| i.pending_latch &= !b),
                gicd::ISACTIVER => each(|i, b| i.active |= b),
                gicd::ICACTIVER => each(|i, b| i.active &= !b),
                // ICFGR0 (SGIs) is read-only; ICFGR1 sets the PPIs.
                0x0c04 => {
                    for k in 0..16 {
                        r.private[16 + k].edge = value & (2 << (2 * k)) != 0;
                    }
                }
                _ => {}
            },
            _ => {} // CTLR (no LPIs to enable), PROPBASER, PENDBASER, ...
        }
    }
}

/// Whether an access of `size` bytes at `offset` is naturally aligned and
/// of an architectural size.
fn aligned(offset: u64, size: u8) -> bool {
    matches!(size, 1 | 2 | 4 | 8) && offset.is_multiple_of(u64::from(size))
}

/// A 32-bit register from one bit per INTID.
fn bits32(get: impl Fn(u32) -> bool) -> u32 {
    (0..32).fold(0, |acc, i| acc | u32::from(get(i)) << i)
}

/// An ICFGR value from the edge flag of 16 INTIDs (0b10: edge-triggered;
/// absent INTIDs read as zero).
fn config_bits(edge: impl Fn(u32) -> Option<bool>) -> u32 {
    (0..16).fold(0, |acc, i| {
        acc | if edge(i) == Some(true) {
            2 << (2 * i)
        } else {
            0
        }
    })
}

/// A 64-bit register read whole or as one of its 32-bit halves.
fn split64(register: u64, offset: u64, size: u8) -> u64 {
    match (size, offset % 8) {
        (8, _) => register,
        (_, 0) => register & 0xffff_ffff,
        _ => register >> 32,
    }
}

/// A 64-bit register after a store of `size` bytes at `offset`.
fn merge64(register: u64, offset: u64, size: u8, value: u64) -> u64 {
    match (size, offset % 8) {
        (8, _) => value,
        (_, 0) => (register & !0xffff_ffff) | (value & 0xffff_ffff),
        _ => (register & 0xffff_ffff) | (value << 32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(i: usize) -> VcpuId {
        VcpuId::new(i).unwrap()
    }

    /// The GICR offset of register `reg` of redistributor `n`.
    fn rd(n: u64, reg: u64) -> u64 {
        n * REDISTRIBUTOR_SIZE + reg
    }

    /// What Linux's irq-gic-v3 does at probe time on the boot CPU, and per
    /// CPU as each comes up (gic_dist_init, gic_populate_rdist,
    /// gic_enable_redist, gic_cpu_config).
    fn linux_probe(gic: &mut Gicv3, cpus: usize) {
        assert_eq!(gic.read_distributor(PIDR2_OFFSET, 4) & 0xf0, 0x30);
        let typer = gic.read_distributor(gicd::TYPER, 4);
        let lines = ((typer & 0x1f) + 1) * 32;
        assert_eq!(lines, 128);
        gic.write_distributor(gicd::CTLR, 4, 0);
        assert_eq!(gic.read_distributor(gicd::CTLR, 4) >> 31, 0, "RWP clear");
        for i in (32..lines).step_by(32) {
            gic.write_distributor(gicd::IGROUPR + i / 8, 4, 0xffff_ffff);
        }
        for i in (32..lines).step_by(16) {
            gic.write_distributor(gicd::ICFGR + i / 4, 4, 0);
        }
        for i in (32..lines).step_by(4) {
            gic.write_distributor(gicd::IPRIORITYR + i, 4, 0xa0a0_a0a0);
        }
        for i in (32..lines).step_by(32) {
            gic.write_distributor(gicd::ICACTIVER + i / 8, 4, 0xffff_ffff);
            gic.write_distributor(gicd::ICENABLER + i / 8, 4, 0xffff_ffff);
        }
        // ARE_NS | EnableGrp1A | EnableGrp1 in Linux's names.
        gic.write_distributor(gicd::CTLR, 4, (1 << 4) | (1 << 1) | 1);
        for i in 32..lines {
            gic.write_distributor(gicd::IROUTER + 8 * i, 8, 0);
        }
        for cpu in 0..cpus {
            // Find this CPU's redistributor by affinity, walking frames.
            let mut n = 0;
            loop {
                assert_eq!(gic.read_redistributor(rd(n, PIDR2_OFFSET), 4) & 0xf0, 0x30);
                let typer = gic.read_redistributor(rd(n, gicr::TYPER), 8);
                if typer >> 32 == u64::from(packed_affinity(v(cpu))) {
                    break;
                }
                assert_eq!(typer & (1 << 4), 0, "ran past the last redistributor");
                n += 1;
            }
            let waker = gic.read_redistributor(rd(n, gicr::WAKER), 4);
            gic.write_redistributor(
                rd(n, gicr::WAKER),
                4,
                waker & !u64::from(WAKER_PROCESSOR_SLEEP),
            );
            assert_eq!(
                gic.read_redistributor(rd(n, gicr::WAKER), 4) & u64::from(WAKER_CHILDREN_ASLEEP),
                0
            );
            gic.write_redistributor(rd(n, SGI_BASE + gicd::ICACTIVER), 4, 0xffff_ffff);
            gic.write_redistributor(rd(n, SGI_BASE + gicd::ICENABLER), 4, 0xffff_ffff);
            gic.write_redistributor(rd(n, SGI_BASE + gicd::IGROUPR), 4, 0xffff_ffff);
            for i in (0..32).step_by(4) {
                gic.write_redistributor(rd(n, SGI_BASE + gicd::IPRIORITYR + i), 4, 0xa0a0_a0a0);
            }
            assert_eq!(
                gic.read_redistributor(rd(n, gicr::CTLR), 4) & (1 << 3),
                0,
                "RWP clear"
            );
            // SGIs used for IPIs get enabled.
            gic.write_redistributor(rd(n, SGI_BASE + gicd::ISENABLER), 4, 0xffff);
        }
    }

    /// What the kernel knows of the guest's interrupts, from the signals
    /// the model sent: level lines high, edges fired, timer words.
    struct Kernel {
        high: [u128; MAX_VCPUS],
        priority: [[u8; NR_INTIDS as usize]; MAX_VCPUS],
        fired: std::vec::Vec<(usize, u32)>,
        timers: [[u64; 2]; MAX_VCPUS],
        calls: usize,
    }

    impl Default for Kernel {
        fn default() -> Self {
            Kernel {
                high: [0; MAX_VCPUS],
                priority: [[0; NR_INTIDS as usize]; MAX_VCPUS],
                fired: std::vec::Vec::new(),
                timers: [[0; 2]; MAX_VCPUS],
                calls: 0,
            }
        }
    }

    impl Kernel {
        fn sync(&mut self, gic: &mut Gicv3) {
            gic.sync(&mut |s| {
                self.calls += 1;
                match s {
                    Signal::SetIrq {
                        vcpu,
                        intid,
                        priority,
                        flags,
                    } => {
                        assert!(intid < NR_INTIDS && intid != 27 && intid != 30);
                        let c = vcpu.index();
                        self.priority[c][intid as usize] = priority;
                        if flags & virq::LEVEL != 0 {
                            if flags & virq::HIGH != 0 {
                                self.high[c] |= 1 << intid;
                            } else {
                                self.high[c] &= !(1 << intid);
                            }
                        } else {
                            assert_ne!(flags & virq::HIGH, 0, "an edge that does not fire");
                            self.fired.push((c, intid));
                        }
                    }
                    Signal::TimerIrq {
                        vcpu,
                        register,
                        value,
                    } => {
                        let k = if register == vreg::VTIMER_IRQ { 0 } else { 1 };
                        assert!(register == vreg::VTIMER_IRQ || register == vreg::PTIMER_IRQ);
                        self.timers[vcpu.index()][k] = value;
                    }
                }
            });
        }

        /// Signals sent by a sync.
        fn count(&mut self, gic: &mut Gicv3) -> usize {
            let before = self.calls;
            self.sync(gic);
            self.calls - before
        }

        fn is_high(&self, vcpu: usize, intid: u32) -> bool {
            self.high[vcpu] & (1 << intid) != 0
        }

        fn take_fired(&mut self) -> std::vec::Vec<(usize, u32)> {
            core::mem::take(&mut self.fired)
        }
    }

    #[test]
    fn identification_and_type() {
        let gic = Gicv3::new(4);
        let typer = gic.read_distributor(gicd::TYPER, 4);
        assert_eq!(typer & 0x1f, 3); // ITLinesNumber: 128 INTIDs
        assert_eq!((typer >> 19) & 0x1f, 9); // IDbits: 10 bits
        assert_eq!(typer & (1 << 17), 0, "no LPIs");
        assert_eq!(typer & (1 << 16), 0, "no message-based SPIs");
        assert_eq!(typer & (1 << 10), 0, "a single Security state");
        assert_eq!(gic.read_distributor(gicd::CTLR, 4), (1 << 4) | (1 << 6));
        assert_eq!(gic.read_distributor(gicd::IIDR, 4), 0x5300_043b);
        // Redistributor TYPER: affinity, processor number, Last on the last.
        for n in 0..4u64 {
            let t = gic.read_redistributor(rd(n, gicr::TYPER), 8);
            assert_eq!(t >> 32, n);
            assert_eq!((t >> 8) & 0xffff, n);
            assert_eq!(t >> 4 & 1, u64::from(n == 3));
            // The two halves read separately agree.
            let lo = gic.read_redistributor(rd(n, gicr::TYPER), 4);
            let hi = gic.read_redistributor(rd(n, gicr::TYPER + 4), 4);
            assert_eq!(hi << 32 | lo, t);
        }
        // Past the last redistributor: nothing.
        assert_eq!(gic.read_redistributor(rd(4, PIDR2_OFFSET), 4), 0);
    }

    #[test]
    fn waker_handshake() {
        let mut gic = Gicv3::new(1);
        assert_eq!(
            gic.read_redistributor(gicr::WAKER, 4),
            0b110,
            "asleep at reset"
        );
        gic.write_redistributor(gicr::WAKER, 4, 0);
        assert_eq!(gic.read_redistributor(gicr::WAKER, 4), 0);
        gic.write_redistributor(gicr::WAKER, 4, 0b10);
        assert_eq!(gic.read_redistributor(gicr::WAKER, 4), 0b110);
    }

    #[test]
    fn a_level_spi_is_high_at_the_kernel_while_forwarded() {
        let mut gic = Gicv3::new(2);
        let mut k = Kernel::default();
        linux_probe(&mut gic, 2);
        k.sync(&mut gic); // the timer words after the probe
        let uart = 33;
        // Not enabled yet: pending in the distributor, nothing sent.
        gic.set_spi_level(uart, true);
        assert_eq!(k.count(&mut gic), 0);
        assert_ne!(gic.read_distributor(gicd::ISPENDR + 4, 4) & 2, 0);
        gic.write_distributor(gicd::ISENABLER + 4, 4, 1 << 1);
        assert_eq!(k.count(&mut gic), 1);
        assert!(k.is_high(0, uart), "routed to the boot CPU");
        assert!(!k.is_high(1, uart));
        assert_eq!(k.priority[0][33], 0xa0);
        // Nothing changed: nothing sent.
        assert_eq!(k.count(&mut gic), 0);
        // A new priority is passed on while the line is high.
        gic.write_distributor(gicd::IPRIORITYR + 33, 1, 0x40);
        assert_eq!(k.count(&mut gic), 1);
        assert_eq!(k.priority[0][33], 0x40);
        // The line drops: lowered.
        gic.set_spi_level(uart, false);
        k.sync(&mut gic);
        assert!(!k.is_high(0, uart));
        // High again, then disabled: lowered, the distributor still says
        // pending; ICPENDR cannot clear a high level line.
        gic.set_spi_level(uart, true);
        k.sync(&mut gic);
        assert!(k.is_high(0, uart));
        gic.write_distributor(gicd::ICENABLER + 4, 4, 1 << 1);
        k.sync(&mut gic);
        assert!(!k.is_high(0, uart));
        gic.write_distributor(gicd::ICPENDR + 4, 4, 1 << 1);
        assert_ne!(gic.read_distributor(gicd::ISPENDR + 4, 4) & 2, 0);
        assert!(k.take_fired().is_empty(), "a level line never fires edges");
    }

    #[test]
    fn an_edge_spi_fires_once_per_rising_edge() {
        let mut gic = Gicv3::new(1);
        let mut k = Kernel::default();
        linux_probe(&mut gic, 1);
        gic.write_distributor(gicd::ICFGR + 8, 4, 0b10 << 2); // INTID 33 edge
        assert_eq!(gic.read_distributor(gicd::ICFGR + 8, 4), 0b10 << 2);
        gic.write_distributor(gicd::ISENABLER + 4, 4, 1 << 1);
        gic.set_spi_level(33, true);
        k.sync(&mut gic);
        assert_eq!(k.take_fired(), [(0, 33)]);
        assert!(!k.is_high(0, 33));
        // Still high: no new edge.
        gic.set_spi_level(33, true);
        assert_eq!(k.count(&mut gic), 0);
        gic.set_spi_level(33, false);
        gic.set_spi_level(33, true);
        k.sync(&mut gic);
        assert_eq!(k.take_fired(), [(0, 33)]);
        // An edge while disabled waits for the enable.
        gic.write_distributor(gicd::ICENABLER + 4, 4, 1 << 1);
        gic.set_spi_level(33, false);
        gic.set_spi_level(33, true);
        k.sync(&mut gic);
        assert!(k.take_fired().is_empty());
        gic.write_distributor(gicd::ISENABLER + 4, 4, 1 << 1);
        k.sync(&mut gic);
        assert_eq!(k.take_fired(), [(0, 33)]);
        // A software pending write fires it too.
        gic.write_distributor(gicd::ISPENDR + 4, 4, 1 << 1);
        k.sync(&mut gic);
        assert_eq!(k.take_fired(), [(0, 33)]);
    }

    #[test]
    fn routing_and_group_enables_move_lines() {
        let mut gic = Gicv3::new(2);
        let mut k = Kernel::default();
        linux_probe(&mut gic, 2);
        gic.write_distributor(gicd::ISENABLER + 4, 4, 0b1110);
        for i in 33..36 {
            gic.set_spi_level(i, true);
        }
        k.sync(&mut gic);
        assert!((33..36).all(|i| k.is_high(0, i)));
        // Route INTID 35 to vCPU 1 with two 32-bit halves.
        gic.write_distributor(gicd::IROUTER + 8 * 35, 4, 1);
        gic.write_distributor(gicd::IROUTER + 8 * 35 + 4, 4, 0);
        assert_eq!(gic.read_distributor(gicd::IROUTER + 8 * 35, 8), 1);
        k.sync(&mut gic);
        assert!(!k.is_high(0, 35) && k.is_high(1, 35));
        // Unimplemented priority bits read as zero.
        gic.write_distributor(gicd::IPRIORITYR + 36, 1, 0xff);
        assert_eq!(gic.read_distributor(gicd::IPRIORITYR + 36, 1), 0xf8);
        // Group 1 disabled: every line drops.
        gic.write_distributor(gicd::CTLR, 4, 1);
        k.sync(&mut gic);
        assert_eq!(k.high, [0; MAX_VCPUS]);
        gic.write_distributor(gicd::CTLR, 4, 0b11);
        k.sync(&mut gic);
        assert!(k.is_high(1, 35));
        // A route naming no vCPU delivers nowhere.
        gic.write_distributor(gicd::IROUTER + 8 * 35, 8, 0x0100);
        k.sync(&mut gic);
        assert!(!k.is_high(0, 35) && !k.is_high(1, 35));
        // A sleeping redistributor is not forwarded to.
        gic.write_redistributor(rd(0, gicr::WAKER), 4, 0b10);
        k.sync(&mut gic);
        assert_eq!(k.high[0], 0);
    }

    #[test]
    fn sgis_from_icc_sgi1r() {
        let mut gic = Gicv3::new(4);
        let mut k = Kernel::default();
        linux_probe(&mut gic, 4);
        let sgi1r = SgiRegister::from_system_register(SystemRegister::ICC_SGI1R_EL1).unwrap();
        // SGI 3 to vCPUs 1 and 2 (Aff1 = 0, TargetList bits 1 and 2).
        let value = (3 << 24) | 0b110;
        assert_eq!(
            gic.write_sgi(v(0), sgi1r, value),
            VcpuSet::only(v(1)).union(VcpuSet::only(v(2)))
        );
        k.sync(&mut gic);
        assert_eq!(k.take_fired(), [(1, 3), (2, 3)]);
        // IRM: everyone but the sender.
        let all = gic.write_sgi(v(2), sgi1r, (5 << 24) | (1 << 40));
        assert_eq!(all.bits(), 0b1011);
        k.sync(&mut gic);
        assert_eq!(k.take_fired(), [(0, 5), (1, 5), (3, 5)]);
        // Aff1 = 1 names no vCPU here; RS != 0 is ignored.
        assert_eq!(gic.write_sgi(v(0), sgi1r, (1 << 16) | 1), VcpuSet::EMPTY);
        assert_eq!(gic.write_sgi(v(0), sgi1r, (1 << 44) | 1), VcpuSet::EMPTY);
        // SGI0R reaches only targets where the SGI is Group 0; ASGI1R none.
        let sgi0r = SgiRegister::from_system_register(SystemRegister::ICC_SGI0R_EL1).unwrap();
        assert_eq!(gic.write_sgi(v(0), sgi0r, (7 << 24) | 0b10), VcpuSet::EMPTY);
        gic.write_redistributor(rd(1, SGI_BASE + gicd::IGROUPR), 4, !(1 << 7));
        assert_eq!(
            gic.write_sgi(v(0), sgi0r, (7 << 24) | 0b10),
            VcpuSet::only(v(1))
        );
        k.sync(&mut gic);
        assert_eq!(k.take_fired(), [(1, 7)]);
        // With Group 0 disabled in GICD_CTLR, a Group 0 SGI waits.
        gic.write_distributor(gicd::CTLR, 4, 0b10);
        gic.write_sgi(v(0), sgi0r, (7 << 24) | 0b10);
        k.sync(&mut gic);
        assert!(k.take_fired().is_empty());
        gic.write_distributor(gicd::CTLR, 4, 0b11);
        k.sync(&mut gic);
        assert_eq!(k.take_fired(), [(1, 7)]);
        let asgi = SgiRegister::from_system_register(SystemRegister::ICC_ASGI1R_EL1).unwrap();
        assert_eq!(
            gic.write_sgi(v(0), asgi, (1 << 40) | (9 << 24)),
            VcpuSet::EMPTY
        );
        assert_eq!(
            SgiRegister::from_system_register(SystemRegister::PMCR_EL0),
            None
        );
        // A target still asleep gets its SGI when it wakes.
        let mut cold = Gicv3::new(2);
        cold.write_distributor(gicd::CTLR, 4, 0b11);
        cold.write_redistributor(rd(1, SGI_BASE + gicd::IGROUPR), 4, u64::MAX);
        cold.write_redistributor(rd(1, SGI_BASE + gicd::ISENABLER), 4, 0xffff);
        cold.write_sgi(v(0), sgi1r, (2 << 24) | 0b10);
        let mut k2 = Kernel::default();
        k2.sync(&mut cold);
        assert!(k2.take_fired().is_empty());
        cold.write_redistributor(rd(1, gicr::WAKER), 4, 0);
        k2.sync(&mut cold);
        assert_eq!(k2.take_fired(), [(1, 2)]);
        // SGI configuration is read-only edge.
        gic.write_redistributor(rd(0, SGI_BASE + 0xc00), 4, 0);
        assert_eq!(
            gic.read_redistributor(rd(0, SGI_BASE + 0xc00), 4),
            0xaaaa_aaaa
        );
    }

    #[test]
    fn timer_ppis_are_configured_not_driven() {
        let mut gic = Gicv3::new(2);
        let mut k = Kernel::default();
        linux_probe(&mut gic, 2);
        // After the probe both timers are disabled, priority 0xa0, Group
        // 1 (the probe's writes); enabling the virtual timer on vCPU 1 only.
        k.sync(&mut gic);
        let configured = (0xa0 << vreg::timer_irq::PRIORITY_SHIFT) | vreg::timer_irq::GROUP1;
        assert_eq!(k.timers[1], [configured; 2]);
        gic.write_redistributor(rd(1, SGI_BASE + gicd::ISENABLER), 4, 1 << 27);
        k.sync(&mut gic);
        assert_eq!(k.timers[1][0], configured | vreg::timer_irq::ENABLED);
        assert_eq!(k.timers[0][0], configured);
        // A new priority for the physical timer on vCPU 0.
        gic.write_redistributor(rd(0, SGI_BASE + gicd::IPRIORITYR + 30), 1, 0x80);
        gic.write_redistributor(rd(0, SGI_BASE + gicd::ISENABLER), 4, 1 << 30);
        k.sync(&mut gic);
        assert_eq!(
            k.timers[0][1],
            (0x80 << vreg::timer_irq::PRIORITY_SHIFT)
                | vreg::timer_irq::GROUP1
                | vreg::timer_irq::ENABLED
        );
        // The lines themselves are the kernel's.
        gic.set_ppi_level(v(1), 27, true);
        assert_eq!(k.count(&mut gic), 0);
        // Other PPIs are lines like any other; PPIs are per vCPU.
        gic.write_redistributor(rd(1, SGI_BASE + gicd::ISENABLER), 4, 1 << 23);
        gic.set_ppi_level(v(1), 23, true);
        gic.set_ppi_level(v(0), 23, true);
        k.sync(&mut gic);
        assert!(k.is_high(1, 23) && !k.is_high(0, 23));
        assert_ne!(
            gic.read_redistributor(rd(0, SGI_BASE + gicd::ISPENDR), 4) & (1 << 23),
            0
        );
        gic.set_ppi_level(v(1), 40, true);
        // ICFGR1 is programmable.
        gic.write_redistributor(rd(0, SGI_BASE + 0xc04), 4, 0b10 << 22);
        assert_eq!(
            gic.read_redistributor(rd(0, SGI_BASE + 0xc04), 4),
            0b10 << 22
        );
        // Disabling takes ENABLED away again.
        gic.write_redistributor(rd(1, SGI_BASE + gicd::ICENABLER), 4, 1 << 27);
        k.sync(&mut gic);
        assert_eq!(k.timers[1][0], configured);
    }

    #[test]
    fn distributor_ignores_private_interrupts_and_bad_accesses() {
        let mut gic = Gicv3::new(1);
        gic.write_distributor(gicd::ISENABLER, 4, 0xffff_ffff);
        assert_eq!(
            gic.read_distributor(gicd::ISENABLER, 4),
            0,
            "INTIDs 0-31 are the redistributor's"
        );
        // Misaligned or oddly sized: ignored.
        gic.write_distributor(gicd::ISENABLER + 6, 4, 0xffff_ffff);
        gic.write_distributor(gicd::ISENABLER + 4, 2, 0xffff);
        gic.write_distributor(gicd::ISENABLER + 4, 8, u64::MAX);
        assert_eq!(gic.read_distributor(gicd::ISENABLER + 4, 4), 0);
        // Beyond the implemented INTIDs: nothing.
        gic.write_distributor(gicd::ISENABLER + 16, 4, 0xffff_ffff);
        assert_eq!(gic.read_distributor(gicd::ISENABLER + 16, 4), 0);
        assert_eq!(gic.read_distributor(0x1234, 4), 0);
        assert_eq!(gic.read_distributor(gicd::IROUTER + 8 * 200, 8), 0);
    }

    /// What the kernel should know of `gic` after a sync, computed from
    /// the registers independently of `sync`: high lines per vCPU.
    fn expected_high(gic: &Gicv3, vcpu: usize) -> u128 {
        let mut high = 0;
        for intid in (0..NR_INTIDS).filter(|&i| i != 27 && i != 30) {
            let irq = gic.irq(v(vcpu), intid).unwrap();
            if !irq.edge && irq.line && gic.forwarded(v(vcpu), intid) {
                high |= 1 << intid;
            }
        }
        high
    }

    proptest! {
        /// Any MMIO traffic, lines and SGIs: no panic; after each sync the
        /// kernel's high lines are exactly those that are level-sensitive,
        /// high and forwarded, every edge it was sent was forwarded, a
        /// second sync sends nothing, and timer words follow the
        /// registers.
        #[test]
        fn any_traffic(ops in proptest::collection::vec((0u8..6, any::<u64>(), any::<u64>(), 0usize..3), 0..200)) {
            let mut gic = Gicv3::new(2);
            let mut k = Kernel::default();
            let sizes = [1u8, 2, 4, 8];
            for (kind, a, b, who) in ops {
                match kind {
                    0 => gic.write_distributor(a % 0x1_0010, sizes[(b >> 60) as usize % 4], b),
                    1 => gic.write_redistributor(a % 0x4_0010, sizes[(b >> 60) as usize % 4], b),
                    2 => gic.set_spi_level((a % 140) as u32, b & 1 == 1),
                    3 => { gic.write_sgi(v(who % 2), SgiRegister::Group1, b); }
                    4 => gic.set_ppi_level(v(who % 2), (a % 40) as u32, b & 1 == 1),
                    _ => { gic.read_distributor(a % 0x1_0010, 4); gic.read_redistributor(a % 0x4_0010, 8); }
                }
                k.sync(&mut gic);
                for c in 0..2 {
                    prop_assert_eq!(k.high[c], expected_high(&gic, c));
                    for (k2, &(ppi, _)) in TIMER_PPIS.iter().enumerate() {
                        let irq = gic.irq(v(c), ppi).unwrap();
                        let enabled = k.timers[c][k2] & vreg::timer_irq::ENABLED != 0;
                        prop_assert_eq!(enabled, gic.forwarded(v(c), ppi));
                        prop_assert_eq!((k.timers[c][k2] >> 8) as u8, irq.priority);
                    }
                }
                for (c, intid) in k.take_fired() {
                    prop_assert!(gic.forwarded(v(c), intid));
                }
                prop_assert_eq!(k.count(&mut gic), 0);
            }
        }

        /// ICC_SGI1R_EL1 decoding: any value fires exactly the named SGI on
        /// exactly the named vCPUs.
        #[test]
        fn sgi1r_targets(value: u64, sender in 0usize..4) {
            let mut gic = Gicv3::new(4);
            let mut k = Kernel::default();
            linux_probe(&mut gic, 4);
            k.sync(&mut gic);
            let notify = gic.write_sgi(v(sender), SgiRegister::Group1, value);
            k.sync(&mut gic);
            let fired = k.take_fired();
            let intid = ((value >> 24) & 0xf) as u32;
            for c in 0..4 {
                let expected = if (value >> 44) & 0xf != 0 {
                    false
                } else if value >> 40 & 1 == 1 {
                    c != sender
                } else {
                    (value >> 16) & 0xff == 0 && (value >> 32) & 0xff == 0 && (value >> 48) & 0xff == 0 && value & (1 << c) != 0
                };
                prop_assert_eq!(notify.contains(v(c)), expected);
                prop_assert_eq!(fired.contains(&(c, intid)), expected);
            }
            prop_assert!(fired.iter().all(|&(_, i)| i == intid));
        }
    }
}
