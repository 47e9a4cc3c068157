//! The benchmarks (`bench=ipc` on the kernel command line; run by
//! `cargo xtask bench ipc`): IPC, guest exits and the other kernel paths,
//! each case a name such as `ipc/same/0`, each metric printed as one
//! `BENCH-RESULT` JSON line.
//!
//! Measured as sel4bench does: the counter is read just before the
//! operation starts (the sender's `svc`, the guest's `hvc`, the faulting
//! instruction) and just after it completes where it completes (in the
//! receiver, or back in the first thread for a round trip); the cost of
//! two back-to-back counter reads is subtracted. The counter is
//! CNTVCT_EL0, which under QEMU's `-icount shift=0` advances once per
//! instruction, and otherwise counts nanoseconds (1 GHz).

mod guest;
pub mod ipc;
mod paths;

use crate::support::{Env, map_fresh_page};
pub use ipc::BenchError;
use skyscope_abi::{BootInfo, println, syscall::counter_now};

/// Where the sample buffers go in the root task.
const SAMPLES: u64 = 0x32_0000_0000;
/// Metrics per case at most.
const METRICS: usize = 3;
/// Calls before the samples are taken (caches, branch state, lazy FP).
pub(crate) const WARMUP: usize = 200;

/// Statistics of one metric.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Smallest sample.
    pub min: u64,
    /// Median.
    pub median: u64,
    /// Mean, in hundredths.
    pub mean_centi: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Number of samples.
    pub n: usize,
}

fn stats(samples: &mut [u64]) -> Stats {
    samples.sort_unstable();
    let n = samples.len();
    // Wide enough for any samples (a wall-clock sample can be large).
    let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
    Stats {
        min: samples[0],
        median: samples[n / 2],
        mean_centi: u64::try_from(sum * 100 / n as u128).unwrap_or(u64::MAX),
        p99: samples[(n * 99) / 100],
        n,
    }
}

/// Marks the start and the end of a measured loop (each case calls it just
/// before its first sample and just after its last), so that
/// `cargo xtask profile` can find the samples in an instruction trace by
/// this function's address. Never inlined, never called inside a sample.
#[inline(never)]
pub fn profile_mark(case: &str) {
    core::hint::black_box(case);
}

/// What the benchmarks share: the case filter, the sample buffers, the
/// counter overhead, and what was reported.
pub struct Bench {
    filter: &'static str,
    /// Samples per metric.
    pub n: usize,
    /// Cost of two back-to-back counter reads.
    pub overhead: u64,
    buffer: &'static mut [u64],
    /// Metrics reported.
    pub reported: usize,
    /// A metric whose median was zero (a broken measurement), if any.
    pub zero: Option<&'static str>,
    /// The IPC cases' figures (fastpath on), once measured.
    pub ipc: ipc::Results,
}

impl Bench {
    /// Whether case `name` runs: no filter, the filter itself, or a case
    /// under it (`ipc` selects `ipc/same/0`; `ipc/same/1` selects nothing).
    pub fn selected(&self, name: &str) -> bool {
        self.filter.is_empty()
            || name == self.filter
            || name
                .strip_prefix(self.filter)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Sample buffers for the metrics of one case, `n` words each.
    pub fn buffers(&mut self) -> [&mut [u64]; METRICS] {
        let n = self.n;
        let (a, rest) = self.buffer.split_at_mut(n);
        let (b, c) = rest.split_at_mut(n);
        [a, b, &mut c[..n]]
    }

    /// Prints the statistics of metric `metric` of case `name` (the
    /// samples are in buffer `which` of [`Bench::buffers`]) and returns
    /// them.
    pub fn report(&mut self, name: &'static str, metric: &str, which: usize) -> Stats {
        self.report_first(name, metric, which, self.n)
    }

    /// [`Bench::report`] over the first `count` samples of the buffer
    /// (a case that took fewer than `n`).
    pub fn report_first(
        &mut self,
        name: &'static str,
        metric: &str,
        which: usize,
        count: usize,
    ) -> Stats {
        let start = which * self.n;
        let s = stats(&mut self.buffer[start..start + count.min(self.n)]);
        println!(
            "BENCH-RESULT {{\"name\":\"{name}\",\"metric\":\"{metric}\",\"min\":{},\"median\":{},\"mean\":{}.{:02},\"p99\":{},\"n\":{}}}",
            s.min,
            s.median,
            s.mean_centi / 100,
            s.mean_centi % 100,
            s.p99,
            s.n
        );
        self.reported += 1;
        if s.median == 0 && self.zero.is_none() {
            self.zero = Some(name);
        }
        s
    }
}

/// A sample: `end - start` less the counter overhead.
#[inline(always)]
pub fn sample(overhead: u64, start: u64, end: u64) -> u64 {
    end.wrapping_sub(start).saturating_sub(overhead)
}

/// Revokes everything a case made from its private untyped `ut` and
/// deletes `ut`, so the memory goes back to its parent for the next case.
pub(crate) fn release(ut: u64) -> Result<(), skyscope_abi::Error> {
    use crate::support::{ROOT, ROOT_DEPTH};
    skyscope_abi::invocation::cnode_revoke(ROOT, ut, ROOT_DEPTH)?;
    skyscope_abi::invocation::cnode_delete(ROOT, ut, ROOT_DEPTH)
}

/// Cost of reading the counter twice in a row (the smallest of many).
fn counter_overhead() -> u64 {
    (0..1000)
        .map(|_| {
            let a = counter_now();
            let b = counter_now();
            b - a
        })
        .min()
        .unwrap_or(0)
}

/// Runs every case `filter` selects (see [`Bench::selected`]) with `n`
/// samples per metric.
pub fn run(info: &'static BootInfo, n: usize, filter: &'static str) -> Result<Bench, BenchError> {
    let mut env = Env::new(info);
    let ut = env.private_untyped(20)?;
    let pages = (METRICS * n * 8).div_ceil(4096) as u64;
    for p in 0..pages {
        map_fresh_page(&mut env, ut, SAMPLES + p * 4096)?;
    }
    // SAFETY: `pages` pages at SAMPLES were just mapped read-write for
    // this thread alone (they stay mapped: the untyped they came from is
    // never revoked), enough for METRICS × n words.
    let buffer = unsafe { core::slice::from_raw_parts_mut(SAMPLES as *mut u64, METRICS * n) };
    let overhead = counter_overhead();
    println!("BENCH-OVERHEAD {overhead}");
    let mut bench = Bench {
        filter,
        n,
        overhead,
        buffer,
        reported: 0,
        zero: None,
        ipc: ipc::Results::default(),
    };
    ipc::run(&mut bench, &mut env)?;
    guest::run(&mut bench, &mut env)?;
    paths::run(&mut bench, &mut env)?;
    Ok(bench)
}
