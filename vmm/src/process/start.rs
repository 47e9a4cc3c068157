//! The start record: what a VMM process finds on its read-only start page.
//!
//! The parent maps one window into the VMM's address space at
//! [`VmmStart::window`]: first the guest's RAM (the same frames the
//! GuestSpace maps at [`VmmStart::ram_base`]), readable and writable, then
//! each image the VMM is to load ([`Module`]), page aligned and read-only.
//! Images travel as frames — a test program, or a Linux Image, initramfs
//! and command line from the boot modules — so nothing the guest runs is
//! compiled into the VMM. Being read-only, they stay as the boot loader
//! left them: the VMM copies them into guest RAM, so a guest that crashed
//! can be built again from the same frames.
//!
//! The record comes from the parent, which the VMM trusts to describe its
//! own capabilities, but [`VmmStart::plan`] still checks every field for
//! consistency before the VMM acts on it: a wrong record is reported to
//! the parent ([`super::Failure::StartRecord`]), never followed.

use crate::arch::aarch64::layout::Layout;
use crate::memory::{GuestAddress, GuestRange};
use crate::vcpu::MAX_VCPUS;
use skyscope_abi::{bootinfo::SlotRange, start::StartPage};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Identifies a VMM start record ("SKYVMM", 0, version byte).
pub const VMM_START_MAGIC: u64 = 0x534b_5956_4d4d_0001;
/// Layout version; bumped whenever a field changes meaning or position.
pub const VMM_START_VERSION: u64 = 2;
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

/// Longest Linux command line a [`module_kind::CMDLINE`] module may hold:
/// arm64's `COMMAND_LINE_SIZE` (2048, the terminating NUL included).
pub const CMDLINE_MAX: u64 = 2047;

/// What an image is, and so how the VMM loads it.
pub mod module_kind {
    /// A bare-metal program: copied to [`Module::guest_address`](super::Module::guest_address),
    /// which is also where the boot vCPU starts, at EL1h with the MMU off.
    pub const PROGRAM: u64 = 1;
    /// A Linux arm64 `Image`: the VMM places it by its header (its
    /// `guest_address` must be 0) and boots it with a device tree it
    /// writes (`crate::arch::aarch64::image`, `fdt`).
    pub const LINUX: u64 = 2;
    /// An initramfs for the [`LINUX`] Image, placed by the VMM.
    pub const INITRAMFS: u64 = 3;
    /// The Linux command line (UTF-8, at most [`super::CMDLINE_MAX`]
    /// bytes), for `/chosen/bootargs`.
    pub const CMDLINE: u64 = 4;
}

/// Bits of [`VmmStart::flags`].
pub mod flags {
    /// Console input: slot [`crate::process::slots::CONSOLE_INPUT`] holds
    /// a notification bound to the VMM's thread and the console
    /// capability has READ; the VMM feeds what is typed to the guest's
    /// UART.
    pub const CONSOLE_INPUT: u64 = 1 << 0;
    /// The guest has the console to itself: its output goes out as it
    /// comes, without the VMM's name before each line (an interactive
    /// Linux guest; its prompt is no line).
    pub const RAW_CONSOLE: u64 = 1 << 1;
    /// Every flag this version knows.
    pub const ALL: u64 = CONSOLE_INPUT | RAW_CONSOLE;
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
    /// Wall-clock time, seconds since 1970, at counter value
    /// `clock_counter` (0: unknown): what the guest's RTC starts from.
    /// There is no RTC the VMM could read; the parent fills this in from
    /// what it was told at boot.
    pub clock_seconds: u64,
    /// The counter value (CNTVCT_EL0) at which `clock_seconds` held.
    pub clock_counter: u64,
    /// Counter ticks per second.
    pub counter_frequency: u64,
    /// [`flags`].
    pub flags: u64,
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
    /// the RAM, overlaps another, (a program) does not fit in RAM, (a
    /// Linux module) names a guest address, is a second of its kind, or
    /// (a command line) is too long.
    Module(usize),
    /// Not exactly one thing to boot: a program or a Linux Image (and an
    /// initramfs or command line only with a Linux Image).
    Program,
    /// Unknown flags, or no counter frequency.
    Flags,
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
            StartError::Program => write!(f, "not exactly one program or Linux Image"),
            StartError::Flags => write!(f, "unknown flags or no counter frequency"),
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
            StartError::Flags => 9,
        }
    }
}

/// What the boot vCPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot<'a> {
    /// A bare-metal program, entered at its load address.
    Program {
        /// Its first instruction.
        entry: GuestAddress,
    },
    /// A Linux Image with an optional initramfs and command line.
    Linux {
        /// The Image.
        kernel: &'a Module,
        /// The initramfs.
        initramfs: Option<&'a Module>,
        /// The command line.
        cmdline: Option<&'a Module>,
    },
}

/// The guest's wall clock at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Seconds since 1970 at counter value `counter` (0: unknown).
    pub seconds: u64,
    /// The counter value then.
    pub counter: u64,
    /// Counter ticks per second (never 0).
    pub frequency: u64,
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
    /// What to boot.
    pub boot: Boot<'a>,
    /// Exits after which the VMM faults on purpose.
    pub crash_after_exits: Option<u64>,
    /// The wall clock.
    pub clock: Clock,
    /// [`flags`].
    pub flags: u64,
}

impl Plan<'_> {
    /// Whether flag `flag` (of [`flags`]) is set.
    pub fn has(&self, flag: u64) -> bool {
        self.flags & flag == flag
    }
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
    pub fn plan<'a>(&'a self) -> Result<Plan<'a>, StartError> {
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
        if self.flags & !flags::ALL != 0 || self.counter_frequency == 0 {
            return Err(StartError::Flags);
        }
        let mut program = None;
        let (mut kernel, mut initramfs, mut cmdline) = (None, None, None);
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
            // A Linux module is placed by the VMM, once per kind.
            let once = |slot: &mut Option<&'a Module>| {
                if m.guest_address != 0 || slot.replace(m).is_some() {
                    return Err(bad);
                }
                Ok(())
            };
            match m.kind {
                module_kind::PROGRAM => {
                    let target =
                        GuestRange::new(GuestAddress(m.guest_address), m.size).ok_or(bad)?;
                    if !ram.covers(target) {
                        return Err(bad);
                    }
                    if program.replace(target.start()).is_some() {
                        return Err(StartError::Program);
                    }
                }
                module_kind::LINUX => once(&mut kernel)?,
                module_kind::INITRAMFS => once(&mut initramfs)?,
                module_kind::CMDLINE if m.size <= CMDLINE_MAX => once(&mut cmdline)?,
                _ => return Err(bad),
            }
        }
        let boot = match (program, kernel) {
            (Some(entry), None) if initramfs.is_none() && cmdline.is_none() => {
                Boot::Program { entry }
            }
            (None, Some(kernel)) => {
                // Linux needs the machine layout the device tree
                // describes: RAM in whole 2 MiB blocks above the devices.
                Layout::new(ram.start(), ram.size(), vcpus).map_err(|_| StartError::Ram)?;
                Boot::Linux {
                    kernel,
                    initramfs,
                    cmdline,
                }
            }
            _ => return Err(StartError::Program),
        };
        Ok(Plan {
            name,
            vcpus,
            exit_badge: self.exit_badge,
            window: self.window,
            window_size: self.window_size,
            ram,
            modules,
            boot,
            crash_after_exits: (self.crash_after_exits != 0).then_some(self.crash_after_exits),
            clock: Clock {
                seconds: self.clock_seconds,
                counter: self.clock_counter,
                frequency: self.counter_frequency,
            },
            flags: self.flags,
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
        r.counter_frequency = 62_500_000;
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
        assert_eq!(
            plan.boot,
            Boot::Program {
                entry: GuestAddress(0x4000_0000)
            }
        );
        assert!(!plan.has(flags::CONSOLE_INPUT));
        assert_eq!(plan.ram.size(), 0x2000);
        assert_eq!(plan.modules.len(), 1);
        assert_eq!(plan.crash_after_exits, None);
        // A boot-info page (or anything else) is not a VMM start record.
        assert!(VmmStart::from_page(&[0; PAGE as usize]).is_none());
        let mut other = page;
        other[8] = 3; // another version
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
        assert_eq!(refused(|r| r.flags = 1 << 9), Some(StartError::Flags));
        assert_eq!(
            refused(|r| r.counter_frequency = 0),
            Some(StartError::Flags)
        );
    }

    /// A Linux guest's record: 512 MiB of RAM, an Image, an initramfs and
    /// a command line after it in the window.
    fn linux() -> VmmStart {
        let mut r = VmmStart::new();
        r.set_name("linux").unwrap();
        r.vcpus = 2;
        r.window = 0x20_0000_0000;
        r.ram_base = 0x4000_0000;
        r.ram_size = 512 << 20;
        r.counter_frequency = 62_500_000;
        r.clock_seconds = 1_700_000_000;
        r.flags = flags::CONSOLE_INPUT | flags::RAW_CONSOLE;
        let mut offset = r.ram_size;
        for (kind, size) in [
            (module_kind::LINUX, 40 << 20),
            (module_kind::INITRAMFS, 0x1c_0000),
            (module_kind::CMDLINE, 20),
        ] {
            r.push_module(Module {
                kind,
                guest_address: 0,
                window_offset: offset,
                size,
                frames: SlotRange::default(),
            })
            .unwrap();
            offset += size.next_multiple_of(PAGE);
        }
        r.window_size = offset;
        r
    }

    #[test]
    fn a_linux_record_names_its_parts() {
        let r = linux();
        let plan = r.plan().unwrap();
        let Boot::Linux {
            kernel,
            initramfs,
            cmdline,
        } = plan.boot
        else {
            panic!("{:?}", plan.boot)
        };
        assert_eq!(kernel.size, 40 << 20);
        assert_eq!(initramfs.map(|m| m.size), Some(0x1c_0000));
        assert_eq!(
            cmdline.map(|m| m.window_offset),
            Some((552 << 20) + 0x1c_0000)
        );
        assert!(plan.has(flags::CONSOLE_INPUT) && plan.has(flags::RAW_CONSOLE));
        assert_eq!(plan.clock.seconds, 1_700_000_000);
        let refused = |f: fn(&mut VmmStart)| {
            let mut r = linux();
            f(&mut r);
            r.plan().err()
        };
        // The VMM places Linux modules; a guest address is a mistake.
        assert_eq!(
            refused(|r| r.modules[1].guest_address = 0x4000_0000),
            Some(StartError::Module(1))
        );
        // One of each kind.
        assert_eq!(
            refused(|r| r.modules[2].kind = module_kind::INITRAMFS),
            Some(StartError::Module(2))
        );
        assert_eq!(
            refused(|r| r.modules[2].size = CMDLINE_MAX + 1),
            Some(StartError::Module(2))
        );
        // No Image: an initramfs alone boots nothing.
        assert_eq!(
            refused(|r| r.modules[0].kind = module_kind::CMDLINE),
            Some(StartError::Module(0))
        );
        assert_eq!(
            refused(|r| {
                r.modules[0] = r.modules[1];
                r.modules[0].kind = module_kind::INITRAMFS;
                r.modules[0].window_offset = r.ram_size;
                r.module_count = 1;
            }),
            Some(StartError::Program)
        );
        // A program and a Linux Image at once.
        assert_eq!(
            refused(|r| {
                r.modules[2].kind = module_kind::PROGRAM;
                r.modules[2].guest_address = 0x4000_0000;
            }),
            Some(StartError::Program)
        );
        // Linux RAM comes in whole 2 MiB blocks.
        assert_eq!(refused(|r| r.ram_size -= PAGE), Some(StartError::Ram));
        assert_eq!(refused(|r| r.vcpus = 9), Some(StartError::VcpuCount));
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
        ), linux_record: bool) {
            let base = if linux_record { linux() } else { hello() };
            let mut bytes = base.bytes().to_vec();
            for (index, value) in changes {
                bytes[8 * index..8 * index + 8].copy_from_slice(&value.to_le_bytes());
            }
            let record = VmmStart::read_from_bytes(&bytes).unwrap();
            if let Ok(plan) = record.plan() {
                prop_assert!(plan.ram.size() <= plan.window_size);
                prop_assert!(WINDOW_AREA.start <= plan.window);
                prop_assert!(plan.window + plan.window_size <= WINDOW_AREA.end);
                if let Boot::Program { entry } = plan.boot {
                    prop_assert!(plan.ram.contains(entry));
                }
                prop_assert!((1..=MAX_VCPUS).contains(&plan.vcpus));
                if let Boot::Linux { kernel, .. } = plan.boot {
                    prop_assert_eq!(kernel.kind, module_kind::LINUX);
                    prop_assert!(Layout::new(plan.ram.start(), plan.ram.size(), plan.vcpus).is_ok());
                }
                for m in plan.modules {
                    prop_assert!(m.window_offset >= plan.ram.size());
                    prop_assert!(m.window_offset + m.size <= plan.window_size);
                }
            }
        }
    }
}
