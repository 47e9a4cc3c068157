//! The in-kernel syscall fuzzer: random syscalls and invocations against
//! live objects, beside a thread doing legitimate work, while a watchdog
//! proves the kernel keeps scheduling and invariant checks run throughout.
//!
//! The fuzzer runs in its own CSpace (the "arena": a 256-slot CNode holding
//! copies of endpoints, notifications, reply objects, frames, page tables,
//! a spare VSpace, scheduling contexts, scheduling control, both worker
//! TCBs, an untyped it may retype and revoke, and a guest: a GuestSpace,
//! two Vcpus and a thread running as one of them at EL1). The root task keeps the
//! originals, so the fuzzer can hurt only what it was given. If it blocks
//! for good or stops itself, the root task restarts it.

use crate::{
    Outcome,
    support::{Carve, Env, ROOT, ROOT_DEPTH, give_sched_context, map_fresh_page},
};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use skyscope_abi::{
    BootInfo, CapRights, Label, MessageInfo, ObjectType, Syscall,
    bootinfo::slots,
    invocation::{self as inv, MAP_EXECUTE, REG_PC, REG_SP, REG_X0},
    ipc, println,
    syscall::{counter_now, debug_check_invariants, raw_syscall7, yield_now},
};
use skyscope_vmm::{
    arch::aarch64::cpu::EntryState,
    builder::{Exits, GuestBuilder, Syscalls, ThreadCSpace},
    vcpu::VcpuId,
};

const ARENA_RADIX: u8 = 8;
const ARENA_GUARD: u8 = 64 - ARENA_RADIX;
/// Depth of an arena slot named through the arena's unguarded capability.
const ARENA_DEPTH: u64 = ARENA_RADIX as u64;
/// Arena slot layout.
mod arena {
    pub const SELF: u64 = 1;
    pub const FUZZER: u64 = 2;
    pub const WORKER: u64 = 3;
    pub const ENDPOINTS: u64 = 4; // 4 of them; the server answers on the first
    pub const NOTIFICATIONS: u64 = 8; // 4
    pub const REPLIES: u64 = 12; // 2
    pub const VSPACE: u64 = 14;
    pub const PAGE_TABLES: u64 = 15; // 4
    pub const FRAMES: u64 = 20; // 16
    pub const SCHED_CONTROL: u64 = 36;
    pub const SCHED_CONTEXTS: u64 = 37; // 3
    pub const UNTYPED: u64 = 40;
    pub const GUEST_SPACE: u64 = 41;
    pub const VCPUS: u64 = 42; // 2
    pub const GUEST: u64 = 44; // a thread bound to the first Vcpu
    pub const WORKER_AREA: u64 = 100; // the worker's own slots: 100..160
}

static FUZZ_COUNT: AtomicU64 = AtomicU64::new(0);
static WORK_COUNT: AtomicU64 = AtomicU64::new(0);
static WATCHDOG: AtomicU64 = AtomicU64::new(0);
static SERVED: AtomicU64 = AtomicU64::new(0);
static GUEST_EXITS: AtomicU64 = AtomicU64::new(0);
static SEED: AtomicU64 = AtomicU64::new(0);
static EPOCH: AtomicU64 = AtomicU64::new(0);
static SERVER_EP: AtomicU64 = AtomicU64::new(0);
static SERVER_REPLY: AtomicU64 = AtomicU64::new(0);

/// xorshift64*: small, fast, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A capability address: mostly arena slots, sometimes anything.
    fn cptr(&mut self) -> u64 {
        match self.below(10) {
            0 => self.next(),
            1 => self.below(1 << 12),
            _ => self.below(1 << ARENA_RADIX),
        }
    }

    /// An argument word: small numbers, slot indices, object types,
    /// addresses, or anything.
    fn word(&mut self) -> u64 {
        match self.below(8) {
            0 => self.next(),
            1 => self.below(12),
            2 => self.below(1 << ARENA_RADIX),
            3 => 0x10_0000_0000 + self.below(64) * 0x1000,
            4 => 1 << self.below(64),
            5 => u64::MAX - self.below(4),
            _ => self.below(64),
        }
    }
}

/// One random syscall, any number: the console, power and debug syscalls
/// need capabilities the arena does not hold.
fn fuzz_once(rng: &mut Rng) {
    let number = match rng.below(20) {
        0..=10 => Syscall::Call as u64,
        11 => Syscall::Send as u64,
        12 => Syscall::NBSend as u64,
        13..=14 => Syscall::NBRecv as u64,
        15 => Syscall::Recv as u64,
        16 => Syscall::Reply as u64,
        17 => Syscall::ReplyRecv as u64,
        18 => Syscall::Yield as u64,
        _ if rng.below(4) == 0 => 0x100 + rng.below(8),
        _ => rng.next(),
    };
    let label = if rng.below(10) < 8 {
        Label::ALL[rng.below(Label::ALL.len() as u64) as usize] as u64
    } else {
        rng.word()
    };
    let info = if rng.below(10) == 0 {
        rng.next()
    } else {
        MessageInfo::new(label, rng.below(125) as usize, rng.below(4) as usize).raw()
    };
    let buffer = crate::support::ipc_buffer();
    for i in 4..4 + rng.below(12) as usize {
        buffer.msg[i] = rng.word();
    }
    for c in buffer.caps_or_badges.iter_mut() {
        *c = rng.cptr();
    }
    buffer.receive_cnode = rng.cptr();
    buffer.receive_index = rng.word();
    buffer.receive_depth = rng.below(70);
    let regs = [
        rng.cptr(),
        info,
        rng.word(),
        rng.word(),
        rng.word(),
        rng.word(),
        rng.cptr(),
    ];
    raw_syscall7(number, regs);
}

extern "C" fn fuzzer(_: u64) -> ! {
    let mut rng =
        Rng(SEED.load(SeqCst) ^ EPOCH.load(SeqCst).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    loop {
        fuzz_once(&mut rng);
        FUZZ_COUNT.fetch_add(1, SeqCst);
    }
}

/// Legitimate traffic in the same arena: retype, mint, call, revoke,
/// map and unmap, signal and poll. Errors are expected (the fuzzer moves
/// things around) and ignored; progress is counted.
extern "C" fn worker(_: u64) -> ! {
    let d = ROOT_DEPTH;
    let mut k = 0u64;
    loop {
        let (a, b) = (
            arena::WORKER_AREA + k % 20,
            arena::WORKER_AREA + 20 + k % 20,
        );
        let _ = inv::cnode_delete(arena::SELF, a, d);
        let _ = inv::cnode_delete(arena::SELF, b, d);
        let _ = inv::untyped_retype(
            arena::UNTYPED,
            ObjectType::Endpoint,
            0,
            arena::SELF,
            0,
            0,
            a,
            1,
        );
        let _ = inv::cnode_mint(arena::SELF, b, d, arena::SELF, a, d, CapRights::ALL, k + 1);
        let _ = ipc::call(
            arena::ENDPOINTS,
            MessageInfo::new(1, 2, 0),
            [k, k + 1, 0, 0],
        );
        let _ = ipc::nb_send(b, MessageInfo::new(2, 1, 0), [k, 0, 0, 0]);
        let _ = inv::cnode_revoke(arena::SELF, a, d);
        let frame = arena::WORKER_AREA + 40 + k % 10;
        let _ = inv::cnode_delete(arena::SELF, frame, d);
        let _ = inv::untyped_retype(
            arena::UNTYPED,
            ObjectType::Frame4K,
            0,
            arena::SELF,
            0,
            0,
            frame,
            1,
        );
        let va = 0x40_0000 + (k % 10) * 0x1000;
        let _ = inv::page_table_map(arena::PAGE_TABLES, arena::VSPACE, va);
        let _ = inv::page_table_map(arena::PAGE_TABLES + 1, arena::VSPACE, va);
        let _ = inv::frame_map(frame, arena::VSPACE, va, CapRights::ALL, 0);
        let _ = inv::frame_unmap(frame);
        let _ = ipc::signal(arena::NOTIFICATIONS);
        let _ = ipc::poll(arena::NOTIFICATIONS);
        // The guest: memory, a Vcpu (swapped now and then), its registers.
        let ipa = (k % 4) * 0x1000;
        let _ = inv::page_table_map(arena::PAGE_TABLES + 2, arena::GUEST_SPACE, ipa);
        let _ = inv::page_table_map(arena::PAGE_TABLES + 3, arena::GUEST_SPACE, ipa);
        let _ = inv::frame_map(frame, arena::GUEST_SPACE, ipa, CapRights::ALL, MAP_EXECUTE);
        let _ = inv::vcpu_set_tcb(arena::VCPUS + (k / 7) % 2, arena::GUEST);
        let _ = inv::vcpu_write_register(arena::VCPUS, k % 26, k);
        let _ = inv::vcpu_read_register(arena::VCPUS + 1, k % 26);
        let _ = inv::tcb_resume(arena::GUEST);
        if k % 50 == 49 {
            let _ = inv::cnode_revoke(arena::SELF, arena::UNTYPED, d);
        }
        k += 1;
        WORK_COUNT.fetch_add(1, SeqCst);
    }
}

/// Answers calls on the arena's first endpoint (it holds root CSpace caps).
extern "C" fn server(_: u64) -> ! {
    let (ep, reply) = (SERVER_EP.load(SeqCst), SERVER_REPLY.load(SeqCst));
    let mut r = ipc::recv(ep, reply);
    loop {
        SERVED.fetch_add(1, SeqCst);
        if r.is_ok_and(|m| m.info.label() == skyscope_abi::fault::GUEST_EXIT) {
            GUEST_EXITS.fetch_add(1, SeqCst);
        }
        let words = r.map_or([0; 4], |m| m.words);
        r = ipc::reply_recv(
            ep,
            reply,
            MessageInfo::new(0, 1, 0),
            [words[0] ^ 1, 0, 0, 0],
        );
    }
}

extern "C" fn watchdog(_: u64) -> ! {
    loop {
        WATCHDOG.fetch_add(1, SeqCst);
    }
}

/// A thread the root task can restart: its TCB, IPC buffer and stack.
struct Restartable {
    tcb: u64,
    ipc_va: u64,
    ipc_frame: u64,
    stack_top: u64,
    entry: extern "C" fn(u64) -> !,
    cspace: u64,
    guard: u8,
    priority: u8,
}

impl Restartable {
    fn new(
        env: &mut Env,
        ut: u64,
        n: u64,
        entry: extern "C" fn(u64) -> !,
        cspace: u64,
        guard: u8,
        priority: u8,
    ) -> Result<Restartable, skyscope_abi::Error> {
        let base = 0x18_0000_0000 + n * 0x2_0000;
        for page in 1..=4 {
            map_fresh_page(env, ut, base + 0x1_0000 - page * 4096)?;
        }
        let ipc_va = base + 0x1_0000;
        let ipc_frame = map_fresh_page(env, ut, ipc_va)?;
        let tcb = env.retype(ut, ObjectType::Tcb, 0, 1)?;
        let t = Restartable {
            tcb,
            ipc_va,
            ipc_frame,
            stack_top: base + 0x1_0000,
            entry,
            cspace,
            guard,
            priority,
        };
        t.configure()?;
        Ok(t)
    }

    fn configure(&self) -> Result<(), skyscope_abi::Error> {
        inv::tcb_configure(
            self.tcb,
            0,
            self.priority,
            self.cspace,
            self.guard,
            slots::VSPACE,
            self.ipc_va,
            self.ipc_frame,
        )?;
        let mut regs = [0u64; REG_X0 + 1];
        regs[REG_PC] = self.entry as *const () as u64;
        regs[REG_SP] = self.stack_top;
        inv::tcb_write_registers(self.tcb, &regs)
    }

    fn restart(&self) {
        let _ = inv::tcb_suspend(self.tcb);
        let _ = inv::tcb_set_priority(self.tcb, self.priority);
        let _ = self.configure();
        let _ = inv::tcb_resume(self.tcb);
    }
}

pub fn syscalls(info: &'static BootInfo) -> Outcome {
    let target: u64 = info
        .bootarg("fuzz_count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seed = info
        .bootarg("fuzz_seed")
        .and_then(|v| v.parse().ok())
        .unwrap_or(counter_now() | 1);
    SEED.store(seed, SeqCst);
    println!("  fuzz: seed {seed}, {target} invocations (rerun: fuzz_seed={seed})");
    let mut env = Env::new(info);
    let ut = env.private_untyped(23).map_err(|e| fail!("untyped: {e}"))?;
    let e = |e| fail!("setup: {e}");
    // The arena and what it holds (originals stay in the root CNode).
    let arena_cnode = env
        .retype(ut, ObjectType::CNode, u64::from(ARENA_RADIX), 1)
        .map_err(e)?;
    let put = |src: u64, dst: u64, rights: CapRights| {
        inv::cnode_copy(arena_cnode, dst, ARENA_DEPTH, ROOT, src, ROOT_DEPTH, rights)
    };
    check_ok!(inv::cnode_mint(
        arena_cnode,
        arena::SELF,
        ARENA_DEPTH,
        ROOT,
        arena_cnode,
        ROOT_DEPTH,
        CapRights::ALL,
        skyscope_abi::invocation::guard_word(0, ARENA_GUARD)
    ));
    let mut fill = |ty: ObjectType, first: u64, count: u64| -> Result<(), crate::Failure> {
        let originals = env.retype(ut, ty, 0, count).map_err(|e| fail!("{e}"))?;
        for i in 0..count {
            put(originals + i, first + i, CapRights::ALL).map_err(|e| fail!("{ty:?}: {e}"))?;
        }
        Ok(())
    };
    fill(ObjectType::Endpoint, arena::ENDPOINTS, 4)?;
    fill(ObjectType::Notification, arena::NOTIFICATIONS, 4)?;
    fill(ObjectType::VSpace, arena::VSPACE, 1)?;
    fill(ObjectType::Frame4K, arena::FRAMES, 16)?;
    fill(ObjectType::SchedContext, arena::SCHED_CONTEXTS, 3)?;
    // Page-table capabilities cannot be copied: the arena gets the originals.
    let tables = env.retype(ut, ObjectType::PageTable, 0, 4).map_err(e)?;
    for i in 0..4 {
        check_ok!(inv::cnode_move(
            arena_cnode,
            arena::PAGE_TABLES + i,
            ARENA_DEPTH,
            ROOT,
            tables + i,
            ROOT_DEPTH
        ));
    }
    let replies = env.retype(ut, ObjectType::Reply, 0, 2).map_err(e)?;
    for i in 0..2 {
        check_ok!(inv::cnode_move(
            arena_cnode,
            arena::REPLIES + i,
            ARENA_DEPTH,
            ROOT,
            replies + i,
            ROOT_DEPTH
        ));
    }
    check_ok!(put(
        slots::SCHED_CONTROL,
        arena::SCHED_CONTROL,
        CapRights::ALL
    ));
    let child = env.slot();
    check_ok!(inv::untyped_retype(
        ut,
        ObjectType::Untyped,
        20,
        ROOT,
        0,
        0,
        child,
        1
    ));
    check_ok!(inv::cnode_move(
        arena_cnode,
        arena::UNTYPED,
        ARENA_DEPTH,
        ROOT,
        child,
        ROOT_DEPTH
    ));

    // The server answers on arena endpoint 4 through its own caps.
    let server_reply = env.retype(ut, ObjectType::Reply, 0, 1).map_err(e)?;
    let server_ep = env.slot();
    check_ok!(inv::cnode_copy(
        ROOT,
        server_ep,
        ROOT_DEPTH,
        arena_cnode,
        arena::ENDPOINTS,
        ARENA_DEPTH,
        CapRights::ALL
    ));
    SERVER_EP.store(server_ep, SeqCst);
    SERVER_REPLY.store(server_reply, SeqCst);
    let guard_root = 64 - skyscope_abi::bootinfo::ROOT_CNODE_RADIX;
    let srv = Restartable::new(&mut env, ut, 0, server, ROOT, guard_root, 110).map_err(e)?;
    let dog = Restartable::new(&mut env, ut, 1, watchdog, ROOT, guard_root, 150).map_err(e)?;
    let fz = Restartable::new(&mut env, ut, 2, fuzzer, arena_cnode, ARENA_GUARD, 100).map_err(e)?;
    let wk = Restartable::new(&mut env, ut, 3, worker, arena_cnode, ARENA_GUARD, 100).map_err(e)?;
    // A guest thread in the arena: it runs whatever its GuestSpace holds
    // (zeroes, at first: undefined instructions, then stage-2 faults), its
    // exits go to the server, which answers them with arbitrary words.
    // The VMM's builder makes it (no RAM: the worker maps frames into its
    // GuestSpace as it goes), with a second Vcpu beside it that the worker
    // swaps in and out.
    let built = GuestBuilder::new(slots::SCHED_CONTROL)
        .priority(100)
        .budget(1_000, 10_000)
        .exits(Exits::Endpoint(server_ep))
        .cspace(ThreadCSpace::Given {
            cnode: arena_cnode,
            guard_bits: ARENA_GUARD,
        })
        .build(
            &mut Carve {
                env: &mut env,
                untyped: ut,
            },
            &mut Syscalls,
        )
        .map_err(|x| fail!("{x}"))?;
    let guest = *built
        .vcpu(VcpuId::BOOT)
        .ok_or_else(|| fail!("no guest vcpu"))?;
    let spare_vcpu = env.retype(ut, ObjectType::Vcpu, 0, 1).map_err(e)?;
    check_ok!(put(built.guest_space, arena::GUEST_SPACE, CapRights::ALL));
    check_ok!(put(guest.vcpu, arena::VCPUS, CapRights::ALL));
    check_ok!(put(spare_vcpu, arena::VCPUS + 1, CapRights::ALL));
    check_ok!(put(guest.tcb, arena::GUEST, CapRights::ALL));
    built
        .start(&mut Syscalls, VcpuId::BOOT, EntryState::kernel(0, 0))
        .map_err(|x| fail!("{x}"))?;
    check_ok!(put(fz.tcb, arena::FUZZER, CapRights::ALL));
    check_ok!(put(wk.tcb, arena::WORKER, CapRights::ALL));
    for (t, budget) in [(&srv, 10_000), (&dog, 1_000), (&fz, 10_000), (&wk, 10_000)] {
        give_sched_context(&mut env, ut, t.tcb, budget, 10_000).map_err(e)?;
        check_ok!(inv::tcb_resume(t.tcb));
    }

    // Supervise at the fuzzer's priority, taking turns with it.
    check_ok!(inv::tcb_set_priority(slots::TCB, 100));
    let f = info.timer_frequency;
    let (mut restarts, mut checks) = (0u64, 0u64);
    let (mut last_fuzz, mut last_work) = (0u64, 0u64);
    let (mut fuzz_seen, mut work_seen) = (counter_now(), counter_now());
    let mut next_check = 10_000;
    let deadline = counter_now() + f * 600;
    while FUZZ_COUNT.load(SeqCst) < target {
        yield_now();
        let now = counter_now();
        check!(now < deadline, "fuzzing did not finish in 600 s");
        let (fz_count, wk_count) = (FUZZ_COUNT.load(SeqCst), WORK_COUNT.load(SeqCst));
        if fz_count != last_fuzz {
            (last_fuzz, fuzz_seen) = (fz_count, now);
        } else if now - fuzz_seen > f / 100 {
            EPOCH.fetch_add(1, SeqCst);
            fz.restart();
            restarts += 1;
            fuzz_seen = now;
        }
        if wk_count != last_work {
            (last_work, work_seen) = (wk_count, now);
        } else if now - work_seen > f / 10 {
            wk.restart();
            restarts += 1;
            work_seen = now;
        }
        if fz_count >= next_check {
            check!(
                debug_check_invariants(slots::DEBUG),
                "kernel invariants violated after {fz_count} invocations (seed {seed})"
            );
            checks += 1;
            next_check += 10_000;
        }
    }
    for t in [&fz, &wk] {
        check_ok!(inv::tcb_suspend(t.tcb));
    }
    check_ok!(inv::tcb_set_priority(slots::TCB, 255));
    check!(
        debug_check_invariants(slots::DEBUG),
        "kernel invariants violated at the end (seed {seed})"
    );
    let dog_ticks = WATCHDOG.load(SeqCst);
    check!(dog_ticks > 0, "the watchdog never ran");
    let guest_exits = GUEST_EXITS.load(SeqCst);
    check!(guest_exits > 0, "the arena's guest never ran");
    println!(
        "  fuzz: {} invocations, {} legitimate rounds, {} calls served ({guest_exits} guest exits), {restarts} restarts, {} invariant checks passed, watchdog {dog_ticks}",
        FUZZ_COUNT.load(SeqCst),
        WORK_COUNT.load(SeqCst),
        SERVED.load(SeqCst),
        checks + 1
    );
    // Everything made for the fuzz goes; the kernel is still consistent
    // and still makes objects.
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    check!(
        debug_check_invariants(slots::DEBUG),
        "kernel invariants violated after the teardown"
    );
    check!(
        env.retype(ut, ObjectType::Tcb, 0, 1).is_ok(),
        "no retype after fuzzing"
    );
    Ok(())
}
