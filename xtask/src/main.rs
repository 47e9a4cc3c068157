//! `cargo xtask`: builds the images, boots them in QEMU, runs the tests.
//!
//! Everything a developer or CI does goes through here, so a fresh machine
//! needs only `cargo xtask run` or `cargo xtask test`: missing Rust targets
//! are installed through rustup and a missing or too old QEMU through apt
//! (or the exact command to run is printed).

mod bench;
mod build;
mod qemu;
mod setup;
mod test;

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
    /// Check for (and install if needed) QEMU and the Rust targets.
    Setup,
    /// Run a benchmark (`ipc`): JSON in target/bench/, a table on the terminal.
    Bench(BenchArgs),
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
    /// Extra kernel command-line words (e.g. `test=boot::root_task_runs`).
    #[arg(long, value_name = "ARGS", default_value = "")]
    append: String,
}

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Which benchmark: `ipc`.
    #[arg(value_parser = ["ipc"])]
    which: String,
    /// Samples per metric (after warm-up).
    #[arg(long, default_value_t = 10_000)]
    iterations: usize,
}

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Only run tests whose name contains this text.
    filter: Option<String>,
    /// List the tests instead of running them.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build => setup::ensure_rust_targets()
            .and_then(|()| build::build_images())
            .map(|images| {
                println!("kernel image: {}", images.kernel.display());
                ExitCode::SUCCESS
            }),
        Command::Run(args) => qemu::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Setup => setup::ensure_rust_targets()
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
