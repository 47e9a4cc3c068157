//! What the machine looks like, read from the device tree QEMU passes.
//!
//! The kernel needs: RAM banks, reservations, the console UART, the GICv3
//! distributor and redistributor ranges, the EL2 timer interrupt, the PSCI
//! conduit and the command line. The tree is parsed by
//! `skyscope_core::devicetree` (which cannot panic, and is fuzzed on the
//! host); a tree missing any of the essentials stops the boot with a
//! message naming what is missing.

use super::mmu::device_virt;
use skyscope_core::{
    PhysAddr, devicetree,
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
    /// The console UART's interrupt (GIC INTID), if the tree gives one.
    pub uart_intid: Option<u32>,
    /// GICv3 distributor registers.
    pub gicd: Region,
    /// GICv3 redistributor range (all CPUs).
    pub gicr: Region,
    /// INTID of the EL2 physical timer (CNTHP).
    pub hyp_timer_intid: u32,
    /// INTIDs of the EL1 virtual and physical timers, which guests use.
    pub guest_timer_intids: (u32, u32),
    /// PSCI conduit, if the tree describes PSCI.
    pub psci: Option<PsciConduit>,
    /// Kernel command line (`/chosen/bootargs`), copied out of the tree.
    pub bootargs: [u8; 512],
    /// Valid bytes in `bootargs`.
    pub bootargs_len: usize,
    /// MMIO of the devices user space may be given (the kernel's own
    /// among them; see `skyscope_core::devicetree::DMA_CAPABLE`).
    pub devices: FreeRegions,
    /// MMIO of DMA-capable devices, never handed out.
    pub withheld: FreeRegions,
}

impl Platform {
    /// The command line as text (empty if not UTF-8).
    pub fn bootargs(&self) -> &str {
        core::str::from_utf8(&self.bootargs[..self.bootargs_len]).unwrap_or("")
    }

    /// The value of `key=value` on the command line, if present.
    pub fn bootarg(&self, key: &str) -> Option<&str> {
        self.bootargs().split_ascii_whitespace().find_map(|word| {
            let (k, v) = word.split_once('=')?;
            (k == key).then_some(v)
        })
    }

    /// Whether `word` appears as a whole word on the command line.
    pub fn has_bootarg(&self, word: &str) -> bool {
        self.bootargs().split_ascii_whitespace().any(|w| w == word)
    }
}

/// Reads a big-endian u32 at `pa` through the physmap.
fn read_be32(pa: u64) -> u32 {
    let va = device_virt(PhysAddr(pa)) as *const u32;
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

/// Largest device tree accepted (QEMU's is 1 MiB with padding).
const MAX_DTB_SIZE: u64 = 2 << 20;

/// Parses the device tree, or returns a description of what is missing.
pub fn discover(loader_x0: u64) -> Result<Platform, &'static str> {
    let dtb_pa = find_dtb(loader_x0).ok_or("no device tree found (x0 or start of RAM)")?;
    let size = u64::from(read_be32(dtb_pa + 4)).min(MAX_DTB_SIZE);
    // SAFETY: a device-tree header was found at `dtb_pa` in the first
    // gigabyte of RAM, which the boot map covers; `size` is capped so the
    // slice stays in RAM; nothing writes the tree (it is reserved).
    let blob = unsafe {
        core::slice::from_raw_parts(device_virt(PhysAddr(dtb_pa)) as *const u8, size as usize)
    };
    let dt = devicetree::parse(blob).map_err(|e| match e {
        devicetree::DtError::BadHeader => "device tree header is invalid",
        devicetree::DtError::BadStructure => "device tree structure is malformed",
        devicetree::DtError::TooManyRegions => "device tree lists too many memory regions",
    })?;
    if dt.ram.total() == 0 {
        return Err("device tree describes no RAM");
    }
    let uart = dt.uart.ok_or("no PL011 UART in the device tree")?;
    let gicd = dt.gicd.ok_or("no GICv3 distributor in the device tree")?;
    let gicr = dt
        .gicr
        .ok_or("no GICv3 redistributor range in the device tree")?;
    // `interrupts` of the architected timer: four 3-cell GIC specifiers
    // (secure phys, non-secure phys, virtual, hyp phys); each is (type,
    // number, flags) with type 1 = PPI, INTID = number + 16.
    let ppi = |cell: usize| match (
        dt.timer_cell_count >= cell + 3,
        dt.timer_cells[cell],
        dt.timer_cells[cell + 1],
    ) {
        (true, 1, n) if n < 16 => Some(n + 16),
        _ => None,
    };
    let hyp_timer_intid = ppi(9).ok_or("timer node does not describe the EL2 (hyp) timer PPI")?;
    let guest_timer_intids = (
        ppi(6).ok_or("timer node does not describe the EL1 virtual timer PPI")?,
        ppi(3).ok_or("timer node does not describe the EL1 physical timer PPI")?,
    );
    let psci = dt.psci.map(|m| match m {
        devicetree::PsciMethod::Smc => PsciConduit::Smc,
        devicetree::PsciMethod::Hvc => PsciConduit::Hvc,
    });
    let mut bootargs = [0u8; 512];
    let n = dt.bootargs.len().min(bootargs.len());
    bootargs[..n].copy_from_slice(&dt.bootargs.as_bytes()[..n]);
    Ok(Platform {
        dtb: region(dtb_pa, dt.total_size),
        ram: dt.ram,
        reserved: dt.reserved,
        uart,
        uart_intid: dt.uart_intid,
        gicd,
        gicr,
        hyp_timer_intid,
        guest_timer_intids,
        psci,
        bootargs,
        bootargs_len: n,
        devices: dt.devices,
        withheld: dt.withheld,
    })
}
