//! Builds the boot image: the VMM program first, then the root task that
//! embeds it, then the kernel that embeds the root task. Two root tasks
//! exist: the production one (`images/roottask`, what `run` boots) and
//! the test image's (`images/testroot`, which carries the scenarios and
//! the IPC benchmark); each kernel built around one is kept under
//! `target/images/`.

use crate::setup::{run_command, workspace_root};
use std::{path::PathBuf, process::Command};

/// Target triple of the arm64 kernel (no FP/SIMD in the kernel itself).
pub const KERNEL_TARGET: &str = "aarch64-unknown-none-softfloat";
/// Target triple of arm64 user-space programs.
pub const USER_TARGET: &str = "aarch64-unknown-none";

/// Paths of the built images.
pub struct Images {
    /// The kernel ELF (with the root task inside), for QEMU's `-kernel`.
    pub kernel: PathBuf,
    /// The root task ELF (embedded in the kernel; for its symbols).
    pub root_task: PathBuf,
}

/// The `cargo` that runs this xtask.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// Where cargo puts build output.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds the VMM program, the production root task and the kernel
/// (release profile: optimised, with debug info and overflow checks) and
/// returns the kernel's path.
pub fn build_images() -> Result<Images, String> {
    build_images_for(Profile::Standard, RootTask::Production)
}

/// Which root task the kernel embeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootTask {
    /// `images/roottask`: starts the Linux guest; no test code.
    Production,
    /// `images/testroot`: the in-QEMU scenarios and the IPC benchmark.
    Tests,
}

impl RootTask {
    fn package(self) -> &'static str {
        match self {
            RootTask::Production => "skyscope-roottask",
            RootTask::Tests => "skyscope-testroot",
        }
    }
}

/// The test image (the scenarios' root task) with the kernel in `profile`.
pub fn build_images_with(profile: Profile) -> Result<Images, String> {
    build_images_for(profile, RootTask::Tests)
}

/// A hardening profile of the kernel (cargo features of skyscope-kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Debug checks on every return to user space.
    Dev,
    /// The default.
    Standard,
    /// Scrubs memory of destroyed objects.
    Hardened,
}

impl Profile {
    /// The cargo feature.
    pub fn feature(self) -> &'static str {
        match self {
            Profile::Dev => "dev",
            Profile::Standard => "standard",
            Profile::Hardened => "hardened",
        }
    }
}

/// Builds the images with the kernel in `profile` around `root`.
pub fn build_images_for(profile: Profile, root: RootTask) -> Result<Images, String> {
    println!("==> building the VMM program ({USER_TARGET}, release)");
    run_command(cargo().args([
        "build",
        "--release",
        "-p",
        "skyscope-vmm-process",
        "--target",
        USER_TARGET,
    ]))?;
    let vmm = target_dir()
        .join(USER_TARGET)
        .join("release/skyscope-vmm-process");

    println!(
        "==> building the root task {} ({USER_TARGET}, release)",
        root.package()
    );
    run_command(
        cargo()
            .args([
                "build",
                "--release",
                "-p",
                root.package(),
                "--target",
                USER_TARGET,
            ])
            .env("SKYSCOPE_VMM_ELF", &vmm),
    )?;
    let root_task = target_dir()
        .join(USER_TARGET)
        .join("release")
        .join(root.package());

    println!(
        "==> building the kernel ({KERNEL_TARGET}, release, {} profile)",
        profile.feature()
    );
    run_command(
        cargo()
            .args([
                "build",
                "--release",
                "-p",
                "skyscope-kernel",
                "--target",
                KERNEL_TARGET,
            ])
            .args(["--no-default-features", "--features", profile.feature()])
            .env("SKYSCOPE_ROOT_TASK_ELF", &root_task),
    )?;
    // The next build (around the other root task, or in another
    // profile) overwrites cargo's output: keep a copy per combination.
    let built = target_dir()
        .join(KERNEL_TARGET)
        .join("release/skyscope-kernel");
    let kept = target_dir().join("images").join(format!(
        "skyscope-kernel-{}-{}",
        match root {
            RootTask::Production => "system",
            RootTask::Tests => "tests",
        },
        profile.feature()
    ));
    std::fs::create_dir_all(kept.parent().unwrap_or(&built))
        .and_then(|()| std::fs::copy(&built, &kept))
        .map_err(|e| format!("cannot keep the kernel image at {}: {e}", kept.display()))?;
    Ok(Images {
        kernel: kept,
        root_task,
    })
}
