//! What the machine looks like, read from the device tree QEMU passes.
//!
//! The kernel needs: RAM banks, reservations, the console UART, the GICv3
//! distributor and redistributor ranges, the EL2 timer interrupt, the PSCI
//! conduit and the command line. A device tree missing any of the
//! essential ones stops the boot with a message naming what is missing.

use super::mmu::phys_to_virt;
use skyscope_core::{
    PhysAddr,
    memory::{FreeRegions, Region},
};

/// Where QEMU places the device tree for non-Linux (ELF) kernels: the start
/// of RAM on the `virt` board (docs/system/arm/virt.rst, "Hardware
/// configuration information for bare-metal programming").
const VIRT_DTB_ADDRESS: u64 = 0x4000_0000;
/// FDT header magic (Devicetree Specification v0.4, 5.2).
const FDT_MAGIC: u32 = 0xd00d_feed;

/// How PSCI calls reach firmware (the `/psci` node's `method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    /// `smc #0` (QEMU `virt` with EL2 but no EL3 firmware emulates PSCI here).
    Smc,
    /// `hvc #0`.
    Hvc,
}

/// The parts of the device tree the kernel uses.
pub struct Platform {
    /// Physical range of the device tree blob itself.
    pub dtb: Region,
    /// RAM banks.
    pub ram: FreeRegions,
    /// `/memreserve/` entries and `/reserved-memory` children.
    pub reserved: FreeRegions,
    /// PL011 UART registers used as the kernel console.
    pub uart: Region,
    /// GICv3 distributor registers.
    pub gicd: Region,
    /// GICv3 redistributor range (all CPUs).
    pub gicr: Region,
    /// INTID of the EL2 physical timer (CNTHP).
    pub hyp_timer_intid: u32,
    /// PSCI conduit, if the tree describes PSCI.
    pub psci: Option<PsciConduit>,
    /// Kernel command line (`/chosen/bootargs`), copied out of the tree.
    pub bootargs: [u8; 512],
    /// Valid bytes in `bootargs`.
    pub bootargs_len: usize,
}

impl Platform {
    /// The command line as text (empty if not UTF-8).
    pub fn bootargs(&self) -> &str {
        core::str::from_utf8(&self.bootargs[..self.bootargs_len]).unwrap_or("")
    }

    /// Whether `word` appears as a whole word on the command line.
    pub fn has_bootarg(&self, word: &str) -> bool {
        self.bootargs().split_ascii_whitespace().any(|w| w == word)
    }
}

/// Reads a big-endian u32 at `pa` through the physmap.
fn read_be32(pa: u64) -> u32 {
    let va = phys_to_virt(PhysAddr(pa)) as *const u32;
    // SAFETY: `pa` lies in the first gigabyte of RAM, mapped by the boot
    // map, and is 4-byte aligned.
    u32::from_be(unsafe { va.read_volatile() })
}

/// Locates the device tree: the loader's `x0` if it points at one,
/// otherwise the `virt` board's fixed address.
fn find_dtb(loader_x0: u64) -> Option<u64> {
    let plausible = |pa: u64| (0x4000_0000..0x1_0000_0000).contains(&pa) && pa.is_multiple_of(8);
    [loader_x0, VIRT_DTB_ADDRESS]
        .into_iter()
        .find(|&pa| plausible(pa) && read_be32(pa) == FDT_MAGIC)
}

fn region(start: u64, size: u64) -> Region {
    Region::new(start, size).unwrap_or(Region {
        start: PhysAddr(start),
        end: PhysAddr(start),
    })
}

/// Parses the device tree, or returns a description of what is missing.
pub fn discover(loader_x0: u64) -> Result<Platform, &'static str> {
    let dtb_pa = find_dtb(loader_x0).ok_or("no device tree found (x0 or start of RAM)")?;
    let ptr = phys_to_virt(PhysAddr(dtb_pa)) as *const u8;
    // SAFETY: a valid FDT header was found at `dtb_pa`, which the boot map
    // covers; `from_ptr` reads `totalsize` bytes, all within RAM. The tree
    // is never written, and lives as long as the kernel (it is reserved).
    let fdt = unsafe { fdt::Fdt::from_ptr(ptr) }.map_err(|_| "device tree header is invalid")?;

    let mut ram = FreeRegions::new();
    let memory = fdt
        .find_node("/memory")
        .ok_or("device tree has no /memory node")?;
    for bank in memory.reg().ok_or("/memory has no reg property")? {
        let size = bank.size.unwrap_or(0) as u64;
        ram.add(region(bank.starting_address as u64, size))
            .map_err(|_| "too many RAM banks")?;
    }
    if ram.total() == 0 {
        return Err("device tree describes no RAM");
    }

    let mut reserved = FreeRegions::new();
    for r in fdt.memory_reservations() {
        reserved
            .add(region(r.address() as u64, r.size() as u64))
            .map_err(|_| "too many reservations")?;
    }
    if let Some(node) = fdt.find_node("/reserved-memory") {
        for child in node.children() {
            for r in child.reg().into_iter().flatten() {
                let size = r.size.unwrap_or(0) as u64;
                reserved
                    .add(region(r.starting_address as u64, size))
                    .map_err(|_| "too many reservations")?;
            }
        }
    }

    let first_reg = |compatible: &[&str]| -> Option<Region> {
        let node = fdt.find_compatible(compatible)?;
        let r = node.reg()?.next()?;
        Some(region(
            r.starting_address as u64,
            r.size.unwrap_or(0x1000) as u64,
        ))
    };
    let uart = fdt
        .chosen()
        .stdout()
        .filter(|n| {
            n.compatible()
                .is_some_and(|c| c.all().any(|s| s == "arm,pl011"))
        })
        .and_then(|n| n.reg()?.next())
        .map(|r| region(r.starting_address as u64, r.size.unwrap_or(0x1000) as u64))
        .or_else(|| first_reg(&["arm,pl011"]))
        .ok_or("no PL011 UART in the device tree")?;

    let gic = fdt
        .find_compatible(&["arm,gic-v3"])
        .ok_or("no GICv3 in the device tree")?;
    let mut gic_regs = gic.reg().ok_or("GICv3 node has no reg")?;
    let mut next_gic = || {
        gic_regs
            .next()
            .map(|r| region(r.starting_address as u64, r.size.unwrap_or(0) as u64))
            .ok_or("GICv3 node lacks distributor or redistributor range")
    };
    let gicd = next_gic()?;
    let gicr = next_gic()?;

    // `interrupts` of the architected timer: four 3-cell GIC specifiers
    // (secure phys, non-secure phys, virtual, hyp phys); each is (type,
    // number, flags) with type 1 = PPI, INTID = number + 16.
    let timer = fdt
        .find_compatible(&["arm,armv8-timer"])
        .ok_or("no armv8-timer node")?;
    let irqs = timer
        .property("interrupts")
        .ok_or("timer node has no interrupts")?
        .value;
    let cell = |i: usize| -> Option<u32> {
        let b = irqs.get(i * 4..i * 4 + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (kind, number) = (cell(9), cell(10));
    let hyp_timer_intid = match (kind, number) {
        (Some(1), Some(n)) if n < 16 => n + 16,
        _ => return Err("timer node does not describe the EL2 (hyp) timer PPI"),
    };

    let psci = fdt
        .find_node("/psci")
        .and_then(|n| n.property("method"))
        .and_then(|p| p.as_str())
        .and_then(|m| match m {
            "smc" => Some(PsciConduit::Smc),
            "hvc" => Some(PsciConduit::Hvc),
            _ => None,
        });

    let mut bootargs = [0u8; 512];
    let args = fdt.chosen().bootargs().unwrap_or("");
    let n = args.len().min(bootargs.len());
    bootargs[..n].copy_from_slice(&args.as_bytes()[..n]);

    Ok(Platform {
        dtb: region(dtb_pa, fdt.total_size() as u64),
        ram,
        reserved,
        uart,
        gicd,
        gicr,
        hyp_timer_intid,
        psci,
        bootargs,
        bootargs_len: n,
    })
}
