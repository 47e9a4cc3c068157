//! The guest exit benchmark (`guest/vmm`): a bare-metal guest at EL1
//! (`skyscope_guest_minimal::timed_caller`) reads its virtual counter,
//! makes `hvc #6`, and reads it again once resumed; each exit reaches a
//! VMM thread (a native thread of the root task, on the guest's exit
//! channel) that decodes it and answers "skip the instruction, set x0",
//! as a VMM answers an emulated call.
//!
//! Metrics: `exit` (the guest's counter read before `hvc` to the VMM's
//! return from its receive), `resume` (the VMM's counter read before its
//! reply to the guest's after the `hvc`) and `roundtrip` (both guest
//! reads). The guest keeps its readings in its RAM, which the root task
//! reads through its window afterwards; the VMM keeps its own in the
//! benchmark's sample buffers.
//!
//! A guest calling a native server takes the same path: an exit is a
//! message to whatever thread receives on the vCPU's fault endpoint, VMM
//! or not; so there is no separate row for it.

use super::{Bench, BenchError, WARMUP, profile_mark, sample};
use crate::support::{Carve, Env, spawn};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use skyscope_abi::{
    Error, ObjectType, bootinfo::slots, ipc, syscall::counter_now, window::MappedWindow,
};
use skyscope_client::Syscalls;
use skyscope_guest_minimal::{self as guest, timed};
use skyscope_vmm::{
    arch::aarch64::{cpu::EntryState, exit::Exit},
    builder::{Exits, GuestBuilder, RamMapping},
    channel::{ExitChannel, Resume},
    memory::{GuestAddress, GuestMemory, GuestRange},
    vcpu::VcpuId,
};

/// Where the root task maps the guest's RAM.
const WINDOW: u64 = 0x33_0000_0000;
/// Badge of the guest's exit capability.
const BADGE: u64 = 0x6e;

/// What the VMM thread is told and reports.
static ENDPOINT: AtomicU64 = AtomicU64::new(0);
static REPLY: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
/// Exits to answer (warm-up included); the one after is not answered.
static TARGET: AtomicU64 = AtomicU64::new(0);
/// Addresses of the VMM's two sample arrays (arrived, sent).
static ARRIVED: AtomicU64 = AtomicU64::new(0);
static SENT: AtomicU64 = AtomicU64::new(0);
/// An exit that was not the guest's `hvc #6` (its raw first word), or 0.
static WRONG: AtomicU64 = AtomicU64::new(0);

/// The VMM: answers exits, noting when each arrived and when its answer
/// left, until the target; then signals the root task and stops.
extern "C" fn vmm(_: u64) -> ! {
    let channel = ExitChannel {
        endpoint: ENDPOINT.load(SeqCst),
        reply: REPLY.load(SeqCst),
    };
    let target = TARGET.load(SeqCst) as usize;
    let (arrived, sent) = (
        ARRIVED.load(SeqCst) as *mut u64,
        SENT.load(SeqCst) as *mut u64,
    );
    let mut exit = channel.wait();
    let mut i = 0;
    loop {
        let at = counter_now();
        // The profiler's window: from the last warm-up exit to the last
        // measured one, n round trips' worth (the marks fall in samples
        // the statistics do not see, or one of n).
        if i + 1 == WARMUP || i + 1 == target {
            profile_mark(NAME);
        }
        match exit {
            Ok(m)
                if m.badge == BADGE
                    && m.exit
                        == (Exit::Hypercall {
                            imm: timed::HYPERCALL,
                        }) => {}
            Ok(m) => WRONG.store(m.words[1] | 1, SeqCst),
            Err(e) => WRONG.store(e.code() << 32 | 1, SeqCst),
        }
        if i == target || WRONG.load(SeqCst) != 0 {
            break;
        }
        let k = i.wrapping_sub(WARMUP);
        let leaving = counter_now();
        if i >= WARMUP {
            // SAFETY: the root task mapped both arrays for `target -
            // WARMUP` words and reads them only after `DONE`.
            unsafe {
                arrived.add(k).write_volatile(at);
                sent.add(k).write_volatile(leaving);
            }
        }
        exit = channel.resume_and_wait(Resume::skip_setting(Some(0), i as u64));
        i += 1;
    }
    let _ = ipc::signal(DONE.load(SeqCst));
    loop {
        let _ = ipc::wait(DONE.load(SeqCst));
    }
}

/// The case.
const NAME: &str = "guest/vmm";

/// Runs the guest cases the filter selects.
pub fn run(bench: &mut Bench, env: &mut Env) -> Result<(), BenchError> {
    if !bench.selected(NAME) {
        return Ok(());
    }
    let ut = env.private_untyped(22)?;
    let ram = RamMapping {
        guest: GuestRange::new(GuestAddress(guest::LOAD_ADDRESS), timed::RAM_BYTES)
            .ok_or(Error::RangeError)?,
        vmm_address: WINDOW,
        vmm_space: slots::VSPACE,
    };
    let built = GuestBuilder::new(slots::SCHED_CONTROL)
        .priority(200)
        .budget(10_000, 10_000)
        .exits(Exits::NewChannel { badge: BADGE })
        .ram(ram)
        .build(&mut Carve { env, untyped: ut }, &mut Syscalls)
        .map_err(|_| BenchError::Failed("building the guest"))?;
    // SAFETY: the builder has just mapped `timed::RAM_BYTES` of fresh
    // frames at WINDOW in this VSpace (the kernel refuses to map over an
    // existing mapping, so no Rust object lives there); they stay mapped
    // until the untyped is revoked below, after the last use.
    let window = unsafe { MappedWindow::new(WINDOW as usize, timed::RAM_BYTES as usize) };
    let mut memory = GuestMemory::new(ram.guest.start(), window)
        .map_err(|_| BenchError::Failed("guest memory"))?;
    memory
        .load(GuestAddress(guest::LOAD_ADDRESS), guest::timed_caller())
        .map_err(|_| BenchError::Failed("loading the guest"))?;
    let channel = built
        .channel
        .ok_or(BenchError::Failed("the guest has no exit channel"))?;
    let done = env.retype(ut, ObjectType::Notification, 0, 1)?;
    // The guest's readings must not wrap over the measured ones.
    let n = bench.n.min(timed::SAMPLES as usize - WARMUP);
    let overhead = bench.overhead;
    let [exit_samples, resume_samples, round] = bench.buffers();
    ENDPOINT.store(channel.endpoint, SeqCst);
    REPLY.store(channel.reply, SeqCst);
    DONE.store(done, SeqCst);
    TARGET.store((WARMUP + n) as u64, SeqCst);
    ARRIVED.store(exit_samples.as_mut_ptr() as u64, SeqCst);
    SENT.store(resume_samples.as_mut_ptr() as u64, SeqCst);
    WRONG.store(0, SeqCst);
    // Between the root task (255) and the guest (200).
    spawn(env, ut, 9, vmm, 0, 250, 10_000, 10_000)?;
    built
        .start(
            &mut Syscalls,
            VcpuId::BOOT,
            EntryState::kernel(guest::LOAD_ADDRESS, 0),
        )
        .map_err(|_| BenchError::Failed("starting the guest"))?;
    ipc::wait(done)?;
    if WRONG.load(SeqCst) != 0 {
        skyscope_abi::println!(
            "  guest exit benchmark: unexpected exit, syndrome {:#x}",
            WRONG.load(SeqCst)
        );
        return Err(BenchError::Failed("an exit was not the guest's hvc #6"));
    }
    for k in 0..n {
        let pair = timed::SAMPLES_AT + 16 * ((WARMUP + k) as u64 % timed::SAMPLES);
        let read = |at| {
            memory
                .read_u64(GuestAddress(at))
                .map_err(|_| BenchError::Failed("reading the guest's samples"))
        };
        let (start, end) = (read(pair)?, read(pair + 8)?);
        let (arrived, sent) = (exit_samples[k], resume_samples[k]);
        if !(start <= arrived && arrived <= sent && sent <= end) {
            return Err(BenchError::Failed(
                "the guest's and the VMM's readings are out of order",
            ));
        }
        exit_samples[k] = sample(overhead, start, arrived);
        resume_samples[k] = sample(overhead, sent, end);
        round[k] = sample(overhead, start, end);
    }
    // The guest's readings may be fewer than the other cases' samples.
    for (which, metric) in ["exit", "resume", "roundtrip"].iter().enumerate() {
        bench.report_first(NAME, metric, which, n);
    }
    super::release(ut)?;
    Ok(())
}
