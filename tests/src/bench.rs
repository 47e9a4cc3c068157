//! The native IPC benchmark: one-way `Call`, one-way `ReplyRecv` and the
//! round trip, for a server in the same and in another address space, with
//! 0-, 4- and 10-word messages.
//!
//! Measured as sel4bench does: the client reads the counter just before
//! its `svc`, the server just after its receive returns (and the other way
//! for the reply); the cost of two back-to-back counter reads is
//! subtracted. The counter is CNTVCT_EL0, which under QEMU's
//! `-icount shift=0` advances once per instruction, and otherwise counts
//! nanoseconds (1 GHz).

use crate::support::{Env, ROOT, ROOT_DEPTH, map_fresh_page, spawn, spawn_process};
use skyscope_abi::{
    BootInfo, Error, MessageInfo, ObjectType, invocation as inv, ipc, println, syscall::counter_now,
};

/// Where client and server exchange timestamps (mapped in both spaces).
const SHARED: u64 = 0x31_0000_0000;
/// Where the sample buffers go in the root task.
const SAMPLES: u64 = 0x32_0000_0000;
const WARMUP: usize = 200;

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
    let sum: u64 = samples.iter().sum();
    Stats {
        min: samples[0],
        median: samples[n / 2],
        mean_centi: sum * 100 / n as u64,
        p99: samples[(n * 99) / 100],
        n,
    }
}

#[inline(always)]
fn word(i: u64) -> *mut u64 {
    (SHARED + 8 * i) as *mut u64
}

fn get(i: u64) -> u64 {
    // SAFETY: the shared page is mapped read-write in both spaces.
    unsafe { word(i).read_volatile() }
}

fn put(i: u64, v: u64) {
    // SAFETY: as above.
    unsafe { word(i).write_volatile(v) }
}

/// The server: receives, notes when the call arrived, answers, noting when
/// the reply left. Uses no globals (it may run in another address space).
extern "C" fn server(_: u64) -> ! {
    let (ep, reply) = (get(8), get(9));
    let mut r = ipc::recv(ep, reply);
    loop {
        let arrived = counter_now();
        put(1, arrived);
        let info = match r {
            Ok(m) => m.info,
            Err(_) => MessageInfo::new(0, 0, 0),
        };
        let out = MessageInfo::new(0, info.length(), 0);
        put(2, counter_now());
        r = ipc::reply_recv(ep, reply, out, [1, 2, 3, 4]);
    }
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

/// Runs every case with `n` samples each and prints one `BENCH-RESULT`
/// JSON line per metric. Returns the median round trip of the
/// same-address-space, 0-word case.
pub fn run_ipc(info: &'static BootInfo, n: usize) -> Result<u64, Error> {
    let mut env = Env::new(info);
    let ut = env.private_untyped(23)?;
    let ep = env.retype(ut, ObjectType::Endpoint, 0, 1)?;
    let reply = env.retype(ut, ObjectType::Reply, 0, 1)?;
    let shared = map_fresh_page(&mut env, ut, SHARED)?;
    put(8, ep);
    put(9, reply);
    let pages = (3 * n * 8).div_ceil(4096) as u64;
    for p in 0..pages {
        map_fresh_page(&mut env, ut, SAMPLES + p * 4096)?;
    }
    // SAFETY: `pages` pages at SAMPLES were just mapped read-write for
    // this thread alone, enough for 3 n words.
    let buffer = unsafe { core::slice::from_raw_parts_mut(SAMPLES as *mut u64, 3 * n) };
    let overhead = counter_overhead();
    println!("BENCH-OVERHEAD {overhead}");
    let mut headline = 0;
    for space in ["same", "cross"] {
        let server_tcb = if space == "same" {
            spawn(&mut env, ut, 7, server, 0, 254, 10_000, 10_000)?.tcb
        } else {
            spawn_process(&mut env, ut, server, 0, 254, &[(shared, SHARED)])?
        };
        for words in [0usize, 4, 10] {
            let message = MessageInfo::new(0, words, 0);
            let (call, rest) = buffer.split_at_mut(n);
            let (back, round) = rest.split_at_mut(n);
            for i in 0..WARMUP + n {
                let start = counter_now();
                let _ = ipc::call(ep, message, [start, 0, 0, 0]);
                let end = counter_now();
                if i >= WARMUP {
                    let k = i - WARMUP;
                    call[k] = (get(1) - start).saturating_sub(overhead);
                    back[k] = (end - get(2)).saturating_sub(overhead);
                    round[k] = (end - start).saturating_sub(overhead);
                }
            }
            for (metric, samples) in [
                ("call", &mut *call),
                ("replyrecv", &mut *back),
                ("roundtrip", &mut *round),
            ] {
                let s = stats(samples);
                println!(
                    "BENCH-RESULT {{\"space\":\"{space}\",\"words\":{words},\"metric\":\"{metric}\",\"min\":{},\"median\":{},\"mean\":{}.{:02},\"p99\":{},\"n\":{}}}",
                    s.min,
                    s.median,
                    s.mean_centi / 100,
                    s.mean_centi % 100,
                    s.p99,
                    s.n
                );
                if space == "same" && words == 0 && metric == "roundtrip" {
                    headline = s.median;
                }
            }
        }
        inv::tcb_suspend(server_tcb)?;
    }
    inv::cnode_revoke(ROOT, ut, ROOT_DEPTH)?;
    Ok(headline)
}
