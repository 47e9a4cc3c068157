//! Boot-module bundles: files packed for the kernel (format:
//! `skyscope_abi::bundle`), and where QEMU's generic loader puts them.
//!
//! Placement: QEMU `virt` RAM starts at 1 GiB; for an ELF kernel QEMU puts
//! the device tree at its start, and the kernel is linked 2 MiB above it
//! (`kernel/src/arch/aarch64/link.ld`) and occupies a few MiB. Runs with
//! modules get [`MEMORY`] (2 GiB, RAM up to 3 GiB) and the bundle goes at
//! [`ADDRESS`] (2 GiB): far above the kernel, 2 MiB aligned, below the
//! 4 GiB the kernel's boot map reaches when it reads the header, with
//! 1 GiB for modules above it and 1 GiB of RAM below it for the system.

use skyscope_abi::bundle::{self as format, HEADER_READ_SIZE};
use skyscope_tests::{BootModules, modules::PatternModule};
use std::{
    fs::{self, File},
    io::{BufWriter, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

/// Where the bundle is loaded (physical address; `modules=` on the kernel
/// command line).
pub const ADDRESS: u64 = 0x8000_0000;
/// RAM of a run with modules (QEMU `-m`).
pub const MEMORY: &str = "2G";
/// End of that RAM: `virt` RAM starts at 1 GiB.
const RAM_END: u64 = 0x4000_0000 + (2 << 30);

/// A bundle on disk, for [`crate::qemu::machine_command`].
#[derive(Clone, Debug)]
pub struct Bundle {
    /// The file.
    pub path: PathBuf,
}

/// Where generated bundles go.
fn dir() -> PathBuf {
    crate::build::target_dir().join("modules")
}

/// Writes a bundle of the files named `(module name, path)`, in this
/// order, to `out`.
pub fn write(out: &Path, modules: &[(&str, &Path)]) -> Result<Bundle, String> {
    let mut sizes = Vec::new();
    for (name, path) in modules {
        let size = fs::metadata(path)
            .map_err(|e| format!("module {name}: {}: {e}", path.display()))?
            .len();
        sizes.push((*name, size));
    }
    write_with(out, &sizes, |i, file| {
        let (_, path) = modules[i];
        let mut input = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::io::copy(&mut input, file).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(())
    })
}

/// Writes a bundle of modules with these `(name, size)`s to `out`; `fill`
/// writes module `i`'s bytes at the current position of the file.
fn write_with(
    out: &Path,
    modules: &[(&str, u64)],
    mut fill: impl FnMut(usize, &mut BufWriter<File>) -> Result<(), String>,
) -> Result<Bundle, String> {
    let layout = format::layout(modules).map_err(|e| format!("cannot bundle the modules: {e}"))?;
    if ADDRESS + layout.total_size > RAM_END {
        return Err(format!(
            "a bundle of {} MiB does not fit between {ADDRESS:#x} and the end of {MEMORY} of RAM",
            layout.total_size >> 20
        ));
    }
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let file = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut file = BufWriter::with_capacity(1 << 20, file);
    let io = |e: std::io::Error| format!("{}: {e}", out.display());
    let mut header = vec![0u8; HEADER_READ_SIZE];
    layout
        .encode(&mut header)
        .ok_or("bundle header larger than a page")?;
    file.write_all(&header).map_err(io)?;
    let mut at = header.len() as u64;
    for (i, m) in layout.modules().iter().enumerate() {
        pad(&mut file, m.offset - at).map_err(io)?;
        fill(i, &mut file)?;
        file.flush().map_err(io)?;
        let written = file.get_mut().stream_position().map_err(io)? - m.offset;
        if written != m.size {
            return Err(format!(
                "module {} changed size while bundling ({written} bytes, not {})",
                m.name(),
                m.size
            ));
        }
        at = m.offset + m.size;
    }
    // Zeros to the end, so the last frame of every module is zero past it.
    pad(&mut file, layout.total_size - at).map_err(io)?;
    file.flush().map_err(io)?;
    debug_assert_eq!(
        file.get_mut().seek(SeekFrom::End(0)).ok(),
        Some(layout.total_size)
    );
    Ok(Bundle {
        path: out.to_path_buf(),
    })
}

fn pad(file: &mut impl Write, mut n: u64) -> std::io::Result<()> {
    let zeros = [0u8; 1 << 16];
    while n > 0 {
        let k = n.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// Writes `module`'s pattern (`skyscope_tests::modules::pattern_word`).
fn write_pattern(module: &PatternModule, file: &mut impl Write) -> std::io::Result<()> {
    let mut chunk = Vec::with_capacity(1 << 20);
    let words = module.size.div_ceil(8);
    let mut word = 0;
    while word < words {
        chunk.clear();
        let end = (word + (1 << 17)).min(words);
        for i in word..end {
            chunk.extend_from_slice(
                &skyscope_tests::modules::pattern_word(module.seed, i).to_le_bytes(),
            );
        }
        if end == words {
            chunk.truncate(chunk.len() - (words * 8 - module.size) as usize);
        }
        file.write_all(&chunk)?;
        word = end;
    }
    Ok(())
}

/// Bundles already written by this process (scenarios share them).
static WRITTEN: Mutex<Vec<(BootModules, PathBuf)>> = Mutex::new(Vec::new());

/// The bundle a scenario boots with (written on first use), or `None`.
pub fn for_scenario(kind: BootModules) -> Result<Option<Bundle>, String> {
    let name = match kind {
        BootModules::None => return Ok(None),
        BootModules::Pattern => "pattern.bundle",
        BootModules::CorruptHeader => "corrupt.bundle",
        BootModules::LinuxGuest => "linux.bundle",
    };
    let mut written = WRITTEN.lock().map_err(|_| "bundle cache poisoned")?;
    if let Some((_, path)) = written.iter().find(|(k, _)| *k == kind) {
        return Ok(Some(Bundle { path: path.clone() }));
    }
    if kind == BootModules::LinuxGuest {
        // The payload `cargo xtask payload` fetches (once; cached after).
        let guest = crate::payload::ensure(false)?;
        let path = dir().join(name);
        let bundle = write(
            &path,
            &[("linux", &guest.image), ("initrd", &guest.initramfs)],
        )?;
        written.push((kind, path));
        return Ok(Some(bundle));
    }
    let path = dir().join(name);
    // The damaged header needs no large module behind it.
    let modules: &[PatternModule] = match kind {
        BootModules::CorruptHeader => &[skyscope_tests::modules::SMALL],
        _ => &skyscope_tests::modules::PATTERN_MODULES,
    };
    let sizes: Vec<(&str, u64)> = modules.iter().map(|m| (m.name, m.size)).collect();
    let bundle = write_with(&path, &sizes, |i, file| {
        write_pattern(&modules[i], file).map_err(|e| format!("{}: {e}", path.display()))
    })?;
    if kind == BootModules::CorruptHeader {
        corrupt(&path)?;
    }
    written.push((kind, path));
    Ok(Some(bundle))
}

/// Moves the first module's offset off its 2 MiB boundary in the header.
fn corrupt(path: &Path) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut header = vec![0u8; HEADER_READ_SIZE];
    file.read_exact(&mut header).map_err(io)?;
    // Fixed header (24 bytes), then the entry's name (32 bytes) and offset.
    let at = 24 + 32;
    let offset = u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
    header[at..at + 8].copy_from_slice(&(offset + 4096).to_le_bytes());
    if !matches!(
        format::parse(&header),
        Err(format::BundleError::Misaligned(0))
    ) {
        return Err("the corrupted test header is not refused as intended".into());
    }
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(&header).map_err(io)
}

/// The bundle for `cargo xtask run --module NAME=PATH`s.
pub fn for_run(modules: &[(String, PathBuf)]) -> Result<Bundle, String> {
    let list: Vec<(&str, &Path)> = modules
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_path()))
        .collect();
    let bundle = write(&dir().join("run.bundle"), &list)?;
    for (name, path) in &list {
        println!("    module {name}: {}", path.display());
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyscope_abi::bundle::MODULE_ALIGN;

    #[test]
    fn written_bundles_parse_and_hold_the_files() {
        let dir = std::env::temp_dir().join(format!("skyscope-bundle-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a");
        let b = dir.join("b");
        fs::write(&a, vec![0xa5u8; 3 << 20]).unwrap();
        fs::write(&b, b"initrd").unwrap();
        let out = dir.join("x.bundle");
        write(&out, &[("linux", &a), ("initrd", &b)]).unwrap();
        let bytes = fs::read(&out).unwrap();
        let parsed = format::parse(&bytes[..HEADER_READ_SIZE]).unwrap();
        assert_eq!(bytes.len() as u64, parsed.total_size);
        let m = parsed.modules();
        assert_eq!(
            (m[0].name(), m[0].offset, m[0].size),
            ("linux", MODULE_ALIGN, 3 << 20)
        );
        assert_eq!(
            (m[1].name(), m[1].offset, m[1].size),
            ("initrd", 3 * MODULE_ALIGN, 6)
        );
        let at = |o: u64| o as usize;
        assert!(
            bytes[at(m[0].offset)..at(m[0].offset) + (3 << 20)]
                .iter()
                .all(|&x| x == 0xa5)
        );
        assert!(
            bytes[at(m[0].offset) + (3 << 20)..at(m[1].offset)]
                .iter()
                .all(|&x| x == 0)
        );
        assert_eq!(&bytes[at(m[1].offset)..at(m[1].offset) + 6], b"initrd");
        assert!(bytes[at(m[1].offset) + 6..].iter().all(|&x| x == 0));
        // A bundle too large for the RAM above ADDRESS is refused.
        let sizes = [("big", RAM_END - ADDRESS)];
        assert!(write_with(&dir.join("y"), &sizes, |_, _| Ok(())).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pattern_bytes_match_the_shared_definition() {
        let module = PatternModule {
            name: "p",
            size: 8 * 1000 + 3,
            seed: 42,
        };
        let mut bytes = Vec::new();
        write_pattern(&module, &mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, module.size);
        for (i, &b) in bytes.iter().enumerate() {
            assert_eq!(b, skyscope_tests::modules::pattern_byte(42, i as u64));
        }
    }
}
