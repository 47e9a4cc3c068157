//! In-QEMU test scenarios and their catalog.
//!
//! Each scenario is one boot: `cargo xtask test` starts QEMU with
//! `test=NAME` on the kernel command line, the root task calls [`run`],
//! and the scenario reports on the console with the [`protocol`] lines and
//! powers the machine off with its status. Scenarios whose end state only
//! the kernel can show (a thread stopped by a fault) are judged by console
//! patterns instead. The catalog is plain data that also builds for the
//! host, so the xtask reads it from this same crate.
#![no_std]

#[cfg(target_os = "none")]
use skyscope_abi::BootInfo;

#[cfg(target_os = "none")]
pub mod bench;
#[cfg(target_os = "none")]
#[macro_use]
mod check;
#[cfg(target_os = "none")]
mod audit;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod caps;
#[cfg(target_os = "none")]
mod fuzz;
#[cfg(target_os = "none")]
mod guest_irq;
#[cfg(target_os = "none")]
mod input;
#[cfg(target_os = "none")]
mod ipc;
#[cfg(target_os = "none")]
mod linux;
pub mod modules;
#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod security;
#[cfg(target_os = "none")]
mod support;
#[cfg(target_os = "none")]
mod vm;
#[cfg(target_os = "none")]
mod vmm_process;

/// Console lines of the test protocol.
pub mod protocol {
    /// Prefix of every protocol line: `SKYSCOPE-TEST <name>: <verdict>`.
    pub const PREFIX: &str = "SKYSCOPE-TEST";
    /// Verdict of a scenario that passed.
    pub const PASS: &str = "PASS";
    /// Verdict of a scenario that failed (followed by a reason).
    pub const FAIL: &str = "FAIL";
    /// Printed by the kernel when it panics; fails any scenario at once.
    pub const KERNEL_PANIC: &str = "KERNEL PANIC";
    /// Exit status a scenario reports on failure.
    pub const FAILURE_STATUS: u64 = 1;
}

/// One in-QEMU scenario, as the harness sees it.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Unique name, `area::what`.
    pub name: &'static str,
    /// What it shows, in one line.
    pub about: &'static str,
    /// Whether the scenario prints its own verdict and powers off. If not,
    /// it passes once every [`Scenario::console`] pattern has appeared
    /// and the kernel has stayed up for the harness's grace period.
    pub reports: bool,
    /// Regular expressions that must match console lines, in this order.
    pub console: &'static [&'static str],
    /// Seconds before the harness gives up.
    pub timeout_secs: u32,
    /// Whether it needs the debug capability (absent in the `hardened`
    /// kernel, whose run leaves these scenarios out and says so).
    pub debug: bool,
    /// Whether it runs with QEMU's deterministic instruction count clock
    /// (`-icount shift=0`): one counter tick per instruction, so shares of
    /// the CPU it measures are shares of executed instructions, not of a
    /// host's wall time that other processes also take.
    pub icount: bool,
    /// The boot-module bundle the harness loads for it.
    pub modules: BootModules,
    /// What the harness types at the console, and when.
    pub input: &'static [Typing],
}

/// Which boot-module bundle a scenario boots with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootModules {
    /// None (no `modules=` on the command line).
    None,
    /// The [`modules::PATTERN_MODULES`], each filled with its pattern.
    Pattern,
    /// A bundle whose header is damaged: its first module's offset is not
    /// 2 MiB aligned. The kernel must refuse it and boot on.
    CorruptHeader,
    /// The Linux guest payload (`cargo xtask payload`): Debian's arm64
    /// kernel Image as `linux`, the busybox initramfs as `initrd`.
    LinuxGuest,
}

/// Text the harness types at the serial console once a console line
/// contains `after`.
#[derive(Clone, Copy, Debug)]
pub struct Typing {
    /// Part of the line to wait for.
    pub after: &'static str,
    /// What to type (printable ASCII: QEMU's console multiplexer would
    /// take Ctrl-A as a command).
    pub text: &'static str,
}

/// What `boot::console_input` has the harness type, and the console
/// lines after which it does.
pub mod typed {
    /// Printed while no notification listens for console input.
    pub const NO_LISTENER_MARKER: &str = "SKYSCOPE-INPUT: no listener";
    /// Typed then: kept by the kernel until read.
    pub const BEFORE_LISTENING: &str = "typed before anyone listened";
    /// Printed once a notification listens.
    pub const LISTENING_MARKER: &str = "SKYSCOPE-INPUT: listening";
    /// Typed then: 100 bytes, more than three reads' worth.
    pub const WHILE_LISTENING: &str = "The quick brown fox jumps over the lazy dog; 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ+abcdefghijklmnop!";
    /// Printed once the listening notification has been deleted.
    pub const DELETED_MARKER: &str = "SKYSCOPE-INPUT: listener deleted";
    /// Typed then.
    pub const AFTER_DELETION: &str = "still here";
    /// Printed before the scenario stops reading for a while.
    pub const NOT_READING_MARKER: &str = "SKYSCOPE-INPUT: not reading";
    /// Typed then: more than the kernel's 4096-byte ring holds.
    pub const FLOOD: &str = match core::str::from_utf8(&FLOOD_BYTES) {
        Ok(text) => text,
        Err(_) => panic!("the flood is printable ASCII"),
    };
    /// Length of [`FLOOD`].
    pub const FLOOD_LEN: usize = 5000;
    /// Printable ASCII without a short period, so a lost or repeated
    /// stretch anywhere shows.
    const FLOOD_BYTES: [u8; FLOOD_LEN] = {
        let mut bytes = [0u8; FLOOD_LEN];
        let mut i = 0;
        while i < FLOOD_LEN {
            bytes[i] = b'!' + ((i * 31 + i / 94) % 94) as u8;
            i += 1;
        }
        bytes
    };
}

/// The given value of an optional catalog field, else the default.
macro_rules! or_default {
    ($default:expr) => {
        $default
    };
    ($default:expr, $given:expr) => {
        $given
    };
}

/// A failed check inside a scenario (details are printed where it failed).
#[derive(Debug)]
pub struct Failure;

/// What a scenario function returns.
pub type Outcome = Result<(), Failure>;

macro_rules! scenarios {
    ($(
        $name:literal => $func:path {
            about: $about:literal,
            reports: $reports:expr,
            console: $console:expr,
            timeout: $timeout:expr
            $(, debug: $debug:expr)?
            $(, icount: $icount:expr)?
            $(, modules: $modules:expr)?
            $(, input: $input:expr)? $(,)?
        }
    ),* $(,)?) => {
        /// Every scenario, in the order the harness runs them.
        pub const CATALOG: &[Scenario] = &[$(
            Scenario {
                name: $name,
                about: $about,
                reports: $reports,
                console: $console,
                timeout_secs: $timeout,
                debug: false $(|| $debug)?,
                icount: false $(|| $icount)?,
                modules: or_default!(BootModules::None $(, $modules)?),
                input: or_default!(&[] $(, $input)?),
            },
        )*];

        #[cfg(target_os = "none")]
        fn lookup(name: &str) -> Option<fn(&'static BootInfo) -> Outcome> {
            match name {
                $($name => Some($func),)*
                _ => None,
            }
        }
    };
}

scenarios! {
    "boot::kernel_banner" => boot::kernel_banner {
        about: "the kernel reports CPU, VHE, memory, MMU, GIC and timer set-up at boot",
        reports: true,
        console: &[
            r"^Skyscope v\d+\.\d+\.\d+ - capability microkernel and hypervisor \(aarch64\)",
            r"^cpu: MIDR 0x[0-9a-f]{8}, EL2 with VHE on \(HCR_EL2\.E2H=1\)",
            r"^memory: [1-9]\d* MiB RAM in \d+ bank\(s\); kernel 0x[0-9a-f]+\.\.0x[0-9a-f]+; device tree",
            r"^mmu: kernel in the upper half, W\^X, stack guard page",
            r"^gic: GICv3, \d+ interrupt IDs",
            r"^timer: EL2 physical timer, INTID 26, counter [1-9]\d* Hz, tick 100 Hz",
            r"^root task: entry 0x[0-9a-f]+, image 0x[0-9a-f]+\.\.0x[0-9a-f]+",
            r"^root task: \d+ caps; \d+ untyped \([1-9]\d* MiB RAM, \d+ device\), [1-9]\d* frames, [1-9]\d* page tables",
        ],
        timeout: 30,
    },
    "boot::root_task_runs" => boot::root_task_runs {
        about: "the root task runs at EL0 in its own address space with a valid boot-info page",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "boot::bad_syscalls_return_errors" => boot::bad_syscalls_return_errors {
        about: "unknown syscalls and bad user buffers return error codes; the kernel carries on",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "boot::timer_interrupt_fires" => boot::timer_interrupt_fires {
        about: "the EL2 timer interrupts user code that never traps, and wakes a waiting thread",
        reports: true,
        console: &[],
        timeout: 30,
        debug: true,
    },
    "boot::user_fault_reported" => boot::user_fault_reported {
        about: "a store to an unmapped address is reported with its details; the kernel stays up",
        reports: false,
        console: &[
            r"^fault: thread 'root' data abort: translation fault \(level [123]\) writing 0xdead0000 at pc 0x[0-9a-f]+ \(syndrome 0x9[0-9a-f]{7}\); no fault handler, thread stopped",
        ],
        timeout: 30,
    },
    "boot::user_undefined_instruction_reported" => boot::user_undefined_instruction_reported {
        about: "an undefined instruction is reported with its pc; the kernel stays up",
        reports: false,
        console: &[
            r"^fault: thread 'root' undefined instruction at pc 0x[0-9a-f]+ \(syndrome 0x2000000\); no fault handler, thread stopped",
        ],
        timeout: 30,
    },
    "boot::modules_handed_over" => boot::modules_handed_over {
        about: "a 128 MiB and a small boot module reach the root task as 2 MiB frames over exactly their bytes, covered by no untyped",
        reports: true,
        console: &[
            r"^modules: 'pattern-big', 134221829 bytes at 0x80200000\.\.0x88400000 \(65 frames of 2 MiB\)",
            r"^modules: 'pattern-small', 3001 bytes at 0x88400000\.\.0x88600000 \(1 frame of 2 MiB\)",
        ],
        timeout: 60,
        modules: BootModules::Pattern,
    },
    "boot::corrupt_modules_reported" => boot::corrupt_modules_reported {
        about: "a bundle with a damaged header is reported at boot and the system runs without modules, its memory untyped",
        reports: true,
        console: &[
            r"^modules: bundle at modules=0x80000000 refused \(bad header: module 0 does not start on a 2 MiB boundary after the header\); booting without modules$",
        ],
        timeout: 30,
        modules: BootModules::CorruptHeader,
    },
    "boot::console_input" => input::console_input {
        about: "typed bytes reach the root task in order through ConsoleRead, 32 at most per read; the listener is signalled; READ is required; input with no listener is kept; past 4 KiB unread, new input is dropped and reported",
        reports: true,
        console: &[
            r"^console: input buffer full \(4096 bytes unread\); dropping input \(1 bytes so far\)$",
        ],
        timeout: 60,
        input: &[
            Typing { after: typed::NO_LISTENER_MARKER, text: typed::BEFORE_LISTENING },
            Typing { after: typed::LISTENING_MARKER, text: typed::WHILE_LISTENING },
            Typing { after: typed::DELETED_MARKER, text: typed::AFTER_DELETION },
            Typing { after: typed::NOT_READING_MARKER, text: typed::FLOOD },
        ],
    },
    "caps::retype_and_start_process" => caps::retype_and_start_process {
        about: "the root task builds a second process from untyped memory and it runs",
        reports: true,
        console: &[r"^  child process: running in its own address space"],
        timeout: 30,
    },
    "caps::revoke_removes_derived" => caps::revoke_removes_derived {
        about: "revoke deletes derived capabilities transitively, unmaps them, respects badges",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "caps::rights_cannot_grow" => caps::rights_cannot_grow {
        about: "copies and mints only ever lose rights; missing rights refuse operations",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "caps::bad_invocations_return_errors" => caps::bad_invocations_return_errors {
        about: "38 malformed invocations each return their exact error code (the 3 calls setting them up succeed); the kernel carries on",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "caps::untyped_reuse_after_revoke" => caps::untyped_reuse_after_revoke {
        about: "revoking an untyped makes all its memory reusable, 20 times over",
        reports: true,
        console: &[],
        timeout: 60,
    },
    "ipc::call_reply_roundtrip" => ipc::call_reply_roundtrip {
        about: "1000 calls to a server thread, each answered through its reply object",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "ipc::badges_identify_senders" => ipc::badges_identify_senders {
        about: "three senders on minted capabilities are told apart by badge; rights gate send and receive",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "ipc::cap_transfer_requires_grant" => ipc::cap_transfer_requires_grant {
        about: "a capability travels in a message only through an endpoint capability with GRANT",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "ipc::long_message_via_ipc_buffer" => ipc::long_message_via_ipc_buffer {
        about: "a 120-word message crosses through the IPC buffers and comes back reversed",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "ipc::notification_signal_wait" => ipc::notification_signal_wait {
        about: "signals OR their badges into the word; wait blocks until one arrives; poll does not",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "ipc::bound_notification_wakes_recv" => ipc::bound_notification_wakes_recv {
        about: "a thread waiting on an endpoint wakes on its bound notification's signal",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "ipc::fault_delivered_to_handler" => ipc::fault_delivered_to_handler {
        about: "faults arrive at the handler as messages; it fixes and restarts, or stops, the thread",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "sched::priority_preemption" => sched::priority_preemption {
        about: "resuming a higher-priority thread preempts the thread that resumed it",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "sched::round_robin_same_priority" => sched::round_robin_same_priority {
        about: "threads of equal priority share the processor in turns",
        reports: true,
        console: &[],
        timeout: 30,
        icount: true,
    },
    "sched::budget_enforced" => sched::budget_enforced {
        about: "a spinning thread with a 2 ms / 10 ms budget gets about 20% over 60 periods; a lower one gets the rest",
        reports: true,
        console: &[],
        timeout: 60,
        icount: true,
    },
    "sched::syscall_at_budget_end" => sched::syscall_at_budget_end {
        about: "a thread whose budget runs out as it enters the kernel with a syscall has it performed when it runs again, never skipped",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "sched::fp_state_per_thread" => sched::fp_state_per_thread {
        about: "two threads filling all 32 FP/SIMD registers with their own values and yielding to each other always find their own values again",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "sched::fp_owner_switching_away" => sched::fp_owner_switching_away {
        about: "a thread that owns the FP/SIMD unit and switches 300 times to one that never uses it (the kernel saves its state and releases the unit after 64) finds its registers intact",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "sched::bench_runs" => sched::bench_runs {
        about: "the benchmarks (IPC, guest exits, other kernel paths) run every case, every IPC call answered correctly, with sane figures (n, order of min/median/p99, bounds in ns, case order)",
        reports: true,
        console: &[
            r#"^BENCH-RESULT \{"name":"ipc/same/0","metric":"call","min":\d+,"median":[1-9]\d*"#,
            r#"^BENCH-RESULT \{"name":"ipc/cross/10","metric":"roundtrip","min":\d+,"median":[1-9]\d*"#,
        ],
        timeout: 120,
    },
    "audit::denied_invocation_recorded" => audit::denied_invocation_recorded {
        about: "a refused invocation and a finalised object appear in the audit stream",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "audit::reader_needs_cap" => audit::reader_needs_cap {
        about: "only the audit-log capability with READ drains the stream",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "audit::authority_changes_recorded" => audit::authority_changes_recorded {
        about: "retype, IRQ grants, copy, mint, move, message transfer, map, unmap, Vcpu binding and revoke are recorded, timestamped",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "audit::overflow_counted" => audit::overflow_counted {
        about: "a full ring counts lost events and never blocks the kernel",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "vm::guest_hello" => vm::guest_hello {
        about: "a bare-metal guest at EL1 prints through an emulated PL011, makes hypercalls, powers off via PSCI",
        reports: true,
        console: &[r"^  guest printed through the emulated PL011: hello from the guest at EL1$"],
        timeout: 30,
    },
    "vm::guest_contained" => vm::guest_contained {
        about: "a guest's smc, PMCR write and host-RAM probe become exits; its spinning is held to its budget",
        reports: true,
        console: &[],
        timeout: 30,
        icount: true,
    },
    "guest::vgic_inject" => guest_irq::vgic_inject {
        about: "injected virtual interrupts: more than the list registers taken in priority order at their priorities, level lines resampled at EOI and withdrawn when low, an idle guest woken by one",
        reports: true,
        console: &[],
        timeout: 30,
        icount: true,
    },
    "guest::virtual_timer_interrupt" => guest_irq::virtual_timer_interrupt {
        about: "a guest's virtual timer (with an offset) reaches it as PPI 27 from the kernel, never early, also while its Vcpu is switched out",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "guest::physical_timer_interrupt" => guest_irq::physical_timer_interrupt {
        about: "a guest's EL1 physical timer reaches it as PPI 30 from the kernel, never early, also while its Vcpu is switched out",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "guest::cpu_features_sanitised" => guest_irq::cpu_features_sanitised {
        about: "the ID registers a guest reads hide every feature whose state the kernel does not switch (SVE, SME, MTE, PMU, RAS, AMU, MPAM, EL2, LORegions)",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "guest::idle_guest_yields_cpu" => guest_irq::idle_guest_yields_cpu {
        about: "a guest idle in wfi with a 100 Hz timer leaves a lower-priority native spinner at least 95% of the CPU, and gets its ticks",
        reports: true,
        console: &[],
        timeout: 30,
        icount: true,
    },
    "guest::budget_shared_with_native" => guest_irq::budget_shared_with_native {
        about: "a spinning guest on a 50% budget above a native thread leaves it about half the CPU",
        reports: true,
        console: &[],
        timeout: 30,
        icount: true,
    },
    "vm::vmm_process" => vmm_process::vmm_process {
        about: "the VMM is a process of its own holding one guest's capabilities and nothing else; it runs the hello guest and reports its power-off",
        reports: true,
        console: &[
            r"^\[vm0\] hello from the guest at EL1$",
            r"^  vm0: guest powered off after 35 exits",
            r"^  the VMM's CNode: \d+ of 64 slots hold capabilities, each the one listed",
        ],
        timeout: 30,
    },
    "vm::two_vmms" => vmm_process::two_vmms {
        about: "two VMM processes run two guests side by side; both guests power off",
        reports: true,
        console: &[
            r"^\[vm[12]\] hello from the guest at EL1$",
            r"^\[vm[12]\] hello from the guest at EL1$",
        ],
        timeout: 30,
    },
    "vm::vmm_crash_is_contained" => vmm_process::vmm_crash_is_contained {
        about: "a VMM that faults takes down only its guest: a spinning guest and a native thread run on, and a new guest and VMM run in the dead one's memory",
        reports: true,
        console: &[
            r"^  vm1's VMM faulted: a store to 0x[0-9a-f]+ \(its stack guard page\)",
            r"^\[vm3\] hello from the guest at EL1$",
        ],
        timeout: 60,
    },
    "fuzz::syscalls" => fuzz::syscalls {
        about: "100,000 random and aimed syscalls against an arena of every object kind in every state, beside legitimate traffic; every kind hit, every label reached and succeeded, invariants hold, the watchdog keeps its period",
        reports: true,
        console: &[r"^  fuzz: seed \d+"],
        timeout: 300,
        debug: true,
    },
    "ipc::fastpath_matches_slowpath" => ipc::fastpath_matches_slowpath {
        about: "500 calls give identical results with the fastpath on and off, and the fastpath did run",
        reports: true,
        console: &[],
        timeout: 60,
        debug: true,
    },
    "security::device_frame_not_ipc_buffer" => security::device_frame_not_ipc_buffer {
        about: "a device frame is refused as an IPC buffer (the kernel touches RAM only)",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "security::page_table_maps_once" => security::page_table_maps_once {
        about: "page-table capabilities cannot be copied or minted; a table is installed once",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "security::unmapped_table_is_empty" => security::unmapped_table_is_empty {
        about: "unmapping a table or deleting its space empties it: no stale entry reaches reused memory",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "security::debug_calls_need_cap" => security::debug_calls_need_cap {
        about: "console, power-off and debug syscalls need capabilities only the root task has",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "security::guest_keys_isolated" => security::guest_keys_isolated {
        about: "two guests set and read pointer-authentication keys: each only ever sees its own",
        reports: true,
        console: &[],
        timeout: 30,
    },
    "security::guest_serror_contained" => security::guest_serror_contained {
        about: "a guest's SError reaches its VMM at the guest's exit, the guest resumes, a native canary runs on",
        reports: true,
        console: &[],
        timeout: 30,
        debug: true,
    },
    "guest::linux_boots" => linux::linux_boots {
        about: "a stock Debian arm64 kernel boots under a VMM process to the busybox shell; uname, /proc/cpuinfo and a rising arch-timer count are read through the serial console; it powers off through PSCI",
        reports: true,
        console: &[
            r"^SKYSCOPE-GUEST: init reached$",
            r"^Linux \S+ 6\.\d+\S* #\d+ SMP .* aarch64 GNU/Linux$",
            r"^processor\s+: 0$",
            r"^CPU implementer\s+: 0x[0-9a-f]{2}$",
            r"^arch_timer: \d+ -> \d+$",
            r"^the arch timer count rose$",
            r"reboot: Power down",
            r"^linux: the guest powered off",
            r"^  the VMM's CNode: \d+ of \d+ slots hold capabilities, each the one listed",
        ],
        timeout: 300,
        modules: BootModules::LinuxGuest,
        input: &[
            Typing { after: "SKYSCOPE-GUEST: init reached", text: "uname -a\n" },
            Typing { after: "aarch64 GNU/Linux", text: "cat /proc/cpuinfo\n" },
            Typing { after: "CPU revision", text: concat!(
                "a=$(awk '/arch_timer/ {print $2}' /proc/interrupts); sleep 2; ",
                "b=$(awk '/arch_timer/ {print $2}' /proc/interrupts); echo \"arch_timer: $a -> $b\"; ",
                "[ \"$b\" -gt \"$a\" ] && echo \"the arch timer count\" \"rose\"\n",
            ) },
            Typing { after: "count rose", text: "poweroff -f\n" },
        ],
    },
    "guest::linux_smp" => linux::linux_smp {
        about: "the Linux guest with 2 vCPUs brings the second up through PSCI CPU_ON, counts 2 processors and takes IPIs on both",
        reports: true,
        console: &[
            r"^SKYSCOPE-GUEST: init reached$",
            r"^cpus: 2$",
            r"^\s*IPI0:\s+[1-9]\d*\s+[1-9]\d*\s+Rescheduling interrupts$",
            r"^linux: the guest powered off",
        ],
        timeout: 300,
        modules: BootModules::LinuxGuest,
        input: &[
            Typing { after: "SKYSCOPE-GUEST: init reached", text: "echo \"cpus:\" $(nproc); grep IPI0 /proc/interrupts\n" },
            Typing { after: "Rescheduling interrupts", text: "poweroff -f\n" },
        ],
    },
    "guest::linux_reset" => linux::linux_reset {
        about: "a Linux guest that resets (PSCI SYSTEM_RESET) is deleted with its VMM and built again from the untouched boot modules; the second boot reaches init and powers off",
        reports: true,
        console: &[
            r"^SKYSCOPE-GUEST: init reached$",
            r"reboot: Restarting system",
            r"^linux: the guest asked for a reset after \d+ exits$",
            r"^linux: building the guest again from the boot modules$",
            r"^SKYSCOPE-GUEST: init reached$",
            r"^linux: the guest powered off",
            r"^  the guest was built again 1 time\(s\) after a reset$",
        ],
        timeout: 300,
        modules: BootModules::LinuxGuest,
        input: &[
            Typing { after: "SKYSCOPE-GUEST: init reached", text: "reboot -f\n" },
            Typing { after: "SKYSCOPE-GUEST: init reached", text: "poweroff -f\n" },
        ],
    },
    "guest::linux_bus_error" => linux::linux_bus_error {
        about: "a load and a store by a Linux process at a guest-physical address nothing backs take the synchronous external abort the VMM injects: the process dies of SIGBUS, the guest carries on",
        reports: true,
        console: &[
            r"^SKYSCOPE-GUEST: init reached$",
            r"^load status: 135$",
            r"^store status: 135$",
            r"^linux: the guest powered off \(\d+ exits, \d+ bytes of output, 2 answered by the architecture's defaults\)$",
        ],
        timeout: 300,
        modules: BootModules::LinuxGuest,
        input: &[
            Typing { after: "SKYSCOPE-GUEST: init reached", text: "devmem 0x0a000000 32; echo \"load\" \"status:\" $?\n" },
            Typing { after: "load status:", text: "devmem 0x0a000010 32 0x5a5a; echo \"store\" \"status:\" $?\n" },
            Typing { after: "store status:", text: "poweroff -f\n" },
        ],
    },
    "guest::console_input" => linux::console_input {
        about: "a command typed at the serial console reaches the Linux guest's shell through the kernel, the VMM and the emulated PL011, and its output comes back",
        reports: true,
        console: &[
            r"^SKYSCOPE-GUEST: init reached$",
            r"^typed: 42 hello-from-the-console$",
            r"^linux: the guest powered off",
        ],
        timeout: 300,
        modules: BootModules::LinuxGuest,
        input: &[
            Typing { after: "SKYSCOPE-GUEST: init reached", text: "echo \"typed:\" $((6 * 7)) hello-from-the-console\n" },
            Typing { after: "typed: 42", text: "poweroff -f\n" },
        ],
    },
    "security::revoke_is_preemptible" => security::revoke_is_preemptible {
        about: "a 256 MiB retype and a 65,536-object revoke run while a 2 ms / 10 ms thread keeps its period",
        reports: true,
        console: &[],
        timeout: 120,
    },
}

/// Finds a scenario in the catalog.
pub fn find(name: &str) -> Option<&'static Scenario> {
    CATALOG.iter().find(|s| s.name == name)
}

/// Runs scenario `name`, prints its verdict and powers off.
#[cfg(target_os = "none")]
pub fn run(name: &str, boot_info: &'static BootInfo) -> ! {
    use protocol::{FAIL, FAILURE_STATUS, PASS, PREFIX};
    use skyscope_abi::{println, rt::exit};
    let Some(scenario) = lookup(name) else {
        println!("{PREFIX} {name}: {FAIL} no such scenario");
        exit(FAILURE_STATUS);
    };
    println!("{PREFIX} {name}: START");
    match scenario(boot_info) {
        Ok(()) => {
            println!("{PREFIX} {name}: {PASS}");
            exit(0)
        }
        Err(Failure) => {
            println!("{PREFIX} {name}: {FAIL} (see the check above)");
            exit(FAILURE_STATUS)
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut names: std::vec::Vec<_> = CATALOG.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len(), "duplicate scenario name");
        for s in CATALOG {
            assert!(s.name.contains("::"), "{} should be area::what", s.name);
            assert!(
                s.reports || !s.console.is_empty(),
                "{} can never pass",
                s.name
            );
            assert!(s.timeout_secs > 0);
        }
    }
}
