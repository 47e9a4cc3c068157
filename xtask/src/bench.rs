//! `cargo xtask bench ipc`: boots the benchmark twice (instructions under
//! `-icount shift=0`, nanoseconds under plain TCG), writes
//! `target/bench/ipc.json` and prints a table beside seL4's figures.

use crate::{BenchArgs, build, qemu, setup, toolchain};
use serde::{Deserialize, Serialize};
use std::{
    fs,
    process::ExitCode,
    time::{Duration, Instant},
};

/// One metric of one case, as the root task prints it.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Record {
    space: String,
    words: u32,
    metric: String,
    min: u64,
    median: u64,
    mean: f64,
    p99: u64,
    n: u64,
}

/// seL4 measured once on the same emulator with the same method (release
/// build with fastpath, kernel at EL2, counter overhead subtracted); the
/// same within and across address spaces. Kept here as fixed reference
/// figures: seL4 is not built by this repository.
fn sel4_reference(words: u32, metric: &str) -> Option<u64> {
    match (words, metric) {
        (0, "call") => Some(255),
        (0, "replyrecv") => Some(277),
        (0, "roundtrip") => Some(532),
        (10, "call") => Some(764),
        (10, "replyrecv") => Some(738),
        _ => None,
    }
}

/// Skyscope's targets: fastpath round trip (0-4 words) and 10-word round trip.
fn target(words: u32, metric: &str) -> Option<u64> {
    match (words, metric) {
        (0 | 4, "roundtrip") => Some(425),
        (10, "roundtrip") => Some(1200),
        _ => None,
    }
}

struct Run {
    overhead: u64,
    records: Vec<Record>,
}

fn boot(
    qemu: &setup::Qemu,
    kernel: &std::path::Path,
    iterations: usize,
    icount: bool,
) -> Result<Run, String> {
    let mut command = qemu::machine_command(
        qemu,
        kernel,
        &format!("bench=ipc iterations={iterations}"),
        None,
    );
    if icount {
        command.args(["-icount", "shift=0"]);
    }
    let mut session = qemu::Session::start(command, false)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut run = Run {
        overhead: 0,
        records: Vec::new(),
    };
    loop {
        match session.next_event(deadline) {
            Some(qemu::ConsoleEvent::Line(line)) => {
                if let Some(json) = line.strip_prefix("BENCH-RESULT ") {
                    run.records.push(
                        serde_json::from_str(json)
                            .map_err(|e| format!("bad record {json}: {e}"))?,
                    );
                } else if let Some(v) = line.strip_prefix("BENCH-OVERHEAD ") {
                    run.overhead = v.trim().parse().unwrap_or(0);
                } else if line.starts_with("BENCH-ERROR")
                    || line.contains("KERNEL PANIC")
                    || line.contains("user panic")
                {
                    return Err(format!("benchmark failed: {line}"));
                }
            }
            Some(qemu::ConsoleEvent::Exited(status)) => {
                return if status.success() && !run.records.is_empty() {
                    Ok(run)
                } else {
                    Err(format!(
                        "benchmark boot ended ({status}) with {} records",
                        run.records.len()
                    ))
                };
            }
            None => return Err("benchmark timed out after 600 s".into()),
        }
    }
}

/// `cargo xtask bench ipc`.
pub fn run(args: &BenchArgs) -> Result<ExitCode, String> {
    debug_assert_eq!(args.which, "ipc");
    toolchain::ensure()?;
    let qemu = setup::ensure_qemu()?;
    let images = build::build_images_for(build::Profile::Standard, build::RootTask::Tests)?;
    println!(
        "==> IPC benchmark, {} samples per metric: instructions (-icount shift=0)",
        args.iterations
    );
    let instructions = boot(&qemu, &images.kernel, args.iterations, true)?;
    println!("==> IPC benchmark: wall-clock nanoseconds (plain TCG)");
    let nanoseconds = boot(&qemu, &images.kernel, args.iterations, false)?;

    let json = serde_json::json!({
        "benchmark": "ipc",
        "qemu": qemu.version,
        "machine": "virt, virtualization=on, gic-version=3, -cpu max",
        "method": "one-way: counter (CNTVCT_EL0) read before the sender's svc and after the receiver's return; \
                   counter-read overhead subtracted; counts instructions under -icount shift=0, else ns",
        "samples_per_metric": args.iterations,
        "instructions": { "counter_overhead": instructions.overhead, "results": instructions.records },
        "nanoseconds": { "counter_overhead": nanoseconds.overhead, "results": nanoseconds.records },
    });
    let dir = build::target_dir().join("bench");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("ipc.json");
    fs::write(
        &path,
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;

    println!();
    println!(
        "{:<6} {:>5}  {:<10} {:>10} {:>8} {:>8} {:>8} {:>10} {:>9}",
        "space", "words", "metric", "instr med", "min", "p99", "seL4", "target", "ns med"
    );
    for r in &instructions.records {
        let ns = nanoseconds
            .records
            .iter()
            .find(|n| n.space == r.space && n.words == r.words && n.metric == r.metric)
            .map_or("-".to_string(), |n| n.median.to_string());
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let goal = target(r.words, &r.metric).map_or("-".to_string(), |t| {
            format!("{}{}", if r.median <= t { "<=" } else { "> " }, t)
        });
        println!(
            "{:<6} {:>5}  {:<10} {:>10} {:>8} {:>8} {:>8} {:>10} {:>9}",
            r.space,
            r.words,
            r.metric,
            r.median,
            r.min,
            r.p99,
            opt(sel4_reference(r.words, &r.metric)),
            goal,
            ns
        );
    }
    println!("\nresults: {}", path.display());
    Ok(ExitCode::SUCCESS)
}
