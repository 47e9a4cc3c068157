//! Build script: names the VMM program's ELF that the launcher embeds,
//! from `SKYSCOPE_VMM_ELF` (set by `cargo xtask`).

use std::{env, fs, path::PathBuf};

fn main() {
    // The VMM program is built first by the xtask. Without it (e.g.
    // `cargo clippy` on this crate alone, or a host build) an empty image
    // is named, and starting a VMM fails saying so.
    println!("cargo:rerun-if-env-changed=SKYSCOPE_VMM_ELF");
    let image = match env::var("SKYSCOPE_VMM_ELF") {
        Ok(path) if !path.is_empty() => {
            println!("cargo:rerun-if-changed={path}");
            PathBuf::from(path)
        }
        _ => {
            let empty = PathBuf::from(env::var("OUT_DIR").unwrap()).join("no-vmm.elf");
            fs::write(&empty, []).unwrap();
            empty
        }
    };
    println!("cargo:rustc-env=SKYSCOPE_VMM_ELF={}", image.display());
}
