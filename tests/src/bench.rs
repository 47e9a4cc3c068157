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
//!
//! Every call's result is checked after the second counter read (the
//! measured window holds nothing but the call): no error, label 0, the
//! length sent, the server's four register words, the words past them
//! back through both IPC buffers (the client writes new ones before each
//! call, so a message the kernel did not carry shows the last call's),
//! and the server's timestamps inside the call's window. The first
//! failure ends the benchmark with what was wrong.

use crate::support::{Env, ROOT, ROOT_DEPTH, ipc_buffer, map_fresh_page, spawn, spawn_process};
use skyscope_abi::{
    BootInfo, Error, MessageInfo, ObjectType, invocation as inv, ipc,
    message::REGISTER_MESSAGE_WORDS, println, syscall::counter_now,
};

/// Where client and server exchange timestamps (mapped in both spaces).
const SHARED: u64 = 0x31_0000_0000;
/// Where the sample buffers go in the root task.
const SAMPLES: u64 = 0x32_0000_0000;
const WARMUP: usize = 200;
/// The server's reply words in registers.
const REPLY_WORDS: [u64; 4] = [1, 2, 3, 4];
/// Message lengths measured.
const LENGTHS: [usize; 3] = [0, 4, 10];

/// One case: where the server is, how long the message is, its figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Case {
    /// `same` (the server in the root task's address space) or `cross`.
    pub space: &'static str,
    /// Message words each way.
    pub words: usize,
    /// Client's `svc` to the server's return from receive.
    pub call: Stats,
    /// Server's `svc` to the client's return from the call.
    pub replyrecv: Stats,
    /// Client's `svc` to its return.
    pub roundtrip: Stats,
}

/// Every case's figures, in counter ticks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Results {
    /// Same space 0, 4, 10 words, then cross space 0, 4, 10 words.
    pub cases: [Case; 6],
}

impl Results {
    /// The median round trip of the same-address-space, 0-word case.
    pub fn headline(&self) -> u64 {
        self.cases[0].roundtrip.median
    }
}

/// What was wrong with a call's answer.
#[derive(Clone, Copy, Debug)]
pub enum Wrong {
    /// The call failed.
    Failed(Error),
    /// The reply's label (the server answers 0).
    Label(u64),
    /// The reply's length (the server answers with the call's).
    Length(usize),
    /// A word of the reply.
    Word {
        /// Which word.
        index: usize,
        /// What it was.
        got: u64,
        /// What the server (or, past the registers, the client) sent.
        want: u64,
    },
    /// The server's timestamps lie outside the call's window.
    Timestamps {
        /// Before the client's `svc`.
        start: u64,
        /// After the server's receive returned.
        arrived: u64,
        /// Before the server's `svc` to answer.
        sent: u64,
        /// After the client's call returned.
        end: u64,
    },
}

/// Why the benchmark stopped.
#[derive(Clone, Copy, Debug)]
pub enum BenchError {
    /// Making the objects, threads or mappings failed.
    Setup(Error),
    /// A measured call came back wrong.
    Call {
        /// `same` or `cross`.
        space: &'static str,
        /// Message words.
        words: usize,
        /// Call number, warm-up included.
        call: usize,
        /// What was wrong.
        wrong: Wrong,
    },
}

impl From<Error> for BenchError {
    fn from(e: Error) -> BenchError {
        BenchError::Setup(e)
    }
}

impl core::fmt::Display for BenchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BenchError::Setup(e) => write!(f, "setting up: {e}"),
            BenchError::Call {
                space,
                words,
                call,
                wrong,
            } => {
                write!(f, "{space}-space {words}-word call {call}: ")?;
                match wrong {
                    Wrong::Failed(e) => write!(f, "failed with {e}"),
                    Wrong::Label(l) => write!(f, "reply label {l}, expected 0"),
                    Wrong::Length(n) => write!(f, "reply of {n} words, expected {words}"),
                    Wrong::Word { index, got, want } => {
                        write!(f, "reply word {index} is {got:#x}, expected {want:#x}")
                    }
                    Wrong::Timestamps {
                        start,
                        arrived,
                        sent,
                        end,
                    } => write!(
                        f,
                        "server timestamps {arrived}..{sent} outside the call's {start}..{end}"
                    ),
                }
            }
        }
    }
}

/// The IPC-buffer word `index` the client sends in call number `call`.
fn buffer_word(call: usize, index: usize) -> u64 {
    ((call as u64) << 8) | index as u64
}

/// Checks the answer to call number `call` of `words` words.
fn check_answer(
    answer: Result<ipc::Received, Error>,
    words: usize,
    call: usize,
    window: [u64; 4],
) -> Result<(), Wrong> {
    let m = answer.map_err(Wrong::Failed)?;
    if m.info.label() != 0 {
        return Err(Wrong::Label(m.info.label()));
    }
    if m.info.length() != words || m.info.extra_caps() != 0 {
        return Err(Wrong::Length(m.info.length()));
    }
    let buffer = ipc_buffer();
    for index in 0..words {
        let (got, want) = match index {
            i if i < REGISTER_MESSAGE_WORDS => (m.words[i], REPLY_WORDS[i]),
            i => (buffer.msg[i], buffer_word(call, i)),
        };
        if got != want {
            return Err(Wrong::Word { index, got, want });
        }
    }
    let [start, arrived, sent, end] = window;
    if !(start <= arrived && arrived <= sent && sent <= end) {
        return Err(Wrong::Timestamps {
            start,
            arrived,
            sent,
            end,
        });
    }
    Ok(())
}

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
        r = ipc::reply_recv(ep, reply, out, REPLY_WORDS);
    }
}

/// One measured call: the counter before it, its answer, the counter
/// after. Kept out of line so that the call's arguments arrive in the
/// registers it takes them in and nothing else is scheduled inside the
/// measured window.
#[inline(never)]
fn timed_call(ep: u64, message: MessageInfo) -> (u64, Result<ipc::Received, Error>, u64) {
    let start = counter_now();
    let answer = ipc::call(ep, message, [start, 0, 0, 0]);
    let end = counter_now();
    (start, answer, end)
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
/// JSON line per metric; returns every case's figures, or the first
/// call that came back wrong.
pub fn run_ipc(info: &'static BootInfo, n: usize) -> Result<Results, BenchError> {
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
    let mut results = Results::default();
    let mut case = 0;
    for space in ["same", "cross"] {
        let server_tcb = if space == "same" {
            spawn(&mut env, ut, 7, server, 0, 254, 10_000, 10_000)?.tcb
        } else {
            spawn_process(&mut env, ut, server, 0, 254, &[(shared, SHARED)])?
        };
        for words in LENGTHS {
            let message = MessageInfo::new(0, words, 0);
            let (call, rest) = buffer.split_at_mut(n);
            let (back, round) = rest.split_at_mut(n);
            let ipc = ipc_buffer();
            for i in 0..WARMUP + n {
                for w in REGISTER_MESSAGE_WORDS..words {
                    ipc.msg[w] = buffer_word(i, w);
                }
                let (start, answer, end) = timed_call(ep, message);
                let (arrived, sent) = (get(1), get(2));
                check_answer(answer, words, i, [start, arrived, sent, end]).map_err(|wrong| {
                    BenchError::Call {
                        space,
                        words,
                        call: i,
                        wrong,
                    }
                })?;
                if i >= WARMUP {
                    let k = i - WARMUP;
                    call[k] = (arrived - start).saturating_sub(overhead);
                    back[k] = (end - sent).saturating_sub(overhead);
                    round[k] = (end - start).saturating_sub(overhead);
                }
            }
            let mut figures = [Stats::default(); 3];
            for (j, (metric, samples)) in [
                ("call", &mut *call),
                ("replyrecv", &mut *back),
                ("roundtrip", &mut *round),
            ]
            .into_iter()
            .enumerate()
            {
                let s = stats(samples);
                figures[j] = s;
                println!(
                    "BENCH-RESULT {{\"space\":\"{space}\",\"words\":{words},\"metric\":\"{metric}\",\"min\":{},\"median\":{},\"mean\":{}.{:02},\"p99\":{},\"n\":{}}}",
                    s.min,
                    s.median,
                    s.mean_centi / 100,
                    s.mean_centi % 100,
                    s.p99,
                    s.n
                );
            }
            results.cases[case] = Case {
                space,
                words,
                call: figures[0],
                replyrecv: figures[1],
                roundtrip: figures[2],
            };
            case += 1;
        }
        inv::tcb_suspend(server_tcb)?;
    }
    inv::cnode_revoke(ROOT, ut, ROOT_DEPTH)?;
    Ok(results)
}
