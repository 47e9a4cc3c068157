//! A private apt for Debian arm64 packages: its own configuration, sources, lists and cache under `.cache/`, never the machine's.
//!
//! `-o` options alone are not enough to keep apt off the machine's state:
//! apt reads `/etc/apt/apt.conf.d/` before the command line, and what it
//! finds there still runs — e.g. `APT::Update::Post-Invoke-Success` hooks
//! that refresh PackageKit's or AppStream's system caches. A file named by
//! `APT_CONFIG` is read *first*, so that file points `Dir::Etc::Main` and
//! `Dir::Etc::Parts` at empty private places and every state and cache
//! directory into the private tree; apt then reads nothing of the machine's
//! configuration except its keyrings and writes nothing outside the tree.
//! It works the same as root and as an ordinary user.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The Debian archive key that the private sources require.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A private apt environment in one directory.
pub struct Apt {
    dir: PathBuf,
    mirror: String,
}

impl Apt {
    /// Sets up (or reuses) the environment in `dir` with the `main`
    /// component of `suites` from `mirror`, for arm64 only.
    pub fn new(dir: &Path, mirror: &str, suites: &[&str]) -> Result<Apt, String> {
        if which("apt-get").is_none() {
            return Err("apt-get not found: the guest payload is fetched from Debian's archive with apt (Debian or Ubuntu hosts)".into());
        }
        if !Path::new(DEBIAN_KEYRING).exists() {
            return Err(format!(
                "{DEBIAN_KEYRING} is missing, so Debian's archive cannot be verified; install it with: apt-get install debian-archive-keyring"
            ));
        }
        let etc = dir.join("etc");
        for sub in [
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
            "log",
        ] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| format!("cannot create {}: {e}", dir.join(sub).display()))?;
        }
        let sources: String = suites
            .iter()
            .map(|s| format!("deb [arch=arm64 signed-by={DEBIAN_KEYRING}] {mirror} {s} main\n"))
            .collect();
        write_if_changed(&etc.join("sources.list"), sources.as_bytes())?;
        write_if_changed(&dir.join("state/status"), b"")?;
        let d = dir.display();
        let mut conf = format!(
            "// Written by `cargo xtask payload`; see xtask/src/apt.rs.\n\
             Dir::Etc::Main \"{d}/etc/apt.conf\";\n\
             Dir::Etc::Parts \"{d}/etc/apt.conf.d\";\n\
             Dir::Etc::SourceList \"{d}/etc/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/etc/sources.list.d\";\n\
             Dir::Etc::Preferences \"{d}/etc/preferences\";\n\
             Dir::Etc::PreferencesParts \"{d}/etc/preferences.d\";\n\
             Dir::State \"{d}/state\";\n\
             Dir::State::Lists \"{d}/state/lists\";\n\
             Dir::State::status \"{d}/state/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Dir::Cache::pkgcache \"\";\n\
             Dir::Cache::srcpkgcache \"\";\n\
             Dir::Log \"{d}/log\";\n\
             APT::Architecture \"arm64\";\n\
             APT::Architectures {{ \"arm64\"; }};\n\
             Acquire::Languages \"none\";\n\
             Acquire::GzipIndexes \"true\";\n\
             Acquire::CompressionTypes::Order {{ \"gz\"; }};\n"
        );
        if is_root() {
            // apt drops to the `_apt` user for downloads, who cannot write
            // into a root-owned private tree; the downloads are verified
            // against the signed Release files either way.
            conf.push_str("APT::Sandbox::User \"root\";\n");
        }
        conf.push_str(&machine_proxies());
        let conf_path = dir.join("apt.conf");
        write_if_changed(&conf_path, conf.as_bytes())?;
        Ok(Apt {
            dir: dir.to_path_buf(),
            mirror: mirror.to_string(),
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", self.dir.join("apt.conf"))
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        c
    }

    /// Downloads the package lists of the private sources.
    pub fn update(&self) -> Result<(), String> {
        let out = self
            .command("apt-get")
            .args(["-q", "update"])
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        let text = joined(&out);
        let network = [
            "Could not resolve",
            "Temporary failure resolving",
            "Could not connect",
            "Connection failed",
            "Network is unreachable",
            "Connection timed out",
        ];
        if network.iter().any(|n| text.contains(n)) {
            return Err(format!(
                "no network to the Debian mirror {} (apt-get update could not fetch its lists):\n{}",
                self.mirror,
                indent(&text)
            ));
        }
        if !out.status.success() || text.contains("Failed to fetch") || text.contains("\nE: ") {
            return Err(format!(
                "apt-get update failed for {}:\n{}",
                self.mirror,
                indent(&text)
            ));
        }
        Ok(())
    }

    /// The control record of `spec` (`name` or `name/suite`), the
    /// candidate version when several are known.
    pub fn show(&self, spec: &str) -> Result<String, String> {
        let out = self
            .command("apt-cache")
            .args(["show", "--no-all-versions", spec])
            .output()
            .map_err(|e| format!("cannot run apt-cache: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || field(&text, "Package").is_none() {
            return Err(format!(
                "package {spec} not found in the mirror {}:\n{}",
                self.mirror,
                indent(&joined(&out))
            ));
        }
        Ok(text)
    }

    /// Downloads `name` at `version` into `into` and returns the .deb's path.
    pub fn download(&self, name: &str, version: &str, into: &Path) -> Result<PathBuf, String> {
        fs::create_dir_all(into).map_err(|e| format!("cannot create {}: {e}", into.display()))?;
        let out = self
            .command("apt-get")
            .args(["-q", "download", &format!("{name}={version}")])
            .current_dir(into)
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "apt-get download {name}={version} failed:\n{}",
                indent(&joined(&out))
            ));
        }
        // apt names the file NAME_VERSION_ARCH.deb with ':' as "%3a".
        let file = into.join(format!("{name}_{}_arm64.deb", version.replace(':', "%3a")));
        if file.exists() {
            Ok(file)
        } else {
            Err(format!(
                "apt-get download reported success but {} is not there",
                file.display()
            ))
        }
    }
}

/// A field of a Debian control record (first paragraph).
pub fn field<'a>(record: &'a str, name: &str) -> Option<&'a str> {
    record
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The machine's apt proxy settings, carried into the private
/// configuration (which otherwise does not see `/etc/apt`).
fn machine_proxies() -> String {
    Command::new("apt-config")
        .args([
            "dump",
            "Acquire::http::Proxy",
            "Acquire::https::Proxy",
            "Acquire::http::Proxy-Auto-Detect",
        ])
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Streams the data member of `deb` through `dpkg-deb --fsys-tarfile` and
/// returns the files whose paths (as in the package, `./boot/...`)
/// `wanted` accepts. dpkg-deb ships with dpkg on every Debian and Ubuntu
/// machine and knows every compression the data member may use.
pub fn extract(
    deb: &Path,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    if which("dpkg-deb").is_none() {
        return Err("dpkg-deb not found (it comes with dpkg on Debian and Ubuntu)".into());
    }
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
    let stdout = child.stdout.take().ok_or("dpkg-deb has no stdout")?;
    let mut found = Vec::new();
    let mut archive = tar::Archive::new(stdout);
    let result = (|| -> Result<(), String> {
        for entry in archive.entries().map_err(|e| e.to_string())? {
            let mut entry = entry.map_err(|e| e.to_string())?;
            let path = entry
                .path()
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .into_owned();
            if entry.header().entry_type().is_file() && wanted(&path) {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).map_err(|e| e.to_string())?;
                found.push((path, data));
            }
        }
        Ok(())
    })();
    let out = child
        .wait_with_output()
        .map_err(|e| format!("dpkg-deb: {e}"))?;
    result.map_err(|e| format!("cannot read {}: {e}", deb.display()))?;
    if !out.status.success() {
        return Err(format!(
            "dpkg-deb --fsys-tarfile {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(found)
}

/// Writes `data` to `path` unless it already holds exactly that (keeps
/// timestamps stable and makes reruns no-ops); through a temporary file,
/// so an interrupted run never leaves half a file.
pub fn write_if_changed(path: &Path, data: &[u8]) -> Result<bool, String> {
    if fs::read(path).is_ok_and(|old| old == data) {
        return Ok(false);
    }
    let tmp = path.with_extension("partial");
    fs::write(&tmp, data).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("cannot rename to {}: {e}", path.display()))?;
    Ok(true)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn joined(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn indent(text: &str) -> String {
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn control_fields() {
        let record = "Package: linux-image-arm64\nSource: linux-signed-arm64 (6.12.1)\n\
                      Version: 6.12.1-1~bpo12+1\nDepends: linux-image-6.12.1+deb12-arm64 (= 6.12.1-1~bpo12+1)\n\
                      Description: Linux for arm64\n a continuation\n\nPackage: other\nVersion: 2\n";
        assert_eq!(field(record, "Version"), Some("6.12.1-1~bpo12+1"));
        assert_eq!(field(record, "Package"), Some("linux-image-arm64"));
        // `Source` must not match `Sources`, and the second record is ignored.
        assert_eq!(field(record, "Sourc"), None);
        assert_eq!(field(record, "Homepage"), None);
    }
}
