//! GICv3 distributor, redistributor and system-register CPU interface.
//!
//! Register offsets from the GICv3/v4 Architecture Specification (Arm IHI
//! 0069), chapter 12: GICD_* (12.9), GICR_* (12.10, 12.11), ICC_* (12.2).

use crate::arch::device_virt;
use skyscope_core::memory::Region;
use tock_registers::{
    interfaces::{Readable, Writeable},
    register_structs,
    registers::{ReadOnly, ReadWrite},
};

register_structs! {
    /// Distributor (IHI 0069, 12.9).
    GicdRegisters {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => typer: ReadOnly<u32>),
        (0x0008 => _reserved0),
        (0x0080 => igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => _reserved1),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 1024]),
        (0x0800 => _reserved2),
        (0x6100 => irouter: [ReadWrite<u64>; 988]),
        (0x7fe0 => _reserved3),
        (0x10000 => @END),
    },

    /// Redistributor control frame, RD_base (IHI 0069, 12.10).
    GicrRdRegisters {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => iidr: ReadOnly<u32>),
        (0x0008 => typer: ReadOnly<u64>),
        (0x0010 => _reserved0),
        (0x0014 => waker: ReadWrite<u32>),
        (0x0018 => _reserved1),
        (0x10000 => @END),
    },

    /// Redistributor SGI/PPI frame, SGI_base = RD_base + 64 KiB (IHI 0069, 12.11).
    GicrSgiRegisters {
        (0x0000 => _reserved0),
        (0x0080 => igroupr0: ReadWrite<u32>),
        (0x0084 => _reserved1),
        (0x0100 => isenabler0: ReadWrite<u32>),
        (0x0104 => _reserved2),
        (0x0180 => icenabler0: ReadWrite<u32>),
        (0x0184 => _reserved3),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 32]),
        (0x0420 => _reserved4),
        (0x10000 => @END),
    }
}

const GICD_CTLR_RWP: u32 = 1 << 31;
/// GICD_CTLR.ARE_NS (bit 4) and EnableGrp1NS (bit 1); with a single
/// security state (GICD_CTLR.DS = 1, as on QEMU `virt` without EL3) the
/// same bits are ARE and EnableGrp1.
const GICD_CTLR_ARE_GRP1: u32 = (1 << 4) | (1 << 1);
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const GICR_TYPER_LAST: u64 = 1 << 4;
/// Each GICv3 redistributor is two 64 KiB frames (RD_base, SGI_base).
const GICR_STRIDE: u64 = 0x2_0000;
/// Priority of every interrupt the kernel enables (lower is more urgent).
const DEFAULT_PRIORITY: u8 = 0x80;
/// INTIDs at or above this value (1020..1023) are special: spurious etc.
const SPECIAL_INTID_BASE: u32 = 1020;

/// The interrupt controller as the kernel drives it: one CPU for now.
pub struct Gic {
    gicd: &'static GicdRegisters,
    rd: &'static GicrRdRegisters,
    sgi: &'static GicrSgiRegisters,
    /// Number of SPI lines plus 32 (GICD_TYPER.ITLinesNumber).
    lines: u32,
}

/// Reads this CPU's affinity (MPIDR_EL1 Aff3..Aff0) in GICR_TYPER order.
fn my_affinity() -> u64 {
    let mpidr: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { core::arch::asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack)) };
    (mpidr & 0xff_ffff) | ((mpidr >> 32 & 0xff) << 24)
}

impl Gic {
    /// Initialises the distributor, this CPU's redistributor and CPU
    /// interface. All SPIs start disabled and routed to this CPU.
    pub fn init(gicd: Region, gicr: Region) -> Result<Gic, &'static str> {
        // SAFETY: the distributor range comes from the device tree and is
        // mapped as device memory in the physmap for the kernel's lifetime;
        // the register block layout matches the GICv3 specification.
        let d: &'static GicdRegisters =
            unsafe { &*(device_virt(gicd.start) as *const GicdRegisters) };
        let rd = Self::find_redistributor(gicr)?;
        // SAFETY: SGI_base follows RD_base at +64 KiB inside the same
        // redistributor, which `find_redistributor` checked lies in `gicr`.
        let sgi: &'static GicrSgiRegisters = unsafe {
            &*((rd as *const GicrRdRegisters as u64 + 0x1_0000) as *const GicrSgiRegisters)
        };
        let lines = ((d.typer.get() & 0x1f) + 1) * 32;
        let gic = Gic {
            gicd: d,
            rd,
            sgi,
            lines: lines.min(SPECIAL_INTID_BASE),
        };
        gic.init_distributor();
        gic.init_redistributor();
        init_cpu_interface();
        Ok(gic)
    }

    fn find_redistributor(gicr: Region) -> Result<&'static GicrRdRegisters, &'static str> {
        let me = my_affinity();
        let mut base = gicr.start.0;
        while base + GICR_STRIDE <= gicr.end.0 {
            // SAFETY: `base` is a redistributor frame inside the range the
            // device tree gives, mapped as device memory.
            let rd: &'static GicrRdRegisters =
                unsafe { &*(device_virt(skyscope_core::PhysAddr(base)) as *const _) };
            let typer = rd.typer.get();
            if typer >> 32 == me {
                return Ok(rd);
            }
            if typer & GICR_TYPER_LAST != 0 {
                break;
            }
            base += GICR_STRIDE;
        }
        Err("no GICv3 redistributor matches this CPU's affinity")
    }

    fn wait_for_distributor(&self) {
        while self.gicd.ctlr.get() & GICD_CTLR_RWP != 0 {
            core::hint::spin_loop();
        }
    }

    fn init_distributor(&self) {
        self.gicd.ctlr.set(0);
        self.wait_for_distributor();
        let me = my_affinity();
        for intid in 32..self.lines {
            let (word, bit) = ((intid / 32) as usize, intid % 32);
            self.gicd.icenabler[word].set(1 << bit);
            self.gicd.igroupr[word].set(self.gicd.igroupr[word].get() | 1 << bit);
            self.gicd.ipriorityr[intid as usize].set(DEFAULT_PRIORITY);
            // GICD_IROUTER: Aff3 in bits 39:32, Aff2..Aff0 in bits 23:0.
            let route = (me & 0xff_ffff) | ((me >> 24) << 32);
            self.gicd.irouter[(intid - 32) as usize].set(route);
        }
        self.wait_for_distributor();
        self.gicd.ctlr.set(GICD_CTLR_ARE_GRP1);
        self.wait_for_distributor();
    }

    fn init_redistributor(&self) {
        self.rd
            .waker
            .set(self.rd.waker.get() & !GICR_WAKER_PROCESSOR_SLEEP);
        while self.rd.waker.get() & GICR_WAKER_CHILDREN_ASLEEP != 0 {
            core::hint::spin_loop();
        }
        self.sgi.icenabler0.set(u32::MAX);
        self.sgi.igroupr0.set(u32::MAX);
        for p in self.sgi.ipriorityr.iter() {
            p.set(DEFAULT_PRIORITY);
        }
    }

    /// Enables delivery of `intid` (a PPI of this CPU or an SPI).
    pub fn enable(&self, intid: u32) {
        if intid < 32 {
            self.sgi.isenabler0.set(1 << intid);
        } else if intid < self.lines {
            self.gicd.isenabler[(intid / 32) as usize].set(1 << (intid % 32));
        }
    }

    /// Disables delivery of `intid`.
    pub fn disable(&self, intid: u32) {
        if intid < 32 {
            self.sgi.icenabler0.set(1 << intid);
        } else if intid < self.lines {
            self.gicd.icenabler[(intid / 32) as usize].set(1 << (intid % 32));
        }
    }

    /// Number of interrupt IDs the distributor implements.
    pub fn lines(&self) -> u32 {
        self.lines
    }

    /// Redistributor implementer/revision (GICR_IIDR), for the boot log.
    pub fn iidr(&self) -> u32 {
        self.rd.iidr.get()
    }

    /// Acknowledges the highest-priority pending interrupt; `None` if the
    /// read was spurious.
    pub fn acknowledge(&self) -> Option<u32> {
        let intid: u64;
        // SAFETY: reading ICC_IAR1_EL1 acknowledges an interrupt; the caller
        // must signal end of interrupt, which `end_of_interrupt` does.
        unsafe { core::arch::asm!("mrs {}, S3_0_C12_C12_0", out(reg) intid, options(nostack)) };
        let intid = (intid & 0xff_ffff) as u32;
        (intid < SPECIAL_INTID_BASE).then_some(intid)
    }

    /// Signals completion (priority drop and deactivation, EOImode = 0).
    pub fn end_of_interrupt(&self, intid: u32) {
        // SAFETY: writing ICC_EOIR1_EL1 with an acknowledged INTID.
        unsafe {
            core::arch::asm!("msr S3_0_C12_C12_1, {}", in(reg) u64::from(intid), options(nostack))
        };
    }
}

/// Enables the system-register CPU interface at EL2 for group 1.
fn init_cpu_interface() {
    // SAFETY: ICC_SRE_EL2 = SRE | Enable (system registers at EL2, and let
    // EL1 use them too, for guests later); PMR = 0xff (no masking by
    // priority); BPR1 = 0; ICC_CTLR_EL1 = 0 (EOImode 0); IGRPEN1 = 1.
    unsafe {
        core::arch::asm!(
            "mrs {tmp}, S3_4_C12_C9_5",
            "orr {tmp}, {tmp}, #1",
            "orr {tmp}, {tmp}, #8",
            "msr S3_4_C12_C9_5, {tmp}",
            "isb",
            "mov {tmp}, #0xff",
            "msr S3_0_C4_C6_0, {tmp}",
            "msr S3_0_C12_C12_3, xzr",
            "msr S3_0_C12_C12_4, xzr",
            "mov {tmp}, #1",
            "msr S3_0_C12_C12_7, {tmp}",
            "isb",
            tmp = out(reg) _,
            options(nostack),
        );
    }
}
