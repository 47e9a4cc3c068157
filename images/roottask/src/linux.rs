//! Running a Linux guest from the boot modules: `guest=linux` on the
//! kernel command line (see `skyscope_launcher::config` for the rest).
//!
//! The root task starts one VMM process for the guest with
//! `skyscope_launcher`: the Image (`linux` module) and the initramfs
//! (`initrd`) are handed over as read-only copies of the module frames,
//! the guest command line as a small image of its own; the VMM gets the
//! console with READ and WRITE (the guest has it to itself) and a
//! notification bound to its thread for typed input, and nothing else
//! beyond the guest's own capabilities. The root task then waits on the
//! supervisor endpoint: a guest that powers off ends the system with
//! status 0 (it is the only guest); a reset, a VMM failure or a VMM
//! fault end it with a non-zero status after saying why.

use skyscope_abi::{
    BootInfo, ObjectType,
    bootinfo::{BootModule, slots},
    ipc, println,
    rt::exit,
};
use skyscope_launcher::{
    Console, Image, RootObjects, ScratchWriter, Source, Spec, Syscalls, config::GuestConfig, launch,
};
use skyscope_process::CSpaceRoot;
use skyscope_vmm::{
    arch::aarch64::layout::RAM_BASE,
    builder::ObjectAllocator,
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

fn module_source(module: &BootModule) -> Source<'static> {
    Source::Frames {
        frames: module.frames,
        frame_bits: module.frame_bits,
        size: module.size,
    }
}

/// Starts the guest and waits for it to end; powers the machine off.
pub fn run(info: &'static BootInfo) -> ! {
    let config = match GuestConfig::parse(info.bootargs()) {
        Ok(c) => c,
        Err(e) => {
            println!("linux: {e}");
            exit(1)
        }
    };
    let Some(kernel) = info.module("linux") else {
        println!("linux: no boot module 'linux' (the guest kernel Image)");
        exit(1)
    };
    let initrd = info.module("initrd");
    let Some(ram) = GuestRange::new(RAM_BASE, config.memory) else {
        println!("linux: guest RAM does not fit");
        exit(1)
    };
    let mut objects = RootObjects::new(info, info.empty.start);
    let (supervisor, reply) = match (
        objects.make(ObjectType::Endpoint, 0, 1),
        objects.make(ObjectType::Reply, 0, 1),
    ) {
        (Ok(e), Ok(r)) => (e, r),
        _ => {
            println!("linux: no memory for the supervisor endpoint");
            exit(1)
        }
    };
    let mut writer = match ScratchWriter::new(&mut objects) {
        Ok(w) => w,
        Err(e) => {
            println!("linux: scratch mapping: {e}");
            exit(1)
        }
    };
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
    if let Err(e) = launch(&mut objects, &mut Syscalls, &mut writer, &spec) {
        println!("linux: {e}");
        exit(1)
    }
    println!(
        "linux: VMM started: {} vCPU(s), {} MiB of RAM, Image {} bytes, initramfs {} bytes, command line \"{}\"",
        config.vcpus,
        config.memory >> 20,
        kernel.size,
        initrd.map_or(0, |m| m.size),
        config.cmdline
    );
    // One message ends it: the VMM's report, or its fault.
    let message = match ipc::recv(supervisor, reply) {
        Ok(m) => m,
        Err(e) => {
            println!("linux: supervisor endpoint: {e}");
            exit(1)
        }
    };
    match Report::decode(message.info.label(), message.words) {
        Some(Report::PoweredOff(stats)) => {
            println!(
                "linux: the guest powered off ({} exits, {} bytes of output)",
                stats.exits, stats.console_bytes
            );
            exit(0)
        }
        Some(Report::Reset(stats)) => {
            println!(
                "linux: the guest asked for a reset after {} exits; stopping",
                stats.exits
            );
            exit(1)
        }
        Some(Report::Failed {
            reason,
            detail,
            pc,
            exits,
        }) => {
            println!(
                "linux: the VMM stopped the guest: {reason:?} (detail {detail:#x}, pc {pc:#x}, after {exits} exits)"
            );
            exit(1)
        }
        None => {
            println!(
                "linux: the VMM faulted (label {}, words {:#x?})",
                message.info.label(),
                message.words
            );
            exit(2)
        }
    }
}
