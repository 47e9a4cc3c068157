//! `cargo xtask payload`: the Linux guest — a stock Debian arm64 kernel and a busybox initramfs — fetched into `.cache/guest/`, built, and booted directly by QEMU.
//!
//! Kernel: the `linux-image-arm64` metapackage of `bookworm-backports`
//! names the current Debian 6.12 kernel (`linux-image-6.12.*-arm64`, the
//! signed build — the same binary as `-unsigned` plus an appended Secure
//! Boot signature). 6.12 has virtio-pci, the PL011 console, devtmpfs and
//! gzip/xz/zstd initramfs support built in; Debian 12's own 6.1 kernel is
//! the fallback when the mirror has no backports. Debian ships this kernel
//! as a plain arm64 `Image` (with an EFI stub), not gzip-compressed; a
//! gzip-compressed `vmlinuz` (as older arm64 packages had) is unpacked.
//! User space: `busybox-static` from bookworm, one static binary.
//!
//! Everything lands in `.cache/guest/` (git-ignored): `Image`, `busybox`,
//! `initramfs.cpio`, `payload.json` (what was fetched) and the private apt
//! tree (`apt.rs`). Once `payload.json` and the files are there, nothing
//! touches the network; `--refresh` looks for newer packages.

use crate::{
    PayloadArgs,
    apt::{self, Apt},
    cpio::{self, Entry},
    qemu, setup,
};
use serde::{Deserialize, Serialize};
use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

/// The line `/init` prints once it has mounted /proc, /sys and /dev: the
/// end of a boot for `bench boot`, the sign of life for scripts.
pub const MARKER: &str = "SKYSCOPE-GUEST: init reached";

/// Where the kernel metapackage is looked up, in order of preference.
const KERNEL_SUITES: [&str; 2] = ["bookworm-backports", "bookworm"];
const KERNEL_META: &str = "linux-image-arm64";
const BUSYBOX: &str = "busybox-static";
/// Suites of the private apt sources (busybox comes from bookworm).
const SUITES: [&str; 2] = ["bookworm", "bookworm-backports"];

/// The guest's `/init`. `busybox --install -s` links every applet at boot
/// (which applets exist is known only to the arm64 binary); `cttyhack`
/// opens the real console device (ttyAMA0) as the shell's controlling
/// terminal, and `setsid` gives it a session, so job control and Ctrl-C
/// work; when the shell exits, the machine powers off (PSCI SYSTEM_OFF)
/// instead of the kernel panicking over a dead init.
const INIT: &str = r#"#!/bin/sh
# /init of the Skyscope guest payload (written by `cargo xtask payload`).
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "SKYSCOPE-GUEST: init reached"
setsid cttyhack sh -l
echo "SKYSCOPE-GUEST: shell exited, powering off"
poweroff -f
"#;

/// Paths of a ready payload.
pub struct Payload {
    /// Raw arm64 kernel `Image`.
    pub image: PathBuf,
    /// `newc` initramfs.
    pub initramfs: PathBuf,
    /// What was fetched.
    manifest: Manifest,
}

/// What `payload.json` records.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Manifest {
    mirror: String,
    kernel_suite: String,
    kernel_package: String,
    kernel_version: String,
    busybox_version: String,
}

/// The payload's cache directory.
pub fn cache_dir() -> PathBuf {
    setup::workspace_root().join(".cache/guest")
}

/// Makes sure the kernel Image and the initramfs exist (downloading and
/// building what is missing; with `refresh`, checking for newer packages)
/// and returns their paths. What `run`, `test` and `bench boot` call.
pub fn ensure(refresh: bool) -> Result<Payload, String> {
    let dir = cache_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let image = dir.join("Image");
    let busybox = dir.join("busybox");
    let manifest_path = dir.join("payload.json");
    let cached: Option<Manifest> = fs::read_to_string(&manifest_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|_| image.exists() && busybox.exists());
    let manifest = match cached {
        Some(m) if !refresh => {
            println!(
                "==> guest payload: cached ({} {}, busybox {})",
                m.kernel_package, m.kernel_version, m.busybox_version
            );
            m
        }
        previous => {
            let m = fetch(&dir, previous.as_ref())?;
            let text = serde_json::to_string_pretty(&m).map_err(|e| e.to_string())?;
            apt::write_if_changed(&manifest_path, text.as_bytes())?;
            m
        }
    };
    // Checked on every call: a damaged cache is an error, not a bad boot.
    let info = parse_image_header(&read_head(&image, 64)?)?;
    let busybox_elf = fs::read(&busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
    check_static_aarch64(&busybox_elf)?;
    let initramfs = dir.join("initramfs.cpio");
    let archive = initramfs_archive(busybox_elf)?;
    if apt::write_if_changed(&initramfs, &archive)? {
        println!(
            "==> wrote {} ({} KiB)",
            initramfs.display(),
            archive.len() / 1024
        );
    }
    println!(
        "    kernel Image: {} ({} MiB, text_offset {:#x}, image_size {:#x}, {} KiB pages)",
        image.display(),
        fs::metadata(&image).map(|m| m.len()).unwrap_or(0) >> 20,
        info.text_offset,
        info.image_size,
        info.page_size_kib
    );
    println!("    initramfs:    {}", initramfs.display());
    Ok(Payload {
        image,
        initramfs,
        manifest,
    })
}

fn read_head(path: &Path, len: usize) -> Result<Vec<u8>, String> {
    let mut head = vec![0; len];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(head)
}

/// Downloads and unpacks the kernel and busybox (or keeps `previous`'s
/// files when the mirror still has the same versions).
fn fetch(dir: &Path, previous: Option<&Manifest>) -> Result<Manifest, String> {
    let mirror =
        std::env::var("SKYSCOPE_DEBIAN_MIRROR").unwrap_or_else(|_| setup::debian_archive_uri());
    println!(
        "==> fetching the guest payload from {mirror} (arm64; private apt state in {})",
        dir.join("apt").display()
    );
    let apt = Apt::new(&dir.join("apt"), &mirror, &SUITES)?;
    apt.update()?;

    let mut meta = Err(String::new());
    for suite in KERNEL_SUITES {
        meta = apt
            .show(&format!("{KERNEL_META}/{suite}"))
            .map(|r| (suite, r));
        match &meta {
            Ok(_) => break,
            Err(e) => println!("    {KERNEL_META} not in {suite}: {}", first_line(e)),
        }
    }
    let (suite, meta) = meta?;
    let package = kernel_dependency(&meta)?;
    let record = apt.show(&format!("{package}/{suite}"))?;
    let kernel_version = apt::field(&record, "Version")
        .ok_or("kernel record has no Version")?
        .to_string();
    let record = apt.show(BUSYBOX)?;
    let busybox_version = apt::field(&record, "Version")
        .ok_or("busybox record has no Version")?
        .to_string();
    let manifest = Manifest {
        mirror,
        kernel_suite: suite.to_string(),
        kernel_package: package,
        kernel_version,
        busybox_version,
    };
    println!(
        "    kernel: {} {} ({suite}); busybox: {BUSYBOX} {}",
        manifest.kernel_package, manifest.kernel_version, manifest.busybox_version
    );
    let downloads = dir.join("downloads");
    let same = |f: fn(&Manifest) -> &String| previous.is_some_and(|p| f(p) == f(&manifest));
    if same(|m| &m.kernel_version) && same(|m| &m.kernel_package) {
        println!("    kernel unchanged");
    } else {
        println!("==> downloading {} (about 90 MB)", manifest.kernel_package);
        let deb = apt.download(
            &manifest.kernel_package,
            &manifest.kernel_version,
            &downloads,
        )?;
        let mut files = apt::extract(&deb, |p| p.starts_with("./boot/vmlinuz-"))?;
        let (name, data) = match files.len() {
            1 => files.remove(0),
            n => return Err(format!("{} holds {n} boot/vmlinuz-* files", deb.display())),
        };
        let image = kernel_image(data).map_err(|e| format!("{name}: {e}"))?;
        apt::write_if_changed(&dir.join("Image"), &image)?;
        // The package is mostly modules the guest does not load; keep the Image only.
        let _ = fs::remove_file(&deb);
    }
    if same(|m| &m.busybox_version) {
        println!("    busybox unchanged");
    } else {
        println!("==> downloading {BUSYBOX}");
        let deb = apt.download(BUSYBOX, &manifest.busybox_version, &downloads)?;
        let mut files = apt::extract(&deb, |p| p == "./bin/busybox")?;
        let (_, data) = files
            .pop()
            .ok_or_else(|| format!("{} has no bin/busybox", deb.display()))?;
        check_static_aarch64(&data)?;
        apt::write_if_changed(&dir.join("busybox"), &data)?;
        let _ = fs::remove_file(&deb);
    }
    Ok(manifest)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// The versioned kernel package a `linux-image-arm64` record depends on.
fn kernel_dependency(record: &str) -> Result<String, String> {
    let depends = apt::field(record, "Depends").ok_or("kernel metapackage has no Depends")?;
    depends
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|name| name.starts_with("linux-image-") && *name != KERNEL_META)
        .map(str::to_string)
        .ok_or_else(|| format!("no linux-image-* package in Depends: {depends}"))
}

/// The fields of an arm64 Image header this tool checks
/// (`Documentation/arch/arm64/booting.rst`).
#[derive(Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Offset from a 2 MiB-aligned base at which the image must sit.
    pub text_offset: u64,
    /// Bytes the image occupies once loaded, BSS included.
    pub image_size: u64,
    /// Kernel page size in KiB (0: unspecified).
    pub page_size_kib: u32,
}

const ARM64_MAGIC: u32 = 0x644d_5241; // "ARM\x64"

/// Checks an arm64 Image header: magic "ARM\x64" at 0x38, little-endian,
/// a non-zero image_size (zero means a pre-3.17 kernel whose load size is
/// unknown), text_offset below 2 MiB.
pub fn parse_image_header(data: &[u8]) -> Result<ImageInfo, String> {
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().expect("8 bytes"));
    if data.len() < 64 {
        return Err("too short for an arm64 Image header".into());
    }
    let magic = u32::from_le_bytes(data[0x38..0x3c].try_into().expect("4 bytes"));
    if magic != ARM64_MAGIC {
        return Err(format!(
            "not an arm64 Image (magic {magic:#010x} at 0x38, expected \"ARM\\x64\")"
        ));
    }
    let (text_offset, image_size, flags) = (u64_at(8), u64_at(16), u64_at(24));
    if flags & 1 != 0 {
        return Err("big-endian kernel Image".into());
    }
    if image_size == 0 {
        return Err("image_size is 0 (kernel older than 3.17?)".into());
    }
    if text_offset >= 2 << 20 {
        return Err(format!("text_offset {text_offset:#x} is not below 2 MiB"));
    }
    Ok(ImageInfo {
        text_offset,
        image_size,
        page_size_kib: [0, 4, 16, 64][((flags >> 1) & 3) as usize],
    })
}

/// The raw Image from a package's `vmlinuz`: gunzipped if it is gzip,
/// then its header checked.
pub fn kernel_image(vmlinuz: Vec<u8>) -> Result<Vec<u8>, String> {
    let image = if vmlinuz.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(vmlinuz.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| format!("cannot gunzip: {e}"))?;
        out
    } else {
        vmlinuz
    };
    parse_image_header(&image)?;
    Ok(image)
}

/// Checks that `elf` is a static arm64 executable (no PT_INTERP), so it
/// runs as the initramfs's only binary.
pub fn check_static_aarch64(elf: &[u8]) -> Result<(), String> {
    const EM_AARCH64: u16 = 183;
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err("busybox is not a little-endian 64-bit ELF file".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]);
    if u16_at(18) != EM_AARCH64 {
        return Err(format!(
            "busybox is for ELF machine {}, not arm64",
            u16_at(18)
        ));
    }
    let phoff = u64::from_le_bytes(elf[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(54) as usize, u16_at(56) as usize);
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = elf
            .get(at..at + 4)
            .ok_or("busybox program headers are truncated")?;
        if u32::from_le_bytes(p_type.try_into().expect("4 bytes")) == PT_INTERP {
            return Err("busybox is dynamically linked (has PT_INTERP)".into());
        }
    }
    Ok(())
}

/// The initramfs: directories, /dev/console (the kernel opens it for
/// init's stdin/stdout before /dev is mounted), busybox, `sh` for the
/// `#!` line, and `/init`. Left uncompressed: see guests/README.md for the
/// measurement.
pub fn initramfs_archive(busybox: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut entries: Vec<Entry> = [
        "bin", "dev", "etc", "proc", "root", "sbin", "sys", "tmp", "usr", "usr/bin", "usr/sbin",
    ]
    .iter()
    .map(|d| Entry::dir(d, 0o755))
    .collect();
    entries.push(Entry::char_device("dev/console", 0o600, 5, 1));
    entries.push(Entry::file("bin/busybox", 0o755, busybox));
    entries.push(Entry::symlink("bin/sh", "busybox"));
    entries.push(Entry::file("init", 0o755, INIT.as_bytes().to_vec()));
    cpio::write(&entries)
}

/// QEMU booting the payload directly (no Skyscope): the same `virt`
/// machine and CPU as the guest gets under Skyscope, one core, 1 GiB.
/// `panic=-1` and `-no-reboot` make a kernel panic end QEMU.
pub fn direct_command(qemu: &setup::Qemu, payload: &Payload, append: &str) -> Command {
    let mut c = Command::new(&qemu.path);
    c.args(["-machine", "virt,gic-version=3", "-cpu", "max", "-smp", "1"])
        .args(["-m", "1G", "-nographic", "-nic", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(&payload.image)
        .arg("-initrd")
        .arg(&payload.initramfs)
        .arg("-append")
        .arg(format!("console=ttyAMA0 panic=-1 {append}").trim());
    c
}

/// Boots the payload directly under QEMU with a scripted console and waits
/// for [`MARKER`]. Returns the running session, the time from starting
/// QEMU to the marker line, and the console so far.
pub fn boot_to_marker(
    qemu: &setup::Qemu,
    payload: &Payload,
    append: &str,
    timeout: Duration,
) -> Result<(qemu::Session, Duration, Vec<String>), String> {
    let command = direct_command(qemu, payload, append);
    let started = Instant::now();
    let mut session = qemu::Session::start_scripted(command)?;
    let mut console = Vec::new();
    let found = wait_for(&mut session, &mut console, started + timeout, |l| {
        l.contains(MARKER)
    })?;
    if !found {
        return Err(format!(
            "no '{MARKER}' within {} s; console tail:\n{}",
            timeout.as_secs(),
            tail(&console)
        ));
    }
    Ok((session, started.elapsed(), console))
}

/// Reads console lines into `console` until one satisfies `done` (true),
/// the deadline passes (false) or QEMU exits (error).
fn wait_for(
    session: &mut qemu::Session,
    console: &mut Vec<String>,
    deadline: Instant,
    done: impl Fn(&str) -> bool,
) -> Result<bool, String> {
    loop {
        match session.next_event(deadline) {
            Some(qemu::ConsoleEvent::Line(line)) => {
                let hit = done(&line);
                if line.contains("Kernel panic") {
                    console.push(line);
                    return Err(format!("guest kernel panic:\n{}", tail(console)));
                }
                console.push(line);
                if hit {
                    return Ok(true);
                }
            }
            Some(qemu::ConsoleEvent::Exited(status)) => {
                return Err(format!(
                    "QEMU exited ({status}); console tail:\n{}",
                    tail(console)
                ));
            }
            None => return Ok(false),
        }
    }
}

fn tail(console: &[String]) -> String {
    console[console.len().saturating_sub(25)..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The scripted check of a direct boot: marker, a prompt, a command, job
/// control (Ctrl-C interrupts a foreground `sleep`), and `poweroff -f`
/// ending QEMU through PSCI. Prints what it saw with timings.
pub fn check_direct_boot(
    qemu: &setup::Qemu,
    payload: &Payload,
    append: &str,
) -> Result<(), String> {
    println!(
        "==> booting {} directly under QEMU {} (virt, GICv3, -cpu max, 1 GiB, no Skyscope)",
        payload.manifest.kernel_package, qemu.version
    );
    let (mut session, to_marker, mut console) =
        boot_to_marker(qemu, payload, append, Duration::from_secs(180))?;
    println!(
        "    {:>6.2} s  init marker: {MARKER}",
        to_marker.as_secs_f64()
    );
    let started = Instant::now() - to_marker;
    let result = converse(&mut session, &mut console, started);
    drop(session);
    let log = crate::build::target_dir().join("xtask-logs/guest-direct.log");
    let _ = fs::create_dir_all(log.parent().expect("has a parent"));
    let _ = fs::write(&log, console.join("\n") + "\n");
    println!("    console log: {}", log.display());
    result
}

/// The part of [`check_direct_boot`] after the marker: types at the shell
/// and reads its answers.
fn converse(
    session: &mut qemu::Session,
    console: &mut Vec<String>,
    started: Instant,
) -> Result<(), String> {
    let step = |session: &mut qemu::Session,
                console: &mut Vec<String>,
                input: &str,
                what: &str,
                secs: u64,
                done: &dyn Fn(&str) -> bool|
     -> Result<String, String> {
        session.send(input)?;
        let deadline = Instant::now() + Duration::from_secs(secs);
        if !wait_for(session, console, deadline, done)? {
            return Err(format!(
                "{what}: nothing within {secs} s; console tail:\n{}",
                tail(console)
            ));
        }
        let line = console.last().cloned().unwrap_or_default();
        println!(
            "    {:>6.2} s  {what}: {line}",
            started.elapsed().as_secs_f64()
        );
        Ok(line)
    };
    // The shell's arithmetic proves a shell ran the line (not just the
    // terminal echoing it); the echoed command line shows the prompt.
    step(
        session,
        console,
        "echo SKYSCOPE-GUEST: shell $((6*7))\n",
        "shell",
        60,
        &|l| l.contains("SKYSCOPE-GUEST: shell 42"),
    )?;
    let prompt = console
        .iter()
        .find(|l| l.contains("# echo SKYSCOPE-GUEST: shell"))
        .ok_or_else(|| format!("no shell prompt before the command:\n{}", tail(console)))?;
    println!("               prompt: {prompt}");
    if let Some(l) = console
        .iter()
        .find(|l| l.contains("job control turned off"))
    {
        return Err(format!("the shell has no controlling terminal: {l}"));
    }
    step(session, console, "uname -a\n", "uname -a", 30, &|l| {
        l.starts_with("Linux ") && l.contains("aarch64")
    })?;
    // Ctrl-C must reach `sleep` (the foreground job) and give the prompt
    // back long before the sleep would end; $? is 130 after SIGINT.
    session.send("sleep 600\n")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    if !wait_for(session, console, deadline, |l| l.ends_with("# sleep 600"))? {
        return Err(format!("sleep was not started:\n{}", tail(console)));
    }
    std::thread::sleep(Duration::from_millis(500));
    step(
        session,
        console,
        "\x03echo SKYSCOPE-GUEST: after ctrl-c $?\n",
        "ctrl-c",
        30,
        &|l| l.contains("SKYSCOPE-GUEST: after ctrl-c 130"),
    )?;
    session.send("poweroff -f\n")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match session.next_event(deadline) {
            Some(qemu::ConsoleEvent::Line(line)) => console.push(line),
            Some(qemu::ConsoleEvent::Exited(status)) if status.success() => {
                println!(
                    "    {:>6.2} s  poweroff -f: QEMU exited ({status})",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Some(qemu::ConsoleEvent::Exited(status)) => {
                return Err(format!("QEMU exited with {status} after poweroff -f"));
            }
            None => {
                return Err(format!(
                    "QEMU still running 60 s after poweroff -f:\n{}",
                    tail(console)
                ));
            }
        }
    }
}

/// `cargo xtask payload`.
pub fn run(args: &PayloadArgs) -> Result<ExitCode, String> {
    let payload = ensure(args.refresh)?;
    if args.boot || args.shell {
        let qemu = setup::ensure_qemu()?;
        if args.shell {
            println!("==> booting the guest directly; Ctrl-A X quits QEMU, `poweroff -f` too");
            let mut session =
                qemu::Session::start(direct_command(&qemu, &payload, &args.append), true)?;
            let forever = Instant::now() + Duration::from_secs(365 * 24 * 3600);
            while let Some(qemu::ConsoleEvent::Line(_)) = session.next_event(forever) {}
        } else {
            check_direct_boot(&qemu, &payload, &args.append)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_header(magic: u32, text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[0..2].copy_from_slice(b"MZ");
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(&magic.to_le_bytes());
        h
    }

    #[test]
    fn image_header_checks() {
        let good = image_header(ARM64_MAGIC, 0, 0x2b2_0000, 0b1010);
        assert_eq!(
            parse_image_header(&good).unwrap(),
            ImageInfo {
                text_offset: 0,
                image_size: 0x2b2_0000,
                page_size_kib: 4
            }
        );
        assert_eq!(&good[0x38..0x3c], b"ARMd");
        assert!(parse_image_header(&image_header(0x1234, 0, 1, 0)).is_err());
        assert!(parse_image_header(&image_header(ARM64_MAGIC, 0, 1, 1)).is_err());
        assert!(parse_image_header(&image_header(ARM64_MAGIC, 0, 0, 0)).is_err());
        assert!(parse_image_header(&image_header(ARM64_MAGIC, 2 << 20, 1, 0)).is_err());
        assert!(parse_image_header(&good[..63]).is_err());
    }

    #[test]
    fn gzip_vmlinuz_is_unpacked() {
        use std::io::Write;
        let mut image = image_header(ARM64_MAGIC, 0x8_0000, 4096, 2);
        image.resize(4096, 0xaa);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&image).unwrap();
        let packed = gz.finish().unwrap();
        assert_eq!(kernel_image(packed).unwrap(), image);
        assert_eq!(kernel_image(image.clone()).unwrap(), image);
        assert!(kernel_image(b"\x1f\x8bnot gzip".to_vec()).is_err());
    }

    fn elf(machine: u16, interp: bool) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 2 * 56];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[18..20].copy_from_slice(&machine.to_le_bytes());
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&2u16.to_le_bytes());
        e[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        let second: u32 = if interp { 3 } else { 1 };
        e[120..124].copy_from_slice(&second.to_le_bytes());
        e
    }

    #[test]
    fn busybox_must_be_static_arm64() {
        assert!(check_static_aarch64(&elf(183, false)).is_ok());
        assert!(check_static_aarch64(&elf(183, true)).is_err());
        assert!(check_static_aarch64(&elf(62, false)).is_err());
        assert!(check_static_aarch64(b"#!/bin/sh\n").is_err());
        let mut truncated = elf(183, false);
        truncated.truncate(100);
        assert!(check_static_aarch64(&truncated).is_err());
    }

    #[test]
    fn initramfs_layout() {
        let archive = initramfs_archive(b"BUSYBOX".to_vec()).unwrap();
        let entries = cpio::tests::read(&archive).unwrap();
        let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
        assert_eq!(get("init").mode, cpio::S_IFREG | 0o755);
        assert!(get("init").data.starts_with(b"#!/bin/sh\n"));
        assert!(String::from_utf8_lossy(&get("init").data).contains(MARKER));
        assert_eq!(get("bin/busybox").data, b"BUSYBOX");
        assert_eq!(get("bin/sh").mode, cpio::S_IFLNK | 0o777);
        assert_eq!(get("bin/sh").data, b"busybox");
        assert_eq!(get("dev/console").rdev, (5, 1));
        assert_eq!(get("dev/console").mode & 0o170000, cpio::S_IFCHR);
        // Parents come before children, as the kernel creates them in order.
        for (i, e) in entries.iter().enumerate() {
            if let Some((parent, _)) = e.name.rsplit_once('/') {
                assert!(entries[..i].iter().any(|p| p.name == parent), "{}", e.name);
            }
        }
    }

    #[test]
    fn kernel_dependency_from_metapackage() {
        let record = "Package: linux-image-arm64\nVersion: 6.12.95-1~bpo12+1\n\
                      Depends: linux-image-6.12.95+deb12-arm64 (= 6.12.95-1~bpo12+1)\n";
        assert_eq!(
            kernel_dependency(record).unwrap(),
            "linux-image-6.12.95+deb12-arm64"
        );
        assert!(kernel_dependency("Package: x\nDepends: kmod\n").is_err());
        assert!(kernel_dependency("Package: x\n").is_err());
    }
}
