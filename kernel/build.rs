//! Build script: links the kernel with its linker script and embeds the
//! root-task ELF named by `SKYSCOPE_ROOT_TASK_ELF` (set by `cargo xtask`).

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    let script = manifest.join("src/arch").join(&target_arch).join("link.ld");
    if script.exists() {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rerun-if-changed={}", script.display());
    }

    // The root task is a separate user-space ELF built first by the xtask.
    // Without it (e.g. `cargo clippy` on the kernel alone) an empty image is
    // embedded and the kernel reports at boot that there is no root task.
    println!("cargo:rerun-if-env-changed=SKYSCOPE_ROOT_TASK_ELF");
    let image = match env::var("SKYSCOPE_ROOT_TASK_ELF") {
        Ok(path) if !path.is_empty() => {
            println!("cargo:rerun-if-changed={path}");
            PathBuf::from(path)
        }
        _ => {
            let empty = PathBuf::from(env::var("OUT_DIR").unwrap()).join("no-root-task.elf");
            fs::write(&empty, []).unwrap();
            empty
        }
    };
    println!("cargo:rustc-env=SKYSCOPE_ROOT_TASK_ELF={}", image.display());
}
