//! `cargo xtask bench ipc`: boots the benchmarks twice (instructions under
//! `-icount shift=0`, nanoseconds under plain TCG), writes
//! `target/bench/ipc.json` and the plot `ipc.svg` (or `ipc-hardened.*`)
//! and prints a table beside seL4's figures, Skyscope's targets and the
//! Modern seed's.
//! `bench::budget` (a `cargo xtask test` item) runs them briefly under
//! icount against the budgets in `xtask/bench-budget.txt`.

use crate::{BenchArgs, build, qemu, setup, test::Verdict, toolchain};
use serde::{Deserialize, Serialize};
use std::{
    fs,
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

/// One metric of one case, as the root task prints it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Record {
    /// The case (`ipc/same/0`, `guest/vmm`, ...).
    pub name: String,
    /// What was measured (`call`, `replyrecv`, `roundtrip`, ...).
    pub metric: String,
    /// Smallest sample.
    pub min: u64,
    /// Median.
    pub median: u64,
    /// Mean.
    pub mean: f64,
    /// 99th percentile.
    pub p99: u64,
    /// Samples.
    pub n: u64,
}

/// What one benchmark boot printed.
pub struct Run {
    /// Cost of two back-to-back counter reads (subtracted from every sample).
    pub overhead: u64,
    /// Every metric of every case that ran.
    pub records: Vec<Record>,
}

/// seL4 measured once on the same emulator with the same method (release
/// build with fastpath, kernel at EL2, counter overhead subtracted,
/// /work/shared/BENCHMARKS.md); the same within and across address
/// spaces. Fixed reference figures: seL4 is not built by this repository.
fn sel4_reference(name: &str, metric: &str) -> Option<u64> {
    let words = name.strip_prefix("ipc/")?.split('/').nth(1)?;
    match (words, metric) {
        ("0", "call") => Some(255),
        ("0", "replyrecv") => Some(277),
        ("0", "roundtrip") => Some(532),
        ("10", "call") => Some(764),
        ("10", "replyrecv") => Some(738),
        ("10", "roundtrip") => Some(1502),
        _ => None,
    }
}

/// Skyscope's targets, in instructions (/work/shared/BENCHMARKS.md).
fn target(name: &str, metric: &str) -> Option<u64> {
    if metric != "roundtrip" {
        return None;
    }
    match name {
        "guest/vmm" => Some(800),
        _ => match name.strip_prefix("ipc/")?.split('/').nth(1)? {
            "0" | "4" => Some(425),
            "10" => Some(1200),
            _ => None,
        },
    }
}

/// The Modern seed's performance goals (/work/shared/seeds/003_*.txt,
/// "Performance Goals"), in nanoseconds, for the rows they name: a
/// syscall < 100 ns, a context switch < 1 µs, same-core IPC < 500 ns, an
/// interrupt < 10 µs. Wall-clock figures under TCG measure the emulator
/// as much as the kernel, so they are shown, not judged.
fn seed_target(name: &str, metric: &str) -> Option<u64> {
    match (name, metric) {
        ("syscall/null", "roundtrip") => Some(100),
        ("yield/switch", "oneway") => Some(1_000),
        ("ipc/same/0", "call") => Some(500),
        ("irq/latency", "oneway") => Some(10_000),
        _ => None,
    }
}

/// The kernel command line that runs benchmark `which`.
pub fn bootargs(which: &str, iterations: usize, case: &str) -> String {
    let mut args = format!("bench={which} iterations={iterations}");
    if !case.is_empty() {
        args.push_str(&format!(" case={case}"));
    }
    args
}

/// Reads a benchmark boot's console until QEMU exits.
pub fn collect(mut session: qemu::Session, deadline: Instant) -> Result<Run, String> {
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
            None => return Err("benchmark timed out".into()),
        }
    }
}

fn boot(
    qemu: &setup::Qemu,
    kernel: &Path,
    iterations: usize,
    case: &str,
    icount: bool,
) -> Result<Run, String> {
    let mut command = qemu::machine_command(qemu, kernel, &bootargs("ipc", iterations, case), None);
    if icount {
        command.args(["-icount", "shift=0"]);
    }
    collect(
        qemu::Session::start(command, false)?,
        Instant::now() + Duration::from_secs(900),
    )
}

/// `cargo xtask bench ipc`.
pub fn run(args: &BenchArgs) -> Result<ExitCode, String> {
    debug_assert_eq!(args.which, "ipc");
    toolchain::ensure()?;
    let qemu = setup::ensure_qemu()?;
    // The test image's root task runs the benchmarks.
    let images = build::build_images_with(args.profile)?;
    println!(
        "==> benchmarks, {} samples per metric, {} kernel: instructions (-icount shift=0)",
        args.iterations,
        args.profile.feature()
    );
    let instructions = boot(&qemu, &images.kernel, args.iterations, &args.case, true)?;
    println!("==> benchmarks: wall-clock nanoseconds (plain TCG)");
    let nanoseconds = boot(&qemu, &images.kernel, args.iterations, &args.case, false)?;

    let json = serde_json::json!({
        "benchmark": "ipc",
        "kernel_profile": args.profile.feature(),
        "qemu": qemu.version,
        "machine": "virt, virtualization=on, gic-version=3, -cpu max",
        "method": "one-way: counter (CNTVCT_EL0) read before the sender's svc (or hvc, or faulting \
                   instruction) and after the receiver's return; IPC round trip: the two one-way figures of each call added \
                   (as seL4's reference round trip); other round trips: both reads in one thread; \
                   counter-read overhead subtracted; counts instructions under -icount shift=0, else ns",
        "samples_per_metric": args.iterations,
        "instructions": { "counter_overhead": instructions.overhead, "results": instructions.records },
        "nanoseconds": { "counter_overhead": nanoseconds.overhead, "results": nanoseconds.records },
    });
    let dir = build::target_dir().join("bench");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let stem = match args.profile {
        build::Profile::Standard => "ipc".to_string(),
        p => format!("ipc-{}", p.feature()),
    };
    let path = dir.join(format!("{stem}.json"));
    fs::write(
        &path,
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let plot = dir.join(format!("{stem}.svg"));
    let svg = crate::plot::latency_svg(
        figures(&instructions.records),
        figures(&nanoseconds.records),
        &format!(
            "Skyscope: native IPC, guest exits and kernel paths ({} kernel, QEMU {})",
            args.profile.feature(),
            qemu.version
        ),
        sel4_reference,
        target,
    );
    fs::write(&plot, svg).map_err(|e| e.to_string())?;
    println!();
    print_table(&instructions.records, &nanoseconds.records);
    println!("\nresults: {}\nplot: {}", path.display(), plot.display());
    Ok(ExitCode::SUCCESS)
}

/// The plot's view of `records`: a case's median and p99 by case and
/// metric.
fn figures(records: &[Record]) -> impl Fn(&str, &str) -> Option<crate::plot::Figure> + '_ {
    move |name, metric| {
        records
            .iter()
            .find(|r| r.name == name && r.metric == metric)
            .map(|r| crate::plot::Figure {
                median: r.median,
                p99: r.p99,
            })
    }
}

/// The table: instructions beside seL4 and the targets, nanoseconds beside
/// the seed's goals.
fn print_table(instructions: &[Record], nanoseconds: &[Record]) {
    println!(
        "{:<18} {:<10} {:>9} {:>7} {:>7} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "case",
        "metric",
        "instr med",
        "min",
        "p99",
        "seL4",
        "ratio",
        "target",
        "ns med",
        "ns p99",
        "seed"
    );
    for r in instructions {
        let ns = nanoseconds
            .iter()
            .find(|n| n.name == r.name && n.metric == r.metric);
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let sel4 = sel4_reference(&r.name, &r.metric);
        let ratio = sel4.map_or("-".to_string(), |s| {
            format!("{:.2}", r.median as f64 / s as f64)
        });
        let goal = target(&r.name, &r.metric).map_or("-".to_string(), |t| {
            format!("{}{}", if r.median <= t { "<=" } else { "> " }, t)
        });
        let seed = seed_target(&r.name, &r.metric).map_or("-".to_string(), |t| format!("<{t}"));
        println!(
            "{:<18} {:<10} {:>9} {:>7} {:>7} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}",
            r.name,
            r.metric,
            r.median,
            r.min,
            r.p99,
            opt(sel4),
            ratio,
            goal,
            opt(ns.map(|n| n.median)),
            opt(ns.map(|n| n.p99)),
            seed
        );
    }
    // The cross-address-space target: within 10 instructions of the
    // same-space figure.
    for r in instructions
        .iter()
        .filter(|r| r.name.starts_with("ipc/cross/"))
    {
        let same = r.name.replace("/cross/", "/same/");
        if let Some(s) = instructions
            .iter()
            .find(|s| s.name == same && s.metric == r.metric && r.metric == "roundtrip")
        {
            let gap = r.median as i64 - s.median as i64;
            println!(
                "{} round trip vs same space: {gap:+} instructions ({})",
                r.name,
                if gap.abs() <= 10 {
                    "within 10"
                } else {
                    "more than 10 apart"
                }
            );
        }
    }
}

/// The file of budgets `bench::budget` holds the benchmarks to.
const BUDGET_FILE: &str = "xtask/bench-budget.txt";

/// Samples per metric for the budget check: the instruction counts are
/// exact under icount, so a few suffice.
const BUDGET_ITERATIONS: usize = 50;

/// Parses the budget file: `case metric instructions` per line, `#`
/// comments.
fn parse_budgets(text: &str) -> Result<Vec<(String, String, u64)>, String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            match f.as_slice() {
                [case, metric, max] => max
                    .parse()
                    .map(|m| (case.to_string(), metric.to_string(), m))
                    .map_err(|_| format!("bad budget '{max}' in line '{l}'")),
                _ => Err(format!(
                    "budget lines are 'case metric instructions': '{l}'"
                )),
            }
        })
        .collect()
}

/// Checks measured medians against budgets: the failures, one line each
/// (a budgeted metric that did not run is a failure too).
fn over_budget(budgets: &[(String, String, u64)], records: &[Record]) -> Vec<String> {
    budgets
        .iter()
        .filter_map(|(case, metric, max)| {
            match records
                .iter()
                .find(|r| &r.name == case && &r.metric == metric)
            {
                None => Some(format!("{case} {metric}: not measured")),
                Some(r) if r.median > *max => Some(format!(
                    "{case} {metric}: {} instructions, budget {max}",
                    r.median
                )),
                Some(_) => None,
            }
        })
        .collect()
}

/// `bench::budget`: a short run of every benchmark under icount on the
/// standard kernel; fails when a median exceeds its budget.
pub fn budget_check() -> Verdict {
    let budgets = match fs::read_to_string(setup::workspace_root().join(BUDGET_FILE))
        .map_err(|e| format!("cannot read {BUDGET_FILE}: {e}"))
        .and_then(|t| parse_budgets(&t))
    {
        Ok(b) => b,
        Err(e) => return Verdict::Fail(e),
    };
    let measured = setup::ensure_qemu().and_then(|q| {
        let images = build::build_images_with(build::Profile::Standard)?;
        boot(&q, &images.kernel, BUDGET_ITERATIONS, "", true)
    });
    match measured {
        Err(e) => Verdict::Fail(e),
        Ok(run) => {
            let failures = over_budget(&budgets, &run.records);
            if failures.is_empty() {
                let summary: Vec<_> = budgets
                    .iter()
                    .filter_map(|(c, m, max)| {
                        let r = run
                            .records
                            .iter()
                            .find(|r| &r.name == c && &r.metric == m)?;
                        Some(format!("{c} {m} {}/{max}", r.median))
                    })
                    .collect();
                Verdict::Pass(summary.join(", "))
            } else {
                Verdict::Fail(format!(
                    "over budget ({BUDGET_FILE}): {}",
                    failures.join("; ")
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, metric: &str, median: u64) -> Record {
        Record {
            name: name.into(),
            metric: metric.into(),
            min: median,
            median,
            mean: median as f64,
            p99: median,
            n: 1,
        }
    }

    #[test]
    fn budgets_parse_and_judge() {
        let budgets = parse_budgets(
            "# comment\nipc/same/0 roundtrip 400 # fastpath\n\nguest/vmm roundtrip 700\n",
        )
        .unwrap();
        assert_eq!(budgets.len(), 2);
        let ok = [
            record("ipc/same/0", "roundtrip", 400),
            record("guest/vmm", "roundtrip", 10),
        ];
        assert!(over_budget(&budgets, &ok).is_empty());
        let over = [
            record("ipc/same/0", "roundtrip", 401),
            record("guest/vmm", "roundtrip", 10),
        ];
        assert_eq!(over_budget(&budgets, &over).len(), 1);
        assert_eq!(
            over_budget(&budgets, &ok[..1]).len(),
            1,
            "a missing metric fails"
        );
        assert!(parse_budgets("ipc/same/0 roundtrip").is_err());
        assert!(parse_budgets("ipc/same/0 roundtrip many").is_err());
    }

    #[test]
    fn the_budget_file_parses() {
        let text = fs::read_to_string(setup::workspace_root().join(BUDGET_FILE)).unwrap();
        assert!(!parse_budgets(&text).unwrap().is_empty());
    }

    #[test]
    fn references_apply_to_their_rows() {
        assert_eq!(sel4_reference("ipc/cross/0", "roundtrip"), Some(532));
        assert_eq!(sel4_reference("ipc/same/4", "roundtrip"), None);
        assert_eq!(target("ipc/same/4", "roundtrip"), Some(425));
        assert_eq!(target("ipc/same/10", "call"), None);
        assert_eq!(target("guest/vmm", "roundtrip"), Some(800));
    }
}
