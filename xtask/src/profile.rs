//! `cargo xtask profile`: where the instructions of one benchmark case go.
//!
//! Boots the benchmark for one case with few samples under
//! `-icount shift=0 -accel tcg,one-insn-per-tb=on -d exec,nochain`, so
//! QEMU logs every executed instruction's address, maps each address to
//! its symbol (`llvm-nm` of the kernel and the root task, whose threads
//! run every case), and reports, per sample: instructions per symbol, and each
//! distinct kernel entry — from the exception vector to the `eret`, i.e. a
//! maximal run of kernel addresses — with its symbols in the order they
//! ran. The samples are found in the trace by the root task's
//! `skyscope_tests::bench::profile_mark`, which each case calls just
//! before its first sample and just after its last.

use crate::{ProfileArgs, bench, build, qemu, setup, toolchain};
use std::{
    collections::HashMap,
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

/// Kernel addresses: the upper half (TTBR1_EL2).
const KERNEL_BASE: u64 = 0xffff_0000_0000_0000;

/// The symbol of `profile_mark` in the root task (demangled, without hash).
const MARK: &str = "skyscope_tests::bench::profile_mark";

/// A symbol table: start addresses (sorted), ends (0: unknown size, as
/// for assembly labels) and names.
struct Symbols {
    starts: Vec<u64>,
    ends: Vec<u64>,
    names: Vec<String>,
}

/// The name shown for addresses no symbol covers (a guest's code, which
/// runs at guest-physical addresses no ELF here describes).
const UNKNOWN: &str = "(no symbol: guest code or a gap)";

impl Symbols {
    /// Reads `llvm-nm -n -S --defined-only -C` of every ELF in `elves`.
    fn load(nm: &Path, elves: &[PathBuf]) -> Result<Symbols, String> {
        let mut all: Vec<(u64, u64, String)> = Vec::new();
        for elf in elves {
            let out = Command::new(nm)
                .args(["-n", "-S", "--defined-only", "-C"])
                .arg(elf)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", nm.display()))?;
            if !out.status.success() {
                return Err(format!("{} failed on {}", nm.display(), elf.display()));
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let mut parts = line.splitn(4, ' ');
                let (Some(address), Some(size), Some(kind), Some(name)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                // Code symbols only (t/T, and w/W for weak functions);
                // local labels ($x, $d) carry no name worth showing.
                if !matches!(kind, "t" | "T" | "w" | "W") || name.starts_with('$') {
                    continue;
                }
                if let (Ok(a), Ok(n)) = (
                    u64::from_str_radix(address, 16),
                    u64::from_str_radix(size, 16),
                ) {
                    all.push((a, if n == 0 { 0 } else { a + n }, clean(name)));
                }
            }
        }
        all.sort_by_key(|(a, _, _)| *a);
        Ok(Symbols {
            starts: all.iter().map(|(a, _, _)| *a).collect(),
            ends: all.iter().map(|(_, e, _)| *e).collect(),
            names: all.into_iter().map(|(_, _, n)| n).collect(),
        })
    }

    /// Index of the symbol `pc` lies in: the last one starting at or below
    /// it, if its size (when known) reaches `pc`.
    fn index(&self, pc: u64) -> Option<usize> {
        let i = self.starts.partition_point(|&s| s <= pc).checked_sub(1)?;
        (self.ends[i] == 0 || pc < self.ends[i]).then_some(i)
    }

    fn find(&self, name: &str) -> Option<u64> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.starts[i])
    }
}

/// A Rust legacy-mangled name as `llvm-nm -C` leaves it, made readable:
/// `$LT$` and friends decoded, the hash and LLVM's suffixes dropped.
fn clean(name: &str) -> String {
    let mut s = name.to_string();
    if let Some(i) = s.find(" (.llvm.") {
        s.truncate(i);
    }
    for (from, to) in [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$u20$", " "),
        ("$RF$", "&"),
        ("$C$", ","),
        ("$BP$", "*"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("$u27$", "'"),
        ("..", "::"),
        ("::_<", "::<"),
    ] {
        s = s.replace(from, to);
    }
    if let Some(i) = s.rfind("::h")
        && s.len() - i == 19
        && s[i + 3..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        s.truncate(i);
    }
    s
}

/// The program counter of a `-d exec` line:
/// `Trace 0: 0x… [cs_base/pc/flags/cflags] …`.
fn trace_pc(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("Trace ")?;
    let open = rest.find('[')?;
    let mut fields = rest[open + 1..].split('/');
    fields.next()?;
    u64::from_str_radix(fields.next()?, 16).ok()
}

/// `llvm-nm` from the pinned toolchain's `llvm-tools` component.
fn llvm_nm() -> Result<PathBuf, String> {
    let rustc = |arg: &str| -> Result<String, String> {
        let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .current_dir(setup::workspace_root())
            .args(arg.split(' '))
            .output()
            .map_err(|e| format!("cannot run rustc: {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let sysroot = rustc("--print sysroot")?.trim().to_string();
    let host = rustc("-vV")?
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .ok_or("rustc -vV names no host")?
        .to_string();
    let nm = Path::new(&sysroot).join(format!("lib/rustlib/{host}/bin/llvm-nm"));
    if !nm.exists() {
        setup::run_command(
            Command::new("rustup")
                .current_dir(setup::workspace_root())
                .args(["component", "add", "llvm-tools"]),
        )?;
    }
    if nm.exists() {
        Ok(nm)
    } else {
        Err(format!(
            "{} is missing after adding llvm-tools",
            nm.display()
        ))
    }
}

/// Instructions per symbol and the distinct kernel entries of one window.
#[derive(Default)]
struct Window {
    /// Instructions in the window.
    total: u64,
    /// Instructions per symbol index (`usize::MAX`: no symbol).
    per_symbol: HashMap<usize, u64>,
    /// Kernel entries by path (the symbols it ran through, each run with
    /// its length: equal for equal paths).
    entries: HashMap<Vec<(usize, u64)>, Entry>,
}

#[derive(Clone, Default)]
struct Entry {
    count: u64,
    length: u64,
    first_seen: u64,
    symbols: Vec<(usize, u64)>,
}

/// Runs one kernel entry (a maximal run of kernel addresses) into `window`.
fn close_entry(window: &mut Window, pcs: &mut Vec<usize>, seen: u64) {
    if pcs.is_empty() {
        return;
    }
    let mut runs: Vec<(usize, u64)> = Vec::new();
    let mut symbols: Vec<(usize, u64)> = Vec::new();
    for &s in pcs.iter() {
        match runs.last_mut() {
            Some((last, n)) if *last == s => *n += 1,
            _ => runs.push((s, 1)),
        }
        match symbols.iter_mut().find(|(i, _)| *i == s) {
            Some((_, n)) => *n += 1,
            None => symbols.push((s, 1)),
        }
    }
    let length = pcs.len() as u64;
    let entry = window.entries.entry(runs).or_insert_with(|| Entry {
        length,
        first_seen: seen,
        symbols,
        ..Entry::default()
    });
    entry.count += 1;
    pcs.clear();
}

/// Reads the trace and returns the window between the first two
/// executions of `mark`.
fn analyse(trace: &Path, symbols: &Symbols, mark: u64) -> Result<Window, String> {
    let file = fs::File::open(trace).map_err(|e| format!("{}: {e}", trace.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    let mut window = Window::default();
    let mut inside = false;
    let mut kernel_run: Vec<usize> = Vec::new();
    let mut cache: HashMap<u64, usize> = HashMap::new();
    let mut entries_seen = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            break;
        }
        let Some(pc) = trace_pc(&line) else { continue };
        if pc == mark {
            if inside {
                close_entry(&mut window, &mut kernel_run, entries_seen);
                return Ok(window);
            }
            inside = true;
        }
        if !inside {
            continue;
        }
        let symbol = *cache
            .entry(pc)
            .or_insert_with(|| symbols.index(pc).unwrap_or(usize::MAX));
        window.total += 1;
        *window.per_symbol.entry(symbol).or_default() += 1;
        if pc >= KERNEL_BASE {
            kernel_run.push(symbol);
        } else if !kernel_run.is_empty() {
            entries_seen += 1;
            close_entry(&mut window, &mut kernel_run, entries_seen);
        }
    }
    Err(if inside {
        "the trace ends inside the measured loop".into()
    } else {
        format!("the trace never reaches {MARK} (was the case name right?)")
    })
}

/// `cargo xtask profile ipc`.
pub fn run(args: &ProfileArgs) -> Result<ExitCode, String> {
    toolchain::ensure()?;
    let qemu = setup::ensure_qemu()?;
    let images = build::build_images_with(args.profile)?;
    let nm = llvm_nm()?;
    // The kernel and the root task, whose threads run every case (the
    // VMM program links at the root task's addresses: its symbols would
    // shadow the root task's).
    let symbols = Symbols::load(&nm, &[images.kernel.clone(), images.root_task.clone()])?;
    let mark = symbols
        .find(MARK)
        .ok_or_else(|| format!("no symbol {MARK} in the root task"))?;
    let dir = build::target_dir().join("profile");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let trace = dir.join("trace.log");
    let _ = fs::remove_file(&trace);

    println!(
        "==> tracing {} case {} ({} samples, one instruction per translation block)",
        args.which, args.case, args.iterations
    );
    let mut command = qemu::machine_command(
        &qemu,
        &images.kernel,
        &bench::bootargs(&args.which, args.iterations, &args.case),
        None,
    );
    command
        .args(["-icount", "shift=0"])
        .args(["-accel", "tcg,one-insn-per-tb=on"])
        .args(["-d", "exec,nochain", "-D"])
        .arg(&trace);
    let started = Instant::now();
    let run = bench::collect(
        qemu::Session::start(command, false)?,
        Instant::now() + Duration::from_secs(900),
    )?;
    println!(
        "    traced in {:.1} s ({} MB)",
        started.elapsed().as_secs_f64(),
        fs::metadata(&trace).map(|m| m.len() >> 20).unwrap_or(0)
    );
    let window = analyse(&trace, &symbols, mark)?;
    if !args.keep_trace {
        let _ = fs::remove_file(&trace);
    }
    report(&window, &symbols, args.iterations as u64, &run.records);
    Ok(ExitCode::SUCCESS)
}

fn name(symbols: &Symbols, i: usize) -> &str {
    symbols.names.get(i).map_or(UNKNOWN, String::as_str)
}

/// Prints the window per sample.
fn report(window: &Window, symbols: &Symbols, n: u64, records: &[bench::Record]) {
    let per = |v: u64| v as f64 / n as f64;
    let kernel: u64 = window.entries.values().map(|e| e.count * e.length).sum();
    let entries: u64 = window.entries.values().map(|e| e.count).sum();
    println!();
    println!(
        "per sample: {:.1} instructions ({:.1} in the kernel over {:.2} entries, {:.1} in user space or a guest)",
        per(window.total),
        per(kernel),
        per(entries),
        per(window.total - kernel)
    );
    for r in records {
        println!(
            "    the benchmark measured {} {}: median {} (counter reads subtracted)",
            r.name, r.metric, r.median
        );
    }
    println!(
        "    (the sample loop itself — counter reads, storing samples — is in the user-space part)"
    );

    println!("\nby symbol, per sample:");
    let mut rows: Vec<_> = window.per_symbol.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (&s, &count) in rows {
        if per(count) < 0.5 {
            continue;
        }
        println!(
            "  {:>8.1} {:>5.1}%  {}",
            per(count),
            100.0 * count as f64 / window.total as f64,
            name(symbols, s)
        );
    }

    println!("\nkernel entries (vector to eret), each distinct path:");
    let mut paths: Vec<_> = window.entries.values().collect();
    paths.sort_by_key(|e| e.first_seen);
    for e in paths {
        println!(
            "  {} instructions, {:.2} per sample:",
            e.length,
            e.count as f64 / n as f64
        );
        for &(s, count) in &e.symbols {
            println!("    {:>6}  {}", count, name(symbols, s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(
            clean(
                "skyscope_core::fastpath::_$LT$impl$u20$skyscope_core..kernel..Kernel$LT$M$GT$$GT$::fastpath::h8d936ccde581b11b"
            ),
            "skyscope_core::fastpath::<impl skyscope_core::kernel::Kernel<M>>::fastpath"
        );
        assert_eq!(
            clean(
                "skyscope_kernel::kernel::State::switch_to::h4737de7a39cb5187 (.llvm.10467587658349277501)"
            ),
            "skyscope_kernel::kernel::State::switch_to"
        );
        assert_eq!(clean("__sky_user_entry"), "__sky_user_entry");
    }

    #[test]
    fn addresses_past_a_symbol_have_none() {
        let symbols = Symbols {
            starts: vec![0x100, 0x200],
            ends: vec![0x110, 0],
            names: vec!["sized".into(), "label".into()],
        };
        assert_eq!(symbols.index(0x104), Some(0));
        assert_eq!(symbols.index(0x180), None, "past the sized symbol's end");
        assert_eq!(
            symbols.index(0x4000_0000),
            Some(1),
            "a label has no known end"
        );
        assert_eq!(symbols.index(0x80), None);
    }

    #[test]
    fn trace_lines_parse() {
        assert_eq!(
            trace_pc("Trace 0: 0x7f05f4000100 [00000000/0000000040200000/00000461/ff022201] "),
            Some(0x4020_0000)
        );
        assert_eq!(trace_pc("Linking TBs 0x1 [0] index 0 -> 0x2 [0]"), None);
    }

    #[test]
    fn entries_are_grouped_by_path() {
        let mut w = Window::default();
        let mut run = vec![1, 1, 2, 1];
        close_entry(&mut w, &mut run, 0);
        let mut run = vec![1, 1, 2, 1];
        close_entry(&mut w, &mut run, 1);
        let mut run = vec![1, 2, 2, 1];
        close_entry(&mut w, &mut run, 2);
        assert_eq!(w.entries.len(), 2);
        let e = &w.entries[&vec![(1, 2), (2, 1), (1, 1)]];
        assert_eq!((e.count, e.length), (2, 4));
        assert_eq!(e.symbols, vec![(1, 3), (2, 1)]);
        assert_eq!(w.entries[&vec![(1, 1), (2, 2), (1, 1)]].count, 1);
    }
}
