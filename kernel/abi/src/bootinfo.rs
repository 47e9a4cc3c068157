//! The boot-info page the kernel hands the root task.
//!
//! The kernel maps one read-only page at [`BOOT_INFO_ADDRESS`] in the root
//! task's address space, writes a [`BootInfo`] at its start and passes the
//! address in `x0` at entry.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Identifies a valid boot-info page ("SKYBOOT" + version byte).
pub const BOOT_INFO_MAGIC: u64 = 0x534b_5942_4f4f_5401;
/// Layout version; bumped whenever a field changes meaning or position.
pub const BOOT_INFO_VERSION: u64 = 3;
/// Where the kernel maps the boot-info page in the root task.
pub const BOOT_INFO_ADDRESS: u64 = 0x7f_ffe0_0000;
/// Where the kernel maps the root task's IPC buffer page.
pub const IPC_BUFFER_ADDRESS: u64 = 0x7f_ffe0_1000;
/// Top of the root task's initial stack (the stack grows down from here).
pub const ROOT_STACK_TOP: u64 = 0x7f_fff0_0000;
/// Size of the root task's initial stack.
pub const ROOT_STACK_SIZE: u64 = 256 * 1024;
/// Capacity of the kernel command line copy.
pub const BOOTARGS_CAPACITY: usize = 512;
/// Most untyped regions the boot info describes.
pub const MAX_BOOT_UNTYPED: usize = 180;
/// log2 of the root task's CNode slot count. Its capability carries a
/// guard of `64 - ROOT_CNODE_RADIX` zero bits, so a capability address in
/// the root task is simply a slot index.
pub const ROOT_CNODE_RADIX: u8 = 12;

/// Fixed slots of the root task's CNode.
pub mod slots {
    /// Always empty.
    pub const NULL: u64 = 0;
    /// The root task's TCB.
    pub const TCB: u64 = 1;
    /// The root CNode itself.
    pub const CNODE: u64 = 2;
    /// The root task's VSpace.
    pub const VSPACE: u64 = 3;
    /// IRQ control: issues IRQ handler capabilities.
    pub const IRQ_CONTROL: u64 = 4;
    /// Scheduling control: configures scheduling contexts.
    pub const SCHED_CONTROL: u64 = 5;
    /// The frame holding the boot-info page.
    pub const BOOT_INFO_FRAME: u64 = 6;
    /// The frame holding the root task's IPC buffer.
    pub const IPC_BUFFER_FRAME: u64 = 7;
    /// The root task's scheduling context (budget = period: never throttled).
    pub const SCHED_CONTEXT: u64 = 8;
    /// Reading the kernel's audit stream.
    pub const AUDIT_LOG: u64 = 9;
    /// Writing to (and reading from) the kernel console.
    pub const CONSOLE: u64 = 10;
    /// Powering the machine off.
    pub const POWER: u64 = 11;
    /// The kernel's debugging syscalls (empty in the `hardened` kernel,
    /// which has none).
    pub const DEBUG: u64 = 12;
    /// First slot after the fixed ones (13..16 are reserved for later fixed caps).
    pub const FIRST_VARIABLE: u64 = 16;
}

/// A half-open range of slots `[start, end)` in the root CNode.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SlotRange {
    /// First slot.
    pub start: u64,
    /// One past the last slot.
    pub end: u64,
}

impl SlotRange {
    /// Number of slots.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One untyped region handed to the root task.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct UntypedDesc {
    /// Physical address.
    pub paddr: u64,
    /// log2 of the size.
    pub size_bits: u8,
    /// 1 for device memory (MMIO), which can only become frames.
    pub is_device: u8,
    /// Padding.
    pub _reserved: [u8; 6],
}

/// Most boot modules the kernel hands over.
pub const MAX_BOOT_MODULES: usize = 4;
/// Capacity of a boot module's name.
pub const MODULE_NAME_CAPACITY: usize = 32;

/// A boot module: a file the boot loader placed in memory beside the
/// kernel (a guest kernel, an initramfs), handed to the root task as
/// frame capabilities over exactly its pages. The kernel never reads
/// more of it than its header.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BootModule {
    /// The module's name, NUL-padded (e.g. `linux`, `initrd`).
    pub name: [u8; MODULE_NAME_CAPACITY],
    /// Its length in bytes (the last frame is zero past it).
    pub size: u64,
    /// Frame capabilities over it, in address order.
    pub frames: SlotRange,
    /// log2 of each frame's size (12 or 21).
    pub frame_bits: u64,
}

impl BootModule {
    /// The name, or `""` if it is not valid UTF-8.
    pub fn name(&self) -> &str {
        let n = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MODULE_NAME_CAPACITY);
        core::str::from_utf8(&self.name[..n]).unwrap_or("")
    }
}

/// What the root task learns about the system at boot.
#[derive(Clone, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BootInfo {
    /// Always [`BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// Always [`BOOT_INFO_VERSION`] for this layout.
    pub version: u64,
    /// Address of the root task's IPC buffer.
    pub ipc_buffer: u64,
    /// Lowest address of the loaded root-task image.
    pub image_start: u64,
    /// One past the highest address of the loaded root-task image.
    pub image_end: u64,
    /// Top of the initial stack.
    pub stack_top: u64,
    /// Size of the initial stack in bytes.
    pub stack_size: u64,
    /// Frequency of the generic timer counter readable at EL0, in Hz.
    pub timer_frequency: u64,
    /// Bytes of RAM the kernel found in the device tree.
    pub ram_bytes: u64,
    /// Frame capabilities for the root task's image and stack pages, each
    /// recording where it is mapped.
    pub image_frames: SlotRange,
    /// Page-table capabilities for the tables of the root task's VSpace.
    pub page_tables: SlotRange,
    /// Untyped capabilities, described in order by `untyped_list`.
    pub untyped: SlotRange,
    /// Empty slots the root task may use.
    pub empty: SlotRange,
    /// Valid bytes in [`BootInfo::bootargs`].
    pub bootargs_len: u64,
    /// The kernel command line (`/chosen/bootargs`), not NUL-terminated.
    pub bootargs: [u8; BOOTARGS_CAPACITY],
    /// The untyped regions, one per slot of `untyped`.
    pub untyped_list: [UntypedDesc; MAX_BOOT_UNTYPED],
    /// Valid entries in [`BootInfo::modules`].
    pub module_count: u64,
    /// The boot modules, in the order the boot loader listed them.
    pub modules: [BootModule; MAX_BOOT_MODULES],
}

const _: () = assert!(core::mem::size_of::<BootInfo>() <= 4096);

impl BootInfo {
    /// An empty boot info with magic and version set.
    pub fn new() -> BootInfo {
        let mut info = BootInfo::new_zeroed();
        info.magic = BOOT_INFO_MAGIC;
        info.version = BOOT_INFO_VERSION;
        info
    }

    /// Parses a boot-info page; `None` if it is too short or the magic or
    /// version do not match.
    pub fn from_page(bytes: &[u8]) -> Option<&BootInfo> {
        let (info, _) = BootInfo::ref_from_prefix(bytes).ok()?;
        (info.magic == BOOT_INFO_MAGIC && info.version == BOOT_INFO_VERSION).then_some(info)
    }

    /// The untyped regions described (as many as `untyped` has slots).
    pub fn untyped_regions(&self) -> &[UntypedDesc] {
        let n = (self.untyped.len() as usize).min(MAX_BOOT_UNTYPED);
        &self.untyped_list[..n]
    }

    /// The boot modules.
    pub fn modules(&self) -> &[BootModule] {
        let n = (self.module_count as usize).min(MAX_BOOT_MODULES);
        &self.modules[..n]
    }

    /// The boot module called `name`.
    pub fn module(&self, name: &str) -> Option<&BootModule> {
        self.modules().iter().find(|m| m.name() == name)
    }

    /// Stores the command line, truncated to [`BOOTARGS_CAPACITY`] bytes.
    pub fn set_bootargs(&mut self, args: &str) {
        let n = args.len().min(BOOTARGS_CAPACITY);
        self.bootargs[..n].copy_from_slice(&args.as_bytes()[..n]);
        self.bootargs_len = n as u64;
    }

    /// The command line, or `""` if it is not valid UTF-8.
    pub fn bootargs(&self) -> &str {
        let n = (self.bootargs_len as usize).min(BOOTARGS_CAPACITY);
        core::str::from_utf8(&self.bootargs[..n]).unwrap_or("")
    }

    /// The value of `key=value` in the command line, if present.
    pub fn bootarg(&self, key: &str) -> Option<&str> {
        self.bootargs().split_ascii_whitespace().find_map(|word| {
            let (k, v) = word.split_once('=')?;
            (k == key).then_some(v)
        })
    }
}

impl Default for BootInfo {
    fn default() -> Self {
        BootInfo::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_bytes() {
        let mut info = BootInfo::new();
        info.set_bootargs("console=pl011 test=boot::root_task_runs");
        let bytes = info.as_bytes();
        assert!(bytes.len() <= 4096, "boot info must fit one page");
        let parsed = BootInfo::from_page(bytes).expect("valid");
        assert_eq!(parsed.bootarg("test"), Some("boot::root_task_runs"));
        assert_eq!(parsed.bootarg("console"), Some("pl011"));
        assert_eq!(parsed.bootarg("missing"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(BootInfo::from_page(&[0u8; 4096]).is_none());
        assert!(BootInfo::from_page(&[0u8; 8]).is_none());
        let mut info = BootInfo::new();
        info.bootargs_len = u64::MAX; // corrupt length is clamped, not trusted
        let parsed = BootInfo::from_page(info.as_bytes()).unwrap();
        assert_eq!(parsed.bootargs().len(), BOOTARGS_CAPACITY);
        info.bootargs[0] = 0xff; // invalid UTF-8 reads as empty
        assert_eq!(info.bootargs(), "");
    }

    #[test]
    fn long_bootargs_truncate() {
        let mut info = BootInfo::new();
        let long = "x".repeat(BOOTARGS_CAPACITY + 10);
        info.set_bootargs(&long);
        assert_eq!(info.bootargs().len(), BOOTARGS_CAPACITY);
    }
}
