//! `cargo xtask`: builds the images, boots them in QEMU, runs the tests.
//!
//! Everything a developer or CI does goes through here (started by `./x`,
//! which first installs the pinned toolchain), so a fresh machine needs only
//! `./x run` or `./x test`: missing Rust targets and components are added
//! through rustup and a missing or too old QEMU is installed through apt
//! (or the exact command to run is printed).

mod apt;
mod bench;
mod bench_boot;
mod build;
mod bundle;
mod cpio;
mod loc;
mod payload;
mod plot;
mod profile;
mod qemu;
mod setup;
mod test;
mod toolchain;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, run and test Skyscope",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the root task and the kernel image (arm64).
    Build,
    /// Build and boot the system in QEMU with the console on this terminal.
    Run(RunArgs),
    /// Run host tests, lints and every QEMU scenario whose name contains FILTER.
    Test(TestArgs),
    /// Check for (and install if needed) the Rust targets and components and QEMU.
    Setup,
    /// Run a benchmark (`ipc`): JSON in target/bench/, a table on the terminal.
    Bench(BenchArgs),
    /// Where the instructions of one benchmark case go (instruction trace, per symbol).
    Profile(ProfileArgs),
    /// The long form of a fuzzer (`syscalls`: the in-kernel syscall fuzzer).
    Fuzz(FuzzArgs),
    /// Lines of code per crate: the trusted kernel apart, tests excluded.
    Loc(loc::LocArgs),
    /// Fetch the Linux guest (Debian arm64 kernel, busybox initramfs) into .cache/guest.
    Payload(PayloadArgs),
}

/// Options of `cargo xtask run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Stop QEMU after this many seconds and exit non-zero.
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Exit 0 as soon as a console line matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    expect: Option<String>,
    /// Start QEMU's gdbstub on tcp::1234 with the CPU paused at the first instruction.
    #[arg(long)]
    gdb: bool,
    /// The guest kernel's command line (default `console=ttyAMA0`); with
    /// `--native`, extra words for Skyscope's own command line (e.g.
    /// `test=boot::root_task_runs`).
    #[arg(long, value_name = "ARGS", default_value = "")]
    append: String,
    /// Hand a file to the root task as a boot module (repeatable).
    #[arg(long, value_name = "NAME=PATH")]
    module: Vec<String>,
    /// Run the Linux guest payload (`cargo xtask payload`: Debian's arm64
    /// kernel and the busybox initramfs) under a VMM process: what `run`
    /// does unless told `--native` or `--kernel` (kept for scripts).
    #[arg(long, conflicts_with = "native")]
    guest: bool,
    /// Boot Skyscope without a guest: the root task alone (it echoes what
    /// is typed and prints the audit stream).
    #[arg(long)]
    native: bool,
    /// Run this arm64 Linux `Image` as a guest under a VMM process.
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["guest", "native"])]
    kernel: Option<std::path::PathBuf>,
    /// The guest's initramfs (with `--kernel`).
    #[arg(long, value_name = "FILE", requires = "kernel")]
    initrd: Option<std::path::PathBuf>,
    /// The guest's vCPUs, 1 to 4 (with `--kernel` or `--guest`).
    #[arg(long, value_name = "N")]
    vcpus: Option<u8>,
    /// The guest's RAM, e.g. `512M` or `1G` (with `--kernel` or `--guest`).
    #[arg(long, value_name = "SIZE")]
    guest_mem: Option<String>,
}

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Which benchmark: `ipc` (IPC, guest exits and the other kernel
    /// paths), or `boot` (the Linux payload to init under the VMM and
    /// directly under QEMU).
    #[arg(value_parser = ["ipc", "boot"])]
    which: String,
    /// Samples per metric (after warm-up), for `ipc`.
    #[arg(long, default_value_t = 10_000)]
    iterations: usize,
    /// Only the cases whose name is this or starts with it and a `/`
    /// (e.g. `ipc/same`, `guest`).
    #[arg(long, default_value = "")]
    case: String,
    /// The kernel's hardening profile.
    #[arg(long, value_enum, default_value = "standard")]
    profile: build::Profile,
    /// Boots of each kind, for `boot`.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Options of `cargo xtask profile`.
#[derive(clap::Args)]
pub struct ProfileArgs {
    /// Which benchmark: `ipc`.
    #[arg(value_parser = ["ipc"])]
    which: String,
    /// The case to trace (see `cargo xtask bench`'s table).
    #[arg(long, default_value = "ipc/same/0")]
    case: String,
    /// Samples traced (after the benchmark's warm-up).
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// The kernel's hardening profile.
    #[arg(long, value_enum, default_value = "standard")]
    profile: build::Profile,
    /// Keep the trace (target/profile/trace.log) after the analysis.
    #[arg(long)]
    keep_trace: bool,
}

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Which fuzzer: `syscalls`.
    #[arg(value_parser = ["syscalls"])]
    which: String,
    /// Number of random invocations.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Seed (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
}

/// Options of `cargo xtask payload`.
#[derive(clap::Args)]
pub struct PayloadArgs {
    /// Look for newer packages even if the cache is complete.
    #[arg(long)]
    refresh: bool,
    /// Then boot it directly under QEMU and check init, the shell, Ctrl-C and poweroff.
    #[arg(long, conflicts_with = "shell")]
    boot: bool,
    /// Then boot it directly under QEMU with the console on this terminal.
    #[arg(long)]
    shell: bool,
    /// Extra guest kernel command-line words (after `console=ttyAMA0 panic=-1`).
    #[arg(long, value_name = "ARGS", default_value = "")]
    append: String,
}

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Only run tests whose name contains this text.
    filter: Option<String>,
    /// List the tests instead of running them.
    #[arg(long)]
    list: bool,
    /// Boot the matching QEMU scenarios on the hardened kernel instead of
    /// the dev one (those that need the debug capability are skipped).
    #[arg(long)]
    hardened: bool,
}

/// `cargo xtask fuzz syscalls`: one long boot of the `fuzz::syscalls` scenario.
fn fuzz_syscalls(args: &FuzzArgs) -> Result<ExitCode, String> {
    debug_assert_eq!(args.which, "syscalls");
    toolchain::ensure()?;
    let qemu = setup::ensure_qemu()?;
    let images = build::build_images_with(build::Profile::Dev)?;
    let scenario =
        skyscope_tests::find("fuzz::syscalls").ok_or("fuzz::syscalls is not in the catalog")?;
    let mut extra = format!("fuzz_count={}", args.count);
    if let Some(seed) = args.seed {
        extra.push_str(&format!(" fuzz_seed={seed}"));
    }
    // About 25 s per 100,000 invocations here; the scenario gives up at
    // 60 s per 100,000 (plus 60 s), this a minute later.
    let timeout = 120 + args.count / 100_000 * 60;
    println!(
        "==> fuzzing {} invocations (timeout {timeout} s)",
        args.count
    );
    let verdict = test::run_scenario_with(&qemu, &images.kernel, scenario, &extra, timeout);
    let log = build::target_dir().join("xtask-logs/fuzz__syscalls.log");
    if let Ok(text) = std::fs::read_to_string(&log) {
        for line in text.lines().filter(|l| l.starts_with("  fuzz:")) {
            println!("{line}");
        }
    }
    match verdict {
        test::Verdict::Pass(_) => {
            println!("fuzz::syscalls passed");
            Ok(ExitCode::SUCCESS)
        }
        test::Verdict::Fail(why) | test::Verdict::Skip(why) => {
            Err(format!("fuzz::syscalls failed: {why}"))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build => toolchain::ensure()
            .and_then(|()| build::build_images())
            .map(|images| {
                println!("kernel image: {}", images.kernel.display());
                ExitCode::SUCCESS
            }),
        Command::Run(args) => qemu::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Bench(args) if args.which == "boot" => bench_boot::run(args.runs),
        Command::Bench(args) => bench::run(&args),
        Command::Profile(args) => profile::run(&args),
        Command::Fuzz(args) => fuzz_syscalls(&args),
        Command::Payload(args) => payload::run(&args),
        Command::Loc(args) => loc::run(&args),
        Command::Setup => toolchain::ensure()
            .and_then(|()| setup::ensure_qemu())
            .map(|qemu| {
                println!("ready: {} ({})", qemu.path, qemu.version);
                ExitCode::SUCCESS
            }),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
