//! The native IPC benchmark: one-way `Call`, one-way `ReplyRecv` and the
//! round trip, for a server in the same (`ipc/same/W`) and in another
//! address space (`ipc/cross/W`), with W = 0, 4 and 10 message words; and
//! the same-space cases with the fastpath switched off (`ipc-slow/...`,
//! which needs the debug capability the hardened kernel does not have).
//!
//! The client reads the counter just before its `svc`, the server just
//! after its receive returns (and the other way for the reply).

use super::{Bench, WARMUP, profile_mark, sample};
use crate::support::{Env, ROOT, ROOT_DEPTH, is_empty, map_fresh_page, spawn, spawn_process};
use skyscope_abi::{
    Error, MessageInfo, ObjectType,
    bootinfo::slots,
    invocation as inv, ipc,
    syscall::{counter_now, debug_fastpath},
};

/// Where client and server exchange timestamps (mapped in both spaces).
const SHARED: u64 = 0x31_0000_0000;

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

/// The case names, by space and word count (static: records name them).
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
pub fn run(bench: &mut Bench, env: &mut Env) -> Result<(), Error> {
    let any = ["ipc/same", "ipc/cross", "ipc-slow/same"]
        .iter()
        .flat_map(|s| ["0", "4", "10"].map(move |w| (s, w)))
        .any(|(s, w)| {
            let mut name = [0u8; 24];
            let text = join(&mut name, s, w);
            bench.selected(text)
        });
    if !any {
        return Ok(());
    }
    let ut = env.private_untyped(22)?;
    let ep = env.retype(ut, ObjectType::Endpoint, 0, 1)?;
    let reply = env.retype(ut, ObjectType::Reply, 0, 1)?;
    let shared = map_fresh_page(env, ut, SHARED)?;
    put(8, ep);
    put(9, reply);
    for (space, slow) in [("same", false), ("cross", false), ("same", true)] {
        let cases: [&'static str; 3] = [0, 4, 10].map(|w| case_name(slow, space, w));
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
        for (name, words) in cases.into_iter().zip([0usize, 4, 10]) {
            if !bench.selected(name) {
                continue;
            }
            measure(bench, ep, name, words);
        }
        inv::tcb_suspend(server_tcb)?;
        if slow {
            debug_fastpath(slots::DEBUG, true);
        }
    }
    inv::cnode_revoke(ROOT, ut, ROOT_DEPTH)?;
    Ok(())
}

fn join<'a>(buffer: &'a mut [u8; 24], a: &str, b: &str) -> &'a str {
    let mut n = 0;
    for &c in a.as_bytes().iter().chain(b"/").chain(b.as_bytes()) {
        buffer[n] = c;
        n += 1;
    }
    core::str::from_utf8(&buffer[..n]).unwrap_or("")
}

/// One case: `n` calls of `words` words after the warm-up.
fn measure(bench: &mut Bench, ep: u64, name: &'static str, words: usize) {
    let message = MessageInfo::new(0, words, 0);
    let overhead = bench.overhead;
    let [call, back, round] = bench.buffers();
    let n = call.len();
    for i in 0..WARMUP + n {
        if i == WARMUP {
            profile_mark(name);
        }
        let start = counter_now();
        let _ = ipc::call(ep, message, [start, 0, 0, 0]);
        let end = counter_now();
        if i >= WARMUP {
            let k = i - WARMUP;
            call[k] = sample(overhead, start, get(1));
            back[k] = sample(overhead, get(2), end);
            round[k] = sample(overhead, start, end);
        }
    }
    profile_mark(name);
    for (which, metric) in ["call", "replyrecv", "roundtrip"].iter().enumerate() {
        bench.report(name, metric, which);
    }
}
