//! Running a Linux guest from the boot modules under a VMM process, for
//! the root task (`guest=linux`) and the `guest::linux_*` scenarios.
//!
//! The Image (boot module `linux`) and the initramfs (`initrd`) are
//! handed over as read-only copies of the module frames, the guest command
//! line as a small image of its own; the VMM gets the console with READ
//! and WRITE (the guest has it to itself) and a notification bound to its
//! thread for typed input, and nothing else beyond the guest's own
//! capabilities. [`run`] then waits on the supervisor endpoint for how the
//! guest ended.

use crate::{
    Console, Image, LaunchError, RootObjects, ScratchWriter, Source, Spec, Syscalls, Vmm,
    config::GuestConfig, launch,
};
use skyscope_abi::{
    BootInfo, ObjectType,
    bootinfo::{BootModule, slots},
    ipc, println,
};
use skyscope_client::{CSpaceRoot, Objects};
use skyscope_vmm::{
    arch::aarch64::layout::RAM_BASE,
    memory::GuestRange,
    process::{Report, start::module_kind},
};

/// The VMM runs above its vCPUs, so that exits are served at once.
const VMM_PRIORITY: u8 = 150;
const GUEST_PRIORITY: u8 = 100;
/// Each vCPU may use the whole processor (10 ms of every 10 ms); vCPUs of
/// equal priority take turns.
const BUDGET_US: (u64, u64) = (10_000, 10_000);
/// The supervisor badge of the one VMM.
const BADGE: u64 = 1;

/// How a Linux guest ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The VMM's report.
    Report(Report),
    /// The VMM itself faulted: the fault message's label and words.
    VmmFault(u64, [u64; 4]),
}

fn module_source(module: &BootModule) -> Source<'static> {
    Source::Frames {
        frames: module.frames,
        frame_bits: module.frame_bits,
        size: module.size,
    }
}

/// A Linux guest that ran.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// How it ended.
    pub ended: Ended,
    /// Its VMM (stopped, or waiting after its report).
    pub vmm: Vmm,
    /// The first root slot the launch left free.
    pub next_slot: u64,
}

/// Starts the Linux guest `config` describes from the boot modules, from
/// the root task's untyped memory and its empty slots from `first_slot`
/// on, and waits until it ends.
pub fn run(info: &BootInfo, config: &GuestConfig<'_>, first_slot: u64) -> Result<Run, LaunchError> {
    let kernel = info.module("linux").ok_or(LaunchError::Spec(
        "no boot module 'linux' (the guest kernel Image)",
    ))?;
    let initrd = info.module("initrd");
    let ram =
        GuestRange::new(RAM_BASE, config.memory).ok_or(LaunchError::Spec("guest RAM size"))?;
    let mut objects = RootObjects::new(info, first_slot);
    let step = |what| move |e| LaunchError::Step(what, e);
    let supervisor = objects
        .make(ObjectType::Endpoint, 0, 1)
        .map_err(step("supervisor endpoint"))?;
    let reply = objects
        .make(ObjectType::Reply, 0, 1)
        .map_err(step("supervisor reply"))?;
    let mut writer = ScratchWriter::new(&mut objects).map_err(step("scratch mapping"))?;
    let mut images = [Image {
        kind: module_kind::LINUX,
        guest_address: 0,
        source: module_source(kernel),
    }; 3];
    let mut count = 1;
    if let Some(initrd) = initrd {
        images[count] = Image {
            kind: module_kind::INITRAMFS,
            guest_address: 0,
            source: module_source(initrd),
        };
        count += 1;
    }
    images[count] = Image {
        kind: module_kind::CMDLINE,
        guest_address: 0,
        source: Source::Bytes(config.cmdline.as_bytes()),
    };
    count += 1;
    let spec = Spec {
        program: crate::VMM_ELF,
        name: "linux",
        supervisor,
        badge: BADGE,
        console_cap: slots::CONSOLE,
        console: Console::Interactive,
        sched_control: slots::SCHED_CONTROL,
        parent: CSpaceRoot {
            cnode: slots::CNODE,
            depth: 64,
        },
        vcpus: config.vcpus,
        ram,
        vmm_priority: VMM_PRIORITY,
        guest_priority: GUEST_PRIORITY,
        budget: BUDGET_US,
        crash_after_exits: 0,
        // The epoch is the host's time when the machine started, when the
        // counter read about zero.
        clock: (config.epoch, 0, info.timer_frequency),
        images: &images[..count],
    };
    let vmm = launch(&mut objects, &mut Syscalls, &mut writer, &spec)?;
    println!(
        "linux: VMM started: {} vCPU(s), {} MiB of RAM, Image {} bytes, initramfs {} bytes, command line \"{}\"",
        config.vcpus,
        config.memory >> 20,
        kernel.size,
        initrd.map_or(0, |m| m.size),
        config.cmdline
    );
    // One message ends it: the VMM's report, or its fault.
    let message = ipc::recv(supervisor, reply).map_err(step("supervisor endpoint"))?;
    let ended = match Report::decode(message.info.label(), message.words) {
        Some(report) => Ended::Report(report),
        None => Ended::VmmFault(message.info.label(), message.words),
    };
    Ok(Run {
        ended,
        vmm,
        next_slot: objects.next_slot(),
    })
}

/// Deletes everything [`run`] made — the guest, its VMM, the supervisor
/// endpoint, the scratch mapping's tables — by revoking the root task's
/// RAM untypeds (so their memory is free again), leaving the boot modules
/// as they were: a guest is built again from them. Only for a root task
/// that made nothing else from its untypeds.
pub fn reclaim(info: &BootInfo) -> Result<(), LaunchError> {
    for (i, region) in info.untyped_regions().iter().enumerate() {
        if region.is_device == 0 {
            let slot = info.untyped.start + i as u64;
            skyscope_abi::invocation::cnode_revoke(slots::CNODE, slot, 64)
                .map_err(|e| LaunchError::Step("revoke an untyped", e))?;
        }
    }
    Ok(())
}

/// Resets in a row after which [`run_until_off`] gives up (a guest that
/// resets at once, forever, would otherwise keep the machine busy).
pub const MAX_RESETS: u32 = 16;

/// Runs the guest as [`run`] does; when it resets, deletes it and its VMM
/// ([`reclaim`]) and builds both again from the same boot modules, up to
/// [`MAX_RESETS`] times. Returns the last run and how many resets there
/// were.
pub fn run_until_off(
    info: &BootInfo,
    config: &GuestConfig<'_>,
    first_slot: u64,
) -> Result<(Run, u32), LaunchError> {
    let mut resets = 0;
    loop {
        let run = run(info, config, first_slot)?;
        if !matches!(run.ended, Ended::Report(Report::Reset(_))) || resets == MAX_RESETS {
            return Ok((run, resets));
        }
        tell(&run.ended);
        reclaim(info)?;
        resets += 1;
        println!("linux: building the guest again from the boot modules");
    }
}

/// Says how a guest ended, on the console, and whether it powered off.
pub fn tell(ended: &Ended) -> bool {
    match *ended {
        Ended::Report(Report::PoweredOff(stats)) => {
            println!(
                "linux: the guest powered off ({} exits, {} bytes of output, {} answered by the architecture's defaults)",
                stats.exits, stats.console_bytes, stats.defaulted
            );
            true
        }
        Ended::Report(Report::Reset(stats)) => {
            println!(
                "linux: the guest asked for a reset after {} exits",
                stats.exits
            );
            false
        }
        Ended::Report(Report::Failed {
            reason,
            detail,
            pc,
            exits,
        }) => {
            println!(
                "linux: the VMM stopped the guest: {reason:?} (detail {detail:#x}, pc {pc:#x}, after {exits} exits)"
            );
            false
        }
        Ended::VmmFault(label, words) => {
            println!("linux: the VMM faulted (label {label}, words {words:#x?})");
            false
        }
    }
}
