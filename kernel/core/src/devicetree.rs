//! A flattened device tree reader that cannot panic, for the boot path.
//!
//! The kernel learns the machine from the tree the firmware (QEMU) passes:
//! RAM banks, reservations, the console UART, the GICv3 ranges, the timer
//! interrupts, the PSCI conduit and the command line. The format
//! (Devicetree Specification v0.4, chapter 5) is parsed in one pass over
//! the structure block with every offset and length checked, so any byte
//! string — the host fuzz target `devicetree` feeds it arbitrary ones —
//! yields a summary or an error, never a panic or a hang.

use crate::{
    PhysAddr,
    memory::{FreeRegions, Region},
};

const MAGIC: u32 = 0xd00d_feed;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;
/// Deepest node nesting followed.
const MAX_DEPTH: usize = 16;
/// Most timer interrupt cells kept.
pub const MAX_TIMER_CELLS: usize = 15;

/// Why a tree was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtError {
    /// Not a flattened device tree (magic, version or sizes wrong).
    BadHeader,
    /// The structure block is inconsistent (bad token, overrun, nesting).
    BadStructure,
    /// More RAM banks or reservations than the kernel tracks.
    TooManyRegions,
}

/// How PSCI calls reach the firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciMethod {
    /// `smc #0`.
    Smc,
    /// `hvc #0`.
    Hvc,
}

/// What the kernel needs from the tree.
#[derive(Clone, Debug, Default)]
pub struct Summary<'a> {
    /// Size of the tree blob in bytes (`totalsize`).
    pub total_size: u64,
    /// RAM banks (`/memory` nodes).
    pub ram: FreeRegions,
    /// `/memreserve/` entries and `/reserved-memory` children.
    pub reserved: FreeRegions,
    /// The PL011 named by `/chosen/stdout-path`, else the first PL011.
    pub uart: Option<Region>,
    /// That UART's interrupt as a GIC INTID (see [`gic_intid`]), if its
    /// `interrupts` property holds one.
    pub uart_intid: Option<u32>,
    /// GICv3 distributor.
    pub gicd: Option<Region>,
    /// GICv3 redistributor range.
    pub gicr: Option<Region>,
    /// Cells of the `arm,armv8-timer` node's `interrupts`.
    pub timer_cells: [u32; MAX_TIMER_CELLS],
    /// How many of `timer_cells` are valid.
    pub timer_cell_count: usize,
    /// PSCI conduit, if the tree has a `psci` node with a known method.
    pub psci: Option<PsciMethod>,
    /// `/chosen/bootargs` (empty if absent or not UTF-8).
    pub bootargs: &'a str,
    /// MMIO ranges of the devices directly under the root node that can
    /// be handed to user space as device memory (see [`DMA_CAPABLE`]): the
    /// kernel's own UART and GIC are among them and removed by the caller.
    pub devices: FreeRegions,
    /// MMIO ranges of devices that can access memory on their own, which
    /// the kernel withholds (their DMA would reach any RAM).
    pub withheld: FreeRegions,
}

/// Compatible strings of devices that can write memory by themselves
/// (bus masters) without an IOMMU the kernel controls: their registers are
/// never handed to user space as device memory. The GIC ITS writes its
/// tables in RAM; the SMMU decides what every other master may reach; a
/// PCIe host bridge and virtio-mmio transports carry DMA-capable devices;
/// QEMU's fw_cfg has a DMA interface. Devices not directly under the root
/// node (the ITS, a child of the GIC) are never handed out either.
pub const DMA_CAPABLE: [&[u8]; 6] = [
    b"arm,gic-v3-its",
    b"arm,smmu-v3",
    b"pci-host-ecam-generic",
    b"virtio,mmio",
    b"qemu,fw-cfg-mmio",
    b"arm,pl330",
];

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn align4(v: usize) -> Option<usize> {
    v.checked_add(3).map(|v| v & !3)
}

/// A NUL-terminated string at `at` in `data`.
fn c_str(data: &[u8], at: usize) -> Option<&[u8]> {
    let rest = data.get(at..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..len])
}

/// Reads `cells` big-endian 32-bit cells as one number (0..=2 cells).
fn cells_value(data: &[u8], cells: u32) -> Option<u64> {
    match cells {
        0 => Some(0),
        1 => be32(data, 0).map(u64::from),
        2 => Some((u64::from(be32(data, 0)?) << 32) | u64::from(be32(data, 4)?)),
        _ => None,
    }
}

/// The `(address, size)` pairs of a `reg` value under the given cells.
fn reg_entries(
    value: &[u8],
    address_cells: u32,
    size_cells: u32,
) -> impl Iterator<Item = Region> + '_ {
    let stride = (address_cells as usize + size_cells as usize) * 4;
    let ok = stride > 0 && address_cells <= 2 && size_cells <= 2;
    value
        .chunks_exact(if ok { stride } else { 1 })
        .filter(move |_| ok)
        .filter_map(move |chunk| {
            let address = cells_value(chunk, address_cells)?;
            let size = cells_value(chunk.get(address_cells as usize * 4..)?, size_cells)?;
            Region::new(address, size)
        })
}

/// What is known about the node being read at one depth.
#[derive(Clone, Copy, Default)]
struct Node<'a> {
    name: &'a [u8],
    address_cells: u32,
    size_cells: u32,
    reg: &'a [u8],
    compatible: &'a [u8],
    device_type: &'a [u8],
    interrupts: &'a [u8],
    method: &'a [u8],
    /// Number of bytes of the node's path in `path`.
    path_len: usize,
}

/// The INTID of the first GIC interrupt specifier in an `interrupts`
/// value: three cells (type, number, flags) as the GICv3 binding defines
/// them (Linux `arm,gic-v3.yaml`): type 0 is an SPI (INTID 32 + number,
/// below the architecture's 1020), type 1 a PPI (INTID 16 + number,
/// number below 16). Anything else — fewer cells, another type — is
/// `None`. Assumes the interrupt parent is the GIC with
/// `#interrupt-cells = <3>`, as on QEMU `virt`.
pub fn gic_intid(interrupts: &[u8]) -> Option<u32> {
    let (kind, number) = (be32(interrupts, 0)?, be32(interrupts, 4)?);
    be32(interrupts, 8)?;
    match kind {
        0 if number < 1020 - 32 => Some(32 + number),
        1 if number < 16 => Some(16 + number),
        _ => None,
    }
}

fn compatible_with(list: &[u8], name: &[u8]) -> bool {
    list.split(|&b| b == 0).any(|c| c == name)
}

/// Parses `data` as a flattened device tree and extracts the summary.
pub fn parse(data: &[u8]) -> Result<Summary<'_>, DtError> {
    let header = |i: usize| be32(data, i * 4).ok_or(DtError::BadHeader);
    if header(0)? != MAGIC {
        return Err(DtError::BadHeader);
    }
    let total = header(1)? as usize;
    let (off_struct, off_strings, off_rsv) = (
        header(2)? as usize,
        header(3)? as usize,
        header(4)? as usize,
    );
    let (version, size_strings, size_struct) =
        (header(5)?, header(8)? as usize, header(9)? as usize);
    if total > data.len() || version < 16 {
        return Err(DtError::BadHeader);
    }
    let data = &data[..total];
    let structs = data
        .get(
            off_struct
                ..off_struct
                    .checked_add(size_struct)
                    .ok_or(DtError::BadHeader)?,
        )
        .ok_or(DtError::BadHeader)?;
    let strings = data
        .get(
            off_strings
                ..off_strings
                    .checked_add(size_strings)
                    .ok_or(DtError::BadHeader)?,
        )
        .ok_or(DtError::BadHeader)?;
    let mut summary = Summary {
        total_size: total as u64,
        ..Summary::default()
    };

    // Memory reservation block: (address, size) pairs up to a zero pair.
    let mut at = off_rsv;
    loop {
        let (a, b) = (be32(data, at), be32(data, at + 4));
        let (c, d) = (be32(data, at + 8), be32(data, at + 12));
        let (Some(a), Some(b), Some(c), Some(d)) = (a, b, c, d) else {
            return Err(DtError::BadHeader);
        };
        let (address, size) = (
            (u64::from(a) << 32) | u64::from(b),
            (u64::from(c) << 32) | u64::from(d),
        );
        if address == 0 && size == 0 {
            break;
        }
        if let Some(r) = Region::new(address, size) {
            summary
                .reserved
                .add(r)
                .map_err(|_| DtError::TooManyRegions)?;
        }
        at += 16;
    }

    let mut stack = [Node::default(); MAX_DEPTH];
    let mut depth = 0usize; // number of open nodes
    let mut path = [0u8; 256];
    let mut stdout: &[u8] = &[];
    let mut uart_by_path: Option<(Region, Option<u32>)> = None;
    let mut first_uart: Option<(Region, Option<u32>)> = None;
    let mut uarts_seen = [(
        0usize,
        [0u8; 64],
        Region {
            start: PhysAddr(0),
            end: PhysAddr(0),
        },
        None,
    ); 4];
    let mut uart_count = 0;
    let mut pos = 0usize;
    loop {
        let token = be32(structs, pos).ok_or(DtError::BadStructure)?;
        pos += 4;
        match token {
            BEGIN_NODE => {
                let name = c_str(structs, pos).ok_or(DtError::BadStructure)?;
                pos = align4(pos + name.len() + 1).ok_or(DtError::BadStructure)?;
                if depth == MAX_DEPTH {
                    return Err(DtError::BadStructure);
                }
                // Children inherit nothing but their parent's cells for reg.
                let parent_path = if depth == 0 {
                    0
                } else {
                    stack[depth - 1].path_len
                };
                let mut len = parent_path;
                if depth > 0 {
                    if len < path.len() {
                        path[len] = b'/';
                        len += 1;
                    }
                    let n = name.len().min(path.len() - len);
                    path[len..len + n].copy_from_slice(&name[..n]);
                    len += n;
                }
                stack[depth] = Node {
                    name,
                    address_cells: 2,
                    size_cells: 1,
                    path_len: len,
                    ..Node::default()
                };
                depth += 1;
            }
            PROP => {
                let len = be32(structs, pos).ok_or(DtError::BadStructure)? as usize;
                let name_off = be32(structs, pos + 4).ok_or(DtError::BadStructure)? as usize;
                let value = structs
                    .get(pos + 8..pos + 8 + len)
                    .ok_or(DtError::BadStructure)?;
                pos = align4(pos + 8 + len).ok_or(DtError::BadStructure)?;
                let name = c_str(strings, name_off).ok_or(DtError::BadStructure)?;
                if depth == 0 {
                    return Err(DtError::BadStructure);
                }
                let node = &mut stack[depth - 1];
                match name {
                    b"#address-cells" => node.address_cells = be32(value, 0).unwrap_or(2),
                    b"#size-cells" => node.size_cells = be32(value, 0).unwrap_or(1),
                    b"reg" => node.reg = value,
                    b"compatible" => node.compatible = value,
                    b"device_type" => node.device_type = value,
                    b"interrupts" => node.interrupts = value,
                    b"method" => node.method = value,
                    b"bootargs" if depth == 2 && node.name == b"chosen" => {
                        let text = value.split(|&b| b == 0).next().unwrap_or(&[]);
                        summary.bootargs = core::str::from_utf8(text).unwrap_or("");
                    }
                    b"stdout-path" if depth == 2 && node.name == b"chosen" => {
                        let text = value.split(|&b| b == 0).next().unwrap_or(&[]);
                        stdout = text.split(|&b| b == b':').next().unwrap_or(&[]);
                    }
                    _ => {}
                }
            }
            END_NODE => {
                if depth == 0 {
                    return Err(DtError::BadStructure);
                }
                depth -= 1;
                let node = stack[depth];
                let (ac, sc) = if depth == 0 {
                    (2, 1)
                } else {
                    (stack[depth - 1].address_cells, stack[depth - 1].size_cells)
                };
                let regs = || reg_entries(node.reg, ac, sc);
                let base_name = node.name.split(|&b| b == b'@').next().unwrap_or(&[]);
                if depth == 1 && (node.device_type == b"memory\0" || base_name == b"memory") {
                    for r in regs() {
                        summary.ram.add(r).map_err(|_| DtError::TooManyRegions)?;
                    }
                }
                if depth == 2 && stack[1].name == b"reserved-memory" {
                    for r in regs() {
                        summary
                            .reserved
                            .add(r)
                            .map_err(|_| DtError::TooManyRegions)?;
                    }
                }
                if compatible_with(node.compatible, b"arm,pl011")
                    && let Some(r) = regs().next()
                {
                    let intid = gic_intid(node.interrupts);
                    first_uart.get_or_insert((r, intid));
                    if uart_count < uarts_seen.len() {
                        let mut p = [0u8; 64];
                        let n = node.path_len.min(64);
                        p[..n].copy_from_slice(&path[..n]);
                        uarts_seen[uart_count] = (n, p, r, intid);
                        uart_count += 1;
                    }
                }
                if compatible_with(node.compatible, b"arm,gic-v3") {
                    let mut it = regs();
                    summary.gicd = it.next();
                    summary.gicr = it.next();
                }
                if compatible_with(node.compatible, b"arm,armv8-timer") {
                    let cells = node.interrupts.chunks_exact(4).take(MAX_TIMER_CELLS);
                    summary.timer_cell_count = 0;
                    for (i, c) in cells.enumerate() {
                        summary.timer_cells[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                        summary.timer_cell_count = i + 1;
                    }
                }
                if depth == 1
                    && !node.reg.is_empty()
                    && !(node.device_type == b"memory\0" || base_name == b"memory")
                {
                    let dma = DMA_CAPABLE
                        .iter()
                        .any(|c| compatible_with(node.compatible, c));
                    let set = if dma {
                        &mut summary.withheld
                    } else {
                        &mut summary.devices
                    };
                    for r in regs() {
                        set.add(r).map_err(|_| DtError::TooManyRegions)?;
                    }
                }
                if depth == 1 && base_name == b"psci" {
                    summary.psci = match node.method.split(|&b| b == 0).next() {
                        Some(b"smc") => Some(PsciMethod::Smc),
                        Some(b"hvc") => Some(PsciMethod::Hvc),
                        _ => None,
                    };
                }
            }
            NOP => {}
            END => break,
            _ => return Err(DtError::BadStructure),
        }
    }
    if depth != 0 {
        return Err(DtError::BadStructure);
    }
    for (n, p, r, intid) in &uarts_seen[..uart_count] {
        if !stdout.is_empty() && &p[..*n] == stdout {
            uart_by_path = Some((*r, *intid));
        }
    }
    let uart = uart_by_path.or(first_uart);
    summary.uart = uart.map(|(r, _)| r);
    summary.uart_intid = uart.and_then(|(_, intid)| intid);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A minimal tree writer for tests (big-endian tokens, strings table).
    struct Writer {
        structs: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Writer {
        fn new() -> Writer {
            Writer {
                structs: Vec::new(),
                strings: Vec::new(),
            }
        }
        fn u32(&mut self, v: u32) {
            self.structs.extend_from_slice(&v.to_be_bytes());
        }
        fn pad(&mut self) {
            while !self.structs.len().is_multiple_of(4) {
                self.structs.push(0);
            }
        }
        fn begin(&mut self, name: &str) {
            self.u32(BEGIN_NODE);
            self.structs.extend_from_slice(name.as_bytes());
            self.structs.push(0);
            self.pad();
        }
        fn end(&mut self) {
            self.u32(END_NODE);
        }
        fn prop(&mut self, name: &str, value: &[u8]) {
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            self.u32(PROP);
            self.u32(value.len() as u32);
            self.u32(off);
            self.structs.extend_from_slice(value);
            self.pad();
        }
        fn cells(values: &[u32]) -> Vec<u8> {
            values.iter().flat_map(|v| v.to_be_bytes()).collect()
        }
        fn finish(mut self) -> Vec<u8> {
            self.u32(END);
            let rsv = 40usize;
            let off_struct = rsv + 16;
            let off_strings = off_struct + self.structs.len();
            let total = off_strings + self.strings.len();
            let mut out = Vec::new();
            for v in [
                MAGIC,
                total as u32,
                off_struct as u32,
                off_strings as u32,
                rsv as u32,
                17,
                16,
                0,
                self.strings.len() as u32,
                self.structs.len() as u32,
            ] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.extend_from_slice(&[0u8; 16]);
            out.extend_from_slice(&self.structs);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    fn virt_like() -> Vec<u8> {
        let mut w = Writer::new();
        w.begin("");
        w.prop("#address-cells", &Writer::cells(&[2]));
        w.prop("#size-cells", &Writer::cells(&[2]));
        w.begin("psci");
        w.prop("method", b"smc\0");
        w.end();
        w.begin("memory@40000000");
        w.prop("device_type", b"memory\0");
        w.prop("reg", &Writer::cells(&[0, 0x4000_0000, 0, 0x4000_0000]));
        w.end();
        w.begin("pl011@9040000");
        w.prop("compatible", b"arm,pl011\0arm,primecell\0");
        w.prop("reg", &Writer::cells(&[0, 0x0904_0000, 0, 0x1000]));
        w.prop("interrupts", &Writer::cells(&[0, 8, 4]));
        w.end();
        w.begin("pl011@9000000");
        w.prop("compatible", b"arm,pl011\0arm,primecell\0");
        w.prop("reg", &Writer::cells(&[0, 0x0900_0000, 0, 0x1000]));
        w.prop("interrupts", &Writer::cells(&[0, 1, 4]));
        w.end();
        w.begin("intc@8000000");
        w.prop("compatible", b"arm,gic-v3\0");
        w.prop(
            "reg",
            &Writer::cells(&[0, 0x0800_0000, 0, 0x1_0000, 0, 0x080a_0000, 0, 0xf6_0000]),
        );
        w.end();
        w.begin("pl031@9010000");
        w.prop("compatible", b"arm,pl031\0arm,primecell\0");
        w.prop("reg", &Writer::cells(&[0, 0x0901_0000, 0, 0x1000]));
        w.end();
        w.begin("fw-cfg@9020000");
        w.prop("compatible", b"qemu,fw-cfg-mmio\0");
        w.prop("reg", &Writer::cells(&[0, 0x0902_0000, 0, 0x18]));
        w.end();
        w.begin("timer");
        w.prop("compatible", b"arm,armv8-timer\0arm,armv7-timer\0");
        w.prop(
            "interrupts",
            &Writer::cells(&[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]),
        );
        w.end();
        w.begin("chosen");
        w.prop("stdout-path", b"/pl011@9000000\0");
        w.prop("bootargs", b"test=boot::x exit=semihosting\0");
        w.end();
        w.end();
        w.finish()
    }

    #[test]
    fn reads_a_virt_like_tree() {
        let blob = virt_like();
        let s = parse(&blob).expect("valid tree");
        assert_eq!(s.ram.total(), 0x4000_0000);
        // The UART stdout-path names, not the first one, with its SPI.
        assert_eq!(s.uart, Region::new(0x0900_0000, 0x1000));
        assert_eq!(s.uart_intid, Some(33));
        assert_eq!(s.gicd, Region::new(0x0800_0000, 0x1_0000));
        assert_eq!(s.gicr, Region::new(0x080a_0000, 0xf6_0000));
        assert_eq!(&s.timer_cells[9..12], &[1, 10, 4]);
        assert_eq!(s.psci, Some(PsciMethod::Smc));
        assert_eq!(s.bootargs, "test=boot::x exit=semihosting");
        // Devices under the root: the UART, the GIC and the RTC; fw_cfg
        // (a DMA master) is withheld.
        assert!(
            s.devices
                .iter()
                .any(|r| Some(r) == Region::new(0x0901_0000, 0x1000))
        );
        assert_eq!(s.devices.iter().count(), 4);
        assert_eq!(
            s.withheld.iter().collect::<Vec<_>>(),
            [Region::new(0x0902_0000, 0x18).unwrap()]
        );
    }

    #[test]
    fn gic_interrupt_specifiers() {
        let spec = |cells: &[u32]| Writer::cells(cells);
        assert_eq!(gic_intid(&spec(&[0, 1, 4])), Some(33));
        assert_eq!(gic_intid(&spec(&[0, 0, 4])), Some(32));
        assert_eq!(gic_intid(&spec(&[0, 987, 4])), Some(1019));
        assert_eq!(gic_intid(&spec(&[0, 988, 4])), None);
        assert_eq!(gic_intid(&spec(&[1, 14, 4])), Some(30));
        assert_eq!(gic_intid(&spec(&[1, 16, 4])), None);
        assert_eq!(gic_intid(&spec(&[2, 1, 4])), None);
        assert_eq!(gic_intid(&spec(&[0, 1])), None);
        assert_eq!(gic_intid(&[]), None);
        // A UART without `interrupts` has none.
        let mut w = Writer::new();
        w.begin("");
        w.begin("pl011@9000000");
        w.prop("compatible", b"arm,pl011\0");
        w.prop("reg", &Writer::cells(&[0, 0x0900_0000, 0x1000]));
        w.end();
        w.end();
        let blob = w.finish();
        let s = parse(&blob).unwrap();
        assert!(s.uart.is_some());
        assert_eq!(s.uart_intid, None);
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let blob = virt_like();
        // Miri runs every position at ~10^4 times the cost; sample there.
        let step = if cfg!(miri) { 37 } else { 1 };
        for n in (0..blob.len()).step_by(step) {
            let _ = parse(&blob[..n]);
        }
        for i in (0..blob.len()).step_by(step) {
            for bit in [0x01, 0x80, 0xff] {
                let mut b = blob.clone();
                b[i] ^= bit;
                let _ = parse(&b);
            }
        }
    }
}
