//! The native IPC benchmark: one-way `Call`, one-way `ReplyRecv` and the
//! round trip, for a server in the same (`ipc/same/W`) and in another
//! address space (`ipc/cross/W`), with W = 0, 4 and 10 message words; and
//! the same-space cases with the fastpath switched off (`ipc-slow/same/W`,
//! which needs the debug capability the hardened kernel does not have).
//!
//! The client reads the counter just before its `svc`, the server just
//! after its receive returns (and the other way for the reply). The round
//! trip is the sum of the two one-way figures of the same call, which is
//! how seL4's reference round trip is formed (255 + 277 = 532): the
//! client's own `svc`-to-return time would also hold the server's
//! timestamping between its two counter reads (about ten instructions),
//! which is the benchmark's, not the IPC's.
//!
//! Every call's result is checked after the second counter read (the
//! measured window holds nothing but the call): no error, label 0, the
//! length sent, the server's four register words, the words past them
//! back through both IPC buffers (the client writes new ones before each
//! call, so a message the kernel did not carry shows the last call's),
//! and the server's timestamps inside the call's window. The first
//! failure ends the benchmark with what was wrong.

use super::{Bench, Stats, WARMUP, profile_mark, sample};
use crate::support::{Env, ipc_buffer, is_empty, map_fresh_page, spawn, spawn_process};
use skyscope_abi::{
    Error, MessageInfo, ObjectType,
    bootinfo::slots,
    invocation as inv, ipc,
    message::REGISTER_MESSAGE_WORDS,
    syscall::{counter_now, debug_fastpath},
};

/// Where client and server exchange timestamps (mapped in both spaces).
const SHARED: u64 = 0x31_0000_0000;
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
    /// `call` + `replyrecv`, sample by sample.
    pub roundtrip: Stats,
}

/// Every case's figures (with the fastpath on), in counter ticks.
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
    /// A step of a case failed, for this reason.
    Failed(&'static str),
    /// A measured call came back wrong.
    Call {
        /// The case.
        case: &'static str,
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
            BenchError::Failed(why) => write!(f, "{why}"),
            BenchError::Call { case, call, wrong } => {
                write!(f, "{case} call {call}: ")?;
                match wrong {
                    Wrong::Failed(e) => write!(f, "failed with {e}"),
                    Wrong::Label(l) => write!(f, "reply label {l}, expected 0"),
                    Wrong::Length(n) => write!(f, "reply of {n} words"),
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

/// The case names, by pass and word count (static: records name them).
fn case_name(slow: bool, space: &str, words: usize) -> &'static str {
    match (slow, space, words) {
        (false, "same", 0) => "ipc/same/0",
        (false, "same", 4) => "ipc/same/4",
        (false, "same", _) => "ipc/same/10",
        (false, _, 0) => "ipc/cross/0",
        (false, _, 4) => "ipc/cross/4",
        (false, _, _) => "ipc/cross/10",
        (true, _, 0) => "ipc-slow/same/0",
        (true, _, 4) => "ipc-slow/same/4",
        (true, _, _) => "ipc-slow/same/10",
    }
}

/// Runs the IPC cases the filter selects.
pub fn run(bench: &mut Bench, env: &mut Env) -> Result<(), BenchError> {
    let passes = [("same", false), ("cross", false), ("same", true)];
    if !passes.iter().any(|&(space, slow)| {
        LENGTHS
            .iter()
            .any(|&w| bench.selected(case_name(slow, space, w)))
    }) {
        return Ok(());
    }
    let ut = env.private_untyped(22)?;
    let ep = env.retype(ut, ObjectType::Endpoint, 0, 1)?;
    let reply = env.retype(ut, ObjectType::Reply, 0, 1)?;
    let shared = map_fresh_page(env, ut, SHARED)?;
    put(8, ep);
    put(9, reply);
    for (pass, (space, slow)) in passes.into_iter().enumerate() {
        let cases = LENGTHS.map(|w| case_name(slow, space, w));
        if !cases.iter().any(|c| bench.selected(c)) {
            continue;
        }
        // Without the fastpath every call takes the general path: the
        // debug capability switches it (absent from the hardened kernel).
        if slow {
            if is_empty(slots::DEBUG) {
                continue;
            }
            debug_fastpath(slots::DEBUG, false);
        }
        let server_tcb = if space == "same" {
            // Its own place in the thread area for each pass.
            let n = if slow { 8 } else { 7 };
            spawn(env, ut, n, server, 0, 254, 10_000, 10_000)?.tcb
        } else {
            spawn_process(env, ut, server, 0, 254, &[(shared, SHARED)])?
        };
        for (i, (name, words)) in cases.into_iter().zip(LENGTHS).enumerate() {
            if !bench.selected(name) {
                continue;
            }
            let figures = measure(bench, ep, name, words)?;
            if !slow {
                bench.ipc.cases[3 * pass + i] = Case {
                    space,
                    words,
                    call: figures[0],
                    replyrecv: figures[1],
                    roundtrip: figures[2],
                };
            }
        }
        inv::tcb_suspend(server_tcb)?;
        if slow {
            debug_fastpath(slots::DEBUG, true);
        }
    }
    super::release(ut)?;
    Ok(())
}

/// One case: `n` checked calls of `words` words after the warm-up.
fn measure(
    bench: &mut Bench,
    ep: u64,
    name: &'static str,
    words: usize,
) -> Result<[Stats; 3], BenchError> {
    let message = MessageInfo::new(0, words, 0);
    let overhead = bench.overhead;
    let [call, back, round] = bench.buffers();
    let n = call.len();
    let ipc = ipc_buffer();
    for i in 0..WARMUP + n {
        for w in REGISTER_MESSAGE_WORDS..words {
            ipc.msg[w] = buffer_word(i, w);
        }
        if i == WARMUP {
            profile_mark(name);
        }
        let (start, answer, end) = timed_call(ep, message);
        let (arrived, sent) = (get(1), get(2));
        check_answer(answer, words, i, [start, arrived, sent, end]).map_err(|wrong| {
            BenchError::Call {
                case: name,
                call: i,
                wrong,
            }
        })?;
        if i >= WARMUP {
            let k = i - WARMUP;
            call[k] = sample(overhead, start, arrived);
            back[k] = sample(overhead, sent, end);
            round[k] = call[k] + back[k];
        }
    }
    profile_mark(name);
    let mut figures = [Stats::default(); 3];
    for (which, metric) in ["call", "replyrecv", "roundtrip"].iter().enumerate() {
        figures[which] = bench.report(name, metric, which);
    }
    Ok(figures)
}
