//! Translation tables: the shared three-level walk, and the operations on
//! the address spaces user space builds from its own tables (VSpaces at
//! stage 1, GuestSpaces at stage 2: one shape, two leaf formats).
//!
//! `stage1` is the kernel's own map and the native descriptor format,
//! `stage2` the guest format, `physmap` how the kernel reaches RAM.

pub mod physmap;
pub mod stage1;
pub mod stage2;

pub use physmap::{
    KERNEL_VIRT_OFFSET, USER_VA_END, copy_from_phys, copy_to_phys, device_virt, object_virt,
    phys_to_virt, set_ram_bounds, zero_phys,
};
pub use stage1::{
    MAIR_VALUE, MapError, PageTables, TCR_BASE, activate_kernel_tables, activate_user_space,
    boot_block, build_kernel_tables, user_ttbr,
};

use skyscope_core::{
    PhysAddr,
    machine::{Access, AddressSpace, SpaceKind},
};
use stage1::Descriptor;

/// Output-address bits [47:12] of a descriptor.
pub(super) const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Index into the table at `level` (1..=3) for `va`.
pub(super) const fn table_index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (3 - level))) & 0x1ff) as usize
}

/// Bytes covered by one entry at `level`.
pub(super) const fn level_size(level: u32) -> u64 {
    1 << (12 + 9 * (3 - level))
}

/// A translation table in RAM, reached through the physmap.
#[derive(Clone, Copy)]
pub(super) struct Table(pub(super) PhysAddr);

impl Table {
    fn entry_ptr(self, index: usize) -> *mut u64 {
        debug_assert!(index < 512);
        (phys_to_virt(self.0) as *mut u64).wrapping_add(index)
    }

    pub(super) fn read(self, index: usize) -> u64 {
        // SAFETY: tables are page-aligned 4 KiB frames of RAM owned by the
        // kernel and mapped in the physmap; `index < 512` keeps the access
        // inside the frame. Volatile because the MMU walks these tables.
        unsafe { self.entry_ptr(index).read_volatile() }
    }

    pub(super) fn write(self, index: usize, value: u64) {
        // SAFETY: as in `read`; the kernel is the only writer of its tables
        // and runs on one CPU with interrupts masked.
        unsafe { self.entry_ptr(index).write_volatile(value) }
    }

    /// Zeroes a freshly allocated table.
    pub(super) fn clear(self) {
        for i in 0..512 {
            self.write(i, 0);
        }
    }
}

/// Leaf descriptor bits for a mapping in an address space of `kind`.
fn leaf_bits(access: Access, kind: SpaceKind) -> u64 {
    match kind {
        SpaceKind::User => stage1::user_bits(access).bits(),
        SpaceKind::Guest => stage2::leaf_bits(access),
    }
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

/// Forgets the translations of the page at `vaddr` in `space`.
fn flush_page(space: AddressSpace, vaddr: u64) {
    match space.kind {
        SpaceKind::User => stage1::flush_user_page(space.id, vaddr),
        SpaceKind::Guest => super::vcpu::flush_guest_page(space.id, vaddr),
    }
}

/// Forgets every translation of `space`.
pub fn flush_space(space: AddressSpace) {
    match space.kind {
        SpaceKind::User => stage1::flush_asid(space.id),
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
    perms: Access,
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
        stage2::clean_to_coherency(frame, size);
    }
    let kind = if level == 3 { 0b11 } else { 0b01 };
    table.write(
        index,
        (leaf_bits(perms, space.kind) & !0b11) | kind | (frame.0 & ADDRESS_MASK),
    );
    // Make the new entry visible to the table walker before user code runs.
    // SAFETY: a barrier only.
    unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack)) };
    Ok(())
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

/// Copies user memory at `address` of the space with top-level table
/// `root` into `out`, page by page through the physmap, after checking the
/// space's own tables let EL0 read it and that it is normal memory.
pub fn read_user(root: PhysAddr, address: u64, out: &mut [u8]) -> Result<(), skyscope_abi::Error> {
    use skyscope_abi::Error;
    let space = PageTables::user(root);
    let mut done = 0;
    while done < out.len() {
        let va = address
            .checked_add(done as u64)
            .ok_or(Error::InvalidUserBuffer)?;
        let pa = space
            .user_access(skyscope_core::VirtAddr(va), false)
            .ok_or(Error::InvalidUserBuffer)?;
        let in_page = (skyscope_core::addr::PAGE_SIZE - (va & 0xfff)) as usize;
        let n = in_page.min(out.len() - done);
        copy_from_phys(pa, &mut out[done..done + n]);
        done += n;
    }
    Ok(())
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
