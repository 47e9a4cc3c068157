//! The start record: what a VMM process finds on its read-only start page.
//!
//! The parent maps one window into the VMM's address space at
//! [`VmmStart::window`]: first the guest's RAM (the same frames the
//! GuestSpace maps at [`VmmStart::ram_base`]), then each image the VMM is
//! to load ([`Module`]), page aligned. Images travel as frames — a test
//! program today, a Linux Image and initramfs from the boot modules later
//! — so nothing the guest runs is compiled into the VMM. The module frames
//! are mapped writable like RAM: they are this VMM's own copies, and one
//! window of one kind keeps the VMM's single `unsafe` construction of it.
//!
//! The record comes from the parent, which the VMM trusts to describe its
//! own capabilities, but [`VmmStart::plan`] still checks every field for
//! consistency before the VMM acts on it: a wrong record is reported to
//! the parent ([`super::Failure::StartRecord`]), never followed.

use crate::memory::{GuestAddress, GuestRange};
use crate::vcpu::MAX_VCPUS;
use skyscope_abi::{bootinfo::SlotRange, start::StartPage};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Identifies a VMM start record ("SKYVMM", 0, version byte).
pub const VMM_START_MAGIC: u64 = 0x534b_5956_4d4d_0001;
/// Layout version; bumped whenever a field changes meaning or position.
pub const VMM_START_VERSION: u64 = 1;
/// Bytes of the VMM's name (its console prefix).
pub const NAME_CAPACITY: usize = 16;
/// Most images one VMM loads.
pub const MAX_MODULES: usize = 4;
/// Granule of the window: RAM and every module start on a page.
pub const PAGE: u64 = 0x1000;
/// Where in a VMM's address space a window may lie: above the program's
/// image (linked at 4 MiB, `kernel/abi/user.ld`, and far smaller than
/// 64 GiB) and below its start page, IPC buffer and stack (from
/// 0x7f_ffe0_0000, as for the root task). A window there cannot cover
/// anything the program itself keeps in memory.
pub const WINDOW_AREA: core::ops::Range<u64> = 0x10_0000_0000..0x7f_0000_0000;

/// What an image is, and so how the VMM loads it.
pub mod module_kind {
    /// A bare-metal program: copied to [`Module::guest_address`](super::Module::guest_address),
    /// which is also where the boot vCPU starts, at EL1h with the MMU off.
    pub const PROGRAM: u64 = 1;
}

/// One image in the window.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Module {
    /// One of [`module_kind`].
    pub kind: u64,
    /// Where the guest gets it (for [`module_kind::PROGRAM`]).
    pub guest_address: u64,
    /// Its first byte's offset in the window (past the RAM, page aligned).
    pub window_offset: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The frame capabilities holding it, in the VMM's CNode, in window
    /// order.
    pub frames: SlotRange,
}

/// The record on a VMM's start page.
#[derive(Clone, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VmmStart {
    /// Always [`VMM_START_MAGIC`].
    pub magic: u64,
    /// Always [`VMM_START_VERSION`].
    pub version: u64,
    /// The VMM's name, prefixed to its console lines (UTF-8).
    pub name: [u8; NAME_CAPACITY],
    /// Valid bytes of `name`.
    pub name_len: u64,
    /// How many vCPUs the guest has: their Vcpus and threads are in
    /// [`super::slots::vcpu`] and [`super::slots::vcpu_thread`].
    pub vcpus: u64,
    /// Badge of vCPU 0's exits; vCPU `i`'s carry `exit_badge + i`.
    pub exit_badge: u64,
    /// The window's address in the VMM's address space.
    pub window: u64,
    /// The window's size: RAM, then the modules.
    pub window_size: u64,
    /// Guest-physical address of the RAM.
    pub ram_base: u64,
    /// Bytes of RAM (the first bytes of the window; page aligned).
    pub ram_size: u64,
    /// The RAM frames as the VMM maps them, in the VMM's CNode, in order.
    pub ram_frames: SlotRange,
    /// Fault injection for containment tests: the VMM faults on purpose
    /// (running its stack into the guard page) when it has handled this
    /// many exits; 0 never.
    pub crash_after_exits: u64,
    /// Used entries of `modules`.
    pub module_count: u64,
    /// The images, in window order.
    pub modules: [Module; MAX_MODULES],
}

const _: () = assert!(core::mem::size_of::<VmmStart>() <= PAGE as usize);

/// Why a start record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The name is too long or not UTF-8.
    Name,
    /// No vCPU, or more than [`MAX_VCPUS`].
    VcpuCount,
    /// Exit badges would wrap.
    Badge,
    /// The window leaves [`WINDOW_AREA`], is unaligned, or does not
    /// hold the RAM.
    Window,
    /// The RAM range is empty, unaligned or wraps.
    Ram,
    /// More modules than [`MAX_MODULES`].
    ModuleCount,
    /// Module `n` is of an unknown kind, empty, outside the window past
    /// the RAM, overlaps another, or (a program) does not fit in RAM.
    Module(usize),
    /// No program to start (or more than one).
    Program,
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::Name => write!(f, "bad name"),
            StartError::VcpuCount => write!(f, "vCPU count not in 1..={MAX_VCPUS}"),
            StartError::Badge => write!(f, "exit badges wrap"),
            StartError::Window => write!(f, "window outside the window area or smaller than RAM"),
            StartError::Ram => write!(f, "bad RAM range"),
            StartError::ModuleCount => write!(f, "more than {MAX_MODULES} modules"),
            StartError::Module(i) => write!(f, "bad module {i}"),
            StartError::Program => write!(f, "not exactly one program module"),
        }
    }
}

impl StartError {
    /// A number for reports: 1.. in declaration order, a module's index
    /// in bits 8.. .
    pub fn code(self) -> u64 {
        match self {
            StartError::Name => 1,
            StartError::VcpuCount => 2,
            StartError::Badge => 3,
            StartError::Window => 4,
            StartError::Ram => 5,
            StartError::ModuleCount => 6,
            StartError::Module(i) => 7 | (i as u64) << 8,
            StartError::Program => 8,
        }
    }
}

/// A start record checked for consistency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan<'a> {
    /// The VMM's name.
    pub name: &'a str,
    /// Number of vCPUs.
    pub vcpus: usize,
    /// Badge of vCPU 0's exits.
    pub exit_badge: u64,
    /// Where the window starts in the VMM.
    pub window: u64,
    /// The window's size.
    pub window_size: u64,
    /// Guest RAM.
    pub ram: GuestRange,
    /// The images.
    pub modules: &'a [Module],
    /// Where the boot vCPU starts: the program module's guest address.
    pub entry: GuestAddress,
    /// Exits after which the VMM faults on purpose.
    pub crash_after_exits: Option<u64>,
}

impl VmmStart {
    /// An empty record with magic and version set.
    pub fn new() -> VmmStart {
        let mut record = VmmStart::new_zeroed();
        record.magic = VMM_START_MAGIC;
        record.version = VMM_START_VERSION;
        record
    }

    /// Sets the name, if it fits.
    pub fn set_name(&mut self, name: &str) -> Result<(), StartError> {
        let bytes = name.as_bytes();
        let slot = self.name.get_mut(..bytes.len()).ok_or(StartError::Name)?;
        slot.copy_from_slice(bytes);
        self.name_len = bytes.len() as u64;
        Ok(())
    }

    /// The record's bytes, for the start page.
    pub fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }

    /// Appends a module, if there is room.
    pub fn push_module(&mut self, module: Module) -> Result<(), StartError> {
        let entry = self
            .modules
            .get_mut(self.module_count as usize)
            .ok_or(StartError::ModuleCount)?;
        *entry = module;
        self.module_count += 1;
        Ok(())
    }

    /// Checks the record and returns what it describes.
    pub fn plan(&self) -> Result<Plan<'_>, StartError> {
        let name = self
            .name
            .get(..self.name_len.min(NAME_CAPACITY as u64 + 1) as usize)
            .and_then(|b| core::str::from_utf8(b).ok())
            .ok_or(StartError::Name)?;
        if !(1..=MAX_VCPUS as u64).contains(&self.vcpus) {
            return Err(StartError::VcpuCount);
        }
        let vcpus = self.vcpus as usize;
        self.exit_badge
            .checked_add(self.vcpus)
            .ok_or(StartError::Badge)?;
        let aligned = |v: u64| v.is_multiple_of(PAGE);
        if !aligned(self.ram_base) || !aligned(self.ram_size) {
            return Err(StartError::Ram);
        }
        let ram =
            GuestRange::new(GuestAddress(self.ram_base), self.ram_size).ok_or(StartError::Ram)?;
        let inside = self.window >= WINDOW_AREA.start
            && self
                .window
                .checked_add(self.window_size)
                .is_some_and(|end| end <= WINDOW_AREA.end);
        if !aligned(self.window) || !inside || self.ram_size > self.window_size {
            return Err(StartError::Window);
        }
        let modules = self
            .modules
            .get(..self.module_count.min(MAX_MODULES as u64 + 1) as usize)
            .ok_or(StartError::ModuleCount)?;
        let mut entry = None;
        for (i, m) in modules.iter().enumerate() {
            let bad = StartError::Module(i);
            let end = m.window_offset.checked_add(m.size).ok_or(bad)?;
            let inside = m.size > 0
                && aligned(m.window_offset)
                && m.window_offset >= self.ram_size
                && end <= self.window_size;
            let overlaps = modules[..i]
                .iter()
                .any(|o| m.window_offset < o.window_offset + o.size && o.window_offset < end);
            if !inside || overlaps {
                return Err(bad);
            }
            match m.kind {
                module_kind::PROGRAM => {
                    let target =
                        GuestRange::new(GuestAddress(m.guest_address), m.size).ok_or(bad)?;
                    if !ram.covers(target) {
                        return Err(bad);
                    }
                    if entry.replace(target.start()).is_some() {
                        return Err(StartError::Program);
                    }
                }
                _ => return Err(bad),
            }
        }
        Ok(Plan {
            name,
            vcpus,
            exit_badge: self.exit_badge,
            window: self.window,
            window_size: self.window_size,
            ram,
            modules,
            entry: entry.ok_or(StartError::Program)?,
            crash_after_exits: (self.crash_after_exits != 0).then_some(self.crash_after_exits),
        })
    }
}

impl Default for VmmStart {
    fn default() -> Self {
        VmmStart::new()
    }
}

impl StartPage for VmmStart {
    fn from_page(page: &[u8]) -> Option<&Self> {
        let (record, _) = VmmStart::ref_from_prefix(page).ok()?;
        (record.magic == VMM_START_MAGIC && record.version == VMM_START_VERSION).then_some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A record like the hello scenario's: 8 KiB of RAM at 0x4000_0000, a
    /// one-page program after it in the window.
    fn hello() -> VmmStart {
        let mut r = VmmStart::new();
        r.set_name("vmm0").unwrap();
        r.vcpus = 1;
        r.exit_badge = 0x100;
        r.window = 0x20_0000_0000;
        r.window_size = 0x3000;
        r.ram_base = 0x4000_0000;
        r.ram_size = 0x2000;
        r.ram_frames = SlotRange { start: 24, end: 26 };
        r.push_module(Module {
            kind: module_kind::PROGRAM,
            guest_address: 0x4000_0000,
            window_offset: 0x2000,
            size: 200,
            frames: SlotRange { start: 26, end: 27 },
        })
        .unwrap();
        r
    }

    #[test]
    fn a_good_record_round_trips_through_its_page() {
        let record = hello();
        let mut page = [0u8; PAGE as usize];
        page[..core::mem::size_of::<VmmStart>()].copy_from_slice(record.bytes());
        let read = VmmStart::from_page(&page).unwrap();
        let plan = read.plan().unwrap();
        assert_eq!(plan.name, "vmm0");
        assert_eq!(plan.vcpus, 1);
        assert_eq!(plan.entry, GuestAddress(0x4000_0000));
        assert_eq!(plan.ram.size(), 0x2000);
        assert_eq!(plan.modules.len(), 1);
        assert_eq!(plan.crash_after_exits, None);
        // A boot-info page (or anything else) is not a VMM start record.
        assert!(VmmStart::from_page(&[0; PAGE as usize]).is_none());
        let mut other = page;
        other[8] = 2; // another version
        assert!(VmmStart::from_page(&other).is_none());
        assert!(VmmStart::from_page(&page[..16]).is_none());
    }

    #[test]
    fn every_inconsistency_is_named() {
        let refused = |f: fn(&mut VmmStart)| {
            let mut r = hello();
            f(&mut r);
            r.plan().err()
        };
        assert_eq!(refused(|r| r.vcpus = 0), Some(StartError::VcpuCount));
        assert_eq!(refused(|r| r.vcpus = 9), Some(StartError::VcpuCount));
        assert_eq!(refused(|r| r.name_len = 17), Some(StartError::Name));
        assert_eq!(refused(|r| r.name[0] = 0xff), Some(StartError::Name));
        assert_eq!(
            refused(|r| r.exit_badge = u64::MAX),
            Some(StartError::Badge)
        );
        assert_eq!(refused(|r| r.ram_size = 0), Some(StartError::Ram));
        assert_eq!(refused(|r| r.ram_base = 0x4000_0800), Some(StartError::Ram));
        assert_eq!(
            refused(|r| r.window_size = 0x1000),
            Some(StartError::Window)
        );
        assert_eq!(
            refused(|r| r.window = u64::MAX - 0xfff),
            Some(StartError::Window)
        );
        // Over the program's own image, or reaching its stack.
        assert_eq!(refused(|r| r.window = 0x40_0000), Some(StartError::Window));
        assert_eq!(
            refused(|r| r.window = WINDOW_AREA.end - 0x1000),
            Some(StartError::Window)
        );
        assert_eq!(refused(|r| r.window += 0x800), Some(StartError::Window));
        assert_eq!(
            refused(|r| r.module_count = 5),
            Some(StartError::ModuleCount)
        );
        assert_eq!(refused(|r| r.module_count = 0), Some(StartError::Program));
        assert_eq!(
            refused(|r| r.modules[0].kind = 7),
            Some(StartError::Module(0))
        );
        assert_eq!(
            refused(|r| r.modules[0].size = 0),
            Some(StartError::Module(0))
        );
        // Inside the RAM part of the window, or past its end.
        assert_eq!(
            refused(|r| r.modules[0].window_offset = 0x1000),
            Some(StartError::Module(0))
        );
        assert_eq!(
            refused(|r| r.modules[0].size = 0x1001),
            Some(StartError::Module(0))
        );
        assert_eq!(
            refused(|r| r.modules[0].window_offset = u64::MAX - 10),
            Some(StartError::Module(0))
        );
        // A program that would not fit in guest RAM.
        assert_eq!(
            refused(|r| r.modules[0].guest_address = 0x4000_1f80),
            Some(StartError::Module(0))
        );
        // Two programs, overlapping in the window, then not.
        assert_eq!(
            refused(|r| {
                let m = r.modules[0];
                r.push_module(m).unwrap();
            }),
            Some(StartError::Module(1))
        );
        assert_eq!(
            refused(|r| {
                r.window_size = 0x4000;
                let mut m = r.modules[0];
                m.window_offset = 0x3000;
                r.push_module(m).unwrap();
            }),
            Some(StartError::Program)
        );
        let mut r = hello();
        assert_eq!(r.set_name("a name far too long"), Err(StartError::Name));
        for _ in 1..MAX_MODULES {
            r.push_module(Module::default()).unwrap();
        }
        assert_eq!(
            r.push_module(Module::default()),
            Err(StartError::ModuleCount)
        );
        assert_eq!(StartError::Module(2).code(), 0x207);
    }

    proptest! {
        /// Whatever a record holds — here the hello record with up to six
        /// words replaced, so that records near the valid ones are tried —
        /// an accepted record describes RAM and modules inside a window in
        /// the window area, each module past the RAM, and an entry in RAM.
        #[test]
        fn accepted_records_are_consistent(changes in proptest::collection::vec(
            (
                2..core::mem::size_of::<VmmStart>() / 8,
                prop_oneof![
                    Just(0u64), Just(1), Just(0x1000), Just(0x2000), Just(0x4000_0000),
                    Just(0x20_0000_0000), Just(WINDOW_AREA.end), any::<u64>()
                ],
            ),
            0..6,
        )) {
            let mut bytes = hello().bytes().to_vec();
            for (index, value) in changes {
                bytes[8 * index..8 * index + 8].copy_from_slice(&value.to_le_bytes());
            }
            let record = VmmStart::read_from_bytes(&bytes).unwrap();
            if let Ok(plan) = record.plan() {
                prop_assert!(plan.ram.size() <= plan.window_size);
                prop_assert!(WINDOW_AREA.start <= plan.window);
                prop_assert!(plan.window + plan.window_size <= WINDOW_AREA.end);
                prop_assert!(plan.ram.contains(plan.entry));
                prop_assert!((1..=MAX_VCPUS).contains(&plan.vcpus));
                for m in plan.modules {
                    prop_assert!(m.window_offset >= plan.ram.size());
                    prop_assert!(m.window_offset + m.size <= plan.window_size);
                }
            }
        }
    }
}
