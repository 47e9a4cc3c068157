//! What the kernel command line asks of the root task for a Linux guest:
//!
//! ```text
//! guest=linux [vcpus=N] [guest-mem=SIZE] [epoch=SECONDS] -- GUEST COMMAND LINE
//! ```
//!
//! `vcpus` is 1 to 4 (default 1); `guest-mem` is a size in bytes with an
//! optional `K`, `M` or `G` suffix, a whole number of 2 MiB blocks
//! (default 512M); `epoch` is the wall-clock time in seconds since 1970
//! when the machine started (there is no RTC the root task could read:
//! `cargo xtask` passes the host's time); everything after ` -- ` is the
//! guest kernel's command line (default `console=ttyAMA0`).

/// Most vCPUs a Linux guest gets here.
pub const MAX_LINUX_VCPUS: usize = 4;
/// Guest RAM unless `guest-mem` says otherwise.
pub const DEFAULT_GUEST_MEM: u64 = 512 << 20;
/// The guest command line unless one follows ` -- `.
pub const DEFAULT_CMDLINE: &str = "console=ttyAMA0";

/// A Linux guest's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestConfig<'a> {
    /// Number of vCPUs.
    pub vcpus: usize,
    /// Bytes of guest RAM.
    pub memory: u64,
    /// Seconds since 1970 at boot (0: unknown).
    pub epoch: u64,
    /// The guest kernel's command line.
    pub cmdline: &'a str,
}

/// What is wrong with the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `vcpus` is not a number from 1 to [`MAX_LINUX_VCPUS`].
    Vcpus,
    /// `guest-mem` is not a size, or not a whole number of 2 MiB blocks
    /// from 32 MiB to 16 GiB.
    Memory,
    /// `epoch` is not a number.
    Epoch,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Vcpus => write!(f, "vcpus= must be 1 to {MAX_LINUX_VCPUS}"),
            ConfigError::Memory => {
                write!(f, "guest-mem= must be 32M to 16G in whole 2 MiB blocks")
            }
            ConfigError::Epoch => write!(f, "epoch= must be seconds since 1970"),
        }
    }
}

/// A size such as `512M`, `1G`, `65536K` or `33554432`.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 10),
        b'm' | b'M' => (&text[..text.len() - 1], 20),
        b'g' | b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1 << shift)
}

impl<'a> GuestConfig<'a> {
    /// Reads the configuration from the kernel command line `bootargs`.
    pub fn parse(bootargs: &'a str) -> Result<GuestConfig<'a>, ConfigError> {
        let (own, guest) = match bootargs.split_once(" -- ") {
            Some((own, guest)) => (own, guest.trim()),
            None => (bootargs.strip_suffix(" --").unwrap_or(bootargs), ""),
        };
        let mut config = GuestConfig {
            vcpus: 1,
            memory: DEFAULT_GUEST_MEM,
            epoch: 0,
            cmdline: if guest.is_empty() {
                DEFAULT_CMDLINE
            } else {
                guest
            },
        };
        for (key, value) in own
            .split_ascii_whitespace()
            .filter_map(|w| w.split_once('='))
        {
            match key {
                "vcpus" => {
                    config.vcpus = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LINUX_VCPUS).contains(n))
                        .ok_or(ConfigError::Vcpus)?;
                }
                "guest-mem" => {
                    config.memory = parse_size(value)
                        .filter(|&m| {
                            m.is_multiple_of(2 << 20) && (32 << 20..=16 << 30).contains(&m)
                        })
                        .ok_or(ConfigError::Memory)?;
                }
                "epoch" => config.epoch = value.parse().map_err(|_| ConfigError::Epoch)?,
                _ => {}
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_configures_the_guest() {
        let c = GuestConfig::parse(
            "exit=semihosting guest=linux vcpus=2 guest-mem=1G epoch=1764400000 -- console=ttyAMA0 panic=-1 rdinit=/init",
        )
        .unwrap();
        assert_eq!(
            c,
            GuestConfig {
                vcpus: 2,
                memory: 1 << 30,
                epoch: 1_764_400_000,
                cmdline: "console=ttyAMA0 panic=-1 rdinit=/init",
            }
        );
        let d = GuestConfig::parse("guest=linux").unwrap();
        assert_eq!((d.vcpus, d.memory, d.epoch), (1, 512 << 20, 0));
        assert_eq!(d.cmdline, DEFAULT_CMDLINE);
        // Words after `--` are the guest's, even when they look like ours.
        let e = GuestConfig::parse("guest=linux -- vcpus=9").unwrap();
        assert_eq!((e.vcpus, e.cmdline), (1, "vcpus=9"));
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |s| GuestConfig::parse(s).unwrap_err();
        assert_eq!(bad("vcpus=0"), ConfigError::Vcpus);
        assert_eq!(bad("vcpus=5"), ConfigError::Vcpus);
        assert_eq!(bad("vcpus=two"), ConfigError::Vcpus);
        assert_eq!(bad("guest-mem=511M"), ConfigError::Memory);
        assert_eq!(bad("guest-mem=16M"), ConfigError::Memory);
        assert_eq!(bad("guest-mem=17G"), ConfigError::Memory);
        assert_eq!(bad("guest-mem=99999999999999999G"), ConfigError::Memory);
        assert_eq!(bad("epoch=-1"), ConfigError::Epoch);
        assert_eq!(parse_size("65536K"), Some(64 << 20));
        assert_eq!(parse_size("3145728"), Some(3 << 20));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("M"), None);
    }
}
