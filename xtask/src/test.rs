//! `cargo xtask test`: host tests, lints and the in-QEMU scenarios, each a
//! named item with one verdict line, ending with `N passed, N failed`.

use crate::{TestArgs, build, bundle, qemu, setup, toolchain};
use regex::Regex;
use skyscope_tests::{CATALOG, Scenario, protocol};
use std::{
    fs,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

/// A test item that needs the nightly toolchain: its name and how to run it.
type NightlyItem = (&'static str, fn() -> Verdict);

/// Items that need the nightly toolchain (Miri, libFuzzer).
const NIGHTLY_ITEMS: [NightlyItem; 2] = [("host::miri", miri), ("fuzz::host_targets", host_fuzz)];

/// Items that boot QEMU themselves, run after the scenarios.
const QEMU_ITEMS: [NightlyItem; 1] = [("bench::budget", crate::bench::budget_check)];

/// Makes sure a nightly toolchain with `components` is installed; the
/// reason if it cannot be.
fn ensure_nightly(components: &[&str]) -> Result<(), String> {
    let installed = std::process::Command::new("rustup")
        .args(["+nightly", "component", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if components
        .iter()
        .all(|c| installed.lines().any(|l| l.starts_with(c)))
    {
        return Ok(());
    }
    println!("    installing the nightly toolchain with {components:?} through rustup");
    let status = std::process::Command::new("rustup")
        .args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
        ])
        .arg(components.join(","))
        .status()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("rustup could not install the nightly toolchain (offline?)".into())
    }
}

/// The core's test modules Miri runs: those whose code reaches unsafe
/// code on the host — the parsers of untrusted bytes (ELF through the
/// `elf` crate, the device tree, boot modules) and the byte layouts of
/// slots and capabilities (`zerocopy`'s derives) — and the object suites
/// that build every object type in that memory. The core itself is
/// `#![forbid(unsafe_code)]`: the rest of its suites (IPC, fastpath,
/// reference models; over 20 minutes under Miri on CI's 2 cores) check
/// nothing Miri adds to `host::unit_and_property_tests`.
const MIRI_CORE_MODULES: [&str; 11] = [
    "cap::",
    "addr::",
    "bootmodules::",
    "devicetree::",
    "elf::",
    "console::",
    "audit::",
    "cspace::",
    "memory::",
    "tests::objects::",
    "tests::vcpu::",
];

/// Miri over the ABI crate and the core modules above, property tests at
/// reduced size.
fn miri() -> Verdict {
    if let Err(why) = ensure_nightly(&["miri", "rust-src"]) {
        return Verdict::Skip(why);
    }
    let env = vec![
        ("MIRIFLAGS", "-Zmiri-disable-isolation"),
        ("PROPTEST_CASES", "2"),
    ];
    let abi = CargoCheck {
        name: "host::miri_abi",
        args: vec!["+nightly", "miri", "test", "-p", "skyscope-abi"],
        env: env.clone(),
    };
    let core = CargoCheck {
        name: "host::miri",
        args: [
            "+nightly",
            "miri",
            "test",
            "-p",
            "skyscope-core",
            "--lib",
            "--",
        ]
        .into_iter()
        .chain(MIRI_CORE_MODULES)
        .collect(),
        env,
    };
    match (run_cargo_check(&abi), run_cargo_check(&core)) {
        (Verdict::Pass(a), Verdict::Pass(c)) => Verdict::Pass(format!(
            "ABI {a}; core {c} in {}",
            MIRI_CORE_MODULES.join(" ")
        )),
        (Verdict::Pass(_), other) | (other, _) => other,
    }
}

/// Each host libFuzzer target for a few seconds (the long runs are in README).
fn host_fuzz() -> Verdict {
    if let Err(why) = ensure_nightly(&["rust-src"]) {
        return Verdict::Skip(why);
    }
    let has_cargo_fuzz = build::cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_fuzz {
        println!("    installing cargo-fuzz from crates.io");
        let installed = build::cargo()
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            return Verdict::Skip(
                "cargo-fuzz is not installed and `cargo install cargo-fuzz` failed".into(),
            );
        }
    }
    if let Err(why) = seed_devicetree_corpus().and_then(|()| seed_bundle_corpus()) {
        return Verdict::Fail(why);
    }
    let mut runs = Vec::new();
    for (dir, target) in FUZZ_TARGETS {
        let mut command = std::process::Command::new("cargo");
        command
            .current_dir(setup::workspace_root().join(dir))
            .args([
                "+nightly",
                "fuzz",
                "run",
                "-O",
                target,
                "--",
                "-max_total_time=5",
            ]);
        match command.output() {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stderr);
                let done = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Done "))
                    .unwrap_or("?")
                    .to_string();
                runs.push(format!("{target}: {done}"));
            }
            Ok(o) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                let log = log_path(&format!("fuzz__{target}"));
                let _ = fs::write(&log, &text);
                return Verdict::Fail(format!(
                    "fuzz target {target} failed; log: {}\n{}",
                    log.display(),
                    tail(&text, 30)
                ));
            }
            Err(e) => return Verdict::Fail(format!("cannot run cargo fuzz: {e}")),
        }
    }
    Verdict::Pass(runs.join("; "))
}

/// Seeds the device-tree target with the tree of the machine every boot
/// uses (QEMU's `dumpdtb`), so a short run mutates a real tree instead of
/// spending its seconds rediscovering the header magic.
fn seed_devicetree_corpus() -> Result<(), String> {
    let corpus = setup::workspace_root().join("kernel/core/fuzz/corpus/devicetree");
    let seed = corpus.join("qemu-virt.dtb");
    if seed.exists() {
        return Ok(());
    }
    fs::create_dir_all(&corpus).map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
    let qemu = setup::ensure_qemu()?;
    let command = qemu::machine_command(&qemu, Path::new("/dev/null"), "", None);
    let machine = command
        .get_args()
        .position(|a| a == "-machine")
        .map(|i| i + 1)
        .ok_or("machine_command has no -machine")?;
    let mut args: Vec<std::ffi::OsString> = command.get_args().map(Into::into).collect();
    let mut with_dump = args[machine].clone();
    with_dump.push(format!(",dumpdtb={}", seed.display()));
    args[machine] = with_dump;
    let status = std::process::Command::new(&qemu.path)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", qemu.path))?;
    let mut blob = fs::read(&seed).unwrap_or_default();
    if !status.success() || blob.len() < 40 {
        return Err(format!("{} could not dump the virt device tree", qemu.path));
    }
    // QEMU leaves 1 MiB of free space at the end of the blob; cut it off
    // (blocks end at the later of struct and strings) so inputs stay small.
    let word =
        |i: usize| u32::from_be_bytes([blob[i], blob[i + 1], blob[i + 2], blob[i + 3]]) as usize;
    let used = (word(8) + word(36))
        .max(word(12) + word(32))
        .min(blob.len());
    blob.truncate(used);
    blob[4..8].copy_from_slice(&(used as u32).to_be_bytes());
    fs::write(&seed, &blob).map_err(|e| format!("cannot write {}: {e}", seed.display()))
}

/// Seeds the bundle target with the pattern scenario's header placed as
/// the xtask places it (the first 64 bytes: the address, one RAM bank of
/// QEMU `virt` with 2 GiB, the device tree and kernel in use), so a short
/// run starts from headers and placements the kernel accepts.
fn seed_bundle_corpus() -> Result<(), String> {
    let corpus = setup::workspace_root().join("kernel/core/fuzz/corpus/bundle");
    let seed = corpus.join("pattern-at-2gib.bin");
    if seed.exists() {
        return Ok(());
    }
    fs::create_dir_all(&corpus).map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
    let modules = skyscope_tests::modules::PATTERN_MODULES.map(|m| (m.name, m.size));
    let layout = skyscope_abi::bundle::layout(&modules).map_err(|e| e.to_string())?;
    let mut data = Vec::new();
    let bank = |start: u64, len: u64| (start >> 12) | ((len >> 12) << 32);
    let used = |start: u64, len: u64| (start >> 8) | (len << 40);
    let words = [
        bundle::ADDRESS,
        bank(0x4000_0000, 2 << 30),
        0,
        0,
        used(0x4000_0000, 1 << 20),
        used(0x4020_0000, 4 << 20),
        0,
        0,
    ];
    for w in words {
        data.extend_from_slice(&w.to_le_bytes());
    }
    let mut header = vec![0u8; skyscope_abi::bundle::HEADER_READ_SIZE];
    let n = layout.encode(&mut header).ok_or("header too long")?;
    data.extend_from_slice(&header[..n]);
    fs::write(&seed, &data).map_err(|e| format!("cannot write {}: {e}", seed.display()))
}

/// The host libFuzzer targets: the crate directory whose `fuzz/` holds
/// them, and the target.
const FUZZ_TARGETS: [(&str, &str); 9] = [
    ("kernel/core", "elf"),
    ("kernel/core", "message"),
    ("kernel/core", "cspace"),
    ("kernel/core", "invocation"),
    ("kernel/core", "devicetree"),
    ("kernel/core", "bundle"),
    ("kernel/core", "guest_exit"),
    ("vmm", "image"),
    ("vmm", "devices"),
];

/// The item that runs every scenario on the hardened kernel.
const HARDENED: &str = "profile::hardened";
/// The items that run the guest scenarios on a real core's CPU model (item
/// name, QEMU `-cpu`): the guest's features then come from that core's ID
/// registers as the kernel sanitises them, not from QEMU's `max`. Both
/// are Armv8.2 cores with VHE, the oldest kind the kernel runs on; the
/// Cortex-A76 is a client core, the Neoverse N1 a server core with other
/// cache and feature registers.
const REAL_CORES: [(&str, &str); 2] = [
    ("cpu::cortex_a76", "cortex-a76"),
    ("cpu::neoverse_n1", "neoverse-n1"),
];
/// What each of [`REAL_CORES`] runs.
const ON_REAL_CORES: &[&str] = &[
    "guest::vgic_inject",
    "guest::virtual_timer_interrupt",
    "guest::physical_timer_interrupt",
    "guest::cpu_features_sanitised",
    "guest::linux_boots",
    "vm::vmm_process",
];

/// How long a scenario judged by console patterns must keep the kernel up
/// after the last pattern matched.
const GRACE: Duration = Duration::from_millis(1500);

/// Crates that build for bare-metal x86_64 today (checked with clippy).
const X86_64_CRATES: [&str; 9] = [
    "skyscope-abi",
    "skyscope-core",
    "skyscope-client",
    "skyscope-process",
    "skyscope-el2",
    "skyscope-vmx",
    "skyscope-iommu",
    "skyscope-vmm",
    "skyscope-guest-minimal",
];

/// A test item's result.
pub enum Verdict {
    /// Passed, with an optional note.
    Pass(String),
    /// Failed, with the reason and the console tail.
    Fail(String),
    /// Could not run on this machine (a tool is missing and cannot be
    /// installed), with the reason.
    Skip(String),
}

/// A check run through cargo: name, what it runs.
struct CargoCheck {
    name: &'static str,
    args: Vec<&'static str>,
    env: Vec<(&'static str, &'static str)>,
}

fn cargo_checks() -> Vec<CargoCheck> {
    let deny = ["--", "-D", "warnings"];
    let mut checks = vec![
        CargoCheck {
            name: "host::unit_and_property_tests",
            args: vec![
                "test",
                "--workspace",
                "--exclude",
                "skyscope-kernel",
                "--exclude",
                "skyscope-roottask",
                "--exclude",
                "skyscope-testroot",
                "--exclude",
                "skyscope-vmm-process",
            ],
            env: vec![],
        },
        CargoCheck {
            name: "host::exhaustive_caps",
            args: vec![
                "test",
                "--release",
                "-p",
                "skyscope-core",
                "exhaustive",
                "--",
                "--ignored",
                "--nocapture",
            ],
            env: vec![],
        },
        CargoCheck {
            name: "lint::fmt",
            args: vec!["fmt", "--all", "--", "--check"],
            env: vec![],
        },
        CargoCheck {
            name: "lint::clippy_host",
            args: [
                [
                    "clippy",
                    "--workspace",
                    "--exclude",
                    "skyscope-kernel",
                    "--exclude",
                    "skyscope-roottask",
                    "--exclude",
                    "skyscope-testroot",
                    "--exclude",
                    "skyscope-vmm-process",
                    "--all-targets",
                ]
                .as_slice(),
                &deny,
            ]
            .concat(),
            env: vec![],
        },
        CargoCheck {
            name: "lint::clippy_aarch64_kernel",
            args: [
                [
                    "clippy",
                    "--release",
                    "-p",
                    "skyscope-kernel",
                    "--target",
                    build::KERNEL_TARGET,
                ]
                .as_slice(),
                &deny,
            ]
            .concat(),
            env: vec![],
        },
        CargoCheck {
            name: "lint::clippy_aarch64_user",
            args: [
                [
                    "clippy",
                    "--release",
                    "-p",
                    "skyscope-roottask",
                    "-p",
                    "skyscope-testroot",
                    "-p",
                    "skyscope-tests",
                    "-p",
                    "skyscope-vmm",
                    "-p",
                    "skyscope-client",
                    "-p",
                    "skyscope-process",
                    "-p",
                    "skyscope-launcher",
                    "-p",
                    "skyscope-guest-minimal",
                    "--target",
                    build::USER_TARGET,
                ]
                .as_slice(),
                &deny,
            ]
            .concat(),
            env: vec![],
        },
        // The VMM program on its own, as it is built: it turns on
        // skyscope-vmm's `alloc` and has a heap; checked together with the
        // root task, which has none, the feature would reach it too.
        CargoCheck {
            name: "lint::clippy_aarch64_vmm",
            args: [
                [
                    "clippy",
                    "--release",
                    "-p",
                    "skyscope-vmm-process",
                    "--target",
                    build::USER_TARGET,
                ]
                .as_slice(),
                &deny,
            ]
            .concat(),
            env: vec![],
        },
        CargoCheck {
            name: "lint::docs",
            args: vec![
                "doc",
                "--no-deps",
                "--target",
                build::USER_TARGET,
                "-p",
                "skyscope-abi",
                "-p",
                "skyscope-core",
                "-p",
                "skyscope-vmm",
                "-p",
                "skyscope-client",
                "-p",
                "skyscope-process",
                "-p",
                "skyscope-launcher",
                "-p",
                "skyscope-guest-minimal",
                "-p",
                "skyscope-el2",
            ],
            env: vec![("RUSTDOCFLAGS", "-D warnings")],
        },
    ];
    let mut x86 = vec!["clippy", "--target", "x86_64-unknown-none"];
    for c in X86_64_CRATES {
        x86.extend(["-p", c]);
    }
    checks.push(CargoCheck {
        name: "lint::clippy_x86_64",
        args: [x86.as_slice(), &deny].concat(),
        env: vec![],
    });
    checks
}

fn log_dir() -> PathBuf {
    let dir = build::target_dir().join("xtask-logs");
    let _ = fs::create_dir_all(&dir);
    dir
}

fn log_path(name: &str) -> PathBuf {
    log_dir().join(format!("{}.log", name.replace("::", "__")))
}

fn run_cargo_check(check: &CargoCheck) -> Verdict {
    // A `+toolchain` argument needs rustup's `cargo` proxy, not the
    // toolchain binary `CARGO` points at.
    let mut command = if check.args.first().is_some_and(|a| a.starts_with('+')) {
        let mut c = std::process::Command::new("cargo");
        c.current_dir(setup::workspace_root());
        c
    } else {
        build::cargo()
    };
    command
        .args(&check.args)
        .envs(check.env.iter().copied())
        .stdin(Stdio::null());
    let output = match command.output() {
        Ok(o) => o,
        Err(e) => return Verdict::Fail(format!("cannot run cargo: {e}")),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let log = log_path(check.name);
    let _ = fs::write(&log, &text);
    if output.status.success() {
        let tests: usize = text
            .lines()
            .filter_map(|l| l.strip_prefix("test result: ok. "))
            .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
            .sum();
        // Tests may print one summary line worth showing (e.g. states explored).
        let summary = text
            .lines()
            .find(|l| l.starts_with("exhaustive:"))
            .map(str::to_string);
        Verdict::Pass(match (tests, summary) {
            (_, Some(line)) => line,
            (0, None) => String::new(),
            (n, None) => format!("{n} tests"),
        })
    } else {
        Verdict::Fail(format!(
            "cargo {} failed; log: {}\n{}",
            check.args.join(" "),
            log.display(),
            tail(&text, 40)
        ))
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<_> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("      | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `scenarios` again on a `profile` kernel and CPU model `cpu` (one
/// test item): passes with `summary`, or fails naming each scenario that
/// failed `on` that variant and why.
fn rerun(
    profile: build::Profile,
    cpu: &str,
    scenarios: &[&Scenario],
    on: &str,
    summary: String,
) -> Verdict {
    let (qemu, images) = match setup::ensure_qemu()
        .and_then(|q| build::build_images_with(profile).map(|i| (q, i)))
    {
        Ok(prepared) => prepared,
        Err(e) => return Verdict::Fail(e),
    };
    let failures: Vec<_> = scenarios
        .iter()
        .filter_map(|s| match run_scenario_on(&qemu, &images.kernel, s, cpu) {
            Verdict::Fail(why) => Some(format!("{}: {why}", s.name)),
            _ => None,
        })
        .collect();
    if failures.is_empty() {
        Verdict::Pass(summary)
    } else {
        Verdict::Fail(format!("failed with {on}:\n{}", failures.join("\n")))
    }
}

/// Boots one scenario and judges it from the console and the exit status.
fn run_scenario(qemu: &setup::Qemu, kernel: &Path, scenario: &Scenario) -> Verdict {
    run_scenario_with(qemu, kernel, scenario, "", u64::from(scenario.timeout_secs))
}

/// As [`run_scenario`] on CPU model `cpu`.
fn run_scenario_on(qemu: &setup::Qemu, kernel: &Path, scenario: &Scenario, cpu: &str) -> Verdict {
    run_scenario_on_with(
        qemu,
        cpu,
        kernel,
        scenario,
        "",
        u64::from(scenario.timeout_secs),
    )
}

/// As [`run_scenario`], with extra kernel command-line words and a timeout.
pub fn run_scenario_with(
    qemu: &setup::Qemu,
    kernel: &Path,
    scenario: &Scenario,
    extra_bootargs: &str,
    timeout_secs: u64,
) -> Verdict {
    run_scenario_on_with(qemu, "max", kernel, scenario, extra_bootargs, timeout_secs)
}

fn run_scenario_on_with(
    qemu: &setup::Qemu,
    cpu: &str,
    kernel: &Path,
    scenario: &Scenario,
    extra_bootargs: &str,
    timeout_secs: u64,
) -> Verdict {
    let patterns: Vec<Regex> = match scenario.console.iter().map(|p| Regex::new(p)).collect() {
        Ok(p) => p,
        Err(e) => return Verdict::Fail(format!("bad console pattern in the catalog: {e}")),
    };
    let modules = match bundle::for_scenario(scenario.modules) {
        Ok(m) => m,
        Err(e) => return Verdict::Fail(format!("cannot write its boot modules: {e}")),
    };
    let mut command = qemu::machine_command_on(
        qemu,
        cpu,
        kernel,
        &format!("test={} {extra_bootargs}", scenario.name),
        modules.as_ref(),
    );
    if scenario.icount {
        // Virtual time advances one nanosecond per instruction (and jumps
        // ahead while the CPU idles), whatever else the host runs.
        command.args(["-icount", "shift=0,sleep=off"]);
    }
    // A scenario that has text typed gets a console input pipe.
    let spawned = if scenario.input.is_empty() {
        qemu::Session::start(command, false)
    } else {
        qemu::Session::start_scripted(command)
    };
    let mut session = match spawned {
        Ok(s) => s,
        Err(e) => return Verdict::Fail(e),
    };
    let mut typing = scenario.input.iter().peekable();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(timeout_secs);
    let verdict_prefix = format!("{} {}: ", protocol::PREFIX, scenario.name);
    let mut transcript = String::new();
    let mut matched = 0;
    let mut reported: Option<Result<(), String>> = None;
    let mut grace_until: Option<Instant> = None;
    let verdict = loop {
        let wait_until = grace_until.map_or(deadline, |g| g.min(deadline));
        match session.next_event(wait_until) {
            Some(qemu::ConsoleEvent::Line(line)) => {
                transcript.push_str(&line);
                transcript.push('\n');
                if line.contains(protocol::KERNEL_PANIC) {
                    break Err("kernel panic".to_string());
                }
                if let Some(t) = typing.next_if(|t| line.contains(t.after))
                    && let Err(e) = session.send(t.text)
                {
                    break Err(e);
                }
                if matched < patterns.len() && patterns[matched].is_match(&line) {
                    matched += 1;
                    if matched == patterns.len() && !scenario.reports {
                        grace_until = Some(Instant::now() + GRACE);
                    }
                }
                if let Some(rest) = line.strip_prefix(&verdict_prefix) {
                    if rest.starts_with(protocol::PASS) {
                        reported = Some(Ok(()));
                    } else if rest.starts_with(protocol::FAIL) {
                        reported = Some(Err(rest.to_string()));
                    }
                }
            }
            Some(qemu::ConsoleEvent::Exited(status)) => {
                break match (scenario.reports, &reported) {
                    (_, Some(Err(reason))) => Err(format!("scenario reported {reason}")),
                    (true, Some(Ok(()))) if !status.success() => {
                        Err(format!("reported PASS but QEMU exited with {status}"))
                    }
                    (true, Some(Ok(()))) if matched < patterns.len() => Err(format!(
                        "console never matched /{}/",
                        scenario.console[matched]
                    )),
                    (true, Some(Ok(()))) => Ok(()),
                    _ => Err(format!("QEMU exited ({status}) without a verdict")),
                };
            }
            None if grace_until.is_some_and(|g| Instant::now() >= g) => break Ok(()),
            None => {
                break Err(match matched < patterns.len() {
                    true => format!(
                        "timed out after {timeout_secs} s waiting for /{}/",
                        scenario.console[matched]
                    ),
                    false => format!(
                        "timed out after {} s without a verdict",
                        scenario.timeout_secs
                    ),
                });
            }
        }
    };
    session.stop();
    // The hardened kernel and other CPU models keep logs of their own.
    let mut log_name = scenario.name.to_string();
    if kernel
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("hardened"))
    {
        log_name.push_str("@hardened");
    }
    if cpu != "max" {
        log_name.push('@');
        log_name.push_str(cpu);
    }
    let log = log_path(&log_name);
    let _ = fs::write(&log, &transcript);
    match verdict {
        Ok(()) => Verdict::Pass(String::new()),
        Err(reason) => Verdict::Fail(format!(
            "{reason}; console log: {}\n{}",
            log.display(),
            tail(&transcript, 30)
        )),
    }
}

/// Runs everything matching the filter and prints the summary line.
pub fn run(args: &TestArgs) -> Result<ExitCode, String> {
    let filter = args.filter.as_deref().unwrap_or("");
    let checks: Vec<_> = cargo_checks()
        .into_iter()
        .filter(|c| c.name.contains(filter))
        .collect();
    let scenarios: Vec<_> = CATALOG.iter().filter(|s| s.name.contains(filter)).collect();
    if args.list {
        for c in &checks {
            println!("{}", c.name);
        }
        for s in &scenarios {
            println!("{}  -- {}", s.name, s.about);
        }
        if HARDENED.contains(filter) {
            println!("{HARDENED}  -- every scenario with the hardened kernel");
        }
        for (item, cpu) in REAL_CORES {
            if item.contains(filter) {
                println!("{item}  -- the guest scenarios with -cpu {cpu}");
            }
        }
        for (name, _) in NIGHTLY_ITEMS
            .iter()
            .chain(&QEMU_ITEMS)
            .filter(|(n, _)| n.contains(filter))
        {
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let nightly_items = NIGHTLY_ITEMS
        .iter()
        .chain(&QEMU_ITEMS)
        .filter(|(n, _)| n.contains(filter))
        .count();
    if checks.is_empty()
        && scenarios.is_empty()
        && !HARDENED.contains(filter)
        && !REAL_CORES.iter().any(|(item, _)| item.contains(filter))
        && nightly_items == 0
    {
        return Err(format!(
            "no test matches '{filter}' (see cargo xtask test --list)"
        ));
    }
    toolchain::ensure()?;
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut skipped = 0usize;
    let mut report = |name: &str, verdict: Verdict, took: Duration| match verdict {
        Verdict::Skip(why) => {
            skipped += 1;
            println!("test {name} ... skipped: {why}");
        }
        Verdict::Pass(note) => {
            passed += 1;
            let note = if note.is_empty() {
                String::new()
            } else {
                format!(", {note}")
            };
            println!("test {name} ... ok ({:.1} s{note})", took.as_secs_f64());
        }
        Verdict::Fail(why) => {
            failed += 1;
            println!(
                "test {name} ... FAILED ({:.1} s)\n    {why}",
                took.as_secs_f64()
            );
        }
    };
    for check in &checks {
        println!("==> {}", check.name);
        let start = Instant::now();
        let verdict = run_cargo_check(check);
        report(check.name, verdict, start.elapsed());
    }
    for (name, run) in NIGHTLY_ITEMS {
        if name.contains(filter) {
            println!("==> {name}");
            let start = Instant::now();
            let verdict = run();
            report(name, verdict, start.elapsed());
        }
    }
    if !scenarios.is_empty() {
        // The suite runs the `dev` profile (invariant checks on every return
        // to user space); `profile::hardened` runs every scenario again, and
        // `--hardened` runs the matching ones on that kernel instead.
        let profile = if args.hardened {
            build::Profile::Hardened
        } else {
            build::Profile::Dev
        };
        let prepared =
            setup::ensure_qemu().and_then(|q| build::build_images_with(profile).map(|i| (q, i)));
        match prepared {
            Ok((qemu, images)) => {
                println!(
                    "==> {} QEMU scenarios on QEMU {} (one boot each, {} kernel)",
                    scenarios.len(),
                    qemu.version,
                    profile.feature()
                );
                for scenario in &scenarios {
                    if args.hardened && scenario.debug {
                        report(
                            scenario.name,
                            Verdict::Skip("needs the debug capability".into()),
                            Duration::ZERO,
                        );
                        continue;
                    }
                    let start = Instant::now();
                    let verdict = run_scenario(&qemu, &images.kernel, scenario);
                    report(scenario.name, verdict, start.elapsed());
                }
            }
            Err(e) => {
                for scenario in &scenarios {
                    report(
                        scenario.name,
                        Verdict::Fail(format!("not run: {e}")),
                        Duration::ZERO,
                    );
                }
            }
        }
    }
    for (name, run) in QEMU_ITEMS {
        if name.contains(filter) {
            println!("==> {name}");
            let start = Instant::now();
            let verdict = run();
            report(name, verdict, start.elapsed());
        }
    }
    if HARDENED.contains(filter) {
        println!("==> {HARDENED}: every scenario again with the hardened kernel");
        let start = Instant::now();
        // The hardened kernel has no debug syscalls: scenarios that need
        // them are left out (and listed).
        let (runnable, left_out): (Vec<&Scenario>, Vec<&Scenario>) =
            CATALOG.iter().partition(|s| !s.debug);
        let names: Vec<_> = left_out.iter().map(|s| s.name).collect();
        let verdict = rerun(
            build::Profile::Hardened,
            "max",
            &runnable,
            "the hardened kernel",
            format!(
                "{} scenarios; {} need the debug capability the hardened kernel lacks: {}",
                runnable.len(),
                left_out.len(),
                names.join(", ")
            ),
        );
        report(HARDENED, verdict, start.elapsed());
    }
    for (item, cpu) in REAL_CORES {
        if !item.contains(filter) {
            continue;
        }
        println!("==> {item}: {}", ON_REAL_CORES.join(", "));
        let start = Instant::now();
        let chosen: Vec<&Scenario> = CATALOG
            .iter()
            .filter(|s| ON_REAL_CORES.contains(&s.name))
            .collect();
        let verdict = rerun(
            build::Profile::Dev,
            cpu,
            &chosen,
            &format!("-cpu {cpu}"),
            format!("{} scenarios", chosen.len()),
        );
        report(item, verdict, start.elapsed());
    }
    if skipped > 0 {
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        println!("{passed} passed, {failed} failed");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_patterns_compile() {
        for s in CATALOG {
            for p in s.console {
                Regex::new(p).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            }
        }
    }

    #[test]
    fn check_names_are_unique() {
        let checks = cargo_checks();
        for (i, a) in checks.iter().enumerate() {
            assert!(
                checks[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
            assert!(CATALOG.iter().all(|s| s.name != a.name), "{}", a.name);
        }
    }
}
