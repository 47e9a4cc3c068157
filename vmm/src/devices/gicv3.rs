//! An emulated GICv3 distributor and redistributors: the interrupt state a
//! guest programs through MMIO (enables, pending and active bits,
//! priorities, trigger modes, groups, routing), the inputs devices drive
//! (interrupt lines), SGIs from trapped ICC_SGI*R_EL1 writes, and the
//! answer the VMM needs to program a vCPU's list registers: which
//! interrupts should be delivered to it now, highest priority first.
//!
//! The CPU interface (ICC_*_EL1) is not here: with the GICv3 virtual CPU
//! interface the guest's acknowledge, priority-mask and end-of-interrupt
//! accesses are handled by hardware through list registers, which the
//! kernel manages. The VMM hands an interrupt over with
//! [`Gicv3::acknowledge`] once it is in a list register and gets it back
//! with [`Gicv3::end_of_interrupt`] when the list register is done with it.
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
    /// Set by an edge, a software write (ISPENDR) or an SGI.
    pending_latch: bool,
    /// The input line's level.
    line: bool,
    /// Active: software set it (ISACTIVER), or the VMM handed it to the
    /// vCPU interface and has not had it back.
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

/// An interrupt to deliver to a vCPU (what goes into a list register).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The INTID.
    pub intid: u32,
    /// Its priority (lower is more urgent).
    pub priority: u8,
    /// Group 1 (else Group 0).
    pub group1: bool,
    /// Level-sensitive: the VMM should ask for a maintenance interrupt at
    /// its end of interrupt, so that it can call
    /// [`Gicv3::end_of_interrupt`] and resample the line.
    pub level: bool,
}

/// The distributor and the redistributors of one guest.
#[derive(Clone, Debug)]
pub struct Gicv3 {
    vcpus: usize,
    ctlr: DistributorControl,
    spis: [Irq; NR_SPIS],
    /// GICD_IROUTER affinity fields per SPI.
    routes: [u64; NR_SPIS],
    redistributors: [Redistributor; MAX_VCPUS],
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

    /// The vCPU SPI number `spi` (INTID 32 + `spi`) is routed to (none if
    /// its IROUTER names no vCPU: the interrupt then stays pending and is
    /// not forwarded).
    fn spi_target(&self, spi: usize) -> Option<VcpuId> {
        vcpu_with_affinity(self.routes[spi], self.vcpus)
    }

    fn deliverable(&self, vcpu: VcpuId, irq: &Irq) -> bool {
        let group_enabled = if irq.group1 {
            self.ctlr.contains(DistributorControl::ENABLE_GRP1)
        } else {
            self.ctlr.contains(DistributorControl::ENABLE_GRP0)
        };
        irq.enabled
            && irq.pending()
            && !irq.active
            && group_enabled
            && !self.redistributors[vcpu.index()].sleeping
    }

    /// Bit n set: INTID n should be delivered to `vcpu` now.
    fn deliverable_mask(&self, vcpu: VcpuId) -> u128 {
        let mut mask = 0u128;
        for (i, irq) in self.redistributors[vcpu.index()].private.iter().enumerate() {
            if self.deliverable(vcpu, irq) {
                mask |= 1 << i;
            }
        }
        for (i, irq) in self.spis.iter().enumerate() {
            if self.spi_target(i) == Some(vcpu) && self.deliverable(vcpu, irq) {
                mask |= 1 << (i + SPI_BASE as usize);
            }
        }
        mask
    }

    fn masks(&self) -> [u128; MAX_VCPUS] {
        let mut m = [0; MAX_VCPUS];
        for v in self.all().iter() {
            m[v.index()] = self.deliverable_mask(v);
        }
        m
    }

    /// Runs `change` and returns the vCPUs whose deliverable interrupts
    /// changed: those the VMM must update (refill list registers, wake
    /// from a wait for interrupt).
    fn tracking(&mut self, change: impl FnOnce(&mut Self) -> VcpuSet) -> VcpuSet {
        let before = self.masks();
        let mut notify = change(self);
        let after = self.masks();
        for v in self.all().iter() {
            if before[v.index()] != after[v.index()] {
                notify.insert(v);
            }
        }
        notify
    }

    /// Interrupts to deliver to `vcpu` now — enabled, pending, not active,
    /// their group enabled, routed to it — most urgent first (lowest
    /// priority value, then lowest INTID), at most `out.len()` of them.
    /// Returns how many were written.
    pub fn pending(&self, vcpu: VcpuId, out: &mut [Delivery]) -> usize {
        if vcpu.index() >= self.vcpus {
            return 0;
        }
        let mask = self.deliverable_mask(vcpu);
        let mut n = 0;
        for intid in (0..NR_INTIDS).filter(|i| mask & (1 << i) != 0) {
            let Some(irq) = self.irq(vcpu, intid) else {
                continue;
            };
            let d = Delivery {
                intid,
                priority: irq.priority,
                group1: irq.group1,
                level: !irq.edge,
            };
            // Insertion into the sorted prefix; INTIDs come in increasing
            // order, so equal priorities keep the lower INTID first.
            let at = out[..n]
                .iter()
                .position(|o| o.priority > d.priority)
                .unwrap_or(n);
            if at == out.len() {
                continue;
            }
            let end = (n + 1).min(out.len());
            out[at..end].rotate_right(1);
            out[at] = d;
            n = end;
        }
        n
    }

    /// The VMM put `intid` into one of `vcpu`'s list registers: the vCPU
    /// interface now owns it (it counts as active here until
    /// [`Gicv3::end_of_interrupt`]), and an edge or software pending state
    /// is consumed. Returns whether it was deliverable.
    pub fn acknowledge(&mut self, vcpu: VcpuId, intid: u32) -> bool {
        if vcpu.index() >= self.vcpus || intid >= NR_INTIDS {
            return false;
        }
        let deliverable = self.deliverable_mask(vcpu) & (1 << intid) != 0;
        if deliverable && let Some(irq) = self.irq_mut(vcpu, intid) {
            irq.pending_latch = false;
            irq.active = true;
        }
        deliverable
    }

    /// The list register holding `intid` on `vcpu` became invalid (the
    /// guest deactivated it). A level-sensitive interrupt whose line is
    /// still high is pending again: the line is resampled. Returns the
    /// vCPUs to update.
    pub fn end_of_interrupt(&mut self, vcpu: VcpuId, intid: u32) -> VcpuSet {
        if vcpu.index() >= self.vcpus {
            return VcpuSet::EMPTY;
        }
        self.tracking(|gic| {
            if let Some(irq) = gic.irq_mut(vcpu, intid) {
                irq.active = false;
            }
            VcpuSet::EMPTY
        })
    }

    fn irq_mut(&mut self, vcpu: VcpuId, intid: u32) -> Option<&mut Irq> {
        match intid {
            0..SPI_BASE => self.redistributors[vcpu.index()]
                .private
                .get_mut(intid as usize),
            _ => self.spis.get_mut((intid - SPI_BASE) as usize),
        }
    }

    /// Drives the input line of SPI `intid` (32..128), e.g. from a device
    /// model's [`super::Access::irq_line`]. Returns the vCPUs to update.
    pub fn set_spi_level(&mut self, intid: u32, level: bool) -> VcpuSet {
        self.tracking(|gic| {
            if let Some(irq) = intid
                .checked_sub(SPI_BASE)
                .and_then(|i| gic.spis.get_mut(i as usize))
            {
                irq.drive(level);
            }
            VcpuSet::EMPTY
        })
    }

    /// Drives the input line of PPI `intid` (16..32) of `vcpu`. Returns the
    /// vCPUs to update.
    pub fn set_ppi_level(&mut self, vcpu: VcpuId, intid: u32, level: bool) -> VcpuSet {
        if vcpu.index() >= self.vcpus || !(16..SPI_BASE).contains(&intid) {
            return VcpuSet::EMPTY;
        }
        self.tracking(|gic| {
            gic.redistributors[vcpu.index()].private[intid as usize].drive(level);
            VcpuSet::EMPTY
        })
    }

    /// A trapped write of `value` to an SGI-generating register by vCPU
    /// `sender`. Returns the vCPUs to update.
    pub fn write_sgi(&mut self, sender: VcpuId, register: SgiRegister, value: u64) -> VcpuSet {
        if register == SgiRegister::OtherSecurityState || sender.index() >= self.vcpus {
            return VcpuSet::EMPTY;
        }
        // GICD_TYPER.RSS = 0: only Aff0 0-15 can be targeted, and a write
        // with a range selector is ignored (one of the two permitted
        // CONSTRAINED UNPREDICTABLE behaviours).
        if SGIR::RS.read(value) != 0 {
            return VcpuSet::EMPTY;
        }
        let intid = SGIR::INTID.read(value) as usize;
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
        self.tracking(|gic| {
            for t in targets.iter() {
                let irq = &mut gic.redistributors[t.index()].private[intid];
                if register == SgiRegister::Group1 || !irq.group1 {
                    irq.pending_latch = true;
                }
            }
            VcpuSet::EMPTY
        })
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
    /// Returns the vCPUs to update.
    pub fn write_distributor(&mut self, offset: u64, size: u8, value: u64) -> VcpuSet {
        if !aligned(offset, size) {
            return VcpuSet::EMPTY;
        }
        self.tracking(|gic| {
            match (offset, size) {
                (gicd::IPRIORITYR..0x0800, 1 | 2 | 4) => {
                    // A new priority reorders what the routed vCPU is
                    // offered even though the set is the same.
                    let first = (offset - gicd::IPRIORITYR) as u32;
                    let mut reordered = VcpuSet::EMPTY;
                    for b in 0..u32::from(size) {
                        let byte = (value >> (8 * b)) as u8 & PRIORITY_MASK;
                        if let Some(i) = (first + b).checked_sub(SPI_BASE)
                            && let Some(irq) = gic.spis.get_mut(i as usize)
                            && irq.priority != byte
                        {
                            irq.priority = byte;
                            if let Some(t) = gic.spi_target(i as usize) {
                                reordered.insert(t);
                            }
                        }
                    }
                    return reordered;
                }
                (gicd::IROUTER..0x7fe0, 4 | 8) => {
                    let spi = ((offset - gicd::IROUTER) / 8) as u32;
                    if let Some(i) = spi.checked_sub(SPI_BASE)
                        && let Some(route) = gic.routes.get_mut(i as usize)
                    {
                        // Only the affinity fields are kept: IRM (1 of N)
                        // is not implemented.
                        *route = merge64(*route, offset, size, value) & AFFINITY_MASK;
                    }
                }
                (_, 4) => gic.write_distributor32(offset, value as u32),
                _ => {}
            }
            VcpuSet::EMPTY
        })
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
    /// redistributor region. Returns the vCPUs to update.
    pub fn write_redistributor(&mut self, offset: u64, size: u8, value: u64) -> VcpuSet {
        let Some((vcpu, offset)) = self.redistributor_at(offset) else {
            return VcpuSet::EMPTY;
        };
        if !aligned(offset, size) {
            return VcpuSet::EMPTY;
        }
        self.tracking(|gic| {
            let r = &mut gic.redistributors[vcpu.index()];
            if (SGI_BASE + gicd::IPRIORITYR..SGI_BASE + gicd::IPRIORITYR + 32).contains(&offset)
                && matches!(size, 1 | 2 | 4)
            {
                let first = (offset - SGI_BASE - gicd::IPRIORITYR) as usize;
                let mut changed = false;
                for b in 0..usize::from(size) {
                    let byte = (value >> (8 * b)) as u8 & PRIORITY_MASK;
                    let irq = &mut r.private[first + b];
                    changed |= irq.priority != byte;
                    irq.priority = byte;
                }
                return if changed {
                    VcpuSet::only(vcpu)
                } else {
                    VcpuSet::EMPTY
                };
            }
            if size != 4 {
                return VcpuSet::EMPTY;
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
            VcpuSet::EMPTY
        })
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

    fn pending(gic: &Gicv3, vcpu: usize) -> std::vec::Vec<Delivery> {
        let mut out = [Delivery {
            intid: 0,
            priority: 0,
            group1: false,
            level: false,
        }; 16];
        let n = gic.pending(v(vcpu), &mut out);
        out[..n].to_vec()
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
    fn level_spi_stays_pending_while_high_and_resamples_at_eoi() {
        let mut gic = Gicv3::new(2);
        linux_probe(&mut gic, 2);
        let uart = 33;
        // Not enabled yet: pending, but nothing to deliver.
        assert_eq!(gic.set_spi_level(uart, true), VcpuSet::EMPTY);
        assert_ne!(gic.read_distributor(gicd::ISPENDR + 4, 4) & 2, 0);
        let notify = gic.write_distributor(gicd::ISENABLER + 4, 4, 1 << 1);
        assert_eq!(notify, VcpuSet::only(v(0)), "routed to the boot CPU");
        assert_eq!(
            pending(&gic, 0),
            [Delivery {
                intid: 33,
                priority: 0xa0,
                group1: true,
                level: true
            }]
        );
        assert!(pending(&gic, 1).is_empty());
        // Into a list register: no longer offered.
        assert!(gic.acknowledge(v(0), uart));
        assert!(pending(&gic, 0).is_empty());
        // The guest handled it but the line is still high: pending again.
        assert_eq!(gic.end_of_interrupt(v(0), uart), VcpuSet::only(v(0)));
        assert_eq!(pending(&gic, 0).len(), 1);
        assert!(gic.acknowledge(v(0), uart));
        gic.set_spi_level(uart, false);
        assert_eq!(gic.end_of_interrupt(v(0), uart), VcpuSet::EMPTY);
        assert!(pending(&gic, 0).is_empty());
        // ICPENDR cannot clear a level interrupt whose line is high.
        gic.set_spi_level(uart, true);
        gic.write_distributor(gicd::ICPENDR + 4, 4, 1 << 1);
        assert_eq!(pending(&gic, 0).len(), 1);
    }

    #[test]
    fn edge_spi_latches_once() {
        let mut gic = Gicv3::new(1);
        linux_probe(&mut gic, 1);
        gic.write_distributor(gicd::ICFGR + 8, 4, 0b10 << 2); // INTID 33 edge
        assert_eq!(gic.read_distributor(gicd::ICFGR + 8, 4), 0b10 << 2);
        gic.write_distributor(gicd::ISENABLER + 4, 4, 1 << 1);
        gic.set_spi_level(33, true);
        gic.set_spi_level(33, false);
        assert!(gic.acknowledge(v(0), 33));
        assert_eq!(gic.end_of_interrupt(v(0), 33), VcpuSet::EMPTY, "consumed");
        // High again without a falling edge in between: no new edge.
        gic.set_spi_level(33, true);
        assert_eq!(pending(&gic, 0).len(), 1);
        gic.acknowledge(v(0), 33);
        gic.end_of_interrupt(v(0), 33);
        assert_eq!(gic.set_spi_level(33, true), VcpuSet::EMPTY);
    }

    #[test]
    fn routing_priority_order_and_group_enables() {
        let mut gic = Gicv3::new(2);
        linux_probe(&mut gic, 2);
        gic.write_distributor(gicd::ISENABLER + 4, 4, 0b1110);
        // Route INTID 35 to vCPU 1 with two 32-bit halves.
        gic.write_distributor(gicd::IROUTER + 8 * 35, 4, 1);
        gic.write_distributor(gicd::IROUTER + 8 * 35 + 4, 4, 0);
        assert_eq!(gic.read_distributor(gicd::IROUTER + 8 * 35, 8), 1);
        gic.write_distributor(gicd::IPRIORITYR + 34, 1, 0x20);
        assert_eq!(gic.read_distributor(gicd::IPRIORITYR + 32, 4), 0xa020_a0a0);
        assert_eq!(gic.read_distributor(gicd::IPRIORITYR + 34, 1), 0x20);
        // Unimplemented priority bits read as zero.
        gic.write_distributor(gicd::IPRIORITYR + 36, 1, 0xff);
        assert_eq!(gic.read_distributor(gicd::IPRIORITYR + 36, 1), 0xf8);
        for i in 33..36 {
            gic.set_spi_level(i, true);
        }
        let order: std::vec::Vec<u32> = pending(&gic, 0).iter().map(|d| d.intid).collect();
        assert_eq!(order, [34, 33]);
        assert_eq!(pending(&gic, 1)[0].intid, 35);
        // Only one list register: the most urgent.
        let mut one = [pending(&gic, 1)[0]; 1];
        assert_eq!(gic.pending(v(0), &mut one), 1);
        assert_eq!(one[0].intid, 34);
        // Group 1 disabled: nothing from group 1 is delivered.
        let notify = gic.write_distributor(gicd::CTLR, 4, 1);
        assert_eq!(notify, VcpuSet::first(2));
        assert!(pending(&gic, 0).is_empty());
        // A route naming no vCPU delivers nowhere.
        gic.write_distributor(gicd::CTLR, 4, 0b11);
        gic.write_distributor(gicd::IROUTER + 8 * 35, 8, 0x0100);
        assert!(pending(&gic, 1).is_empty());
        // A sleeping redistributor is not forwarded to.
        gic.write_redistributor(rd(0, gicr::WAKER), 4, 0b10);
        assert!(pending(&gic, 0).is_empty());
    }

    #[test]
    fn sgis_from_icc_sgi1r() {
        let mut gic = Gicv3::new(4);
        linux_probe(&mut gic, 4);
        let sgi1r = SgiRegister::from_system_register(SystemRegister::ICC_SGI1R_EL1).unwrap();
        // SGI 3 to vCPUs 1 and 2 (Aff1 = 0, TargetList bits 1 and 2).
        let value = (3 << 24) | 0b110;
        assert_eq!(
            gic.write_sgi(v(0), sgi1r, value),
            VcpuSet::only(v(1)).union(VcpuSet::only(v(2)))
        );
        assert_eq!(pending(&gic, 1)[0].intid, 3);
        assert!(pending(&gic, 0).is_empty());
        // IRM: everyone but the sender.
        let all = gic.write_sgi(v(2), sgi1r, (5 << 24) | (1 << 40));
        assert_eq!(all.bits(), 0b1011);
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
        assert!(pending(&gic, 1).iter().any(|d| d.intid == 7 && !d.group1));
        let asgi = SgiRegister::from_system_register(SystemRegister::ICC_ASGI1R_EL1).unwrap();
        assert_eq!(
            gic.write_sgi(v(0), asgi, (1 << 40) | (9 << 24)),
            VcpuSet::EMPTY
        );
        assert_eq!(
            SgiRegister::from_system_register(SystemRegister::PMCR_EL0),
            None
        );
        // SGI configuration is read-only edge.
        gic.write_redistributor(rd(0, SGI_BASE + 0xc00), 4, 0);
        assert_eq!(
            gic.read_redistributor(rd(0, SGI_BASE + 0xc00), 4),
            0xaaaa_aaaa
        );
    }

    #[test]
    fn ppis_are_per_vcpu() {
        let mut gic = Gicv3::new(2);
        linux_probe(&mut gic, 2);
        // The virtual timer, INTID 27, enabled on vCPU 1 only.
        gic.write_redistributor(rd(1, SGI_BASE + gicd::ISENABLER), 4, 1 << 27);
        assert_eq!(gic.set_ppi_level(v(1), 27, true), VcpuSet::only(v(1)));
        assert_eq!(gic.set_ppi_level(v(0), 27, true), VcpuSet::EMPTY);
        assert_eq!(pending(&gic, 1).last().unwrap().intid, 27);
        assert_ne!(
            gic.read_redistributor(rd(0, SGI_BASE + gicd::ISPENDR), 4) & (1 << 27),
            0
        );
        assert_eq!(gic.set_ppi_level(v(1), 40, true), VcpuSet::EMPTY);
        // ICFGR1 is programmable.
        gic.write_redistributor(rd(0, SGI_BASE + 0xc04), 4, 0b10 << 22);
        assert_eq!(
            gic.read_redistributor(rd(0, SGI_BASE + 0xc04), 4),
            0b10 << 22
        );
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

    proptest! {
        /// Any MMIO traffic, lines and SGIs: no panic; every interrupt
        /// offered is enabled, pending, not active and in priority order;
        /// and a vCPU whose offers changed was named in the result.
        #[test]
        fn any_traffic(ops in proptest::collection::vec((0u8..7, any::<u64>(), any::<u64>(), 0usize..3), 0..200)) {
            let mut gic = Gicv3::new(2);
            let sizes = [1u8, 2, 4, 8];
            for (kind, a, b, who) in ops {
                let before = [gic.deliverable_mask(v(0)), gic.deliverable_mask(v(1))];
                let notify = match kind {
                    0 => gic.write_distributor(a % 0x1_0010, sizes[(b >> 60) as usize % 4], b),
                    1 => gic.write_redistributor(a % 0x4_0010, sizes[(b >> 60) as usize % 4], b),
                    2 => gic.set_spi_level((a % 140) as u32, b & 1 == 1),
                    3 => gic.write_sgi(v(who % 2), SgiRegister::Group1, b),
                    4 => gic.end_of_interrupt(v(who % 2), (a % 140) as u32),
                    5 => { gic.acknowledge(v(who % 2), (a % 140) as u32); VcpuSet::EMPTY }
                    _ => { gic.read_distributor(a % 0x1_0010, 4); gic.read_redistributor(a % 0x4_0010, 8); VcpuSet::EMPTY }
                };
                for (c, &was) in before.iter().enumerate() {
                    let after = gic.deliverable_mask(v(c));
                    if kind != 5 && was != after {
                        prop_assert!(notify.contains(v(c)));
                    }
                    let offered = pending(&gic, c);
                    for w in offered.windows(2) {
                        prop_assert!(w[0].priority <= w[1].priority);
                    }
                    for d in &offered {
                        let irq = gic.irq(v(c), d.intid).unwrap();
                        prop_assert!(irq.enabled && irq.pending() && !irq.active);
                    }
                }
            }
        }

        /// ICC_SGI1R_EL1 decoding: any value makes exactly the named vCPUs
        /// pending for the named SGI.
        #[test]
        fn sgi1r_targets(value: u64, sender in 0usize..4) {
            let mut gic = Gicv3::new(4);
            linux_probe(&mut gic, 4);
            let notify = gic.write_sgi(v(sender), SgiRegister::Group1, value);
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
                prop_assert_eq!(pending(&gic, c).iter().any(|d| d.intid == intid), expected);
            }
        }
    }
}
