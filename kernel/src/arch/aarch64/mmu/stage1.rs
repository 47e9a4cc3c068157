//! Stage-1 translation of the EL2&0 (VHE) regime: the kernel's own map
//! (upper range, TTBR1_EL2) and the descriptor format of native threads'
//! address spaces (lower range, TTBR0_EL2, ASID-tagged).
//!
//! Layout: 4 KiB granule, 39-bit virtual addresses on both ranges (T0SZ =
//! T1SZ = 25), so every walk starts at level 1 and uses three levels. The
//! kernel image is linked at its physmap address (`physmap`).

use super::{
    ADDRESS_MASK, Table, level_size,
    physmap::{KERNEL_VIRT_OFFSET, USER_VA_END},
    table_index,
};
use bitflags::bitflags;
use skyscope_core::{PhysAddr, VirtAddr, addr::PAGE_SIZE, machine::Access};

/// MAIR_EL2 (Arm ARM D23.2.100): Attr0 = Device-nGnRE, Attr1 = Normal
/// inner/outer write-back read/write-allocate, Attr2 = Normal non-cacheable.
pub const MAIR_VALUE: u64 = 0x04 | (0xff << 8) | (0x44 << 16);
const ATTR_DEVICE: u64 = 0;
const ATTR_NORMAL: u64 = 1;

/// TCR_EL2 with E2H=1 (TCR_EL1 layout, Arm ARM D23.2.146) without IPS and
/// AS, which boot code fills in from ID_AA64MMFR0_EL1: T0SZ = T1SZ = 25,
/// TG0 = 4 KiB, TG1 = 4 KiB, inner-shareable write-back walks.
pub const TCR_BASE: u64 = 25 // T0SZ
    | (0b01 << 8)
    | (0b01 << 10)
    | (0b11 << 12)
    | (25 << 16)
    | (0b01 << 24)
    | (0b01 << 26)
    | (0b11 << 28)
    | (0b10 << 30);

bitflags! {
    /// Stage-1 block/page descriptor bits (Arm ARM D8.3.1, D8.4).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Descriptor: u64 {
        /// Entry is valid.
        const VALID = 1 << 0;
        /// At levels 1-2: next-level table; at level 3: page (must be set).
        const TABLE_OR_PAGE = 1 << 1;
        /// AttrIndx = 1: normal write-back memory.
        const NORMAL = ATTR_NORMAL << 2;
        /// AP[1]: accessible from EL0.
        const USER = 1 << 6;
        /// AP[2]: read-only.
        const READ_ONLY = 1 << 7;
        /// SH = inner shareable.
        const INNER_SHAREABLE = 0b11 << 8;
        /// Access flag (set, so no access-flag faults).
        const ACCESSED = 1 << 10;
        /// Not global: tagged with the ASID (user mappings).
        const NOT_GLOBAL = 1 << 11;
        /// Privileged (EL2) execute-never.
        const PXN = 1 << 53;
        /// Unprivileged (EL0) execute-never.
        const UXN = 1 << 54;
    }
}

/// A 1 GiB level-1 block descriptor for the boot map (used from assembly).
pub const fn boot_block(pa: u64, device: bool) -> u64 {
    let common = Descriptor::VALID.bits() | Descriptor::ACCESSED.bits() | pa;
    if device {
        common | (ATTR_DEVICE << 2) | Descriptor::PXN.bits() | Descriptor::UXN.bits()
    } else {
        common
            | Descriptor::NORMAL.bits()
            | Descriptor::INNER_SHAREABLE.bits()
            | Descriptor::UXN.bits()
    }
}

/// Leaf descriptor attribute bits for a kernel (global, EL2) mapping.
fn kernel_bits(access: Access) -> Descriptor {
    let mut d = Descriptor::VALID | Descriptor::ACCESSED | Descriptor::UXN;
    if !access.device {
        d |= Descriptor::NORMAL | Descriptor::INNER_SHAREABLE;
    }
    if !access.write {
        d |= Descriptor::READ_ONLY;
    }
    if !access.execute || access.write {
        d |= Descriptor::PXN;
    }
    d
}

/// Leaf descriptor attribute bits for a user (ASID-tagged, EL0) mapping.
/// The kernel never executes user memory (PXN always set).
pub(crate) fn user_bits(access: Access) -> Descriptor {
    let mut d = Descriptor::VALID
        | Descriptor::ACCESSED
        | Descriptor::USER
        | Descriptor::NOT_GLOBAL
        | Descriptor::PXN;
    if !access.device {
        d |= Descriptor::NORMAL | Descriptor::INNER_SHAREABLE;
    }
    if !access.write {
        d |= Descriptor::READ_ONLY;
    }
    if !access.execute || access.write {
        d |= Descriptor::UXN;
    }
    d
}

/// Why a mapping request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The virtual or physical address or the size is not page aligned.
    Misaligned,
    /// The address is outside the range this table translates.
    OutOfRange,
    /// Something is already mapped there.
    AlreadyMapped,
    /// No memory for an intermediate table.
    NoMemory,
}

/// An address space's level-1 table, kernel or user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageTables {
    root: PhysAddr,
    user: bool,
}

impl PageTables {
    /// Creates empty tables, taking the root table frame from `alloc`.
    pub fn new(
        user: bool,
        alloc: &mut dyn FnMut() -> Option<PhysAddr>,
    ) -> Result<PageTables, MapError> {
        let root = alloc().ok_or(MapError::NoMemory)?;
        Table(root).clear();
        Ok(PageTables { root, user })
    }

    /// The user address space whose level-1 table is at `root`.
    pub fn user(root: PhysAddr) -> PageTables {
        PageTables { root, user: true }
    }

    /// Physical address of the level-1 table (for TTBR0/TTBR1).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    fn check_range(&self, va: u64) -> Result<u64, MapError> {
        if self.user {
            if va >= USER_VA_END {
                return Err(MapError::OutOfRange);
            }
            Ok(va)
        } else {
            if va < KERNEL_VIRT_OFFSET {
                return Err(MapError::OutOfRange);
            }
            Ok(va - KERNEL_VIRT_OFFSET)
        }
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)`, using 2 MiB blocks where
    /// both sides are aligned and 4 KiB pages elsewhere. Intermediate tables
    /// come from `alloc`.
    pub fn map_range(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: u64,
        perms: Access,
        alloc: &mut dyn FnMut() -> Option<PhysAddr>,
    ) -> Result<(), MapError> {
        if !va.is_aligned(PAGE_SIZE) || !pa.is_aligned(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE)
        {
            return Err(MapError::Misaligned);
        }
        let attrs = if self.user {
            user_bits(perms)
        } else {
            kernel_bits(perms)
        };
        let mut offset = 0;
        while offset < size {
            let v = va.0 + offset;
            let p = pa.0 + offset;
            let block = level_size(2);
            let level =
                if v.is_multiple_of(block) && p.is_multiple_of(block) && size - offset >= block {
                    2
                } else {
                    3
                };
            self.map_one(v, p, level, attrs, alloc)?;
            offset += level_size(level);
        }
        Ok(())
    }

    fn map_one(
        &mut self,
        va: u64,
        pa: u64,
        leaf_level: u32,
        attrs: Descriptor,
        alloc: &mut dyn FnMut() -> Option<PhysAddr>,
    ) -> Result<(), MapError> {
        let index_va = self.check_range(va)?;
        let mut table = Table(self.root);
        for level in 1..leaf_level {
            let i = table_index(index_va, level);
            let entry = table.read(i);
            table = if entry & 0b11 == 0b11 {
                Table(PhysAddr(entry & ADDRESS_MASK))
            } else if entry & 1 != 0 {
                return Err(MapError::AlreadyMapped); // a block covers it
            } else {
                let next = alloc().ok_or(MapError::NoMemory)?;
                Table(next).clear();
                table.write(i, next.0 | 0b11);
                Table(next)
            };
        }
        let i = table_index(index_va, leaf_level);
        if table.read(i) & 1 != 0 {
            return Err(MapError::AlreadyMapped);
        }
        let kind = if leaf_level == 3 { 0b11 } else { 0b01 };
        let bits = (attrs.bits() & !0b11) | kind | (pa & ADDRESS_MASK);
        table.write(i, bits);
        Ok(())
    }

    /// Translates `va`, returning the physical address and the leaf
    /// descriptor's attribute bits, or `None` if unmapped.
    pub fn translate(&self, va: VirtAddr) -> Option<(PhysAddr, Descriptor)> {
        let index_va = self.check_range(va.0).ok()?;
        let mut table = Table(self.root);
        for level in 1..=3 {
            let entry = table.read(table_index(index_va, level));
            if entry & 1 == 0 {
                return None;
            }
            let is_table = level < 3 && entry & 0b10 != 0;
            if !is_table {
                let offset = va.0 & (level_size(level) - 1);
                let base = entry & ADDRESS_MASK & !(level_size(level) - 1);
                return Some((
                    PhysAddr(base + offset),
                    Descriptor::from_bits_truncate(entry),
                ));
            }
            table = Table(PhysAddr(entry & ADDRESS_MASK));
        }
        None
    }

    /// Checks that EL0 may access `va` (for `write` if set) in this user
    /// address space and returns its physical address.
    pub fn user_access(&self, va: VirtAddr, write: bool) -> Option<PhysAddr> {
        let (pa, d) = self.translate(va)?;
        // Only normal memory: device registers mapped to a thread are never
        // read or written by the kernel on its behalf.
        let ok = d.contains(Descriptor::USER | Descriptor::NORMAL)
            && (!write || !d.contains(Descriptor::READ_ONLY));
        ok.then_some(pa)
    }
}

/// Installs `tables` as the kernel (upper-half) map and enables WXN.
pub fn activate_kernel_tables(tables: &PageTables) {
    // SAFETY: `tables` maps the running kernel image (text executable),
    // its stacks, the physmap and the devices the kernel uses with the same
    // virtual addresses as the boot map, so execution continues seamlessly
    // after the switch; the TLB is invalidated before use.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "msr S3_4_C2_C0_1, {root}", // TTBR1_EL2
            "dsb ish",
            "tlbi alle2",
            "dsb ish",
            "isb",
            "mrs {tmp}, sctlr_el2",
            "orr {tmp}, {tmp}, #(1 << 19)", // WXN
            "msr sctlr_el2, {tmp}",
            "isb",
            root = in(reg) tables.root().0,
            tmp = out(reg) _,
            options(nostack),
        );
    }
}

/// The TTBR0_EL2 value of the address space with top-level table `root`
/// and `asid` (ASID in bits 63:48, Arm ARM D23.2, TTBR0_EL2; the table
/// address is page-aligned).
#[inline(always)]
pub fn user_ttbr(root: PhysAddr, asid: u16) -> u64 {
    root.0 | (u64::from(asid) << 48)
}

/// Makes the address space whose TTBR0_EL2 value is `ttbr` (see
/// [`user_ttbr`]) current.
#[inline(always)]
pub fn activate_user_space(ttbr: u64) {
    // SAFETY: only the lower (user) range changes; the kernel runs from the
    // upper range. Entries are ASID-tagged and an ASID is flushed whenever
    // it is freed, so no flush is needed on a switch.
    unsafe {
        core::arch::asm!("msr ttbr0_el2, {0}", "isb", in(reg) ttbr, options(nostack));
    }
}

/// Virtual address of a linker-script symbol.
macro_rules! linker_symbol {
    ($name:ident) => {{
        unsafe extern "C" {
            static $name: u8;
        }
        &raw const $name as u64
    }};
}

/// Builds the kernel's final map: all RAM in the physmap (read-write,
/// never executable), the kernel image section by section (text
/// read-execute, rodata read-only, data and stacks read-write, stack guard
/// pages unmapped), and the given device ranges as device memory.
pub fn build_kernel_tables(
    ram: &skyscope_core::memory::FreeRegions,
    devices: &[skyscope_core::memory::Region],
    alloc: &mut dyn FnMut() -> Option<PhysAddr>,
) -> Result<PageTables, MapError> {
    let mut tables = PageTables::new(false, alloc)?;
    let image_start = linker_symbol!(__kernel_start) - KERNEL_VIRT_OFFSET;
    let image_end = linker_symbol!(__kernel_end) - KERNEL_VIRT_OFFSET;
    let map_phys = |tables: &mut PageTables,
                    start: u64,
                    end: u64,
                    perms: Access,
                    alloc: &mut dyn FnMut() -> Option<PhysAddr>| {
        let start = start & !(PAGE_SIZE - 1);
        let end = (end + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
        if start >= end {
            return Ok(());
        }
        tables.map_range(
            VirtAddr(start + KERNEL_VIRT_OFFSET),
            PhysAddr(start),
            end - start,
            perms,
            alloc,
        )
    };
    for bank in ram.iter() {
        // RAM below and above the kernel image.
        let (s, e) = (
            bank.start.0.next_multiple_of(PAGE_SIZE),
            bank.end.0 & !(PAGE_SIZE - 1),
        );
        map_phys(
            &mut tables,
            s,
            e.min(image_start).max(s),
            Access::READ_WRITE,
            alloc,
        )?;
        map_phys(
            &mut tables,
            s.max(image_end),
            e.max(image_end),
            Access::READ_WRITE,
            alloc,
        )?;
    }
    let sym = |v: u64| v - KERNEL_VIRT_OFFSET;
    let sections = [
        (
            linker_symbol!(__kernel_start),
            linker_symbol!(__text_end),
            Access::READ_EXECUTE,
        ),
        (
            linker_symbol!(__text_end),
            linker_symbol!(__rodata_end),
            Access::READ,
        ),
        (
            linker_symbol!(__rodata_end),
            linker_symbol!(__stack_guard),
            Access::READ_WRITE,
        ),
        (
            linker_symbol!(__stack_bottom),
            linker_symbol!(__stack_top),
            Access::READ_WRITE,
        ),
        (
            linker_symbol!(__emergency_stack_bottom),
            linker_symbol!(__emergency_stack_top),
            Access::READ_WRITE,
        ),
    ];
    for (start, end, perms) in sections {
        map_phys(&mut tables, sym(start), sym(end), perms, alloc)?;
    }
    for device in devices {
        map_phys(
            &mut tables,
            device.start.0,
            device.end.0,
            Access::DEVICE,
            alloc,
        )?;
    }
    Ok(tables)
}

/// Invalidates the TLB entry for `vaddr` tagged with `asid` (EL2&0 regime:
/// with E2H = TGE = 1, TLBI VAE1IS applies to it).
pub(super) fn flush_user_page(asid: u16, vaddr: u64) {
    let operand = (u64::from(asid) << 48) | ((vaddr >> 12) & ((1 << 44) - 1));
    // SAFETY: TLB maintenance only; the barriers order it after the
    // preceding table write and before later accesses.
    unsafe {
        core::arch::asm!("dsb ishst", "tlbi vae1is, {}", "dsb ish", "isb", in(reg) operand, options(nostack))
    };
}

/// Invalidates all TLB entries tagged with `asid`.
pub(super) fn flush_asid(asid: u16) {
    let operand = u64::from(asid) << 48;
    // SAFETY: as for `flush_user_page`.
    unsafe {
        core::arch::asm!("dsb ishst", "tlbi aside1is, {}", "dsb ish", "isb", in(reg) operand, options(nostack))
    };
}
