//! A writer of `newc` cpio archives (its tests read them back), the format of a Linux initramfs.
//!
//! Written here rather than run through `cpio` because a fresh Debian or
//! Ubuntu machine has no `cpio` program, and the format is small: each
//! member is a 110-byte ASCII header ("070701" and thirteen 8-digit hex
//! fields), the NUL-terminated name padded to a multiple of 4 bytes
//! (counting from the header's start), then the data padded to 4 bytes; a
//! member named `TRAILER!!!` ends the archive (the kernel's
//! `init/initramfs.c` and `Documentation/driver-api/early-userspace/buffer-format.rst`).

/// File type bits of `st_mode`.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link (the data is the target).
pub const S_IFLNK: u32 = 0o120000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";

/// One member of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path without a leading `/` (the kernel unpacks relative to `/`).
    pub name: String,
    /// Type and permission bits.
    pub mode: u32,
    /// Device number (major, minor) for device nodes, else (0, 0).
    pub rdev: (u32, u32),
    /// File contents, or a symbolic link's target.
    pub data: Vec<u8>,
}

impl Entry {
    /// A directory.
    pub fn dir(name: &str, perm: u32) -> Entry {
        Entry::new(name, S_IFDIR | perm, Vec::new())
    }
    /// A regular file.
    pub fn file(name: &str, perm: u32, data: Vec<u8>) -> Entry {
        Entry::new(name, S_IFREG | perm, data)
    }
    /// A symbolic link to `target`.
    pub fn symlink(name: &str, target: &str) -> Entry {
        Entry::new(name, S_IFLNK | 0o777, target.as_bytes().to_vec())
    }
    /// A character device node.
    pub fn char_device(name: &str, perm: u32, major: u32, minor: u32) -> Entry {
        Entry {
            rdev: (major, minor),
            ..Entry::new(name, S_IFCHR | perm, Vec::new())
        }
    }
    fn new(name: &str, mode: u32, data: Vec<u8>) -> Entry {
        Entry {
            name: name.trim_start_matches('/').to_string(),
            mode,
            rdev: (0, 0),
            data,
        }
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn header(out: &mut Vec<u8>, ino: u32, entry: &Entry, nlink: u32) -> Result<(), String> {
    let size = u32::try_from(entry.data.len())
        .map_err(|_| format!("{} is larger than 4 GiB", entry.name))?;
    let namesize = u32::try_from(entry.name.len() + 1).map_err(|_| "name too long")?;
    out.extend_from_slice(MAGIC);
    // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
    // rdevmajor, rdevminor, namesize, check. Owner root and mtime 0 keep the
    // archive the same from run to run.
    for field in [
        ino,
        entry.mode,
        0,
        0,
        nlink,
        0,
        size,
        0,
        0,
        entry.rdev.0,
        entry.rdev.1,
        namesize,
        0,
    ] {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(entry.name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(&entry.data);
    pad4(out);
    Ok(())
}

/// Writes `entries` (parents before children) and the trailer as one
/// `newc` archive. Inode numbers count from 1; no member is a hard link.
pub fn write(entries: &[Entry]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if entry.name.is_empty() || entry.name == TRAILER {
            return Err(format!("invalid member name {:?}", entry.name));
        }
        let ino = u32::try_from(i + 1).map_err(|_| "too many members")?;
        let nlink = if entry.mode & 0o170000 == S_IFDIR {
            2
        } else {
            1
        };
        header(&mut out, ino, entry, nlink)?;
    }
    header(
        &mut out,
        0,
        &Entry {
            name: TRAILER.into(),
            mode: 0,
            rdev: (0, 0),
            data: Vec::new(),
        },
        1,
    )?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Reads a `newc` archive back (the members before the trailer), checking
    /// magic, padding and that nothing follows the trailer but zero bytes.
    pub fn read(archive: &[u8]) -> Result<Vec<Entry>, String> {
        let mut entries = Vec::new();
        let mut at = 0;
        loop {
            let head = archive
                .get(at..at + 110)
                .ok_or_else(|| format!("truncated header at {at}"))?;
            if &head[..6] != MAGIC {
                return Err(format!("bad magic at {at}"));
            }
            let field = |i: usize| {
                let text =
                    std::str::from_utf8(&head[6 + 8 * i..14 + 8 * i]).map_err(|e| e.to_string())?;
                u32::from_str_radix(text, 16).map_err(|e| format!("field {i} at {at}: {e}"))
            };
            let (mode, size, namesize) = (field(1)?, field(6)? as usize, field(11)? as usize);
            let (rdev, check) = ((field(9)?, field(10)?), field(12)?);
            if check != 0 {
                return Err(format!("non-zero check field at {at}"));
            }
            let name_at = at + 110;
            let name = archive
                .get(name_at..name_at + namesize)
                .ok_or("truncated name")?;
            let (name, nul) = name.split_at(namesize.checked_sub(1).ok_or("empty name field")?);
            if nul != [0] {
                return Err(format!("name at {name_at} is not NUL-terminated"));
            }
            let name = String::from_utf8(name.to_vec()).map_err(|e| e.to_string())?;
            let data_at = (name_at + namesize).next_multiple_of(4);
            if archive[name_at + namesize..data_at].iter().any(|&b| b != 0) {
                return Err(format!("non-zero name padding after {name}"));
            }
            let data = archive
                .get(data_at..data_at + size)
                .ok_or_else(|| format!("truncated data of {name}"))?;
            at = (data_at + size).next_multiple_of(4);
            if archive
                .get(data_at + size..at)
                .is_none_or(|p| p.iter().any(|&b| b != 0))
            {
                return Err(format!("bad data padding after {name}"));
            }
            if name == TRAILER {
                if archive[at..].iter().any(|&b| b != 0) {
                    return Err("data after the trailer".into());
                }
                return Ok(entries);
            }
            entries.push(Entry {
                name,
                mode,
                rdev,
                data: data.to_vec(),
            });
        }
    }

    fn hex_field(archive: &[u8], at: usize, i: usize) -> u32 {
        u32::from_str_radix(
            std::str::from_utf8(&archive[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap(),
            16,
        )
        .unwrap()
    }

    #[test]
    fn header_fields_and_padding() {
        let archive = write(&[Entry::file("/a", 0o644, b"hello".to_vec())]).unwrap();
        assert_eq!(&archive[..6], b"070701");
        assert_eq!(hex_field(&archive, 0, 0), 1, "ino");
        assert_eq!(hex_field(&archive, 0, 1), S_IFREG | 0o644, "mode");
        assert_eq!(hex_field(&archive, 0, 4), 1, "nlink");
        assert_eq!(hex_field(&archive, 0, 6), 5, "filesize");
        assert_eq!(hex_field(&archive, 0, 11), 2, "namesize counts the NUL");
        // 110 + "a\0" = 112 (aligned), data 5 bytes padded to 8.
        assert_eq!(&archive[110..112], b"a\0");
        assert_eq!(&archive[112..117], b"hello");
        assert_eq!(&archive[117..120], &[0, 0, 0]);
        // Trailer at 120: name "TRAILER!!!\0" (11) -> 110 + 11 = 121 -> 124.
        assert_eq!(&archive[120..126], b"070701");
        assert_eq!(hex_field(&archive, 120, 11), 11);
        assert_eq!(&archive[230..241], b"TRAILER!!!\0");
        assert_eq!(archive.len(), 244);
        assert_eq!(archive.len() % 4, 0);
    }

    #[test]
    fn every_member_starts_aligned() {
        // Names of every length mod 4 and data of every length mod 4.
        let entries: Vec<_> = (0..8)
            .map(|i| Entry::file(&"n".repeat(i + 1), 0o600, vec![b'x'; i]))
            .collect();
        let archive = write(&entries).unwrap();
        let mut at = 0;
        for e in &entries {
            assert_eq!(at % 4, 0);
            assert_eq!(&archive[at..at + 6], b"070701");
            let name_end = at + 110 + e.name.len() + 1;
            at = (name_end.next_multiple_of(4) + e.data.len()).next_multiple_of(4);
        }
        assert_eq!(&archive[at + 110..at + 120], b"TRAILER!!!");
    }

    #[test]
    fn round_trip() {
        let entries = vec![
            Entry::dir("dev", 0o755),
            Entry::char_device("dev/console", 0o600, 5, 1),
            Entry::dir("bin", 0o755),
            Entry::file("bin/busybox", 0o755, (0..=255).collect()),
            Entry::symlink("bin/sh", "busybox"),
            Entry::file("init", 0o755, b"#!/bin/sh\n".to_vec()),
        ];
        let archive = write(&entries).unwrap();
        assert_eq!(read(&archive).unwrap(), entries);
        // The kernel accepts archives followed by zero padding.
        let mut padded = archive.clone();
        padded.extend_from_slice(&[0; 512]);
        assert_eq!(read(&padded).unwrap(), entries);
    }

    #[test]
    fn reader_rejects_damage() {
        let archive = write(&[Entry::file("f", 0o644, b"abc".to_vec())]).unwrap();
        let mut bad_magic = archive.clone();
        bad_magic[5] = b'2';
        assert!(read(&bad_magic).is_err());
        assert!(read(&archive[..archive.len() - 4]).is_err(), "no trailer");
        let mut trailing = archive.clone();
        trailing.extend_from_slice(b"junk");
        assert!(read(&trailing).is_err());
    }

    #[test]
    fn refuses_reserved_names() {
        assert!(write(&[Entry::dir("TRAILER!!!", 0o755)]).is_err());
        assert!(write(&[Entry::dir("/", 0o755)]).is_err());
    }
}
