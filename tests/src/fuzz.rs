//! The in-kernel syscall fuzzer: random syscalls and invocations against
//! live objects of every type, in every state the arena can hold, beside
//! threads doing legitimate work, while a watchdog proves the kernel keeps
//! scheduling and invariant checks run throughout.
//!
//! The arena is a 256-slot CNode laid out by [`arena`]: CNodes of radix 1,
//! 4 and 8 nested so that two- and three-level addresses resolve, threads
//! in every configuration (running, blocked holding a reply object,
//! configured with and without IPC buffer and fault endpoint, in a VSpace
//! or a GuestSpace, runnable without a scheduling context), endpoints,
//! notifications (bound to a thread, to an IRQ handler, free), reply
//! objects (one in use), scheduling contexts (bound, unbound,
//! unconfigured), scheduling control, a spare VSpace and GuestSpace, the
//! guest's GuestSpace and Vcpus, page tables (mapped and unmapped, the
//! originals: they cannot be copied), 4 KiB, 2 MiB and device frames, a
//! RAM and a device untyped, IRQ handlers (one bound to a notification),
//! a read-only console capability and the audit log. Every 10,000
//! invocations the root task revokes the untyped the last generation was
//! made from (removing its objects wherever the fuzzer put capabilities
//! to them), empties the arena and lays it out again, so every kind and
//! state is there for the whole run.
//!
//! The fuzzer's own CSpace root is a radix-1 CNode whose slot 0 holds the
//! arena (capability address `i < 256` is arena slot `i`, two levels
//! down) and whose slot 1 holds a radix-4 "safe" CNode, whose slot 0
//! holds the radix-1 CNode ([`NESTED`] addresses, three levels). The
//! arena has no capability to the top or the safe CNode, so the fuzzer
//! can use what the safe CNode holds but not move or delete it: IRQ
//! control lives there (it cannot be copied; deleted once, it would be
//! gone for the rest of the run). Half of the fuzzer's calls are
//! invocations aimed at an object that implements the label, with
//! arguments of the right shape (slot addresses that resolve, object
//! types, sizes, interrupt lines, aligned addresses); the other half are
//! random syscalls. It records every result, per label, per syscall number
//! and per object kind of the target, and the scenario fails if an object
//! kind was never found, a label never reached its object or never
//! succeeded, a console, power or debug syscall succeeded without its
//! capability, `Preempted` came back, or a long kernel operation kept the
//! watchdog off the processor.

use crate::{
    Failure, Outcome,
    support::{Carve, Env, ROOT, ROOT_DEPTH, give_sched_context, map_fresh_page},
};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use skyscope_abi::{
    BootInfo, CapRights, Error, Label, MessageInfo, ObjectType, Syscall,
    bootinfo::slots,
    invocation::{self as inv, MAP_EXECUTE, REG_PC, REG_SP, REG_X0, guard_word},
    ipc, println,
    syscall::{counter_now, debug_check_invariants, raw_syscall7, wait_for_interrupt, yield_now},
};
use skyscope_client::Syscalls;
use skyscope_vmm::{
    arch::aarch64::cpu::EntryState,
    builder::{Exits, GuestBuilder, ThreadCSpace},
    vcpu::VcpuId,
};

const ARENA_RADIX: u8 = 8;
/// Guard of the arena capability the worker and the guest use as their
/// CSpace root (and of `arena::SELF`): a capability address is a slot.
const ARENA_GUARD: u8 = 64 - ARENA_RADIX;
/// Depth of an arena slot named through the root task's guardless arena
/// capability (or `arena::BARE`).
const ARENA_DEPTH: u64 = ARENA_RADIX as u64;
/// Depth of an arena slot named through `arena::SELF`.
const SELF_DEPTH: u64 = 64;
/// Guard of the fuzzer's CSpace root, a radix-1 CNode (the "top" CNode)
/// whose slot 0 holds the arena and slot 1 the "safe" radix-4 CNode. The
/// arena holds no capability to either, so the fuzzer cannot change what
/// they hold: the safe CNode keeps IRQ control (which cannot be copied,
/// so once deleted it would be gone for the rest of the run) and the
/// nested addresses always name what the layout says.
const TOP_GUARD: u8 = 64 - 1 - ARENA_RADIX;
/// Guard of the safe CNode in the top CNode's slot 1: with it, the safe
/// CNode and the radix-1 one in its slot 0 use up the 8 bits an arena
/// slot would.
const NEST_GUARD: u8 = ARENA_RADIX - 4 - 1;
/// The fuzzer's first address below the top CNode's slot 1:
/// `NESTED + (j << 1 | k)` is the safe CNode's slot `j`, or for `j = 0`
/// the radix-1 CNode's slot `k` (three levels down).
const NESTED: u64 = 1 << ARENA_RADIX;
/// Addresses the fuzzer's layout knows: the arena, then the nested slots.
const ADDRESSES: usize = NESTED as usize + 32;
/// Invariant checks and arena refreshes happen every this many invocations.
const CHECK_EVERY: u64 = 10_000;

/// The arena's slots. Counted ones are consecutive.
mod arena {
    /// The arena, guard 56: slot `i` is `(i, 64)`.
    pub const SELF: u64 = 1;
    /// The arena, no guard: `(i, 8)`; `(CNODE4 << 4 | j, 12)` is the
    /// radix-4 CNode's slot `j`; `(CNODE4 << 5 | k, 13)` the radix-1
    /// CNode's slot `k`.
    pub const BARE: u64 = 2;
    /// A radix-4 CNode holding the radix-1 one in slot 0.
    pub const CNODE4: u64 = 4;
    /// A radix-1 CNode holding a copy of itself in slot 1.
    pub const CNODE1: u64 = 5;
    /// An empty radix-8 CNode.
    pub const CNODE8: u64 = 6;
    pub const FUZZER: u64 = 7;
    pub const WORKER: u64 = 8;
    /// The guest's thread (it runs as the first Vcpu).
    pub const GUEST: u64 = 9;
    /// Waits, holding `REPLIES` in use, on `ENDPOINTS + 3` with the
    /// notification `NOTIFICATIONS` bound.
    pub const HOLDER: u64 = 10;
    /// Waits on `REPLIES` for the holder's answer.
    pub const CALLER: u64 = 11;
    /// 6 configured threads, the other configurations (see `refresh`).
    pub const IDLE_TCBS: u64 = 12;
    /// 4: the server's, the holder's, a fault endpoint nobody serves, the
    /// one the holder waits on.
    pub const ENDPOINTS: u64 = 18;
    /// 4: bound to the holder, bound to an IRQ handler, 2 free.
    pub const NOTIFICATIONS: u64 = 22;
    /// 3: in use (the caller waits on it), 2 free.
    pub const REPLIES: u64 = 26;
    pub const SCHED_CONTROL: u64 = 29;
    /// 5: the holder's, the caller's, bound to a thread that is not
    /// running, configured and unbound, unconfigured.
    pub const SCHED_CONTEXTS: u64 = 30;
    pub const VSPACE: u64 = 35;
    pub const GUEST_SPACE: u64 = 36;
    pub const SPARE_GUEST_SPACE: u64 = 37;
    /// 2: the guest's, a spare one.
    pub const VCPUS: u64 = 39;
    /// 8: three mapped in `VSPACE` (the second translating `SPARE_VA`'s
    /// 4 KiB pages), two in `GUEST_SPACE`, one in
    /// `SPARE_GUEST_SPACE`, two unmapped.
    pub const PAGE_TABLES: u64 = 41;
    /// 16 frames of 4 KiB: the first mapped in `VSPACE`, the second in
    /// `GUEST_SPACE`, the last a read-only copy.
    pub const FRAMES: u64 = 49;
    /// 2 frames of 2 MiB: the first mapped in `VSPACE`.
    pub const LARGE_FRAMES: u64 = 65;
    /// Device frames: 4 KiB mapped in `VSPACE`, 4 KiB, 2 MiB.
    pub const DEVICE_FRAMES: u64 = 67;
    /// 1 MiB of RAM (the worker retypes from it).
    pub const UNTYPED: u64 = 70;
    /// 1 MiB of device memory (flash).
    pub const DEVICE_UNTYPED: u64 = 71;
    /// 2: line 44 (made into this slot every generation), line 45 bound
    /// to `NOTIFICATIONS + 1`.
    pub const IRQ_HANDLERS: u64 = 73;
    /// The console, READ only: the fuzzer cannot print.
    pub const CONSOLE: u64 = 75;
    pub const AUDIT_LOG: u64 = 76;
    /// First slot the layout leaves empty.
    pub const FREE: u64 = 77;
    /// The worker's own slots: 128..256.
    pub const WORKER_AREA: u64 = 128;
    /// The worker's big CNode (radix 10, 1024 endpoints).
    pub const BIG: u64 = WORKER_AREA + 70;
    /// The untyped the worker makes the big CNode from when it revokes.
    pub const BIG_UNTYPED: u64 = WORKER_AREA + 71;
    /// 4 MiB the destroyer makes a huge CNode from, once per generation.
    pub const HUGE_UNTYPED: u64 = WORKER_AREA + 72;
    /// The destroyer's huge CNode (radix 15, 32,768 endpoints).
    pub const HUGE: u64 = WORKER_AREA + 73;
}

/// Where the arena's spare VSpace has its tables and mappings: two page
/// tables translate `SPARE_VA..SPARE_VA + 2 MiB` (4 KiB pages), a third
/// the 2 MiB at `SPARE_VA + 8 MiB`; 2 MiB frames map in the 2 MiB slots
/// between.
const SPARE_VA: u64 = 0x1_0000_0000;
/// Where IPC buffers of the arena's threads may be (outside the root
/// task's image, unmapped in the root task's space).
const IPC_AREA: u64 = 0x2_0000_0000;

/// What the layout puts in a slot (for per-kind counts and for aiming
/// invocations at objects that implement them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Untyped,
    DeviceUntyped,
    CNode1,
    CNode4,
    CNode8,
    RunningTcb,
    BlockedTcb,
    IdleTcb,
    GuestTcb,
    Endpoint,
    Notification,
    BoundNotification,
    ReplyInUse,
    Reply,
    SchedControl,
    BoundSchedContext,
    UnboundSchedContext,
    VSpace,
    GuestSpace,
    Vcpu,
    MappedPageTable,
    UnmappedPageTable,
    Frame,
    MappedFrame,
    LargeFrame,
    DeviceFrame,
    IrqControl,
    IrqHandler,
    Console,
    AuditLog,
}

const KINDS: usize = 30;

impl Kind {
    const ALL: [Kind; KINDS] = [
        Kind::Untyped,
        Kind::DeviceUntyped,
        Kind::CNode1,
        Kind::CNode4,
        Kind::CNode8,
        Kind::RunningTcb,
        Kind::BlockedTcb,
        Kind::IdleTcb,
        Kind::GuestTcb,
        Kind::Endpoint,
        Kind::Notification,
        Kind::BoundNotification,
        Kind::ReplyInUse,
        Kind::Reply,
        Kind::SchedControl,
        Kind::BoundSchedContext,
        Kind::UnboundSchedContext,
        Kind::VSpace,
        Kind::GuestSpace,
        Kind::Vcpu,
        Kind::MappedPageTable,
        Kind::UnmappedPageTable,
        Kind::Frame,
        Kind::MappedFrame,
        Kind::LargeFrame,
        Kind::DeviceFrame,
        Kind::IrqControl,
        Kind::IrqHandler,
        Kind::Console,
        Kind::AuditLog,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Untyped => "untyped",
            Kind::DeviceUntyped => "device-untyped",
            Kind::CNode1 => "cnode-r1",
            Kind::CNode4 => "cnode-r4",
            Kind::CNode8 => "cnode-r8",
            Kind::RunningTcb => "tcb-running",
            Kind::BlockedTcb => "tcb-blocked",
            Kind::IdleTcb => "tcb-idle",
            Kind::GuestTcb => "tcb-guest",
            Kind::Endpoint => "endpoint",
            Kind::Notification => "notification",
            Kind::BoundNotification => "notification-bound",
            Kind::ReplyInUse => "reply-in-use",
            Kind::Reply => "reply",
            Kind::SchedControl => "sched-control",
            Kind::BoundSchedContext => "sc-bound",
            Kind::UnboundSchedContext => "sc-unbound",
            Kind::VSpace => "vspace",
            Kind::GuestSpace => "guest-space",
            Kind::Vcpu => "vcpu",
            Kind::MappedPageTable => "page-table-mapped",
            Kind::UnmappedPageTable => "page-table-unmapped",
            Kind::Frame => "frame-4k",
            Kind::MappedFrame => "frame-4k-mapped",
            Kind::LargeFrame => "frame-2m",
            Kind::DeviceFrame => "frame-device",
            Kind::IrqControl => "irq-control",
            Kind::IrqHandler => "irq-handler",
            Kind::Console => "console-read",
            Kind::AuditLog => "audit-log",
        }
    }

    /// Whether an object of this kind implements `label`.
    fn accepts(self, label: Label) -> bool {
        use Label as L;
        match self {
            Kind::Untyped | Kind::DeviceUntyped => label == L::UntypedRetype,
            Kind::CNode1 | Kind::CNode4 | Kind::CNode8 => matches!(
                label,
                L::CNodeCopy
                    | L::CNodeMint
                    | L::CNodeMove
                    | L::CNodeMutate
                    | L::CNodeDelete
                    | L::CNodeRevoke
            ),
            Kind::RunningTcb | Kind::BlockedTcb | Kind::IdleTcb | Kind::GuestTcb => matches!(
                label,
                L::TcbConfigure
                    | L::TcbSetPriority
                    | L::TcbReadRegisters
                    | L::TcbWriteRegisters
                    | L::TcbResume
                    | L::TcbSuspend
                    | L::TcbBindNotification
                    | L::TcbUnbindNotification
            ),
            Kind::Frame | Kind::MappedFrame | Kind::LargeFrame | Kind::DeviceFrame => {
                matches!(label, L::FrameMap | L::FrameUnmap | L::FrameGetAddress)
            }
            Kind::MappedPageTable | Kind::UnmappedPageTable => {
                matches!(label, L::PageTableMap | L::PageTableUnmap)
            }
            Kind::IrqControl => label == L::IrqControlGet,
            Kind::IrqHandler => {
                matches!(label, L::IrqHandlerAck | L::IrqHandlerSetNotification)
            }
            Kind::SchedControl => label == L::SchedControlConfigure,
            Kind::BoundSchedContext | Kind::UnboundSchedContext => {
                matches!(label, L::SchedContextBind | L::SchedContextUnbind)
            }
            Kind::AuditLog => label == L::AuditRead,
            Kind::Vcpu => matches!(
                label,
                L::VcpuSetTcb | L::VcpuReadRegister | L::VcpuWriteRegister | L::VcpuSetIrq
            ),
            Kind::Endpoint
            | Kind::Notification
            | Kind::BoundNotification
            | Kind::ReplyInUse
            | Kind::Reply
            | Kind::VSpace
            | Kind::GuestSpace
            | Kind::Console => false,
        }
    }
}

/// The layout: `(first address, count, kind)`; addresses from `NESTED` on
/// are the fuzzer's nested ones (each slot of the safe CNode has two).
const LAYOUT: &[(u64, u64, Kind)] = &[
    (arena::SELF, 2, Kind::CNode8),
    (arena::CNODE4, 1, Kind::CNode4),
    (arena::CNODE1, 1, Kind::CNode1),
    (arena::CNODE8, 1, Kind::CNode8),
    (arena::FUZZER, 2, Kind::RunningTcb),
    (arena::GUEST, 1, Kind::GuestTcb),
    (arena::HOLDER, 2, Kind::BlockedTcb),
    (arena::IDLE_TCBS, 6, Kind::IdleTcb),
    (arena::ENDPOINTS, 4, Kind::Endpoint),
    (arena::NOTIFICATIONS, 1, Kind::BoundNotification),
    (arena::NOTIFICATIONS + 1, 3, Kind::Notification),
    (arena::REPLIES, 1, Kind::ReplyInUse),
    (arena::REPLIES + 1, 2, Kind::Reply),
    (arena::SCHED_CONTROL, 1, Kind::SchedControl),
    (arena::SCHED_CONTEXTS, 3, Kind::BoundSchedContext),
    (arena::SCHED_CONTEXTS + 3, 2, Kind::UnboundSchedContext),
    (arena::VSPACE, 1, Kind::VSpace),
    (arena::GUEST_SPACE, 2, Kind::GuestSpace),
    (arena::VCPUS, 2, Kind::Vcpu),
    (arena::PAGE_TABLES, 6, Kind::MappedPageTable),
    (arena::PAGE_TABLES + 6, 2, Kind::UnmappedPageTable),
    (arena::FRAMES, 2, Kind::MappedFrame),
    (arena::FRAMES + 2, 14, Kind::Frame),
    (arena::LARGE_FRAMES, 2, Kind::LargeFrame),
    (arena::DEVICE_FRAMES, 3, Kind::DeviceFrame),
    (arena::UNTYPED, 1, Kind::Untyped),
    (arena::DEVICE_UNTYPED, 1, Kind::DeviceUntyped),
    (arena::IRQ_HANDLERS, 2, Kind::IrqHandler),
    (arena::CONSOLE, 1, Kind::Console),
    (arena::AUDIT_LOG, 1, Kind::AuditLog),
    // The radix-1 CNode (the safe CNode's slot 0): an endpoint, itself.
    (NESTED, 1, Kind::Endpoint),
    (NESTED + 1, 1, Kind::CNode1),
    // The safe CNode's slots 1..9.
    (nested(1), 2, Kind::Endpoint),
    (nested(2), 2, Kind::Notification),
    (nested(3), 2, Kind::Frame),
    (nested(4), 2, Kind::IdleTcb),
    (nested(5), 2, Kind::UnboundSchedContext),
    (nested(6), 2, Kind::Vcpu),
    (nested(7), 2, Kind::IrqHandler),
    (nested(SAFE_IRQ_CONTROL), 2, Kind::IrqControl),
];

/// The fuzzer's address of the safe CNode's slot `j` (1..16).
const fn nested(j: u64) -> u64 {
    NESTED + (j << 1)
}

/// Two shared interrupt lines no device of QEMU `virt` uses (SPIs 12 and
/// 13): the arena's IRQ handlers.
const IRQ_LINES: [u64; 2] = [44, 45];

/// The safe CNode's slot for IRQ control (slots 0..8 are refilled every
/// generation; IRQ control stays).
const SAFE_IRQ_CONTROL: u64 = 8;
/// The arena frame the safe CNode's slot 3 gets a copy of (the arena gets
/// a copy too, not the original).
const SAFE_FRAME_FROM: u64 = 4;

const NO_KIND: u8 = u8::MAX;

const fn kind_table() -> [u8; ADDRESSES] {
    let mut table = [NO_KIND; ADDRESSES];
    let mut row = 0;
    while row < LAYOUT.len() {
        let (first, count, kind) = LAYOUT[row];
        let mut i = 0;
        while i < count {
            table[(first + i) as usize] = kind as u8;
            i += 1;
        }
        row += 1;
    }
    table
}

static KIND_OF: [u8; ADDRESSES] = kind_table();

/// What the layout says the fuzzer's address `cptr` names.
fn kind_of(cptr: u64) -> Option<Kind> {
    let k = *KIND_OF.get(usize::try_from(cptr).ok()?)?;
    Kind::ALL.get(usize::from(k)).copied()
}

// ---- what the threads share with the root task ---------------------------

static FUZZ_COUNT: AtomicU64 = AtomicU64::new(0);
static STRUCTURED: AtomicU64 = AtomicU64::new(0);
static WORK_COUNT: AtomicU64 = AtomicU64::new(0);
static SERVED: AtomicU64 = AtomicU64::new(0);
static GUEST_EXITS: AtomicU64 = AtomicU64::new(0);
static SEED: AtomicU64 = AtomicU64::new(0);
static EPOCH: AtomicU64 = AtomicU64::new(0);
static SERVER_EP: AtomicU64 = AtomicU64::new(0);
static SERVER_REPLY: AtomicU64 = AtomicU64::new(0);
/// The root task's image, which no argument word the fuzzer sends may
/// point into: a thread sent there by a register write or a fault reply
/// would run the root task's own code with random registers and corrupt
/// the test, which would say nothing about the kernel.
static IMAGE: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static HOLDER_CALLS: AtomicU64 = AtomicU64::new(0);
static HOLDER_WAKES: AtomicU64 = AtomicU64::new(0);
/// What the holder's last receive of a call returned in x0, x1 and x6.
static HOLDER_LAST: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static CALLER_REPLIES: AtomicU64 = AtomicU64::new(0);

/// Result buckets: 0 success, 1..=18 the error codes, 19 anything else.
const CODES: usize = Error::ALL.len() + 2;
const OTHER: usize = CODES - 1;
/// Syscall buckets: `Syscall::ALL`, then every other number.
const SYSCALLS: usize = Syscall::ALL.len() + 1;
const LABELS: usize = Label::ALL.len();

static LABEL_RESULTS: [[AtomicU64; CODES]; LABELS] =
    [const { [const { AtomicU64::new(0) }; CODES] }; LABELS];
/// Calls with the label on an object that implements it, whose target
/// was found (not `InvalidCapability` or `FailedLookup`).
static LABEL_REACHED: [AtomicU64; LABELS] = [const { AtomicU64::new(0) }; LABELS];
static SYSCALL_RESULTS: [[AtomicU64; CODES]; SYSCALLS] =
    [const { [const { AtomicU64::new(0) }; CODES] }; SYSCALLS];
/// Calls whose target address names a slot of this kind in the layout.
static KIND_TARGETED: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];
/// Of those, calls that found something there.
static KIND_FOUND: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];

/// The watchdog: on while the fuzz runs; longest gap between two of its
/// runs outside and during invariant checks; how many times it came back.
static DOG_ON: AtomicU64 = AtomicU64::new(0);
static DOG_OFF_CPU: AtomicU64 = AtomicU64::new(u64::MAX);
static DOG_GAP: AtomicU64 = AtomicU64::new(0);
static DOG_GAP_AT: AtomicU64 = AtomicU64::new(0);
static DOG_GAP_IN_CHECK: AtomicU64 = AtomicU64::new(0);
static DOG_RUNS: AtomicU64 = AtomicU64::new(0);
/// The watchdog's period and its time out of budget (period - budget).
static DOG_PERIOD: AtomicU64 = AtomicU64::new(u64::MAX);
static DOG_WAIT: AtomicU64 = AtomicU64::new(0);
/// Whole periods the watchdog did not run in, outside invariant checks.
static DOG_MISSED: AtomicU64 = AtomicU64::new(0);
/// Gaps more than 2 ms late (outside invariant checks), by the step the
/// worker was at and by whether the root task was laying out an arena.
static DOG_LATE_BY_STEP: [AtomicU64; WORK_STEPS.len()] =
    [const { AtomicU64::new(0) }; WORK_STEPS.len()];
static DOG_LATE_REFRESHING: AtomicU64 = AtomicU64::new(0);
static DOG_LATE_HUGE: AtomicU64 = AtomicU64::new(0);
/// Long gaps (see `report_watchdog`) that ended while the destroyer was
/// inside the destruction of its huge CNode.
static DOG_LONG_IN_HUGE: AtomicU64 = AtomicU64::new(0);
/// Odd while the root task runs a (debug, unpreemptible) invariant check.
static CHECKING: AtomicU64 = AtomicU64::new(0);
/// Upper bounds of the watchdog's gap histogram (the last bin is open).
static DOG_BINS: [AtomicU64; DOG_BIN_COUNT - 1] = [const { AtomicU64::new(0) }; DOG_BIN_COUNT - 1];
const DOG_BIN_COUNT: usize = 6;
/// Gaps (outside invariant checks) per bin.
static DOG_HISTOGRAM: [AtomicU64; DOG_BIN_COUNT] = [const { AtomicU64::new(0) }; DOG_BIN_COUNT];
/// What was going on when the longest gap ended: the fuzzer's last
/// syscall number and message info, the worker's step, whether the root
/// task was laying out a new arena.
static DOG_CONTEXT: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static FUZZ_LAST: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static WORK_STEP: AtomicU64 = AtomicU64::new(0);
static REFRESHING: AtomicU64 = AtomicU64::new(0);
const WORK_STEPS: [&str; 10] = [
    "endpoints",
    "frames",
    "guest",
    "large-frame",
    "table-remap",
    "sc-rebind",
    "big-fill",
    "big-destroy",
    "untyped-revoke",
    "idle",
];

/// The worker's legitimate operations that succeeded, by kind.
static WORK_OK: [AtomicU64; WORK_OPS] = [const { AtomicU64::new(0) }; WORK_OPS];
const WORK_OPS: usize = 10;
const WORK_NAMES: [&str; WORK_OPS] = [
    "retype",
    "call",
    "map",
    "guest-map",
    "large-map",
    "table-remap",
    "sc-rebind",
    "big-delete",
    "big-revoke",
    "huge-revoke (destroyer)",
];
/// Odd while the worker is inside the deletion or revoke of its big
/// CNode; goes up by 2 per destruction.
static BIG_EPISODE: AtomicU64 = AtomicU64::new(0);
/// Counter ticks the longest destruction of a big CNode took (wall time,
/// with the preemptions in it), and the shortest.
static BIG_LONGEST: AtomicU64 = AtomicU64::new(0);
static BIG_SHORTEST: AtomicU64 = AtomicU64::new(u64::MAX);
static HUGE_LONGEST: AtomicU64 = AtomicU64::new(0);
/// The arena's generation, and the one the worker last made and destroyed
/// its huge CNode in.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static HUGE_DONE_FOR: AtomicU64 = AtomicU64::new(0);
/// Tries at the huge CNode in this generation.
static HUGE_TRIES: AtomicU64 = AtomicU64::new(0);
/// How the last huge CNode that failed did: `step << 32 | error code`.
static HUGE_FAILURE: AtomicU64 = AtomicU64::new(0);
/// Chunks of endpoints retyped into the current big CNode.
static BIG_FILLED: AtomicU64 = AtomicU64::new(0);
/// 1 while the destroyer makes and destroys its huge CNode.
static HUGE_BUSY: AtomicU64 = AtomicU64::new(0);
/// Odd while the destroyer revokes its huge CNode's untyped.
static HUGE_EPISODE: AtomicU64 = AtomicU64::new(0);
static HUGE_SHORTEST: AtomicU64 = AtomicU64::new(u64::MAX);

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

// ---- random values --------------------------------------------------------

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

    fn pick(&mut self, from: &[u64]) -> u64 {
        from.get(self.below(from.len() as u64) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// A capability address: mostly the arena's slots and the nested
    /// ones, sometimes anything.
    fn cptr(&mut self) -> u64 {
        match self.below(16) {
            0 => self.next(),
            1 => self.below(1 << 12),
            2..=3 => NESTED + self.below(32),
            _ => self.below(NESTED),
        }
    }

    /// An argument word: small numbers, slot indices, object types,
    /// addresses, or anything (never an address in the root task's image).
    fn word(&mut self) -> u64 {
        let w = match self.below(8) {
            0 => self.next(),
            1 => self.below(14),
            2 => self.below(NESTED),
            3 => 0x10_0000_0000 + self.below(64) * 0x1000,
            4 => 1 << self.below(64),
            5 => u64::MAX - self.below(4),
            _ => self.below(65),
        };
        outside_image(w)
    }
}

/// `w`, moved out of the root task's image if it points there.
fn outside_image(w: u64) -> u64 {
    if (IMAGE[0].load(Relaxed)..IMAGE[1].load(Relaxed)).contains(&w) {
        w ^ (1 << 40)
    } else {
        w
    }
}

// ---- aimed invocations ----------------------------------------------------

const UNTYPED_TARGETS: [u64; 2] = [arena::UNTYPED, arena::DEVICE_UNTYPED];
const CNODE_TARGETS: [u64; 6] = [
    arena::SELF,
    arena::BARE,
    arena::CNODE4,
    arena::CNODE1,
    arena::CNODE8,
    NESTED + 1,
];
const TCB_TARGETS: [u64; 12] = [
    arena::FUZZER,
    arena::WORKER,
    arena::GUEST,
    arena::HOLDER,
    arena::CALLER,
    arena::IDLE_TCBS,
    arena::IDLE_TCBS + 1,
    arena::IDLE_TCBS + 2,
    arena::IDLE_TCBS + 3,
    arena::IDLE_TCBS + 4,
    arena::IDLE_TCBS + 5,
    nested(4),
];
const FRAME_TARGETS: [u64; 10] = [
    arena::FRAMES,
    arena::FRAMES + 1,
    arena::FRAMES + 2,
    arena::FRAMES + 15,
    arena::LARGE_FRAMES,
    arena::LARGE_FRAMES + 1,
    arena::DEVICE_FRAMES,
    arena::DEVICE_FRAMES + 1,
    arena::DEVICE_FRAMES + 2,
    nested(3),
];
const TABLE_TARGETS: [u64; 8] = [
    arena::PAGE_TABLES,
    arena::PAGE_TABLES + 1,
    arena::PAGE_TABLES + 2,
    arena::PAGE_TABLES + 3,
    arena::PAGE_TABLES + 4,
    arena::PAGE_TABLES + 5,
    arena::PAGE_TABLES + 6,
    arena::PAGE_TABLES + 7,
];
const IRQ_HANDLER_TARGETS: [u64; 3] = [arena::IRQ_HANDLERS, arena::IRQ_HANDLERS + 1, nested(7)];
const IRQ_CONTROL_TARGETS: [u64; 1] = [nested(SAFE_IRQ_CONTROL)];
const SC_TARGETS: [u64; 6] = [
    arena::SCHED_CONTEXTS,
    arena::SCHED_CONTEXTS + 1,
    arena::SCHED_CONTEXTS + 2,
    arena::SCHED_CONTEXTS + 3,
    arena::SCHED_CONTEXTS + 4,
    nested(5),
];
const VCPU_TARGETS: [u64; 3] = [arena::VCPUS, arena::VCPUS + 1, nested(6)];
const SPACE_TARGETS: [u64; 3] = [arena::VSPACE, arena::GUEST_SPACE, arena::SPARE_GUEST_SPACE];
const ENDPOINT_TARGETS: [u64; 6] = [
    arena::ENDPOINTS,
    arena::ENDPOINTS + 1,
    arena::ENDPOINTS + 2,
    arena::ENDPOINTS + 3,
    NESTED,
    nested(1),
];
const NOTIFICATION_TARGETS: [u64; 5] = [
    arena::NOTIFICATIONS,
    arena::NOTIFICATIONS + 1,
    arena::NOTIFICATIONS + 2,
    arena::NOTIFICATIONS + 3,
    nested(2),
];

/// The objects that implement `label`.
fn targets(label: Label) -> &'static [u64] {
    use Label as L;
    match label {
        L::UntypedRetype => &UNTYPED_TARGETS,
        L::CNodeCopy
        | L::CNodeMint
        | L::CNodeMove
        | L::CNodeMutate
        | L::CNodeDelete
        | L::CNodeRevoke => &CNODE_TARGETS,
        L::TcbConfigure
        | L::TcbSetPriority
        | L::TcbReadRegisters
        | L::TcbWriteRegisters
        | L::TcbResume
        | L::TcbSuspend
        | L::TcbBindNotification
        | L::TcbUnbindNotification => &TCB_TARGETS,
        L::FrameMap | L::FrameUnmap | L::FrameGetAddress => &FRAME_TARGETS,
        L::PageTableMap | L::PageTableUnmap => &TABLE_TARGETS,
        L::IrqControlGet => &IRQ_CONTROL_TARGETS,
        L::IrqHandlerAck | L::IrqHandlerSetNotification => &IRQ_HANDLER_TARGETS,
        L::SchedControlConfigure => &[arena::SCHED_CONTROL],
        L::SchedContextBind | L::SchedContextUnbind => &SC_TARGETS,
        L::AuditRead => &[arena::AUDIT_LOG],
        L::VcpuSetTcb | L::VcpuReadRegister | L::VcpuWriteRegister | L::VcpuSetIrq => &VCPU_TARGETS,
    }
}

/// A slot argument `(index, depth)` that resolves from the CNode at the
/// fuzzer's address `cnode` (if the layout is intact): through one, two
/// or three CNodes. `fresh` prefers slots the layout leaves empty.
fn slot_arg(rng: &mut Rng, cnode: u64, fresh: bool) -> (u64, u64) {
    let arena_slot = |rng: &mut Rng| {
        if fresh && rng.below(4) != 0 {
            arena::FREE + rng.below(arena::WORKER_AREA - arena::FREE)
        } else {
            rng.below(NESTED)
        }
    };
    let nest4_slot = |rng: &mut Rng| {
        if fresh {
            1 + rng.below(15)
        } else {
            rng.below(16)
        }
    };
    match cnode {
        arena::SELF => (arena_slot(rng), SELF_DEPTH),
        arena::BARE => match rng.below(3) {
            0 => (arena_slot(rng), ARENA_DEPTH),
            1 => ((arena::CNODE4 << 4) | nest4_slot(rng), ARENA_DEPTH + 4),
            _ => ((arena::CNODE4 << 5) | rng.below(2), ARENA_DEPTH + 5),
        },
        arena::CNODE4 => match rng.below(2) {
            0 => (nest4_slot(rng), 4),
            _ => (rng.below(2), 5),
        },
        arena::CNODE1 | NESTED => (rng.below(2), 1),
        arena::CNODE8 => (rng.below(NESTED), ARENA_DEPTH),
        _ => (rng.word(), rng.below(70)),
    }
}

/// Rights: usually all, sometimes any subset.
fn rights(rng: &mut Rng) -> u64 {
    if rng.below(2) == 0 {
        u64::from(CapRights::ALL.bits())
    } else {
        rng.below(16)
    }
}

/// Radix plus guard bits of the CNode at the fuzzer's address `cnode`, as
/// a CSpace root: the guard that makes an address one slot.
fn guard_for(rng: &mut Rng, cnode: u64) -> u64 {
    let radix = match cnode {
        arena::CNODE4 => 4,
        arena::CNODE1 | NESTED => 1,
        _ => u64::from(ARENA_RADIX),
    };
    match rng.below(4) {
        0 => rng.word(),
        1 => guard_word(0, rng.below(61) as u8),
        _ => guard_word(0, (64 - radix) as u8),
    }
}

/// A virtual or guest-physical address a frame or table may map at.
fn map_address(rng: &mut Rng, space: u64) -> u64 {
    let page = 0x1000 * rng.below(512);
    match (space, rng.below(4)) {
        (_, 0) => rng.word() & !0xfff,
        (arena::VSPACE, 1) => SPARE_VA + 0x20_0000 * (1 + rng.below(4)),
        (arena::VSPACE, _) => SPARE_VA + page,
        (_, 1) => 0x20_0000 * rng.below(8),
        _ => page,
    }
}

/// One invocation aimed at an object that implements its label, with
/// arguments of the right shape. Returns the label's index, the message
/// info and the four register words; longer arguments and the extra
/// capabilities are in the IPC buffer.
fn aimed(rng: &mut Rng) -> (u64, u64, [u64; 4]) {
    use Label as L;
    let index = rng.below(LABELS as u64) as usize;
    let label = Label::ALL[index];
    let target = if rng.below(8) == 0 {
        rng.cptr()
    } else {
        rng.pick(targets(label))
    };
    let mut args = [0u64; 36];
    let mut caps = [0u64; 3];
    let (length, ncaps): (usize, usize) = match label {
        L::UntypedRetype => {
            let ty = if rng.below(16) == 0 {
                rng.word()
            } else {
                rng.below(13)
            };
            let size = match ObjectType::from_word(ty) {
                Some(ObjectType::Untyped) => 4 + rng.below(18),
                Some(ObjectType::CNode) => 1 + rng.below(12),
                _ if rng.below(8) == 0 => rng.word(),
                _ => 0,
            };
            let root = rng.pick(&CNODE_TARGETS);
            let (node, depth) = if rng.below(3) == 0 {
                slot_arg(rng, root, false)
            } else {
                (0, 0)
            };
            let offset = match root {
                arena::CNODE4 => rng.below(16),
                arena::CNODE1 | NESTED => rng.below(2),
                _ if depth == 0 => arena::FREE + rng.below(arena::WORKER_AREA - arena::FREE),
                _ => rng.below(NESTED),
            };
            let count = if rng.below(8) == 0 {
                rng.word()
            } else {
                1 + rng.below(4)
            };
            args[..6].copy_from_slice(&[ty, size, node, depth, offset, count]);
            caps[0] = root;
            (6, 1)
        }
        L::CNodeCopy | L::CNodeMint | L::CNodeMove | L::CNodeMutate => {
            let (dest, dest_depth) = slot_arg(rng, target, true);
            let source_root = rng.pick(&CNODE_TARGETS);
            let (src, src_depth) = slot_arg(rng, source_root, false);
            let data = match rng.below(4) {
                0 => rng.below(16),
                1 => guard_word(0, rng.below(64) as u8),
                2 => rng.word(),
                _ => 0,
            };
            args[..4].copy_from_slice(&[dest, dest_depth, src, src_depth]);
            caps[0] = source_root;
            match label {
                L::CNodeCopy => {
                    args[4] = rights(rng);
                    (5, 1)
                }
                L::CNodeMint => {
                    args[4] = rights(rng);
                    args[5] = data;
                    (6, 1)
                }
                L::CNodeMove => (4, 1),
                _ => {
                    args[4] = data;
                    (5, 1)
                }
            }
        }
        L::CNodeDelete | L::CNodeRevoke => {
            // Half the time what the fuzzer made, so the layout lasts.
            let fresh = rng.below(2) == 0;
            let (index, depth) = slot_arg(rng, target, fresh);
            args[..2].copy_from_slice(&[index, depth]);
            (2, 0)
        }
        L::TcbConfigure => {
            let fault = match rng.below(3) {
                0 => 0,
                1 => rng.pick(&ENDPOINT_TARGETS),
                _ => rng.cptr(),
            };
            let cspace = rng.pick(&CNODE_TARGETS);
            let space = rng.pick(&SPACE_TARGETS);
            let buffer = if rng.below(2) == 0 {
                0
            } else {
                IPC_AREA + rng.below(8) * 0x400
            };
            args[..4].copy_from_slice(&[fault, rng.below(110), guard_for(rng, cspace), buffer]);
            caps[0] = cspace;
            caps[1] = space;
            if buffer != 0 || rng.below(4) == 0 {
                caps[2] = rng.pick(&FRAME_TARGETS);
                (4, 3)
            } else {
                (4, 2)
            }
        }
        L::TcbSetPriority => {
            args[0] = rng.below(110);
            (1, 0)
        }
        L::TcbReadRegisters => {
            args[0] = rng.below(37);
            (1, 0)
        }
        L::TcbWriteRegisters => {
            let count = 1 + rng.below(35) as usize;
            args[0] = count as u64;
            for a in args[1..=count].iter_mut() {
                *a = rng.word();
            }
            // A program counter that runs nothing: never the root task's code.
            args[1 + REG_PC] = if rng.below(2) == 0 {
                0
            } else {
                0xdead_0000 + 4 * rng.below(16)
            };
            (1 + count, 0)
        }
        L::TcbResume | L::TcbSuspend | L::TcbUnbindNotification => (0, 0),
        L::TcbBindNotification | L::IrqHandlerSetNotification => {
            caps[0] = rng.pick(&NOTIFICATION_TARGETS);
            (0, 1)
        }
        L::FrameMap => {
            let space = rng.pick(&SPACE_TARGETS);
            args[..3].copy_from_slice(&[map_address(rng, space), rights(rng), rng.below(4)]);
            caps[0] = space;
            (3, 1)
        }
        L::PageTableMap => {
            let space = rng.pick(&SPACE_TARGETS);
            args[0] = map_address(rng, space);
            caps[0] = space;
            (1, 1)
        }
        L::FrameUnmap
        | L::FrameGetAddress
        | L::PageTableUnmap
        | L::IrqHandlerAck
        | L::SchedContextUnbind => (0, 0),
        L::IrqControlGet => {
            let irq = match rng.below(4) {
                0 => rng.word(),
                1 => rng.below(32),
                _ => 32 + rng.below(96),
            };
            let root = rng.pick(&CNODE_TARGETS);
            let (index, depth) = slot_arg(rng, root, true);
            args[..3].copy_from_slice(&[irq, index, depth]);
            caps[0] = root;
            (3, 1)
        }
        L::SchedControlConfigure => {
            let budget = 50 + rng.below(3000);
            let period = if rng.below(4) == 0 {
                rng.word()
            } else {
                budget + rng.below(20_000)
            };
            args[..2].copy_from_slice(&[budget, period]);
            caps[0] = rng.pick(&SC_TARGETS);
            (2, 1)
        }
        L::SchedContextBind | L::VcpuSetTcb => {
            caps[0] = rng.pick(&TCB_TARGETS);
            (0, 1)
        }
        L::AuditRead => {
            args[0] = rng.below(8);
            (1, 0)
        }
        L::VcpuReadRegister => {
            args[0] = rng.below(40);
            (1, 0)
        }
        L::VcpuWriteRegister => {
            args[..2].copy_from_slice(&[rng.below(40), rng.word()]);
            (2, 0)
        }
        L::VcpuSetIrq => {
            // INTIDs around the limit, priorities around 255, flags with a
            // stray bit now and then.
            let intid = if rng.below(8) == 0 {
                rng.word()
            } else {
                rng.below(1030)
            };
            let priority = if rng.below(8) == 0 {
                rng.word()
            } else {
                rng.below(260)
            };
            args[..3].copy_from_slice(&[intid, priority, rng.below(16)]);
            (3, 0)
        }
    };
    let buffer = crate::support::ipc_buffer();
    for (i, &a) in args.iter().enumerate().take(length).skip(4) {
        buffer.msg[i] = a;
    }
    buffer.caps_or_badges[..ncaps].copy_from_slice(&caps[..ncaps]);
    let info = MessageInfo::new(label as u64, length, ncaps).raw();
    (target, info, [args[0], args[1], args[2], args[3]])
}

// ---- the fuzzer -----------------------------------------------------------

/// One syscall: half the time an aimed invocation, otherwise any number
/// with random registers (the console, power and debug syscalls need
/// capabilities the arena does not hold with the rights they need).
fn fuzz_once(rng: &mut Rng) {
    let buffer = crate::support::ipc_buffer();
    let (number, regs) = if rng.below(2) == 0 {
        bump(&STRUCTURED);
        let number = match rng.below(8) {
            0 => Syscall::Send as u64,
            _ => Syscall::Call as u64,
        };
        let (target, info, words) = aimed(rng);
        let [w0, w1, w2, w3] = words;
        (number, [target, info, w0, w1, w2, w3, rng.cptr()])
    } else {
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
            Label::ALL[rng.below(LABELS as u64) as usize] as u64
        } else {
            rng.word()
        };
        let info = if rng.below(10) == 0 {
            rng.next()
        } else {
            MessageInfo::new(label, rng.below(125) as usize, rng.below(4) as usize).raw()
        };
        for i in 4..4 + rng.below(12) as usize {
            buffer.msg[i] = rng.word();
        }
        for c in buffer.caps_or_badges.iter_mut() {
            *c = rng.cptr();
        }
        let regs = [
            rng.cptr(),
            info,
            rng.word(),
            rng.word(),
            rng.word(),
            rng.word(),
            rng.cptr(),
        ];
        (number, regs)
    };
    // Where a received capability goes: a slot that resolves, or anything.
    if rng.below(2) == 0 {
        let cnode = rng.pick(&CNODE_TARGETS);
        let (index, depth) = slot_arg(rng, cnode, true);
        (
            buffer.receive_cnode,
            buffer.receive_index,
            buffer.receive_depth,
        ) = (cnode, index, depth);
    } else {
        buffer.receive_cnode = rng.cptr();
        buffer.receive_index = rng.word();
        buffer.receive_depth = rng.below(70);
    }
    FUZZ_LAST[0].store(number, Relaxed);
    FUZZ_LAST[1].store(regs[1], Relaxed);
    let out = raw_syscall7(number, regs);
    record(number, &regs, &out);
}

/// The result bucket of a syscall from its registers before and after.
fn outcome(number: u64, before: &[u64; 7], after: &[u64; 7]) -> usize {
    let bucket = |code: u64| match code {
        0 => 0,
        c if c <= Error::ALL.len() as u64 => c as usize,
        _ => OTHER,
    };
    let status = after[skyscope_abi::regs::STATUS];
    match Syscall::from_number(number) {
        Some(Syscall::Yield) => 0,
        // An invocation answers in the label (and clears x0); a signal or
        // a send leaves x0 and x1 as they were; a call's reply carries the
        // server's label, 0.
        Some(Syscall::Call | Syscall::Send) => {
            if status != 0 {
                bucket(status)
            } else if after[0] == before[0] && after[1] == before[1] {
                0
            } else {
                bucket(MessageInfo::from_raw(after[1]).label())
            }
        }
        Some(
            Syscall::NBSend | Syscall::Recv | Syscall::NBRecv | Syscall::Reply | Syscall::ReplyRecv,
        ) => bucket(status),
        // The syscalls the kernel binary answers, and unknown numbers:
        // the result (or error code) in x0.
        _ => bucket(after[0]),
    }
}

fn record(number: u64, before: &[u64; 7], after: &[u64; 7]) {
    let code = outcome(number, before, after);
    let syscall = Syscall::ALL
        .iter()
        .position(|s| *s as u64 == number)
        .unwrap_or(SYSCALLS - 1);
    bump(&SYSCALL_RESULTS[syscall][code]);
    // The capability the syscall looks up first (none for `Yield` and
    // unknown numbers).
    let target = match Syscall::from_number(number) {
        Some(Syscall::Reply) => Some(before[skyscope_abi::regs::REPLY_CAP]),
        Some(Syscall::Yield) | None => None,
        Some(_) => Some(before[0]),
    };
    let found = code != Error::InvalidCapability as usize && code != Error::FailedLookup as usize;
    let kind = target.and_then(kind_of);
    if let Some(k) = kind {
        bump(&KIND_TARGETED[k as usize]);
        if found {
            bump(&KIND_FOUND[k as usize]);
        }
    }
    if number == Syscall::Call as u64 || number == Syscall::Send as u64 {
        let label = MessageInfo::from_raw(before[1]).label();
        if let Some(index) = Label::ALL.iter().position(|l| *l as u64 == label) {
            bump(&LABEL_RESULTS[index][code]);
            if found && kind.is_some_and(|k| k.accepts(Label::ALL[index])) {
                bump(&LABEL_REACHED[index]);
            }
        }
    }
}

extern "C" fn fuzzer(_: u64) -> ! {
    let mut rng =
        Rng(SEED.load(SeqCst) ^ EPOCH.load(SeqCst).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    loop {
        fuzz_once(&mut rng);
        FUZZ_COUNT.fetch_add(1, SeqCst);
    }
}

// ---- legitimate traffic ---------------------------------------------------

/// Legitimate traffic in the same arena: retype, mint, call, revoke, map
/// and unmap (4 KiB, 2 MiB, into the guest), page tables taken out and
/// put back under mapped frames, scheduling contexts and notifications
/// bound and unbound, signal and poll, the guest's Vcpus swapped, and
/// big containers (a radix-10 CNode holding 1024 endpoints) destroyed by
/// deletion or by revoking their untyped, so preempted destructions
/// (zombies) are there while the fuzzer runs. Errors are expected (the
/// fuzzer moves things around) and ignored; successes are counted.
extern "C" fn worker(_: u64) -> ! {
    let d = SELF_DEPTH;
    let ok = |r: Result<(), Error>, op: usize| {
        if r.is_ok() {
            bump(&WORK_OK[op]);
        }
    };
    loop {
        // The round number survives restarts, so the rarer steps happen.
        let k = WORK_COUNT.load(SeqCst);
        WORK_STEP.store(0, Relaxed);
        let (a, b) = (
            arena::WORKER_AREA + k % 20,
            arena::WORKER_AREA + 20 + k % 20,
        );
        let _ = inv::cnode_delete(arena::SELF, a, d);
        let _ = inv::cnode_delete(arena::SELF, b, d);
        ok(
            inv::untyped_retype(
                arena::UNTYPED,
                ObjectType::Endpoint,
                0,
                arena::SELF,
                0,
                0,
                a,
                1,
            ),
            0,
        );
        let _ = inv::cnode_mint(arena::SELF, b, d, arena::SELF, a, d, CapRights::ALL, k + 1);
        ok(
            ipc::call(
                arena::ENDPOINTS,
                MessageInfo::new(1, 2, 0),
                [k, k + 1, 0, 0],
            )
            .map(drop),
            1,
        );
        let _ = ipc::nb_send(b, MessageInfo::new(2, 1, 0), [k, 0, 0, 0]);
        let _ = inv::cnode_revoke(arena::SELF, a, d);
        WORK_STEP.store(1, Relaxed);
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
        let va = SPARE_VA + 0x8000 + (k % 8) * 0x1000;
        ok(
            inv::frame_map(frame, arena::VSPACE, va, CapRights::ALL, 0),
            2,
        );
        let _ = inv::frame_unmap(frame);
        let _ = ipc::signal(arena::NOTIFICATIONS + 2);
        let _ = ipc::poll(arena::NOTIFICATIONS + 2);
        // The guest: memory, a Vcpu (swapped now and then), its registers.
        WORK_STEP.store(2, Relaxed);
        ok(
            inv::frame_map(
                frame,
                arena::GUEST_SPACE,
                (k % 4) * 0x1000,
                CapRights::ALL,
                MAP_EXECUTE,
            ),
            3,
        );
        let _ = inv::vcpu_set_tcb(arena::VCPUS + (k / 7) % 2, arena::GUEST);
        let _ = inv::vcpu_write_register(arena::VCPUS, k % 26, k);
        let _ = inv::vcpu_read_register(arena::VCPUS + 1, k % 26);
        let _ = inv::tcb_resume(arena::GUEST);
        if k.is_multiple_of(4) {
            WORK_STEP.store(3, Relaxed);
            let large = arena::LARGE_FRAMES + 1;
            ok(
                inv::frame_map(
                    large,
                    arena::VSPACE,
                    SPARE_VA + 0x60_0000,
                    CapRights::READ,
                    0,
                ),
                4,
            );
            let _ = inv::frame_unmap(large);
        }
        if k % 10 == 5 {
            WORK_STEP.store(4, Relaxed);
            // The last-level table goes, with the frames mapped through
            // it, and comes back empty.
            let table = arena::PAGE_TABLES + 1;
            ok(
                inv::page_table_unmap(table)
                    .and_then(|()| inv::page_table_map(table, arena::VSPACE, SPARE_VA)),
                5,
            );
        }
        if k % 7 == 3 {
            WORK_STEP.store(5, Relaxed);
            let sc = arena::SCHED_CONTEXTS + 2;
            let idle = arena::IDLE_TCBS + 1;
            ok(
                inv::sched_context_unbind(sc).and_then(|()| inv::sched_context_bind(sc, idle)),
                6,
            );
            let _ = inv::tcb_unbind_notification(idle);
            let _ = inv::tcb_bind_notification(idle, arena::NOTIFICATIONS + 3);
        }
        if k % 25 == 12 {
            let _ = big_container(Big::Delete, (k / 25).is_multiple_of(2));
        }
        if k % 50 == 49 {
            WORK_STEP.store(8, Relaxed);
            let _ = inv::cnode_revoke(arena::SELF, arena::UNTYPED, d);
        }
        WORK_STEP.store(9, Relaxed);
        WORK_COUNT.fetch_add(1, SeqCst);
    }
}

/// Sizes of the big containers (the worker's and the destroyer's).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Big {
    /// A radix-10 CNode with 1024 endpoints (96 KiB), from the arena's
    /// untyped or from a 128 KiB untyped made from it.
    Delete,
    /// A radix-15 CNode with 32,768 endpoints (3 MiB) from the 4 MiB
    /// untyped in the worker's area, once per arena generation (by the
    /// destroyer): its destruction takes the kernel ~50 ms (1.6 us per
    /// endpoint), a long gap for the watchdog if it could not be
    /// preempted.
    Huge,
}

impl Big {
    /// The arena slot of the CNode and the counter that is odd while it
    /// is being destroyed.
    fn slot_and_episode(self) -> (u64, &'static AtomicU64) {
        match self {
            Big::Delete => (arena::BIG, &BIG_EPISODE),
            Big::Huge => (arena::HUGE, &HUGE_EPISODE),
        }
    }
}

/// A big CNode filled with endpoints, then destroyed: deleted, or (with
/// `revoke`) by revoking the untyped it was made from. A huge one that
/// fails records where (1: retype of the CNode, 2: of the endpoints, 3:
/// the destruction) and why. Returns whether all of it worked.
fn big_container(size: Big, revoke: bool) -> bool {
    let failed = |step: u64, e: Error| {
        if size == Big::Huge {
            HUGE_FAILURE.store(step << 32 | e.code(), Relaxed);
        }
    };
    let d = SELF_DEPTH;
    let (radix, parent, child_bits, done) = match size {
        Big::Delete => (10, arena::UNTYPED, 17, if revoke { 8 } else { 7 }),
        Big::Huge => (15, arena::HUGE_UNTYPED, 0, 9),
    };
    let (big, episode) = size.slot_and_episode();
    let _ = inv::cnode_delete(arena::SELF, big, d);
    if size == Big::Delete {
        let _ = inv::cnode_delete(arena::SELF, arena::BIG_UNTYPED, d);
    }
    let from = if size == Big::Delete && revoke {
        let made = inv::untyped_retype(
            parent,
            ObjectType::Untyped,
            child_bits,
            arena::SELF,
            0,
            0,
            arena::BIG_UNTYPED,
            1,
        );
        if made.is_err() {
            return false;
        }
        arena::BIG_UNTYPED
    } else {
        parent
    };
    if size == Big::Delete {
        WORK_STEP.store(6, Relaxed);
    }
    let mut filled = inv::untyped_retype(from, ObjectType::CNode, radix, arena::SELF, 0, 0, big, 1);
    BIG_FILLED.store(0, Relaxed);
    for chunk in 0..1 << (radix - 8) {
        if filled.is_ok() {
            BIG_FILLED.store(chunk + 1, Relaxed);
            filled = inv::untyped_retype(
                from,
                ObjectType::Endpoint,
                0,
                arena::SELF,
                big,
                d,
                chunk * 256,
                256,
            );
        }
    }
    if let Err(e) = filled {
        failed(1 + u64::from(BIG_FILLED.load(Relaxed) > 0), e);
        return false;
    }
    if size == Big::Delete {
        WORK_STEP.store(7, Relaxed);
    }
    episode.fetch_add(1, SeqCst);
    let start = counter_now();
    let destroyed = if revoke {
        inv::cnode_revoke(arena::SELF, from, d)
    } else {
        inv::cnode_delete(arena::SELF, big, d)
    };
    let took = counter_now().wrapping_sub(start);
    episode.fetch_add(1, SeqCst);
    if let Err(e) = destroyed {
        failed(3, e);
    }
    if destroyed.is_ok() {
        let (longest, shortest) = match size {
            Big::Delete => (&BIG_LONGEST, &BIG_SHORTEST),
            Big::Huge => (&HUGE_LONGEST, &HUGE_SHORTEST),
        };
        longest.fetch_max(took, Relaxed);
        shortest.fetch_min(took, Relaxed);
        bump(&WORK_OK[done]);
    }
    destroyed.is_ok()
}

/// Once per arena generation, makes a CNode of 32,768 endpoints in the
/// worker's area and revokes the untyped it came from (up to 4 tries if
/// the fuzzer spoils one). The arena holds no capability to this thread,
/// so the fuzzer cannot stop it half-way; it can meet the CNode, though,
/// and its zombie while the revoke is preempted.
extern "C" fn destroyer(_: u64) -> ! {
    loop {
        let generation = GENERATION.load(SeqCst);
        if HUGE_DONE_FOR.load(SeqCst) != generation && HUGE_TRIES.fetch_add(1, SeqCst) < 4 {
            HUGE_BUSY.store(1, SeqCst);
            if big_container(Big::Huge, true) {
                HUGE_DONE_FOR.store(generation, SeqCst);
            }
            HUGE_BUSY.store(0, SeqCst);
        } else {
            wait_for_interrupt();
        }
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

/// Takes the caller's call with the arena's first reply object and keeps
/// it in use: then waits on an endpoint nobody sends to, with a
/// notification bound (a signal, or the fuzzer, may wake it).
extern "C" fn holder(_: u64) -> ! {
    loop {
        let out = raw_syscall7(
            Syscall::Recv as u64,
            [arena::ENDPOINTS + 1, 0, 0, 0, 0, 0, arena::REPLIES],
        );
        let status = out[skyscope_abi::regs::STATUS];
        for (r, v) in HOLDER_LAST.iter().zip([out[0], out[1], status]) {
            r.store(v, Relaxed);
        }
        let got = Error::check(status);
        if got.is_ok() {
            bump(&HOLDER_CALLS);
        }
        let woke = ipc::recv(arena::ENDPOINTS + 3, 0);
        if woke.is_ok() {
            bump(&HOLDER_WAKES);
        }
        if got.is_err() && woke.is_err() {
            wait_for_interrupt(); // its objects are gone: do not spin
        }
    }
}

/// Calls the holder, which keeps the reply object: blocked on it.
extern "C" fn caller(_: u64) -> ! {
    let mut k = 0u64;
    loop {
        match ipc::call(
            arena::ENDPOINTS + 1,
            MessageInfo::new(7, 1, 0),
            [k, 0, 0, 0],
        ) {
            Ok(_) => bump(&CALLER_REPLIES),
            Err(_) => wait_for_interrupt(),
        }
        k = k.wrapping_add(1);
    }
}

/// The highest-priority thread, on a small budget: records how long it
/// went without running (its budget used up: one period minus the budget;
/// a kernel operation that cannot be preempted: as long as that takes).
extern "C" fn watchdog(_: u64) -> ! {
    let mut last = counter_now();
    let mut checking = CHECKING.load(SeqCst);
    loop {
        let now = counter_now();
        let gap = now.wrapping_sub(last);
        if gap > DOG_OFF_CPU.load(Relaxed) && DOG_ON.load(Relaxed) == 1 {
            bump(&DOG_RUNS);
            let during_check = checking % 2 == 1 || CHECKING.load(SeqCst) != checking;
            let longest = if during_check {
                &DOG_GAP_IN_CHECK
            } else {
                &DOG_GAP
            };
            if !during_check {
                let bin = DOG_BINS
                    .iter()
                    .take_while(|b| gap > b.load(Relaxed))
                    .count();
                bump(&DOG_HISTOGRAM[bin]);
                let late = gap.saturating_sub(DOG_WAIT.load(Relaxed));
                DOG_MISSED.fetch_add(late / DOG_PERIOD.load(Relaxed), Relaxed);
                if gap > DOG_BINS[1].load(Relaxed) {
                    if let Some(n) = DOG_LATE_BY_STEP.get(WORK_STEP.load(Relaxed) as usize) {
                        bump(n);
                    }
                    if REFRESHING.load(Relaxed) == 1 {
                        bump(&DOG_LATE_REFRESHING);
                    }
                    if HUGE_BUSY.load(Relaxed) == 1 {
                        bump(&DOG_LATE_HUGE);
                    }
                    if gap > DOG_BINS[3].load(Relaxed) && HUGE_EPISODE.load(Relaxed) % 2 == 1 {
                        bump(&DOG_LONG_IN_HUGE);
                    }
                }
            }
            if gap > longest.load(Relaxed) {
                longest.store(gap, Relaxed);
                if !during_check {
                    DOG_GAP_AT.store(FUZZ_COUNT.load(Relaxed), Relaxed);
                    let context = [
                        FUZZ_LAST[0].load(Relaxed),
                        FUZZ_LAST[1].load(Relaxed),
                        WORK_STEP.load(Relaxed),
                        REFRESHING.load(Relaxed),
                    ];
                    for (c, v) in DOG_CONTEXT.iter().zip(context) {
                        c.store(v, Relaxed);
                    }
                }
            }
        }
        last = now;
        checking = CHECKING.load(SeqCst);
    }
}

// ---- threads the root task starts and restarts ----------------------------

/// Where a thread's stack and IPC buffer are (mapped once, from the
/// scenario's untyped); its TCB may be remade.
#[derive(Clone, Copy)]
struct Stack {
    ipc_va: u64,
    ipc_frame: u64,
    top: u64,
}

impl Stack {
    fn new(env: &mut Env, ut: u64, n: u64) -> Result<Stack, Error> {
        let base = 0x18_0000_0000 + n * 0x2_0000;
        for page in 1..=4 {
            map_fresh_page(env, ut, base + 0x1_0000 - page * 4096)?;
        }
        let ipc_va = base + 0x1_0000;
        let ipc_frame = map_fresh_page(env, ut, ipc_va)?;
        Ok(Stack {
            ipc_va,
            ipc_frame,
            top: base + 0x1_0000,
        })
    }
}

/// Configures `tcb` to run `entry` on `stack` in the root task's address
/// space, with CSpace `(cnode, guard)`.
fn start_regs(
    tcb: u64,
    stack: Stack,
    entry: extern "C" fn(u64) -> !,
    cspace: (u64, u8),
    fault: u64,
    priority: u8,
) -> Result<(), Step> {
    inv::tcb_configure(
        tcb,
        fault,
        priority,
        cspace.0,
        cspace.1,
        slots::VSPACE,
        stack.ipc_va,
        stack.ipc_frame,
    )?;
    let mut regs = [0u64; REG_X0 + 1];
    regs[REG_PC] = entry as *const () as u64;
    regs[REG_SP] = stack.top;
    inv::tcb_write_registers(tcb, &regs)?;
    Ok(())
}

/// A thread the root task can restart: its TCB, stack, entry, CSpace.
struct Restartable {
    tcb: u64,
    stack: Stack,
    entry: extern "C" fn(u64) -> !,
    cspace: u64,
    guard: u8,
    priority: u8,
}

impl Restartable {
    /// Its stack and TCB; [`Restartable::restart`] configures and starts it.
    fn new(
        env: &mut Env,
        ut: u64,
        n: u64,
        entry: extern "C" fn(u64) -> !,
        cspace: u64,
        guard: u8,
        priority: u8,
    ) -> Result<Restartable, Error> {
        Ok(Restartable {
            stack: Stack::new(env, ut, n)?,
            tcb: env.retype(ut, ObjectType::Tcb, 0, 1)?,
            entry,
            cspace,
            guard,
            priority,
        })
    }

    fn configure(&self) -> Result<(), Step> {
        start_regs(
            self.tcb,
            self.stack,
            self.entry,
            (self.cspace, self.guard),
            0,
            self.priority,
        )
    }

    /// Stops the thread wherever it is and starts it afresh. Every step
    /// uses only the root task's capabilities, so it must succeed.
    ///
    /// If the fuzzer bound a Vcpu to the thread (resuming it in a VSpace
    /// is then refused), a temporary Vcpu made from `scratch` (an untyped
    /// of 1 KiB and an empty root slot) takes that one's place and is
    /// deleted, which leaves the thread native. Returns whether it had to.
    fn restart(&self, scratch: (u64, u64)) -> Result<bool, Step> {
        inv::tcb_suspend(self.tcb)?;
        inv::tcb_set_priority(self.tcb, self.priority)?;
        self.configure()?;
        match inv::tcb_resume(self.tcb) {
            Err(Error::IllegalOperation) => {
                let (untyped, slot) = scratch;
                inv::untyped_retype(untyped, ObjectType::Vcpu, 0, ROOT, 0, 0, slot, 1)?;
                inv::vcpu_set_tcb(slot, self.tcb)?;
                inv::cnode_delete(ROOT, slot, ROOT_DEPTH)?;
                inv::cnode_revoke(ROOT, untyped, ROOT_DEPTH)?;
                inv::tcb_resume(self.tcb)?;
                Ok(true)
            }
            other => {
                other?;
                Ok(false)
            }
        }
    }
}

// ---- the arena's generations ----------------------------------------------

/// Root slots of the objects of the current generation (made from the
/// generation untyped, so one revoke removes all of them wherever the
/// fuzzer put copies) and of what stays for the whole run.
mod generation {
    pub const NEST4: u64 = 1;
    pub const NEST1: u64 = 2;
    pub const CNODE8: u64 = 3;
    /// Endpoints 1..4 of the arena (0 is the server's, which stays).
    pub const ENDPOINTS: u64 = 4;
    pub const NOTIFICATIONS: u64 = 7;
    pub const REPLIES: u64 = 11;
    pub const SCHED_CONTEXTS: u64 = 14;
    pub const VSPACE: u64 = 19;
    pub const GUEST_SPACE: u64 = 20;
    pub const PAGE_TABLES: u64 = 21;
    pub const FRAMES: u64 = 29;
    pub const LARGE_FRAMES: u64 = 45;
    /// The arena's untyped and the worker's huge one.
    pub const UNTYPED: u64 = 47;
    /// Holder, caller, the 6 idle threads.
    pub const TCBS: u64 = 49;
    /// Device: two 4 KiB frames, one 2 MiB frame, an untyped.
    pub const DEVICE_FRAMES: u64 = 57;
    pub const DEVICE_UNTYPED: u64 = 60;
    pub const COUNT: u64 = 61;
}

/// A step of laying out the arena that failed: where (the line of its
/// `?`) and why.
#[derive(Debug)]
struct Step {
    line: u32,
    error: Error,
}

impl From<Error> for Step {
    #[track_caller]
    fn from(error: Error) -> Step {
        Step {
            line: core::panic::Location::caller().line(),
            error,
        }
    }
}

impl core::fmt::Display for Step {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}: {}", file!(), self.line, self.error)
    }
}

/// Everything the root task needs to lay the arena out again.
struct Arena {
    cnode: u64,
    gen_ut: u64,
    device_ut: u64,
    /// First root slot of the generation's objects (see [`generation`]).
    slots: u64,
    /// The fuzzer's CSpace root and the safe CNode (made once).
    top: u64,
    safe: u64,
    server_ep: u64,
    guest_space: u64,
    guest_tcb: u64,
    guest_vcpu: u64,
    spare_vcpu: u64,
    /// The handler of line 45 (the arena's is a copy bound to a
    /// notification of each generation).
    irq_handler: u64,
    fuzzer_tcb: u64,
    worker_tcb: u64,
    holder: Stack,
    caller: Stack,
    generations: u64,
}

impl Arena {
    fn copy_in(&self, dst: u64, src: u64, rights: CapRights) -> Result<(), Error> {
        inv::cnode_copy(self.cnode, dst, ARENA_DEPTH, ROOT, src, ROOT_DEPTH, rights)
    }

    fn move_in(&self, dst: u64, src: u64) -> Result<(), Error> {
        inv::cnode_move(self.cnode, dst, ARENA_DEPTH, ROOT, src, ROOT_DEPTH)
    }

    fn make(&self, from: u64, ty: ObjectType, size: u64, at: u64, count: u64) -> Result<(), Error> {
        inv::untyped_retype(from, ty, size, ROOT, 0, 0, self.slots + at, count)
    }

    /// The fuzzer's top CNode (slot 0: the arena; slot 1: the safe CNode
    /// behind 3 guard bits) with IRQ control in the safe CNode's slot 8.
    fn make_top(&self) -> Result<(), Step> {
        let all = CapRights::ALL;
        inv::cnode_copy(self.top, 0, 1, ROOT, self.cnode, ROOT_DEPTH, all)?;
        inv::cnode_mint(
            self.top,
            1,
            1,
            ROOT,
            self.safe,
            ROOT_DEPTH,
            all,
            guard_word(0, NEST_GUARD),
        )?;
        inv::cnode_move(
            self.safe,
            SAFE_IRQ_CONTROL,
            4,
            ROOT,
            slots::IRQ_CONTROL,
            ROOT_DEPTH,
        )?;
        Ok(())
    }

    /// Removes the last generation (everything made from its untyped,
    /// wherever its capabilities went, and every arena slot) and lays the
    /// arena out again. The fuzzer and worker are suspended meanwhile.
    fn refresh(&mut self) -> Result<(), Failure> {
        check_ok!(inv::cnode_revoke(ROOT, self.gen_ut, ROOT_DEPTH));
        check_ok!(inv::cnode_revoke(ROOT, self.device_ut, ROOT_DEPTH));
        for slot in 1..1 << ARENA_RADIX {
            check_ok!(inv::cnode_delete(self.cnode, slot, ARENA_DEPTH));
        }
        for slot in 0..SAFE_IRQ_CONTROL {
            check_ok!(inv::cnode_delete(self.safe, slot, 4));
        }
        self.lay_out()
            .map_err(|e| fail!("laying out the arena: {e}"))?;
        self.generations += 1;
        HUGE_TRIES.store(0, SeqCst);
        GENERATION.store(self.generations, SeqCst);
        Ok(())
    }

    fn lay_out(&self) -> Result<(), Step> {
        use ObjectType as T;
        let (g, s, all) = (self.gen_ut, self.slots, CapRights::ALL);
        let d = ROOT_DEPTH;
        // CNodes: the arena (twice), radix 4 holding radix 1, radix 8 empty.
        self.make(g, T::CNode, 4, generation::NEST4, 1)?;
        self.make(g, T::CNode, 1, generation::NEST1, 1)?;
        self.make(g, T::CNode, 8, generation::CNODE8, 1)?;
        inv::cnode_mint(
            self.cnode,
            arena::SELF,
            ARENA_DEPTH,
            ROOT,
            self.cnode,
            d,
            all,
            guard_word(0, ARENA_GUARD),
        )?;
        self.copy_in(arena::BARE, self.cnode, all)?;
        self.copy_in(arena::CNODE4, s + generation::NEST4, all)?;
        self.copy_in(arena::CNODE1, s + generation::NEST1, all)?;
        self.copy_in(arena::CNODE8, s + generation::CNODE8, all)?;
        for cnode in [s + generation::NEST4, self.safe] {
            inv::cnode_copy(cnode, 0, 4, ROOT, s + generation::NEST1, d, all)?;
        }
        inv::cnode_copy(
            s + generation::NEST1,
            1,
            1,
            ROOT,
            s + generation::NEST1,
            d,
            all,
        )?;
        // Endpoints, notifications, reply objects.
        self.copy_in(arena::ENDPOINTS, self.server_ep, all)?;
        self.make(g, T::Endpoint, 0, generation::ENDPOINTS, 3)?;
        self.make(g, T::Notification, 0, generation::NOTIFICATIONS, 4)?;
        for i in 0..3 {
            self.copy_in(arena::ENDPOINTS + 1 + i, s + generation::ENDPOINTS + i, all)?;
        }
        for i in 0..4 {
            self.copy_in(
                arena::NOTIFICATIONS + i,
                s + generation::NOTIFICATIONS + i,
                all,
            )?;
        }
        let endpoint = s + generation::ENDPOINTS + 1;
        inv::cnode_copy(s + generation::NEST1, 0, 1, ROOT, endpoint, d, all)?;
        self.make(g, T::Reply, 0, generation::REPLIES, 3)?;
        for i in 0..3 {
            self.move_in(arena::REPLIES + i, s + generation::REPLIES + i)?;
        }
        // Scheduling: control, 4 configured contexts and 1 not.
        self.copy_in(arena::SCHED_CONTROL, slots::SCHED_CONTROL, all)?;
        self.make(g, T::SchedContext, 0, generation::SCHED_CONTEXTS, 5)?;
        for i in 0..5 {
            let sc = s + generation::SCHED_CONTEXTS + i;
            if i < 4 {
                inv::sched_control_configure(slots::SCHED_CONTROL, sc, 1_000, 10_000)?;
            }
            self.copy_in(arena::SCHED_CONTEXTS + i, sc, all)?;
        }
        // Spaces and Vcpus.
        self.make(g, T::VSpace, 0, generation::VSPACE, 1)?;
        self.make(g, T::GuestSpace, 0, generation::GUEST_SPACE, 1)?;
        self.copy_in(arena::VSPACE, s + generation::VSPACE, all)?;
        self.copy_in(arena::GUEST_SPACE, self.guest_space, all)?;
        self.copy_in(arena::SPARE_GUEST_SPACE, s + generation::GUEST_SPACE, all)?;
        self.copy_in(arena::VCPUS, self.guest_vcpu, all)?;
        self.copy_in(arena::VCPUS + 1, self.spare_vcpu, all)?;
        // Page tables (originals: they cannot be copied), mapped and not.
        let tables = s + generation::PAGE_TABLES;
        self.make(g, T::PageTable, 0, generation::PAGE_TABLES, 8)?;
        for t in 0..2 {
            inv::page_table_map(tables + t, s + generation::VSPACE, SPARE_VA)?;
        }
        inv::page_table_map(tables + 2, s + generation::VSPACE, SPARE_VA + 0x80_0000)?;
        for t in 3..5 {
            inv::page_table_map(tables + t, self.guest_space, 0)?;
        }
        inv::page_table_map(tables + 5, s + generation::GUEST_SPACE, 0)?;
        for t in 0..8 {
            self.move_in(arena::PAGE_TABLES + t, tables + t)?;
        }
        // Frames: 4 KiB (mapped in both kinds of space, unmapped, a
        // read-only copy), 2 MiB, device. A mapping belongs to one
        // capability: mapped frames move into the arena.
        let frames = s + generation::FRAMES;
        self.make(g, T::Frame4K, 0, generation::FRAMES, 16)?;
        inv::frame_map(frames, s + generation::VSPACE, SPARE_VA + 0xf_0000, all, 0)?;
        inv::frame_map(frames + 1, self.guest_space, 0x10_0000, all, MAP_EXECUTE)?;
        self.make(g, T::Frame2M, 0, generation::LARGE_FRAMES, 2)?;
        let large = s + generation::LARGE_FRAMES;
        inv::frame_map(large, s + generation::VSPACE, SPARE_VA + 0x20_0000, all, 0)?;
        let dev = self.device_ut;
        self.make(dev, T::Frame2M, 0, generation::DEVICE_FRAMES + 2, 1)?;
        self.make(dev, T::Frame4K, 0, generation::DEVICE_FRAMES, 2)?;
        self.make(dev, T::Untyped, 20, generation::DEVICE_UNTYPED, 1)?;
        let device = s + generation::DEVICE_FRAMES;
        inv::frame_map(device, s + generation::VSPACE, SPARE_VA + 0x10_0000, all, 0)?;
        // Threads: the running pair, then every other configuration.
        self.make(g, T::Tcb, 0, generation::TCBS, 8)?;
        self.start_pair()?;
        self.configure_idle()?;
        for i in 0..15 {
            if i == SAFE_FRAME_FROM {
                self.copy_in(arena::FRAMES + i, frames + i, all)?;
            } else {
                self.move_in(arena::FRAMES + i, frames + i)?;
            }
        }
        self.copy_in(arena::FRAMES + 15, frames + 15, CapRights::READ)?;
        for i in 0..2 {
            self.move_in(arena::LARGE_FRAMES + i, large + i)?;
        }
        for i in 0..3 {
            self.move_in(arena::DEVICE_FRAMES + i, device + i)?;
        }
        self.make(g, T::Untyped, 20, generation::UNTYPED, 1)?;
        self.make(g, T::Untyped, 22, generation::UNTYPED + 1, 1)?;
        self.move_in(arena::UNTYPED, s + generation::UNTYPED)?;
        self.move_in(arena::HUGE_UNTYPED, s + generation::UNTYPED + 1)?;
        self.move_in(arena::DEVICE_UNTYPED, s + generation::DEVICE_UNTYPED)?;
        // Interrupts: a handler for line 44 made straight into the arena
        // (IRQ control leaves the safe CNode for it), and one bound to a
        // notification.
        inv::cnode_move(ROOT, slots::IRQ_CONTROL, d, self.safe, SAFE_IRQ_CONTROL, 4)?;
        let got = inv::irq_control_get(
            slots::IRQ_CONTROL,
            IRQ_LINES[0],
            self.cnode,
            arena::IRQ_HANDLERS,
            ARENA_DEPTH,
        );
        inv::cnode_move(self.safe, SAFE_IRQ_CONTROL, 4, ROOT, slots::IRQ_CONTROL, d)?;
        got?;
        let notification = s + generation::NOTIFICATIONS + 1;
        inv::irq_handler_set_notification(self.irq_handler, notification)?;
        self.copy_in(arena::IRQ_HANDLERS + 1, self.irq_handler, all)?;
        self.copy_in(arena::CONSOLE, slots::CONSOLE, CapRights::READ)?;
        self.copy_in(arena::AUDIT_LOG, slots::AUDIT_LOG, CapRights::READ)?;
        self.copy_in(arena::FUZZER, self.fuzzer_tcb, all)?;
        self.copy_in(arena::WORKER, self.worker_tcb, all)?;
        self.copy_in(arena::GUEST, self.guest_tcb, all)?;
        // The safe CNode's slots 1..8, copied from the root task's
        // capabilities (not the arena's, which the fuzzer may revoke).
        let safe_copies = [
            s + generation::ENDPOINTS,
            s + generation::NOTIFICATIONS + 2,
            frames + SAFE_FRAME_FROM,
            s + generation::TCBS + 2,
            s + generation::SCHED_CONTEXTS + 3,
            self.spare_vcpu,
            self.irq_handler,
        ];
        for (j, from) in (1..).zip(safe_copies) {
            inv::cnode_copy(self.safe, j, 4, ROOT, from, d, all)?;
        }
        // The guest as the builder made it, whatever the fuzzer did to it.
        inv::tcb_configure(
            self.guest_tcb,
            self.server_ep,
            100,
            self.cnode,
            ARENA_GUARD,
            self.guest_space,
            0,
            0,
        )?;
        inv::vcpu_set_tcb(self.guest_vcpu, self.guest_tcb)?;
        inv::tcb_resume(self.guest_tcb)?;
        Ok(())
    }

    /// The holder (IPC buffer, fault endpoint, VSpace) and the caller (IPC
    /// buffer, no fault endpoint, VSpace), each on its own scheduling
    /// context; the holder with a bound notification.
    fn start_pair(&self) -> Result<(), Step> {
        let s = self.slots;
        let (holder, caller) = (s + generation::TCBS, s + generation::TCBS + 1);
        let cspace = (self.cnode, ARENA_GUARD);
        start_regs(
            holder,
            self.holder,
            self::holder,
            cspace,
            self.server_ep,
            100,
        )?;
        start_regs(caller, self.caller, self::caller, cspace, 0, 100)?;
        inv::tcb_bind_notification(holder, s + generation::NOTIFICATIONS)?;
        for (i, t) in [holder, caller].into_iter().enumerate() {
            inv::sched_context_bind(s + generation::SCHED_CONTEXTS + i as u64, t)?;
            inv::tcb_resume(t)?;
            self.copy_in(arena::HOLDER + i as u64, t, CapRights::ALL)?;
        }
        Ok(())
    }

    /// The other six configurations of (IPC buffer, fault endpoint,
    /// VSpace or GuestSpace), with different CSpaces; the first is
    /// runnable without a scheduling context, the second has one but was
    /// never resumed.
    fn configure_idle(&self) -> Result<(), Step> {
        let s = self.slots;
        let (vspace, spare_gs, fault) = (
            s + generation::VSPACE,
            s + generation::GUEST_SPACE,
            s + generation::ENDPOINTS + 1,
        );
        // (IPC frame, fault endpoint, space, CSpace, guard)
        let configurations = [
            (0, 0, vspace, s + generation::NEST4, 60),
            (0, fault, vspace, s + generation::CNODE8, 56),
            (s + generation::FRAMES + 2, 0, spare_gs, self.top, TOP_GUARD),
            (
                s + generation::FRAMES + 3,
                fault,
                spare_gs,
                self.cnode,
                ARENA_GUARD,
            ),
            (0, 0, spare_gs, s + generation::NEST1, 63),
            (0, fault, self.guest_space, self.cnode, ARENA_GUARD),
        ];
        for (i, (frame, fault, space, cspace, guard)) in configurations.into_iter().enumerate() {
            let tcb = s + generation::TCBS + 2 + i as u64;
            let buffer = if frame == 0 { 0 } else { IPC_AREA };
            inv::tcb_configure(
                tcb,
                fault,
                50 + i as u8,
                cspace,
                guard,
                space,
                buffer,
                frame,
            )?;
            self.copy_in(arena::IDLE_TCBS + i as u64, tcb, CapRights::ALL)?;
        }
        inv::tcb_resume(s + generation::TCBS + 2)?;
        let sc = s + generation::SCHED_CONTEXTS + 2;
        inv::sched_context_bind(sc, s + generation::TCBS + 3)?;
        Ok(())
    }
}

/// Checks that the aimed-invocation tables name objects implementing
/// their labels in the layout, so a mistake there cannot hide a label.
fn check_tables() -> Outcome {
    for label in Label::ALL {
        for &t in targets(label) {
            check!(
                kind_of(t).is_some_and(|k| k.accepts(label)),
                "target {t} of {label:?} is {:?} in the layout",
                kind_of(t)
            );
        }
    }
    for kind in Kind::ALL {
        check!(
            KIND_OF.contains(&(kind as u8)),
            "the layout has no {}",
            kind.name()
        );
    }
    Ok(())
}

/// Labels that must have reached their object, of 30: all. Every label's
/// object is in the arena and aimed invocations name it ~1,500 times per
/// 100,000 invocations (half the calls, 1 label in 30, 7 in 8 at an
/// object of the right kind), so a label that never got there means the
/// arena lost an object type or the kernel never looked that far.
const LABELS_REACHED_NEEDED: usize = LABELS;
/// Labels that must have succeeded at least once, of 30: all. The
/// rarest (mint and mutate, which need a free destination and a source
/// that takes the badge or guard) succeeded ~70 times per 100,000.
const LABELS_SUCCEEDED_NEEDED: usize = LABELS;

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
    IMAGE[0].store(info.image_start, SeqCst);
    IMAGE[1].store(info.image_end, SeqCst);
    println!("  fuzz: seed {seed}, {target} invocations (rerun: fuzz_seed={seed})");
    check_tables()?;
    let mut env = Env::new(info);
    let e = |e| fail!("setup: {e}");
    let ut = env.private_untyped(25).map_err(|e| fail!("untyped: {e}"))?;
    let gen_ut = env.slot();
    check_ok!(inv::untyped_retype(
        ut,
        ObjectType::Untyped,
        24,
        ROOT,
        0,
        0,
        gen_ut,
        1
    ));
    let flash = info
        .untyped_regions()
        .iter()
        .position(|d| d.is_device != 0 && d.size_bits >= 22)
        .map(|i| info.untyped.start + i as u64)
        .ok_or_else(|| fail!("no device untyped of 4 MiB in the boot info"))?;
    let device_ut = env.slot();
    check_ok!(inv::untyped_retype(
        flash,
        ObjectType::Untyped,
        22,
        ROOT,
        0,
        0,
        device_ut,
        1
    ));
    let arena_cnode = env
        .retype(ut, ObjectType::CNode, u64::from(ARENA_RADIX), 1)
        .map_err(e)?;

    // The server answers on arena endpoint 0 through its own caps.
    let server_ep = env.retype(ut, ObjectType::Endpoint, 0, 1).map_err(e)?;
    let server_reply = env.retype(ut, ObjectType::Reply, 0, 1).map_err(e)?;
    SERVER_EP.store(server_ep, SeqCst);
    SERVER_REPLY.store(server_reply, SeqCst);
    let guard_root = 64 - skyscope_abi::bootinfo::ROOT_CNODE_RADIX;
    let srv = Restartable::new(&mut env, ut, 0, server, ROOT, guard_root, 110).map_err(e)?;
    let dog = Restartable::new(&mut env, ut, 1, watchdog, ROOT, guard_root, 150).map_err(e)?;
    let slots_at = env.slots(generation::COUNT);
    let top = env.retype(ut, ObjectType::CNode, 1, 1).map_err(e)?;
    let safe = env.retype(ut, ObjectType::CNode, 4, 1).map_err(e)?;
    let fz = Restartable::new(&mut env, ut, 2, fuzzer, top, TOP_GUARD, 100).map_err(e)?;
    let wk = Restartable::new(&mut env, ut, 3, worker, arena_cnode, ARENA_GUARD, 100).map_err(e)?;
    let dt =
        Restartable::new(&mut env, ut, 6, destroyer, arena_cnode, ARENA_GUARD, 100).map_err(e)?;
    let holder_stack = Stack::new(&mut env, ut, 4).map_err(e)?;
    let caller_stack = Stack::new(&mut env, ut, 5).map_err(e)?;
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
    let irq_handler = env.slot();
    check_ok!(inv::irq_control_get(
        slots::IRQ_CONTROL,
        IRQ_LINES[1],
        ROOT,
        irq_handler,
        ROOT_DEPTH
    ));
    let mut arena = Arena {
        cnode: arena_cnode,
        gen_ut,
        device_ut,
        slots: slots_at,
        top,
        safe,
        server_ep,
        guest_space: built.guest_space,
        guest_tcb: guest.tcb,
        guest_vcpu: guest.vcpu,
        spare_vcpu,
        irq_handler,
        fuzzer_tcb: fz.tcb,
        worker_tcb: wk.tcb,
        holder: holder_stack,
        caller: caller_stack,
        generations: 0,
    };
    arena
        .make_top()
        .map_err(|x| fail!("the fuzzer's top CNode: {x}"))?;
    built
        .start(&mut Syscalls, VcpuId::BOOT, EntryState::kernel(0, 0))
        .map_err(|x| fail!("{x}"))?;
    for (t, budget) in [
        (&srv, 10_000),
        (&dog, 1_000),
        (&fz, 10_000),
        (&wk, 10_000),
        (&dt, 10_000),
    ] {
        give_sched_context(&mut env, ut, t.tcb, budget, 10_000).map_err(e)?;
    }
    // For taking a Vcpu the fuzzer bound off a thread being restarted.
    let scratch = (env.slot(), env.slot());
    check_ok!(inv::untyped_retype(
        ut,
        ObjectType::Untyped,
        u64::from(skyscope_abi::object::VCPU_BITS),
        ROOT,
        0,
        0,
        scratch.0,
        1
    ));
    for t in [&srv, &dog] {
        check_ok!(t.restart(scratch));
    }

    // Supervise at the fuzzer's priority, taking turns with it.
    check_ok!(inv::tcb_set_priority(slots::TCB, 100));
    let f = info.timer_frequency;
    let mut sup = Supervisor {
        arena: &mut arena,
        fz: &fz,
        wk: &wk,
        dt: &dt,
        frequency: f,
        scratch,
        probe: env.slot(),
        restarts: 0,
        detached: 0,
    };
    sup.new_generation()?;
    let (dog_budget, dog_period) = (f / 1000, f / 100);
    DOG_OFF_CPU.store(f / 2000, SeqCst);
    DOG_PERIOD.store(dog_period, SeqCst);
    DOG_WAIT.store(dog_period - dog_budget, SeqCst);
    // Gap bins: one period, +2 ms, two periods, then the two bounds of
    // `report_watchdog`.
    let dog_wait = dog_period - dog_budget;
    for (b, v) in DOG_BINS.iter().zip([
        dog_period,
        dog_period + f / 500,
        dog_period * 2,
        dog_wait + LONG_GAP_PERIODS * dog_period,
        dog_wait + MAX_GAP_PERIODS * dog_period,
    ]) {
        b.store(v, SeqCst);
    }
    DOG_ON.store(1, SeqCst);
    let started = counter_now();
    let mut checks = 0u64;
    // Zombies caught (big, huge), and the destruction each was last seen in.
    let (mut zombies, mut last_zombie) = ([0u64; 2], [0u64; 2]);
    let (mut last_fuzz, mut last_work) = (0u64, 0u64);
    let (mut fuzz_seen, mut work_seen) = (started, started);
    let mut next_check = CHECK_EVERY;
    // Room for about 60 s per 100,000 invocations (a run takes ~25 s).
    let deadline = started + f * (60 + target / 100_000 * 60);
    while FUZZ_COUNT.load(SeqCst) < target {
        yield_now();
        let now = counter_now();
        check!(
            now < deadline,
            "fuzzing did not finish in {} s (seed {seed})",
            (deadline - started) / f
        );
        for (i, size) in [Big::Delete, Big::Huge].into_iter().enumerate() {
            let episode = size.slot_and_episode().1.load(SeqCst);
            if episode % 2 == 1 && episode != last_zombie[i] && sup.is_zombie(size, episode) {
                (zombies[i], last_zombie[i]) = (zombies[i] + 1, episode);
            }
        }
        let (fz_count, wk_count) = (FUZZ_COUNT.load(SeqCst), WORK_COUNT.load(SeqCst));
        if fz_count != last_fuzz {
            (last_fuzz, fuzz_seen) = (fz_count, now);
        } else if now - fuzz_seen > f / 100 {
            sup.restart_fuzzer()?;
            fuzz_seen = now;
        }
        if wk_count != last_work {
            (last_work, work_seen) = (wk_count, now);
        } else if now - work_seen > f / 10 {
            sup.restart(&wk)?;
            work_seen = now;
        }
        if fz_count >= next_check {
            CHECKING.fetch_add(1, SeqCst);
            let fine = debug_check_invariants(slots::DEBUG);
            CHECKING.fetch_add(1, SeqCst);
            check!(
                fine,
                "kernel invariants violated after {fz_count} invocations (seed {seed})"
            );
            checks += 1;
            next_check += CHECK_EVERY;
            sup.new_generation()?;
        }
    }
    DOG_ON.store(0, SeqCst);
    let elapsed = counter_now() - started;
    for t in [&fz, &wk, &dt] {
        check_ok!(inv::tcb_suspend(t.tcb));
    }
    check_ok!(inv::tcb_set_priority(slots::TCB, 255));
    check!(
        debug_check_invariants(slots::DEBUG),
        "kernel invariants violated at the end (seed {seed})"
    );
    let (restarts, detached) = (sup.restarts, sup.detached);
    let generations = arena.generations;
    let guest_exits = GUEST_EXITS.load(SeqCst);
    let served = SERVED.load(SeqCst);
    println!(
        "  fuzz: {} invocations ({} aimed), {} legitimate rounds, {served} calls served ({guest_exits} guest exits), {restarts} restarts ({detached} taking a Vcpu off), {} invariant checks passed, {generations} arena generations, {} s",
        FUZZ_COUNT.load(SeqCst),
        STRUCTURED.load(SeqCst),
        WORK_COUNT.load(SeqCst),
        checks + 1,
        elapsed / f
    );
    let worker = report_worker(zombies, f);
    let coverage = report_coverage();
    let dog = report_watchdog(elapsed, dog_budget, dog_period, f);
    check!(guest_exits > 0, "the arena's guest never ran");
    check!(
        served > guest_exits,
        "the server answered no call but the guest's exits ({served} served)"
    );
    worker?;
    coverage?;
    dog?;
    // Everything made for the fuzz goes; the kernel is still consistent
    // and still makes objects.
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    check_ok!(inv::cnode_revoke(ROOT, device_ut, ROOT_DEPTH));
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

/// The root task's side of the run: restarts and arena generations.
struct Supervisor<'a> {
    arena: &'a mut Arena,
    fz: &'a Restartable,
    wk: &'a Restartable,
    dt: &'a Restartable,
    frequency: u64,
    scratch: (u64, u64),
    /// A root slot for probing what a capability is.
    probe: u64,
    restarts: u64,
    /// Restarts that had to take a Vcpu off the thread first.
    detached: u64,
}

impl Supervisor<'_> {
    fn restart(&mut self, t: &Restartable) -> Outcome {
        match t.restart(self.scratch) {
            Ok(detached) => {
                self.restarts += 1;
                self.detached += u64::from(detached);
                Ok(())
            }
            Err(step) => Err(fail!("restarting a thread: {step}")),
        }
    }

    /// Restarts the fuzzer with a fresh random sequence.
    fn restart_fuzzer(&mut self) -> Outcome {
        EPOCH.fetch_add(1, SeqCst);
        self.restart(self.fz)
    }

    /// A new arena generation with the fuzzer and worker stopped; waits
    /// (up to 1 s) until the holder has taken the caller's call, so the
    /// reply object is in use when they start again.
    fn new_generation(&mut self) -> Outcome {
        for t in [self.fz, self.wk, self.dt] {
            check_ok!(inv::tcb_suspend(t.tcb));
        }
        HUGE_BUSY.store(0, SeqCst);
        if HUGE_EPISODE.load(SeqCst) % 2 == 1 {
            HUGE_EPISODE.fetch_add(1, SeqCst); // the destroyer stopped in one
        }
        if BIG_EPISODE.load(SeqCst) % 2 == 1 {
            BIG_EPISODE.fetch_add(1, SeqCst); // the worker stopped in one
        }
        let calls = HOLDER_CALLS.load(SeqCst);
        REFRESHING.store(1, SeqCst);
        self.arena.refresh()?;
        REFRESHING.store(0, SeqCst);
        let deadline = counter_now() + self.frequency;
        while HOLDER_CALLS.load(SeqCst) == calls {
            if counter_now() >= deadline {
                // Where the two threads are: pc, sp, flags, x0..x6.
                for (name, t) in [("holder", 0), ("caller", 1)] {
                    let tcb = self.arena.slots + generation::TCBS + t;
                    match inv::tcb_read_registers(tcb, REG_X0 + 7) {
                        Ok(r) => println!("  {name}: registers {:#x?}", &r.words[..REG_X0 + 7]),
                        Err(e) => println!("  {name}: registers unreadable: {e}"),
                    }
                }
                let last = HOLDER_LAST.each_ref().map(|r| r.load(SeqCst));
                // A receive the kernel never performed returns its inputs.
                let skipped = last == [arena::ENDPOINTS + 1, 0, arena::REPLIES];
                check!(
                    false,
                    "generation {}: the holder never received the caller's call (its last receive returned x0, x1, x6 = {:#x?}{}; holder calls {}, wakes {}, caller replies {})",
                    self.arena.generations,
                    last,
                    if skipped {
                        ", its own inputs: the kernel returned from the Recv without performing it"
                    } else {
                        ""
                    },
                    HOLDER_CALLS.load(SeqCst),
                    HOLDER_WAKES.load(SeqCst),
                    CALLER_REPLIES.load(SeqCst)
                );
            }
            yield_now();
        }
        self.restart(self.wk)?;
        self.restart(self.dt)?;
        self.restart_fuzzer()
    }

    /// Whether the big CNode of `size` is a zombie (half destroyed)
    /// during destruction `episode`: a copy of it is refused, which a
    /// live CNode allows.
    fn is_zombie(&self, size: Big, episode: u64) -> bool {
        let (slot, episodes) = size.slot_and_episode();
        let probe = self.probe;
        let copy = inv::cnode_copy(
            ROOT,
            probe,
            ROOT_DEPTH,
            self.arena.cnode,
            slot,
            ARENA_DEPTH,
            CapRights::ALL,
        );
        if copy.is_ok() {
            let _ = inv::cnode_delete(ROOT, probe, ROOT_DEPTH);
        }
        copy == Err(Error::IllegalOperation) && episodes.load(SeqCst) == episode
    }
}

/// What the legitimate threads did; fails if an operation of the worker
/// or the destroyer never succeeded (the traffic would not be legitimate
/// work then) or no big CNode was ever seen half-destroyed (no zombie for
/// the fuzzer).
fn report_worker(zombies: [u64; 2], f: u64) -> Outcome {
    let mut line = Line::new();
    let mut never = Line::new();
    for (name, n) in WORK_NAMES.iter().zip(WORK_OK.iter()) {
        line.add(format_args!(" {name} {}", n.load(SeqCst)));
        if n.load(SeqCst) == 0 {
            never.add(format_args!(" {name}"));
        }
    }
    let us = |ticks: u64| match ticks {
        u64::MAX => 0, // none
        t => (u128::from(t) * 1_000_000 / u128::from(f)) as u64,
    };
    println!(
        "  fuzz: worker successes:{}; destructions of 1024 endpoints took {}..{} us, of 32768 {}..{} us (wall time; last failure {:#x}); caught half-destroyed (zombies): {} of 1024, {} of 32768; holder took {} calls, woke {} times; caller got {} replies",
        line.as_str(),
        us(BIG_SHORTEST.load(SeqCst)),
        us(BIG_LONGEST.load(SeqCst)),
        us(HUGE_SHORTEST.load(SeqCst)),
        us(HUGE_LONGEST.load(SeqCst)),
        HUGE_FAILURE.load(SeqCst),
        zombies[0],
        zombies[1],
        HOLDER_CALLS.load(SeqCst),
        HOLDER_WAKES.load(SeqCst),
        CALLER_REPLIES.load(SeqCst)
    );
    check!(
        never.used == 0,
        "legitimate operations that never succeeded:{}",
        never.as_str()
    );
    check!(
        zombies.iter().sum::<u64>() > 0,
        "no big CNode was ever caught half-destroyed: the fuzzer met no zombie"
    );
    Ok(())
}

/// A short line built without allocation.
struct Line {
    bytes: [u8; 1024],
    used: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            bytes: [0; 1024],
            used: 0,
        }
    }

    fn add(&mut self, args: core::fmt::Arguments<'_>) {
        let _ = core::fmt::Write::write_fmt(self, args);
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.used]).unwrap_or("?")
    }
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.bytes.len() - self.used);
        self.bytes[self.used..self.used + n].copy_from_slice(&s.as_bytes()[..n]);
        self.used += n;
        Ok(())
    }
}

fn code_name(code: usize) -> &'static str {
    match code {
        0 => "ok",
        OTHER => "other",
        c => Error::ALL.get(c - 1).map_or("?", |e| e.name()),
    }
}

/// One line per label and per syscall number, the totals, and the checks:
/// every object kind found by some call, enough labels reached and
/// succeeded, no privileged syscall succeeded, `Preempted` never returned.
fn report_coverage() -> Outcome {
    let load = |a: &AtomicU64| a.load(SeqCst);
    let results_line = |row: &[AtomicU64; CODES]| {
        let mut line = Line::new();
        for (code, n) in row.iter().enumerate() {
            if load(n) > 0 {
                line.add(format_args!(" {}:{}", code_name(code), load(n)));
            }
        }
        line
    };
    let mut totals = [0u64; CODES];
    let (mut reached, mut succeeded) = (0, 0);
    let (mut not_reached, mut not_succeeded) = (Line::new(), Line::new());
    for (i, label) in Label::ALL.iter().enumerate() {
        let row = &LABEL_RESULTS[i];
        let calls: u64 = row.iter().map(load).sum();
        let hits = load(&LABEL_REACHED[i]);
        if hits > 0 {
            reached += 1;
        } else {
            not_reached.add(format_args!(" {label:?}"));
        }
        if load(&row[0]) > 0 {
            succeeded += 1;
        } else {
            not_succeeded.add(format_args!(" {label:?}"));
        }
        println!(
            "  fuzz: label {label:?}: {calls} calls, {hits} reached its object;{}",
            results_line(row).as_str()
        );
    }
    let mut privileged = 0;
    let mut preempted = 0;
    for (i, row) in SYSCALL_RESULTS.iter().enumerate() {
        let mut name = Line::new();
        match Syscall::ALL.get(i) {
            Some(s) => name.add(format_args!("{s:?}")),
            None => name.add(format_args!("(other numbers)")),
        }
        let calls: u64 = row.iter().map(load).sum();
        for (t, n) in totals.iter_mut().zip(row.iter()) {
            *t += load(n);
        }
        preempted += load(&row[Error::Preempted as usize]);
        // Console, power and debug syscalls answer an error code in x0;
        // success (0) or a value would mean the fuzzer used them. The
        // arena holds a read-only console capability (`arena::CONSOLE`,
        // which the fuzzer may also copy elsewhere), so reading the
        // console and asking for its notification may succeed; writing
        // needs the write right, and power and debug need a capability the
        // fuzzer never holds.
        let holds_capability =
            |s: &Syscall| matches!(s, Syscall::ConsoleRead | Syscall::ConsoleNotify);
        if Syscall::ALL
            .get(i)
            .is_some_and(|s| *s as u64 >= 0x100 && !holds_capability(s))
        {
            privileged += load(&row[0]) + load(&row[OTHER]);
        }
        println!(
            "  fuzz: syscall {}: {calls} calls;{}",
            name.as_str(),
            results_line(row).as_str()
        );
    }
    let mut seen = Line::new();
    let mut unseen = Line::new();
    for (code, n) in totals.iter().enumerate() {
        if *n > 0 {
            seen.add(format_args!(" {}:{n}", code_name(code)));
        } else {
            unseen.add(format_args!(" {}", code_name(code)));
        }
    }
    println!(
        "  fuzz: results:{}; never:{}",
        seen.as_str(),
        unseen.as_str()
    );
    let mut kinds = Line::new();
    let mut missed = Line::new();
    for kind in Kind::ALL {
        let (hit, found) = (
            load(&KIND_TARGETED[kind as usize]),
            load(&KIND_FOUND[kind as usize]),
        );
        kinds.add(format_args!(" {}:{found}/{hit}", kind.name()));
        if found == 0 {
            missed.add(format_args!(" {}", kind.name()));
        }
    }
    println!("  fuzz: kinds (found/targeted):{}", kinds.as_str());
    println!(
        "  fuzz: labels reached {reached}/{LABELS} (need {LABELS_REACHED_NEEDED}), succeeded {succeeded}/{LABELS} (need {LABELS_SUCCEEDED_NEEDED}); never succeeded:{}",
        not_succeeded.as_str()
    );
    check!(
        missed.used == 0,
        "object kinds no call ever found in their slot:{}",
        missed.as_str()
    );
    check!(
        reached >= LABELS_REACHED_NEEDED,
        "labels that never reached an object implementing them:{}",
        not_reached.as_str()
    );
    check!(
        succeeded >= LABELS_SUCCEEDED_NEEDED,
        "only {succeeded} labels ever succeeded; never:{}",
        not_succeeded.as_str()
    );
    check!(
        privileged == 0,
        "{privileged} console, power or debug syscalls succeeded without their capability"
    );
    check!(
        preempted == 0,
        "{preempted} syscalls returned Preempted, which the kernel must never return"
    );
    Ok(())
}

/// A gap of the watchdog is long if it exceeds its wait out of budget
/// (period - budget) by this many periods.
const LONG_GAP_PERIODS: u64 = 3;
/// No gap may exceed its wait by this many periods.
const MAX_GAP_PERIODS: u64 = 99;

/// The watchdog (1 ms per 10 ms, the highest priority) ran in nearly
/// every period, and no kernel operation kept it off the processor.
///
/// Out of budget it waits for its next period: period - budget (9 ms).
/// The counter is the host's clock under TCG, so a loaded host delays it
/// too; runs here beside another engineer's builds and QEMU (load 4 to 6
/// on 2 cores) saw single gaps up to 126 ms, a few dozen long ones (over
/// the wait plus 3 periods, 39 ms) and up to 5.7% of periods missed,
/// spread over the whole run. A kernel path without preemption points
/// instead delays it every time it runs. So, outside invariant checks
/// (debug-only and not preemptible):
///
/// - while the destroyer's 32,768-endpoint CNode is being destroyed
///   (~50 ms of kernel work: 1.6 us per endpoint, as in
///   `security::revoke_is_preemptible`; 7 to 11 times per 100,000
///   invocations, ~3% of the time), long gaps may end in at most half of
///   those destructions: unpreempted, every one of them would;
/// - no gap exceeds the wait plus 99 periods (1 s);
/// - at most 10% of the periods are missed.
fn report_watchdog(elapsed: u64, budget: u64, period: u64, f: u64) -> Outcome {
    let us = |ticks: u64| (u128::from(ticks) * 1_000_000 / u128::from(f)) as u64;
    let gap = DOG_GAP.load(SeqCst);
    let in_check = DOG_GAP_IN_CHECK.load(SeqCst);
    let runs = DOG_RUNS.load(SeqCst);
    let periods = elapsed / period;
    let missed = DOG_MISSED.load(SeqCst);
    let wait = period - budget;
    let (long, bound) = (
        wait + LONG_GAP_PERIODS * period,
        wait + MAX_GAP_PERIODS * period,
    );
    let long_gaps: u64 = DOG_HISTOGRAM[DOG_BIN_COUNT - 2..]
        .iter()
        .map(|n| n.load(SeqCst))
        .sum();
    let huge = WORK_OK[9].load(SeqCst);
    let long_in_huge = DOG_LONG_IN_HUGE.load(SeqCst);
    let long_in_huge_allowed = (huge / 2).max(1);
    let mut histogram = Line::new();
    for (i, n) in DOG_HISTOGRAM.iter().enumerate() {
        match DOG_BINS.get(i) {
            Some(b) => histogram.add(format_args!(" <={}us:", us(b.load(SeqCst)))),
            None => histogram.add(format_args!(" more:")),
        }
        histogram.add(format_args!("{}", n.load(SeqCst)));
    }
    let [number, info, step, refreshing] = DOG_CONTEXT.each_ref().map(|c| c.load(SeqCst));
    println!(
        "  fuzz: watchdog (budget {} us per {} us, priority 150): longest time off the processor {} us (bound {} us), {long_gaps} gaps over {} us ({long_in_huge} of them ending in one of {huge} destructions of 32768 endpoints, at most {long_in_huge_allowed}), {} us during invariant checks; came back {runs} times in {periods} periods, missed {missed}; gaps{}",
        us(budget),
        us(period),
        us(gap),
        us(bound),
        us(long),
        us(in_check),
        histogram.as_str()
    );
    let mut late = Line::new();
    for (name, n) in WORK_STEPS.iter().zip(DOG_LATE_BY_STEP.iter()) {
        late.add(format_args!(" {name}:{}", n.load(SeqCst)));
    }
    println!(
        "  fuzz: gaps over {} us by the worker's step:{}; while laying out an arena: {}; while the destroyer worked: {}",
        us(DOG_BINS[1].load(SeqCst)),
        late.as_str(),
        DOG_LATE_REFRESHING.load(SeqCst),
        DOG_LATE_HUGE.load(SeqCst)
    );
    println!(
        "  fuzz: the longest gap ended after {} invocations; the fuzzer's last syscall {number:#x} (label {}), the worker at {}{}",
        DOG_GAP_AT.load(SeqCst),
        MessageInfo::from_raw(info).label(),
        WORK_STEPS.get(step as usize).unwrap_or(&"?"),
        if refreshing == 1 {
            ", the root task laying out a new arena"
        } else {
            ""
        }
    );
    check!(
        gap <= bound,
        "the watchdog was kept off the processor for {} us (bound {} us)",
        us(gap),
        us(bound)
    );
    check!(
        long_in_huge <= long_in_huge_allowed,
        "the watchdog was kept off the processor for over {} us at the end of {long_in_huge} of {huge} destructions of 32768 endpoints (at most {long_in_huge_allowed}): the destruction is not preempted",
        us(long)
    );
    check!(
        missed * 10 <= periods,
        "the watchdog missed {missed} of {periods} periods (more than 10%)"
    );
    Ok(())
}
