//! Stage-1 translation for the EL2&0 (VHE) regime: kernel and user maps.
//!
//! Layout: 4 KiB granule, 39-bit virtual addresses on both ranges (T0SZ =
//! T1SZ = 25), so every walk starts at level 1 and uses three levels. The
//! upper range (TTBR1_EL2) holds the kernel: all RAM and the devices it
//! drives are mapped at `phys + KERNEL_VIRT_OFFSET` (the physmap), and the
//! kernel image is linked at its physmap address. The lower range
//! (TTBR0_EL2) is the current thread's address space.

use bitflags::bitflags;
use core::sync::atomic::{AtomicU64, Ordering};
use skyscope_core::{
    PhysAddr, VirtAddr,
    addr::PAGE_SIZE,
    machine::{AddressSpace, SpaceKind},
};

/// Base of the TTBR1 range for a 39-bit VA space; physical address `p` is
/// mapped at `p + KERNEL_VIRT_OFFSET`.
pub const KERNEL_VIRT_OFFSET: u64 = 0xFFFF_FF80_0000_0000;
/// Virtual address bits per range.
pub const VA_BITS: u32 = 39;
/// First address above the user range.
pub const USER_VA_END: u64 = 1 << VA_BITS;

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

/// Output-address bits [47:12] of a descriptor.
const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

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

/// What a mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// Writable.
    pub write: bool,
    /// Executable (by EL0 for user mappings, by EL2 for kernel mappings).
    pub execute: bool,
    /// Device memory (nGnRE) rather than normal memory.
    pub device: bool,
}

impl Permissions {
    /// Read-only data.
    pub const READ: Permissions = Permissions {
        write: false,
        execute: false,
        device: false,
    };
    /// Read-write data.
    pub const READ_WRITE: Permissions = Permissions {
        write: true,
        execute: false,
        device: false,
    };
    /// Read-execute code.
    pub const READ_EXECUTE: Permissions = Permissions {
        write: false,
        execute: true,
        device: false,
    };
    /// Device registers.
    pub const DEVICE: Permissions = Permissions {
        write: true,
        execute: false,
        device: true,
    };

    /// Leaf descriptor attribute bits for a kernel (global, EL2) mapping.
    fn kernel_bits(self) -> Descriptor {
        let mut d = Descriptor::VALID | Descriptor::ACCESSED | Descriptor::UXN;
        if !self.device {
            d |= Descriptor::NORMAL | Descriptor::INNER_SHAREABLE;
        }
        if !self.write {
            d |= Descriptor::READ_ONLY;
        }
        if !self.execute || self.write {
            d |= Descriptor::PXN;
        }
        d
    }

    /// Leaf descriptor attribute bits for a user (ASID-tagged, EL0) mapping.
    /// The kernel never executes user memory (PXN always set).
    fn user_bits(self) -> Descriptor {
        let mut d = Descriptor::VALID
            | Descriptor::ACCESSED
            | Descriptor::USER
            | Descriptor::NOT_GLOBAL
            | Descriptor::PXN;
        if !self.device {
            d |= Descriptor::NORMAL | Descriptor::INNER_SHAREABLE;
        }
        if !self.write {
            d |= Descriptor::READ_ONLY;
        }
        if !self.execute || self.write {
            d |= Descriptor::UXN;
        }
        d
    }
}

impl Permissions {
    /// Leaf descriptor bits for a mapping in an address space of `kind`.
    fn leaf_bits(self, kind: SpaceKind) -> u64 {
        match kind {
            SpaceKind::User => self.user_bits().bits(),
            SpaceKind::Guest => skyscope_el2::stage2::leaf_bits(
                skyscope_el2::stage2::GuestAccess {
                    write: self.write,
                    execute: self.execute,
                    device: self.device,
                },
                super::vcpu::forced_write_back(),
            )
            .bits(),
        }
    }
}

/// The RAM the physmap maps, `[start, end)`, set once at boot.
static RAM_START: AtomicU64 = AtomicU64::new(u64::MAX);
static RAM_END: AtomicU64 = AtomicU64::new(0);

/// Records where RAM is; from then on [`phys_to_virt`] accepts only it.
pub fn set_ram_bounds(ram: &skyscope_core::memory::FreeRegions) {
    let start = ram.iter().map(|r| r.start.0).min().unwrap_or(u64::MAX);
    let end = ram.iter().map(|r| r.end.0).max().unwrap_or(0);
    assert!(end <= 1 << VA_BITS, "RAM beyond the physmap's reach");
    RAM_START.store(start, Ordering::Relaxed);
    RAM_END.store(end, Ordering::Relaxed);
}

/// The physmap address of RAM at `pa`: kernel objects, translation tables
/// and user memory the kernel reads or writes on a thread's behalf.
///
/// Checked in every build: an address outside RAM (a device frame, or one
/// above the physmap's 2^39 reach, which would wrap onto other memory)
/// stops the kernel here instead of becoming an access to MMIO or to an
/// alias of some other page. The core's `RamRange` makes that unreachable
/// from user input; this is the check behind it.
#[inline(always)]
pub fn phys_to_virt(pa: PhysAddr) -> u64 {
    let in_ram =
        pa.0 >= RAM_START.load(Ordering::Relaxed) && pa.0 < RAM_END.load(Ordering::Relaxed);
    assert!(in_ram, "kernel access to {pa} outside RAM");
    pa.0 | KERNEL_VIRT_OFFSET
}

/// The physmap address of a boot-time structure (the device tree) or of
/// the registers of a device the kernel drives, which the kernel map
/// maps at the same place. Below 2^39, so it never wraps.
pub fn device_virt(pa: PhysAddr) -> u64 {
    assert!(pa.0 < 1 << VA_BITS, "device at {pa} beyond the physmap");
    pa.0 | KERNEL_VIRT_OFFSET
}

/// Copies `bytes` into RAM at `pa` through the physmap.
pub fn copy_to_phys(pa: PhysAddr, bytes: &[u8]) {
    let dst = phys_to_virt(pa) as *mut u8;
    // SAFETY: callers pass RAM frames the kernel owns (freshly allocated,
    // or a user frame found through a page-table walk), all of which the
    // physmap maps; no Rust reference to that memory exists meanwhile.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
}

/// Copies RAM at `pa` into `out` through the physmap.
pub fn copy_from_phys(pa: PhysAddr, out: &mut [u8]) {
    let src = phys_to_virt(pa) as *const u8;
    // SAFETY: as for `copy_to_phys`; `out` is kernel memory, disjoint.
    unsafe { core::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
}

/// Zeroes `len` bytes of RAM at `pa` through the physmap.
pub fn zero_phys(pa: PhysAddr, len: u64) {
    let dst = phys_to_virt(pa) as *mut u8;
    // SAFETY: as for `copy_to_phys`.
    unsafe { core::ptr::write_bytes(dst, 0, len as usize) };
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

/// Index into the table at `level` (1..=3) for `va`.
const fn table_index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (3 - level))) & 0x1ff) as usize
}

/// Bytes covered by one entry at `level`.
const fn level_size(level: u32) -> u64 {
    1 << (12 + 9 * (3 - level))
}

/// A translation table in RAM, reached through the physmap.
#[derive(Clone, Copy)]
struct Table(PhysAddr);

impl Table {
    fn entry_ptr(self, index: usize) -> *mut u64 {
        debug_assert!(index < 512);
        (phys_to_virt(self.0) as *mut u64).wrapping_add(index)
    }

    fn read(self, index: usize) -> u64 {
        // SAFETY: tables are page-aligned 4 KiB frames of RAM owned by the
        // kernel and mapped in the physmap; `index < 512` keeps the access
        // inside the frame. Volatile because the MMU walks these tables.
        unsafe { self.entry_ptr(index).read_volatile() }
    }

    fn write(self, index: usize, value: u64) {
        // SAFETY: as in `read`; the kernel is the only writer of its tables
        // and runs on one CPU with interrupts masked.
        unsafe { self.entry_ptr(index).write_volatile(value) }
    }

    /// Zeroes a freshly allocated table.
    fn clear(self) {
        for i in 0..512 {
            self.write(i, 0);
        }
    }
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
        perms: Permissions,
        alloc: &mut dyn FnMut() -> Option<PhysAddr>,
    ) -> Result<(), MapError> {
        if !va.is_aligned(PAGE_SIZE) || !pa.is_aligned(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE)
        {
            return Err(MapError::Misaligned);
        }
        let attrs = if self.user {
            perms.user_bits()
        } else {
            perms.kernel_bits()
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

/// Makes the address space with top-level table `root` and `asid` current.
pub fn activate_user_space(root: PhysAddr, asid: u16) {
    let ttbr = root.0 | (u64::from(asid) << 48);
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
                    perms: Permissions,
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
            Permissions::READ_WRITE,
            alloc,
        )?;
        map_phys(
            &mut tables,
            s.max(image_end),
            e.max(image_end),
            Permissions::READ_WRITE,
            alloc,
        )?;
    }
    let sym = |v: u64| v - KERNEL_VIRT_OFFSET;
    let sections = [
        (
            linker_symbol!(__kernel_start),
            linker_symbol!(__text_end),
            Permissions::READ_EXECUTE,
        ),
        (
            linker_symbol!(__text_end),
            linker_symbol!(__rodata_end),
            Permissions::READ,
        ),
        (
            linker_symbol!(__rodata_end),
            linker_symbol!(__stack_guard),
            Permissions::READ_WRITE,
        ),
        (
            linker_symbol!(__stack_bottom),
            linker_symbol!(__stack_top),
            Permissions::READ_WRITE,
        ),
        (
            linker_symbol!(__emergency_stack_bottom),
            linker_symbol!(__emergency_stack_top),
            Permissions::READ_WRITE,
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
            Permissions::DEVICE,
            alloc,
        )?;
    }
    Ok(tables)
}

// ---- user address spaces built from user-supplied tables ----------------

/// Why a user mapping request failed (mirrors `skyscope_core::machine::MapError`).
pub use skyscope_core::machine::MapError as UserMapError;

/// The leaf level for a frame of `size` bytes (level 3: 4 KiB, level 2: 2 MiB).
fn leaf_level(size: u64) -> u32 {
    if size == level_size(3) { 3 } else { 2 }
}

/// The table at `level` (2 or 3) on `vaddr`'s walk from `root`, if present.
fn walk_to(root: PhysAddr, vaddr: u64, level: u32) -> Result<Table, UserMapError> {
    let mut table = Table(root);
    for l in 1..level {
        let entry = table.read(table_index(vaddr, l));
        match entry & 0b11 {
            0b11 => table = Table(PhysAddr(entry & ADDRESS_MASK)),
            0b01 => return Err(UserMapError::AlreadyMapped), // a block covers it
            _ => return Err(UserMapError::MissingTable),
        }
    }
    Ok(table)
}

/// Invalidates the TLB entry for `vaddr` tagged with `asid` (EL2&0 regime:
/// with E2H = TGE = 1, TLBI VAE1IS applies to it).
fn flush_user_page(asid: u16, vaddr: u64) {
    let operand = (u64::from(asid) << 48) | ((vaddr >> 12) & ((1 << 44) - 1));
    // SAFETY: TLB maintenance only; the barriers order it after the
    // preceding table write and before later accesses.
    unsafe {
        core::arch::asm!("dsb ishst", "tlbi vae1is, {}", "dsb ish", "isb", in(reg) operand, options(nostack))
    };
}

/// Invalidates all TLB entries tagged with `asid`.
fn flush_asid(asid: u16) {
    let operand = u64::from(asid) << 48;
    // SAFETY: as for `flush_user_page`.
    unsafe {
        core::arch::asm!("dsb ishst", "tlbi aside1is, {}", "dsb ish", "isb", in(reg) operand, options(nostack))
    };
}

/// Forgets the translations of the page at `vaddr` in `space`.
fn flush_page(space: AddressSpace, vaddr: u64) {
    match space.kind {
        SpaceKind::User => flush_user_page(space.id, vaddr),
        SpaceKind::Guest => super::vcpu::flush_guest_page(space.id, vaddr),
    }
}

/// Forgets every translation of `space`.
pub fn flush_space(space: AddressSpace) {
    match space.kind {
        SpaceKind::User => flush_asid(space.id),
        SpaceKind::Guest => super::vcpu::flush_guest(space.id),
    }
}

/// Maps a frame into a user VSpace (stage 1) or a GuestSpace (stage 2)
/// through existing tables only. Both use the same three-level, 39-bit
/// layout; only the leaf format differs.
pub fn map_frame(
    space: AddressSpace,
    vaddr: u64,
    frame: PhysAddr,
    size: u64,
    perms: Permissions,
) -> Result<(), UserMapError> {
    if vaddr >= USER_VA_END || USER_VA_END - vaddr < size || !vaddr.is_multiple_of(size) {
        return Err(UserMapError::BadAddress);
    }
    let level = leaf_level(size);
    let table = walk_to(space.root, vaddr, level)?;
    let index = table_index(vaddr, level);
    if table.read(index) & 1 != 0 {
        return Err(UserMapError::AlreadyMapped);
    }
    if space.kind == SpaceKind::Guest && !perms.device && !super::vcpu::forced_write_back() {
        // Without FEAT_S2FWB a guest may map its RAM non-cacheable and
        // read DRAM directly: what the kernel wrote through the caches
        // (the zeroes of retype) must be there, not the previous owner's
        // data (Arm ARM B2.15 "Mismatched memory attributes").
        clean_to_coherency(frame, size);
    }
    let kind = if level == 3 { 0b11 } else { 0b01 };
    table.write(
        index,
        (perms.leaf_bits(space.kind) & !0b11) | kind | (frame.0 & ADDRESS_MASK),
    );
    // Make the new entry visible to the table walker before user code runs.
    // SAFETY: a barrier only.
    unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack)) };
    Ok(())
}

/// Cleans and invalidates `[pa, pa + size)` of RAM to the point of
/// coherency (`dc civac` per line, line size from CTR_EL0.DminLine).
fn clean_to_coherency(pa: PhysAddr, size: u64) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let start = phys_to_virt(pa);
    let mut va = start;
    while va < start + size {
        // SAFETY: cache maintenance of RAM the physmap maps (checked by
        // `phys_to_virt`); it changes no data.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) va, options(nostack)) };
        va += line;
    }
    // SAFETY: a barrier only.
    unsafe { core::arch::asm!("dsb sy", options(nostack)) };
}

/// Removes the mapping of `frame` at `vaddr`, if that is what is mapped.
pub fn unmap_frame(space: AddressSpace, vaddr: u64, frame: PhysAddr, size: u64) {
    if vaddr >= USER_VA_END {
        return;
    }
    let level = leaf_level(size);
    if let Ok(table) = walk_to(space.root, vaddr, level) {
        let index = table_index(vaddr, level);
        let entry = table.read(index);
        let is_leaf = if level == 3 {
            entry & 0b11 == 0b11
        } else {
            entry & 0b11 == 0b01
        };
        if is_leaf && entry & ADDRESS_MASK == frame.0 {
            table.write(index, 0);
            flush_page(space, vaddr);
        }
    }
}

/// Installs `table` at the first missing level of `vaddr`'s walk; returns
/// the level the table serves (2 or 3). Table descriptors have the same
/// format at both stages.
pub fn map_table(space: AddressSpace, vaddr: u64, new: PhysAddr) -> Result<u8, UserMapError> {
    if vaddr >= USER_VA_END {
        return Err(UserMapError::BadAddress);
    }
    let mut table = Table(space.root);
    for level in 1..=2 {
        let index = table_index(vaddr, level);
        let entry = table.read(index);
        match entry & 0b11 {
            0b11 => table = Table(PhysAddr(entry & ADDRESS_MASK)),
            0b01 => return Err(UserMapError::AlreadyMapped),
            _ => {
                table.write(index, new.0 | 0b11);
                // SAFETY: a barrier only.
                unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack)) };
                return Ok(level as u8 + 1);
            }
        }
    }
    Err(UserMapError::AlreadyMapped)
}

/// Removes `table` (serving `level`) from `vaddr`'s walk if it is there.
pub fn unmap_table(space: AddressSpace, vaddr: u64, level: u8, table: PhysAddr) {
    let parent_level = u32::from(level).saturating_sub(1);
    if vaddr >= USER_VA_END || !(1..=2).contains(&parent_level) {
        return;
    }
    if let Ok(parent) = walk_to(space.root, vaddr, parent_level) {
        let index = table_index(vaddr, parent_level);
        if parent.read(index) == table.0 | 0b11 {
            parent.write(index, 0);
            flush_space(space);
        }
    }
}

/// Removes a bounded number of entries under `table` (serving `level`),
/// deepest first: one level-3 table's entries, or one level-2 table's
/// frame entries plus the entries of tables below it that are already
/// empty. Every table stays consistent in between (an entry is removed
/// only once what it leads to is empty). Flushes `space` if anything was
/// removed; returns whether `table` is empty.
pub fn empty_table(space: Option<AddressSpace>, table: PhysAddr, level: u8) -> bool {
    let (empty, removed) = empty_step(Table(table), u32::from(level));
    if removed && let Some(space) = space {
        flush_space(space);
    }
    empty
}

/// One step of [`empty_table`]: returns (now empty, removed anything).
fn empty_step(table: Table, level: u32) -> (bool, bool) {
    let mut removed = false;
    for index in 0..512 {
        let entry = table.read(index);
        if entry & 1 == 0 {
            continue;
        }
        let is_table = level < 3 && entry & 0b11 == 0b11;
        if is_table {
            let child = Table(PhysAddr(entry & ADDRESS_MASK));
            let (child_empty, child_removed) = empty_step(child, level + 1);
            if !child_empty {
                return (false, true);
            }
            if child_removed {
                // The child's entries went first; its own entry goes in
                // the next step, so each step stays bounded.
                return (false, true);
            }
        }
        table.write(index, 0);
        removed = true;
        if level < 3 && is_table {
            // Bound a step to the entries of one table below the top.
            return (table_is_empty(table), true);
        }
    }
    (true, removed)
}

fn table_is_empty(table: Table) -> bool {
    (0..512).all(|i| table.read(i) & 1 == 0)
}

/// Entry `index` of `table` (serving `level`), decoded.
pub fn table_entry(table: PhysAddr, level: u8, index: usize) -> skyscope_core::machine::TableEntry {
    use skyscope_core::{cap::FrameSize, machine::TableEntry};
    if index >= 512 {
        return TableEntry::Invalid;
    }
    let entry = Table(table).read(index);
    let address = PhysAddr(entry & ADDRESS_MASK);
    match (level, entry & 0b11) {
        (1 | 2, 0b11) => TableEntry::Table(address),
        (2, 0b01) => TableEntry::Frame(address, FrameSize::Large),
        (3, 0b11) => TableEntry::Frame(address, FrameSize::Small),
        _ => TableEntry::Invalid,
    }
}

/// One leaf or table found while walking a user address space.
#[derive(Clone, Copy, Debug)]
pub enum UserEntry {
    /// A page table serving `level`, covering from `vaddr`.
    Table {
        /// The table.
        table: PhysAddr,
        /// Level it serves (2 or 3).
        level: u8,
        /// First address it covers.
        vaddr: u64,
    },
    /// A mapped frame.
    Frame {
        /// The frame.
        frame: PhysAddr,
        /// Its size in bytes.
        size: u64,
        /// Where it is mapped.
        vaddr: u64,
        /// Whether the mapping is writable.
        writable: bool,
    },
}

/// Visits every table and frame of a user address space (boot only: the
/// kernel hands the root task capabilities to what it built for it).
pub fn walk_user_space(root: PhysAddr, visit: &mut dyn FnMut(UserEntry)) {
    fn visit_table(table: Table, level: u32, base: u64, visit: &mut dyn FnMut(UserEntry)) {
        for index in 0..512u64 {
            let entry = table.read(index as usize);
            let vaddr = base + index * level_size(level);
            let is_table = level < 3 && entry & 0b11 == 0b11;
            let is_leaf =
                (level == 3 && entry & 0b11 == 0b11) || (level == 2 && entry & 0b11 == 0b01);
            if is_table {
                let next = PhysAddr(entry & ADDRESS_MASK);
                visit(UserEntry::Table {
                    table: next,
                    level: level as u8 + 1,
                    vaddr,
                });
                visit_table(Table(next), level + 1, vaddr, visit);
            } else if is_leaf {
                let writable = entry & Descriptor::READ_ONLY.bits() == 0;
                visit(UserEntry::Frame {
                    frame: PhysAddr(entry & ADDRESS_MASK),
                    size: level_size(level),
                    vaddr,
                    writable,
                });
            }
        }
    }
    visit_table(Table(root), 1, 0, visit);
}
