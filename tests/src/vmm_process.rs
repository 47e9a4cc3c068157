//! Scenarios with the VMM as a process of its own (`vm::vmm_process`,
//! `vm::two_vmms`, `vm::vmm_crash_is_contained`): the root task builds a
//! minimal guest and a VMM process from the VMM program embedded in its
//! image, gives the VMM exactly that guest's capabilities, and hears from
//! it only on a supervisor endpoint — the VMM's reports, and its faults.

use crate::{
    Failure, Outcome,
    support::{Carve, Env, ROOT, ROOT_DEPTH, is_empty, map_into, read, spawn},
};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use skyscope_abi::{
    BootInfo, CapRights, Error, MessageInfo, ObjectType,
    bootinfo::{SlotRange, slots as root_slots},
    fault, invocation as inv, ipc, println,
    syscall::{self, counter_now},
    vcpu::aarch64 as vreg,
};
use skyscope_client::CSpaceRoot;
use skyscope_guest_minimal as guest;
use skyscope_launcher::{Console, Image, ScratchWriter, Source, Syscalls, launch};
use skyscope_vmm::{
    memory::{GuestAddress, GuestRange},
    process::{Report, Stats, slots, start::module_kind},
};

/// VMMs run above their guests, below the canary and the root task.
const VMM_PRIORITY: u8 = 150;
const GUEST_PRIORITY: u8 = 100;
const CANARY_PRIORITY: u8 = 200;
/// Where the root task maps a guest's scratch page to watch it.
const WATCH: u64 = 0x30_0001_0000;

/// What the hello guest costs its VMM: 35 exits (5 hypercalls, 28 UART
/// bytes, the UART's PeriphID0, the unmapped read), 28 bytes printed, 5
/// answered by default (`hvc #1..#4`, the read of nothing).
const HELLO: Stats = Stats {
    exits: 35,
    console_bytes: 28,
    defaulted: 5,
};

type Vmm = skyscope_launcher::Vmm;

/// What to start.
struct Spec<'a> {
    name: &'a str,
    badge: u64,
    program: &'a [u8],
    /// The guest vCPU's budget and period (µs).
    budget: (u64, u64),
    crash_after_exits: u64,
}

/// Builds the guest of `spec` and its VMM process from untyped `ut`, gives
/// the VMM that guest's capabilities and nothing else, and starts it
/// (`skyscope_launcher`, as the root task does for a Linux guest).
fn start_vmm(
    env: &mut Env,
    ut: u64,
    supervisor: u64,
    writer: &mut ScratchWriter,
    spec: &Spec<'_>,
) -> Result<Vmm, Failure> {
    let frequency = env.info.timer_frequency;
    let images = [Image {
        kind: module_kind::PROGRAM,
        guest_address: guest::LOAD_ADDRESS,
        source: Source::Bytes(spec.program),
    }];
    launch(
        &mut Carve { env, untyped: ut },
        &mut Syscalls,
        writer,
        &skyscope_launcher::Spec {
            program: skyscope_launcher::VMM_ELF,
            name: spec.name,
            supervisor,
            badge: spec.badge,
            console_cap: root_slots::CONSOLE,
            console: Console::Lines,
            sched_control: root_slots::SCHED_CONTROL,
            parent: CSpaceRoot {
                cnode: ROOT,
                depth: ROOT_DEPTH,
            },
            vcpus: 1,
            ram: GuestRange::new(GuestAddress(guest::LOAD_ADDRESS), guest::RAM_BYTES)
                .ok_or_else(|| fail!("guest RAM range"))?,
            vmm_priority: VMM_PRIORITY,
            guest_priority: GUEST_PRIORITY,
            budget: spec.budget,
            crash_after_exits: spec.crash_after_exits,
            clock: (0, 0, frequency),
            images: &images,
        },
    )
    .map_err(|e| fail!("starting {}: {e}", spec.name))
}

/// What arrived on the supervisor endpoint.
#[derive(Debug)]
enum Heard {
    /// A VMM's report.
    Report { badge: u64, report: Report },
    /// A VMM's own fault.
    Fault {
        badge: u64,
        label: u64,
        words: [u64; 4],
    },
}

/// Waits for the next message on the supervisor endpoint.
fn hear(supervisor: u64, reply: u64) -> Result<Heard, Failure> {
    let m = ipc::recv(supervisor, reply).map_err(|e| fail!("supervisor: {e}"))?;
    Ok(match Report::decode(m.info.label(), m.words) {
        Some(report) => Heard::Report {
            badge: m.badge,
            report,
        },
        None => Heard::Fault {
            badge: m.badge,
            label: m.info.label(),
            words: m.words,
        },
    })
}

/// Waits for `vmm`'s report that its guest powered off as the hello guest
/// does.
fn expect_hello_report(supervisor: u64, reply: u64, vmm: &Vmm, name: &str) -> Outcome {
    let heard = hear(supervisor, reply)?;
    let Heard::Report { badge, report } = heard else {
        return Err(fail!("expected {name}'s report, heard {heard:?}"));
    };
    check_eq!(badge, vmm.badge);
    check_eq!(report, Report::PoweredOff(HELLO));
    println!(
        "  {name}: guest powered off after {} exits ({} bytes printed, {} answered by default)",
        HELLO.exits, HELLO.console_bytes, HELLO.defaulted
    );
    Ok(())
}

/// The capabilities a VMM is given, by slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    ExitEndpoint,
    ExitReply,
    Console,
    Supervisor,
    GuestSpace,
    InputNotification,
    Vcpu,
    VcpuThread,
    Ram(usize),
    Module,
}

fn held(vmm: &Vmm, slot: u64) -> Option<Held> {
    let in_range = |r: SlotRange| (r.start..r.end).contains(&slot);
    Some(match slot {
        slots::EXIT_ENDPOINT => Held::ExitEndpoint,
        slots::EXIT_REPLY => Held::ExitReply,
        slots::CONSOLE => Held::Console,
        slots::SUPERVISOR => Held::Supervisor,
        slots::GUEST_SPACE => Held::GuestSpace,
        slots::CONSOLE_INPUT if vmm.input.is_some() => Held::InputNotification,
        s if (0..vcpus(vmm)).any(|i| s == slots::vcpu(i)) => Held::Vcpu,
        s if (0..vcpus(vmm)).any(|i| s == slots::vcpu_thread(i)) => Held::VcpuThread,
        s if in_range(vmm.ram_frames) => Held::Ram((s - vmm.ram_frames.start) as usize),
        _ if in_range(vmm.module_frames) => Held::Module,
        _ => return None,
    })
}

/// How many vCPUs the VMM's guest has.
fn vcpus(vmm: &Vmm) -> usize {
    (0..skyscope_vmm::vcpu::MAX_VCPUS)
        .take_while(|&i| {
            skyscope_vmm::vcpu::VcpuId::new(i).is_some_and(|v| vmm.guest.vcpu(v).is_some())
        })
        .count()
}

/// Walks every slot of the VMM's CNode (its whole CSpace: it holds no
/// other CNode): the listed slots hold what was given, every other slot
/// is empty. Each capability is moved out to a probe slot, tried, and
/// moved back: none is an untyped, a CNode, power, debug, IRQ or audit
/// capability, and each does what its listing says and no more. `ut` is
/// an untyped of the caller's to try the GuestSpace with.
pub(crate) fn check_cspace(env: &mut Env, ut: u64, vmm: &Vmm) -> Outcome {
    let probe = env.slot();
    let probes = [probe, env.slot(), env.slot()];
    let cnode = vmm.process.cnode;
    let depth = u64::from(vmm.process.cnode_radix);
    let mut count = 0;
    for slot in 0..1u64 << depth {
        let moved = inv::cnode_move(ROOT, probe, ROOT_DEPTH, cnode, slot, depth);
        match (moved, held(vmm, slot)) {
            (Err(Error::FailedLookup), None) => continue,
            (Err(e), kind) => return Err(fail!("slot {slot} ({kind:?}): {e}")),
            (Ok(()), None) => {
                return Err(fail!("slot {slot} holds a capability nobody listed"));
            }
            (Ok(()), Some(kind)) => {
                count += 1;
                let tried = try_capability(vmm, probes, ut, kind);
                check_ok!(inv::cnode_move(cnode, slot, depth, ROOT, probe, ROOT_DEPTH));
                tried?;
            }
        }
    }
    println!(
        "  the VMM's CNode: {count} of {} slots hold capabilities, each the one listed; the rest are empty",
        1u64 << depth
    );
    let fixed = 5 + 2 * vcpus(vmm) as u64 + u64::from(vmm.input.is_some());
    check_eq!(
        count,
        fixed + vmm.ram_frames.len() + vmm.module_frames.len()
    );
    Ok(())
}

/// Tries the capability in root slot `probe`, listed as `kind`.
fn try_capability(vmm: &Vmm, probes: [u64; 3], ut: u64, kind: Held) -> Outcome {
    let [probe, spare, table] = probes;
    // Authority no VMM capability may carry.
    check_eq!(syscall::power_off(probe, 1), Error::WrongType);
    check!(
        !syscall::debug_check_invariants(probe),
        "{kind:?} works as the debug capability"
    );
    check!(
        inv::untyped_retype(probe, ObjectType::Endpoint, 0, ROOT, 0, 0, spare, 1).is_err(),
        "{kind:?} retypes"
    );
    check!(
        inv::cnode_delete(probe, 0, 1).is_err(),
        "{kind:?} works as a CNode"
    );
    check!(
        inv::irq_control_get(probe, 40, ROOT, spare, ROOT_DEPTH).is_err(),
        "{kind:?} issues IRQ handlers"
    );
    check!(
        inv::audit_read(
            probe,
            &mut [skyscope_abi::audit::Record::default(); inv::AUDIT_READ_MAX]
        )
        .is_err(),
        "{kind:?} reads the audit log"
    );
    let nothing = MessageInfo::new(0, 0, 0);
    match kind {
        // Receive exits, never send on that endpoint.
        Held::ExitEndpoint => {
            check_eq!(ipc::nb_recv(probe, 0).map(drop), Err(Error::WouldBlock));
            check_eq!(
                ipc::nb_send(probe, nothing, [0; 4]),
                Err(Error::InsufficientRights)
            );
        }
        // Send reports, never receive what other VMMs send.
        Held::Supervisor => {
            check_eq!(
                ipc::nb_recv(probe, 0).map(drop),
                Err(Error::InsufficientRights)
            );
        }
        // Write; read only when the guest has the console to itself.
        Held::Console => {
            check_ok!(syscall::console_write_raw(probe, WATCH, 0));
            let mut typed = [0u8; syscall::CONSOLE_READ_MAX];
            let read = syscall::console_read(probe, &mut typed).map(drop);
            if vmm.input.is_some() {
                check_ok!(read);
            } else {
                check_eq!(read, Err(Error::InsufficientRights));
            }
        }
        // A notification bound to another thread (the VMM's): only that
        // thread may wait on it.
        Held::InputNotification => {
            check_eq!(ipc::poll(probe), Err(Error::IllegalOperation));
        }
        // The guest's space: a fresh frame maps into it.
        Held::GuestSpace => {
            check_ok!(inv::untyped_retype(
                ut,
                ObjectType::Frame4K,
                0,
                ROOT,
                0,
                0,
                spare,
                1
            ));
            // Right after the guest's RAM, with a table made for it if
            // the walk lacks one.
            let unused = vmm.ram.end().raw();
            if inv::frame_map(spare, probe, unused, CapRights::ALL, 0) == Err(Error::FailedLookup) {
                check_ok!(inv::untyped_retype(
                    ut,
                    ObjectType::PageTable,
                    0,
                    ROOT,
                    0,
                    0,
                    table,
                    1
                ));
                check_ok!(inv::page_table_map(table, probe, unused));
                check_ok!(inv::frame_map(spare, probe, unused, CapRights::ALL, 0));
            }
            check_ok!(inv::cnode_delete(ROOT, spare, ROOT_DEPTH));
            let _ = inv::cnode_delete(ROOT, table, ROOT_DEPTH);
        }
        Held::Vcpu => check_ok!(inv::vcpu_read_register(probe, vreg::TPIDR_EL1)),
        Held::VcpuThread => check_ok!(inv::tcb_read_registers(probe, 1)),
        // The VMM's RAM frames are the guest's RAM, page for page.
        Held::Ram(page) => match vmm.guest_ram.get(page).copied() {
            Some(guest_frame) if guest_frame != 0 => check_eq!(
                inv::frame_get_address(probe),
                inv::frame_get_address(guest_frame)
            ),
            _ => check_ok!(inv::frame_get_address(probe)),
        },
        Held::Module => check_ok!(inv::frame_get_address(probe)),
        // A reply object answers only through the IPC syscalls.
        Held::ExitReply => {}
    }
    Ok(())
}

/// Runs from a shared page counting its iterations: a native thread
/// whose progress shows the system keeps scheduling.
static CANARY: AtomicU64 = AtomicU64::new(0);

extern "C" fn canary(_: u64) -> ! {
    loop {
        CANARY.fetch_add(1, Relaxed);
    }
}

/// Lets everything else run for `ms` milliseconds (the root task drops to
/// the lowest priority and spins), then returns how far the canary and
/// the word at `watch` moved.
fn observe(info: &BootInfo, ms: u64, watch: u64) -> Result<(u64, u64), Failure> {
    let (canary, watched) = (CANARY.load(Relaxed), read(watch));
    check_ok!(inv::tcb_set_priority(root_slots::TCB, 1));
    let until = counter_now() + info.timer_frequency * ms / 1000;
    while counter_now() < until {}
    check_ok!(inv::tcb_set_priority(root_slots::TCB, 255));
    Ok((
        CANARY.load(Relaxed).wrapping_sub(canary),
        read(watch).wrapping_sub(watched),
    ))
}

/// Untyped memory of a scenario: three MiB-sized untypeds (their slots
/// are `first..first + 3`), each revocable on its own. The first holds
/// the scenario-wide objects, each of the others one guest and its VMM.
fn untyped(env: &mut Env) -> Result<u64, Failure> {
    let pool = env.private_untyped(22).map_err(|e| fail!("{e}"))?;
    env.retype(pool, ObjectType::Untyped, 20, 3)
        .map_err(|e| fail!("{e}"))
}

/// Scenario-wide objects, from untyped `infra`: the supervisor endpoint
/// and its reply object, and the scratch writer's tables.
fn infrastructure(env: &mut Env, infra: u64) -> Result<(u64, u64, ScratchWriter), Failure> {
    let supervisor = env
        .retype(infra, ObjectType::Endpoint, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let reply = env
        .retype(infra, ObjectType::Reply, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let writer = ScratchWriter::new(&mut Carve {
        env,
        untyped: infra,
    })
    .map_err(|e| fail!("{e}"))?;
    Ok((supervisor, reply, writer))
}

/// Maps a copy of a guest frame read-only at [`WATCH`] in the root task.
fn watch(env: &mut Env, infra: u64, frame: u64) -> Outcome {
    let copy = env.copy(frame, CapRights::READ).map_err(|e| fail!("{e}"))?;
    check_ok!(map_into(
        env,
        infra,
        root_slots::VSPACE,
        copy,
        WATCH,
        CapRights::READ,
        0
    ));
    Ok(())
}

pub fn vmm_process(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let infra = untyped(&mut env)?;
    let (supervisor, reply, mut writer) = infrastructure(&mut env, infra)?;
    let ut = infra + 1;
    let started = counter_now();
    let vmm = start_vmm(
        &mut env,
        ut,
        supervisor,
        &mut writer,
        &Spec {
            name: "vm0",
            badge: 1,
            program: guest::hello(),
            budget: (10_000, 10_000),
            crash_after_exits: 0,
        },
    )?;
    let built = counter_now();
    expect_hello_report(supervisor, reply, &vmm, "vm0")?;
    let done = counter_now();
    let us = |ticks: u64| ticks * 1_000_000 / info.timer_frequency;
    println!(
        "  VMM process: image {:#x}..{:#x}, stack guard page at {:#x}, {}-slot CNode; \
         guest and VMM built and started in {} us, the guest ran to power-off in {} us",
        vmm.process.image_start,
        vmm.process.image_end,
        vmm.process.guard_page(),
        1u64 << vmm.process.cnode_radix,
        us(built - started),
        us(done - built)
    );
    // The guest's memory is the frames the root task made: its scratch
    // page holds what the guest wrote there.
    watch(&mut env, infra, vmm.guest_ram[1])?;
    check_eq!(read(WATCH + 8 * 100), 100);
    // Having reported, the VMM waits quietly: no fault follows.
    observe(info, 20, WATCH)?;
    check_eq!(
        ipc::nb_recv(supervisor, reply).map(drop),
        Err(Error::WouldBlock)
    );
    check_cspace(&mut env, ut, &vmm)?;
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    check!(
        is_empty(vmm.process.tcb),
        "the VMM's TCB outlived its untyped"
    );
    Ok(())
}

pub fn two_vmms(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let infra = untyped(&mut env)?;
    let (supervisor, reply, mut writer) = infrastructure(&mut env, infra)?;
    let mut vmms = [const { None::<Vmm> }; 2];
    for (i, (name, vmm)) in ["vm1", "vm2"].into_iter().zip(&mut vmms).enumerate() {
        let ut = infra + 1 + i as u64;
        *vmm = Some(start_vmm(
            &mut env,
            ut,
            supervisor,
            &mut writer,
            &Spec {
                name,
                badge: i as u64 + 1,
                program: guest::hello(),
                budget: (10_000, 10_000),
                crash_after_exits: 0,
            },
        )?);
    }
    // Both are built and runnable before either runs (the root task is
    // above them); they share the processor until both guests are done.
    let mut done = [None::<Stats>; 2];
    for _ in 0..2 {
        let heard = hear(supervisor, reply)?;
        let Heard::Report {
            badge,
            report: Report::PoweredOff(stats),
        } = heard
        else {
            return Err(fail!("expected a power-off report, heard {heard:?}"));
        };
        let Some(slot) = done.get_mut(badge.wrapping_sub(1) as usize) else {
            return Err(fail!("a report from badge {badge}"));
        };
        check!(slot.is_none(), "two reports from badge {badge}");
        *slot = Some(stats);
    }
    check_eq!(done, [Some(HELLO); 2]);
    // Each VMM saw its own guest's memory: different frames.
    let [Some(a), Some(b)] = &vmms else {
        return Err(fail!("a VMM was not started"));
    };
    check!(
        inv::frame_get_address(a.guest_ram[0]) != inv::frame_get_address(b.guest_ram[0]),
        "the two guests share RAM"
    );
    println!("  two VMM processes ran side by side; both guests powered off after 35 exits");
    Ok(())
}

pub fn vmm_crash_is_contained(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let infra = untyped(&mut env)?;
    let (supervisor, reply, mut writer) = infrastructure(&mut env, infra)?;
    let (ut_a, ut_b) = (infra + 1, infra + 2);
    // A native canary thread, 1 ms of every 10 ms.
    spawn(
        &mut env,
        infra,
        40,
        canary,
        0,
        CANARY_PRIORITY,
        1_000,
        10_000,
    )
    .map_err(|e| fail!("{e}"))?;
    // The second guest spins forever on 2 ms of every 10 ms (a guest stuck
    // in a loop); its VMM answers its first four exits by default.
    let spinner = start_vmm(
        &mut env,
        ut_b,
        supervisor,
        &mut writer,
        &Spec {
            name: "vm2",
            badge: 2,
            program: guest::hostile(),
            budget: (2_000, 10_000),
            crash_after_exits: 0,
        },
    )?;
    watch(&mut env, infra, spinner.guest_ram[1])?;
    let mut tries = 0;
    while read(WATCH) == 0 {
        tries += 1;
        check!(tries < 100, "the spinning guest never ran");
        observe(info, 10, WATCH)?;
    }
    // The first VMM faults after 10 exits of its hello guest.
    let doomed = start_vmm(
        &mut env,
        ut_a,
        supervisor,
        &mut writer,
        &Spec {
            name: "vm1",
            badge: 1,
            program: guest::hello(),
            budget: (10_000, 10_000),
            crash_after_exits: 10,
        },
    )?;
    let first_frame = inv::frame_get_address(doomed.guest_ram[0]);
    let heard = hear(supervisor, reply)?;
    let Heard::Fault {
        badge: 1,
        label: fault::VM_FAULT,
        words: [pc, address, flags, _],
    } = heard
    else {
        return Err(fail!("expected vm1's VMM to fault, heard {heard:?}"));
    };
    let guard = doomed.process.guard_page();
    check!(
        (guard..guard + 4096).contains(&address),
        "the VMM faulted at {address:#x}, not in its stack guard page {guard:#x}"
    );
    check!(flags & fault::FLAG_WRITE != 0, "the fault was not a store");
    println!(
        "  vm1's VMM faulted: a store to {address:#x} (its stack guard page) at pc {pc:#x}, after 10 exits"
    );
    // The rest of the system goes on: the canary and the spinning guest.
    let (canary_after_crash, spins_after_crash) = observe(info, 100, WATCH)?;
    check!(canary_after_crash > 0, "the canary stopped");
    check!(spins_after_crash > 0, "the spinning guest stopped");
    // Everything of the dead guest and its VMM came from one untyped.
    check_ok!(inv::cnode_revoke(ROOT, ut_a, ROOT_DEPTH));
    check!(is_empty(doomed.process.tcb), "the dead VMM's TCB survived");
    // A new guest and VMM from the same memory finish normally.
    let fresh = start_vmm(
        &mut env,
        ut_a,
        supervisor,
        &mut writer,
        &Spec {
            name: "vm3",
            badge: 3,
            program: guest::hello(),
            budget: (10_000, 10_000),
            crash_after_exits: 0,
        },
    )?;
    check_eq!(inv::frame_get_address(fresh.guest_ram[0]), first_frame);
    expect_hello_report(supervisor, reply, &fresh, "vm3")?;
    let (canary_ran, spins) = observe(info, 100, WATCH)?;
    check!(canary_ran > 0, "the canary stopped");
    check!(spins > 0, "the spinning guest stopped");
    println!(
        "  the canary and the spinning guest (vm2) kept running: {canary_after_crash} and {spins_after_crash} \
         iterations in the 100 ms after the fault, {canary_ran} and {spins} in the 100 ms after vm3; \
         vm3 ran in vm1's memory"
    );
    check_ok!(inv::cnode_revoke(ROOT, ut_a, ROOT_DEPTH));
    check_ok!(inv::cnode_revoke(ROOT, ut_b, ROOT_DEPTH));
    check!(is_empty(spinner.process.tcb), "vm2's TCB survived");
    Ok(())
}
