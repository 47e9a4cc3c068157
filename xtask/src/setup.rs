//! Makes sure the machine has QEMU >= 8.2 (through apt, from
//! `bookworm-backports` on Debian 12); the Rust side is in `toolchain.rs`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// Oldest QEMU with what the system needs (SMMUv3 stage 2, VHE CPUs).
const MIN_QEMU: (u32, u32) = (8, 2);

/// The workspace root (all commands run there, so rust-toolchain.toml applies).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command in the workspace root, inheriting the terminal; error if
/// it cannot start or fails.
pub fn run_command(command: &mut Command) -> Result<(), String> {
    let status = command
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed ({status})"))
    }
}

/// A usable QEMU.
pub struct Qemu {
    /// Program to run.
    pub path: String,
    /// Its version, as printed.
    pub version: String,
}

fn parse_version(text: &str) -> Option<(u32, u32, String)> {
    let word = text.split("version ").nth(1)?.split_whitespace().next()?;
    let mut parts = word.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor, word.to_string()))
}

fn probe_qemu(path: &str) -> Option<(u32, u32, String)> {
    let out = Command::new(path).arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// Finds QEMU >= 8.2 (`SKYSCOPE_QEMU` overrides the program name), and
/// installs it if it is missing or too old and this machine allows.
pub fn ensure_qemu() -> Result<Qemu, String> {
    let path = std::env::var("SKYSCOPE_QEMU").unwrap_or_else(|_| "qemu-system-aarch64".into());
    let found = probe_qemu(&path);
    if let Some((major, minor, version)) = &found
        && (*major, *minor) >= MIN_QEMU
    {
        return Ok(Qemu {
            path,
            version: version.clone(),
        });
    }
    let why = match &found {
        Some((_, _, v)) => format!(
            "{path} is version {v}, but QEMU >= {}.{} is required",
            MIN_QEMU.0, MIN_QEMU.1
        ),
        None => format!(
            "{path} was not found (QEMU >= {}.{} is required)",
            MIN_QEMU.0, MIN_QEMU.1
        ),
    };
    let plan = install_plan().map_err(|e| format!("{why}; {e}"))?;
    let Some(prefix) = privilege_prefix() else {
        return Err(format!(
            "{why}. Install it with (as root):\n{}",
            plan.iter()
                .map(|c| format!("    {c}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    };
    println!("==> {why}; installing it with apt");
    for step in &plan {
        println!("    $ {prefix}{step}");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{prefix}{step}"))
            .env("DEBIAN_FRONTEND", "noninteractive");
        run_command(&mut command)?;
    }
    match probe_qemu(&path) {
        Some((major, minor, version)) if (major, minor) >= MIN_QEMU => Ok(Qemu { path, version }),
        _ => Err(format!(
            "installed QEMU, but {path} still is not >= {}.{}",
            MIN_QEMU.0, MIN_QEMU.1
        )),
    }
}

/// `""` when running as root, `"sudo -n "` when passwordless sudo works,
/// `None` when neither (the user must run the commands).
fn privilege_prefix() -> Option<&'static str> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return Some("");
    }
    let sudo = Command::new("sudo").args(["-n", "true"]).output().ok()?;
    sudo.status.success().then_some("sudo -n ")
}

fn os_release() -> Vec<(String, String)> {
    fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.to_string(), v.trim_matches('"').to_string()))
        })
        .collect()
}

/// The URI of the machine's main Debian archive, to reuse for backports.
pub fn debian_archive_uri() -> String {
    let deb822 = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    for stanza in deb822.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:"))
            && suites.split_whitespace().any(|s| s == "bookworm")
            && let Some(uri) = uris.split_whitespace().next()
        {
            return uri.to_string();
        }
    }
    let legacy = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for line in legacy.lines() {
        let words: Vec<_> = line.split_whitespace().collect();
        if words.first() == Some(&"deb")
            && words.contains(&"bookworm")
            && let Some(uri) = words.iter().find(|w| w.contains("://"))
        {
            return uri.to_string();
        }
    }
    "http://deb.debian.org/debian".to_string()
}

fn has_backports_source() -> bool {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.flatten().map(|e| e.path()));
    }
    files
        .iter()
        .any(|f| fs::read_to_string(f).is_ok_and(|t| t.contains("bookworm-backports")))
}

/// Shell commands that install a recent enough QEMU on this distribution.
fn install_plan() -> Result<Vec<String>, String> {
    let os = os_release();
    let get = |key: &str| {
        os.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let packages = "qemu-system-arm qemu-system-x86";
    match (get("ID"), get("VERSION_CODENAME")) {
        ("debian", "bookworm") => {
            let mut plan = Vec::new();
            if !has_backports_source() {
                let uri = debian_archive_uri();
                plan.push(format!(
                    "sh -c 'printf \"Types: deb\\nURIs: {uri}\\nSuites: bookworm-backports\\nComponents: main\\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\\n\" > /etc/apt/sources.list.d/bookworm-backports.sources'"
                ));
            }
            plan.push("apt-get update".into());
            plan.push(format!("apt-get install -y -t bookworm-backports {packages}"));
            Ok(plan)
        }
        ("ubuntu", "focal" | "jammy") => {
            Err("this Ubuntu release ships QEMU older than 8.2; use Ubuntu 24.04 or newer, or Debian 12 with backports".into())
        }
        ("debian" | "ubuntu", _) => Ok(vec!["apt-get update".into(), format!("apt-get install -y {packages}")]),
        (id, _) => Err(format!(
            "automatic installation knows Debian and Ubuntu, not '{id}'; install QEMU >= 8.2 (qemu-system-aarch64) with your package manager"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn parses_qemu_versions() {
        let v = parse_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)\nCopyright")
            .unwrap();
        assert_eq!((v.0, v.1), (10, 0));
        assert_eq!(
            parse_version("QEMU emulator version 7.2.15").map(|v| (v.0, v.1)),
            Some((7, 2))
        );
        assert!(parse_version("garbage").is_none());
    }
}
