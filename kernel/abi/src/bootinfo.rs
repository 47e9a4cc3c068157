//! The boot-info page the kernel hands the root task.
//!
//! The kernel maps one read-only page at [`BOOT_INFO_ADDRESS`] in the root
//! task's address space, writes a [`BootInfo`] at its start and passes the
//! address in `x0` at entry.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Identifies a valid boot-info page ("SKYBOOT" + version byte).
pub const BOOT_INFO_MAGIC: u64 = 0x534b_5942_4f4f_5401;
/// Layout version; bumped whenever a field changes meaning or position.
pub const BOOT_INFO_VERSION: u64 = 1;
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
    /// Valid bytes in [`BootInfo::bootargs`].
    pub bootargs_len: u64,
    /// The kernel command line (`/chosen/bootargs`), not NUL-terminated.
    pub bootargs: [u8; BOOTARGS_CAPACITY],
}

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
