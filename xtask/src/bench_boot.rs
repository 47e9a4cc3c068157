//! `cargo xtask bench boot`: how long the Linux payload takes from power-on
//! to its init marker under Skyscope's VMM and booted directly by QEMU,
//! several runs of each interleaved, as a ratio taken in one run; and the
//! exits per second by kind the VMM handled on the way (it prints them
//! when the guest powers off). Writes `target/bench/boot.json` and a
//! table.
//!
//! Both sides are QEMU `virt` with `-cpu max` under TCG; the direct boot
//! gets the RAM the VMM gives its guest (512 MiB). Wall time mostly
//! measures the emulator, so only the ratio means much; the guest's own
//! clock at `Run /init` (its printk timestamp) is reported beside it.

use crate::{bundle, payload, qemu, setup, toolchain};
use serde::Serialize;
use std::{
    fs,
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

/// What the payload's `/init` prints first.
const MARKER: &str = "SKYSCOPE-GUEST: init reached";
/// Guest RAM on both sides (the VMM's default).
const GUEST_MEMORY: &str = "512M";

/// One boot.
#[derive(Clone, Copy, Debug, Serialize)]
struct Boot {
    /// Host time from starting QEMU to the marker line, in ms.
    wall_ms: u64,
    /// The guest's printk timestamp of `Run /init`, in ms.
    guest_ms: Option<u64>,
}

/// The exits of one boot to init and power-off under the VMM.
#[derive(Clone, Debug, Serialize)]
struct Exits {
    total: u64,
    /// Guest time from the VMM's start to the power-off, in ms.
    ms: u64,
    /// Count per kind, as the VMM names them.
    by_kind: Vec<(String, u64)>,
}

/// One command line's figures.
#[derive(Debug, Serialize)]
struct Report {
    /// The guest kernel's command line (the same on both sides).
    append: String,
    runs: usize,
    direct: Vec<Boot>,
    skyscope: Vec<Boot>,
    direct_median_ms: u64,
    skyscope_median_ms: u64,
    ratio: f64,
    guest_clock_ratio: Option<f64>,
    exits: Option<Exits>,
    target_ratio: f64,
}

/// The printk timestamp (`[    3.561733]`) of a line, in ms.
fn printk_ms(line: &str) -> Option<u64> {
    let stamp = line.trim_start().strip_prefix('[')?.split(']').next()?;
    let seconds: f64 = stamp.trim().parse().ok()?;
    Some((seconds * 1000.0) as u64)
}

/// Parses the VMM's summary: `NAME: N exits in T ms: kind=n kind=n ...`.
fn parse_exits(line: &str) -> Option<Exits> {
    let (_, rest) = line.split_once(": ")?;
    let (head, kinds) = rest.split_once(" ms: ")?;
    let (total, ms) = head.split_once(" exits in ")?;
    let by_kind = kinds
        .split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    Some(Exits {
        total: total.trim().parse().ok()?,
        ms: ms.trim().parse().ok()?,
        by_kind,
    })
}

/// Boots `command` to the marker; with `power_off`, then has the shell
/// power off and waits for the VMM's exit summary.
fn boot(command: Command, power_off: bool) -> Result<(Boot, Option<Exits>), String> {
    let started = Instant::now();
    let mut session = qemu::Session::start_scripted(command)?;
    let deadline = started + Duration::from_secs(300);
    let mut guest_ms = None;
    let mut wall_ms = None;
    let mut exits = None;
    while let Some(event) = session.next_event(deadline) {
        match event {
            qemu::ConsoleEvent::Line(line) => {
                if line.contains("Run /init as init process") {
                    guest_ms = printk_ms(&line);
                }
                if wall_ms.is_none() && line.contains(MARKER) {
                    wall_ms = Some(started.elapsed().as_millis() as u64);
                    if !power_off {
                        break;
                    }
                    session.send("poweroff -f\r")?;
                }
                if line.contains(" exits in ") && line.contains(" ms: ") {
                    exits = parse_exits(&line);
                    break;
                }
            }
            qemu::ConsoleEvent::Exited(status) => {
                if wall_ms.is_none() {
                    return Err(format!("QEMU exited ({status}) before the init marker"));
                }
                break;
            }
        }
    }
    session.stop();
    let wall_ms = wall_ms.ok_or("no init marker within 300 s")?;
    Ok((Boot { wall_ms, guest_ms }, exits))
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// `cargo xtask bench boot`.
pub fn run(runs: usize) -> Result<ExitCode, String> {
    toolchain::ensure()?;
    let qemu = setup::ensure_qemu()?;
    let images = crate::build::build_images()?;
    let guest = payload::ensure(false)?;
    let modules = [
        ("linux".to_string(), guest.image.clone()),
        ("initrd".to_string(), guest.initramfs.clone()),
    ];
    let bundle = bundle::for_run(&modules)?;
    // The full boot log, and `quiet`: the log is what costs exits (every
    // character is two UART accesses).
    let mut reports = Vec::new();
    for append in ["console=ttyAMA0 panic=-1", "console=ttyAMA0 panic=-1 quiet"] {
        println!("==> Linux boot to init, guest command line \"{append}\"");
        reports.push(measure(
            &qemu,
            &images.kernel,
            &guest,
            &bundle,
            append,
            runs.max(1),
        )?);
    }
    let dir = setup::workspace_root().join("target/bench");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("boot.json");
    let json = serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?;
    fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    for report in &reports {
        print_table(report);
    }
    println!("\nwritten: {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Boots both ways `runs` times, interleaved, with guest command line
/// `append`.
fn measure(
    qemu: &setup::Qemu,
    kernel: &std::path::Path,
    guest: &payload::Payload,
    bundle: &bundle::Bundle,
    append: &str,
    runs: usize,
) -> Result<Report, String> {
    let direct_command = || {
        let mut c = Command::new(&qemu.path);
        c.args(["-machine", "virt,gic-version=3", "-cpu", "max", "-smp", "1"])
            .args(["-m", GUEST_MEMORY, "-nographic", "-nic", "none"])
            .arg("-no-reboot")
            .arg("-kernel")
            .arg(&guest.image)
            .arg("-initrd")
            .arg(&guest.initramfs)
            .args(["-append", append]);
        c
    };
    let skyscope_command = || {
        qemu::machine_command(
            qemu,
            kernel,
            &format!("guest=linux guest-mem={GUEST_MEMORY} -- {append}"),
            Some(bundle),
        )
    };
    let (mut direct, mut skyscope) = (Vec::new(), Vec::new());
    let mut exits = None;
    for run in 0..runs {
        let (d, _) = boot(direct_command(), false)?;
        // The last boot under the VMM also powers off for the exit counts.
        let (s, e) = boot(skyscope_command(), run + 1 == runs)?;
        println!(
            "    run {}: direct {} ms, under Skyscope {} ms (guest clock at /init: {:?} / {:?} ms)",
            run + 1,
            d.wall_ms,
            s.wall_ms,
            d.guest_ms,
            s.guest_ms
        );
        direct.push(d);
        skyscope.push(s);
        if e.is_some() {
            exits = e;
        }
    }
    let direct_median_ms = median(direct.iter().map(|b| b.wall_ms).collect());
    let skyscope_median_ms = median(skyscope.iter().map(|b| b.wall_ms).collect());
    let guest_median = |v: &[Boot]| {
        let g: Vec<u64> = v.iter().filter_map(|b| b.guest_ms).collect();
        (g.len() == v.len()).then(|| median(g))
    };
    let guest_clock_ratio = match (guest_median(&direct), guest_median(&skyscope)) {
        (Some(d), Some(s)) if d > 0 => Some(s as f64 / d as f64),
        _ => None,
    };
    Ok(Report {
        append: append.to_string(),
        runs: direct.len(),
        ratio: skyscope_median_ms as f64 / direct_median_ms.max(1) as f64,
        direct,
        skyscope,
        direct_median_ms,
        skyscope_median_ms,
        guest_clock_ratio,
        exits,
        target_ratio: 1.3,
    })
}

fn print_table(report: &Report) {
    println!();
    println!(
        "| Linux payload to init (\"{}\", {} runs) | median | ratio | target |",
        report.append, report.runs
    );
    println!("|---|---|---|---|");
    println!(
        "| booted directly by QEMU (wall) | {} ms | 1.00 | |",
        report.direct_median_ms
    );
    println!(
        "| under Skyscope's VMM (wall) | {} ms | {:.2} | ≤ {:.1} |",
        report.skyscope_median_ms, report.ratio, report.target_ratio
    );
    if let Some(r) = report.guest_clock_ratio {
        println!("| guest clock at `Run /init`, ratio | | {r:.2} | |");
    }
    if let Some(e) = &report.exits {
        println!();
        println!(
            "| exits to the VMM, boot to power-off ({} in {} ms of guest time) | count | per second |",
            e.total, e.ms
        );
        println!("|---|---|---|");
        for (kind, n) in &e.by_kind {
            println!("| {kind} | {n} | {} |", n * 1000 / e.ms.max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_vmm_summary_and_printk_stamps() {
        let e = parse_exits("vm0: 4242 exits in 8000 ms: psci=3 calls=1 gic=900 uart=3000")
            .expect("parses");
        assert_eq!((e.total, e.ms), (4242, 8000));
        assert_eq!(e.by_kind[2], ("gic".to_string(), 900));
        assert_eq!(
            printk_ms("[    3.561733] Run /init as init process"),
            Some(3561)
        );
        assert_eq!(printk_ms("no stamp"), None);
    }
}
