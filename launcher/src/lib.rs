//! Starting a VMM process for one guest, from a parent holding untyped
//! memory (the root task).
//!
//! [`launch`] builds the guest with `skyscope_vmm::builder` (GuestSpace,
//! Vcpus and their threads on scheduling contexts, RAM mapped for the
//! guest and into the VMM's window) and the VMM process with
//! `skyscope_process` from the VMM program the xtask built
//! ([`VMM_ELF`]), maps the images after the RAM in the VMM's window,
//! read-only, puts exactly that guest's capabilities in the VMM's fixed
//! slots (`skyscope_vmm::process::slots`), writes its `VmmStart` record
//! and starts it. Images come as bytes the parent holds (copied into
//! fresh frames) or as frames it already has (boot modules, mapped as
//! they are: a copy of each frame capability, read-only, so a guest can be
//! built again from the same modules).
//!
//! The root task uses it to start the Linux guest the boot modules carry;
//! the in-QEMU scenarios use it for their test guests. Both bring their
//! own object allocation ([`Objects`]) and a way to fill frames
//! ([`FrameWriter`]); [`RootObjects`] and [`ScratchWriter`] are the
//! root task's.
#![no_std]
#![deny(unsafe_code)]

use skyscope_abi::{CapRights, Error, ObjectType, bootinfo::SlotRange};
use skyscope_client::{CSpaceRoot, Give};
use skyscope_process::{Process, ProcessBuilder, ProcessError};
use skyscope_vmm::{
    builder::{self, BuildError, Exits, Guest, GuestBuilder, RamMapping},
    memory::GuestRange,
    process::{
        VmmStart, slots,
        start::{Module, PAGE, flags},
    },
    vcpu::{MAX_VCPUS, VcpuId},
};

pub use skyscope_client::Objects;
pub use skyscope_process::FrameWriter;

pub mod config;

/// The VMM program, built by the xtask before the root task (empty in a
/// host build).
pub static VMM_ELF: &[u8] = include_bytes!(env!("SKYSCOPE_VMM_ELF"));

/// Where a VMM sees its guest's RAM, then the images (in its window area,
/// 2 MiB aligned so that RAM and boot modules map as 2 MiB frames).
pub const WINDOW: u64 = 0x20_0000_0000;
/// Badge of a guest's vCPU 0 exits at its VMM (vCPU `i`: `+ i`).
pub const EXIT_BADGE: u64 = 0x100;
/// Most RAM frames whose guest-side capabilities [`Vmm`] remembers.
pub const GUEST_FRAMES_KEPT: usize = 16;

/// Where an image's bytes are.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// Bytes the parent holds: copied into fresh 4 KiB frames.
    Bytes(&'a [u8]),
    /// Frames the parent holds (`frames`, each `2^frame_bits` bytes, in
    /// order), of which the first `size` bytes are the image: a boot
    /// module. Copies of the capabilities are mapped; the frames are not
    /// written.
    Frames {
        /// The frame capabilities.
        frames: SlotRange,
        /// log2 of each frame's size (12 or 21).
        frame_bits: u64,
        /// The image's length.
        size: u64,
    },
}

/// One image for the VMM to load.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    /// `skyscope_vmm::process::start::module_kind`.
    pub kind: u64,
    /// Where a program goes (0 for the Linux kinds: the VMM places them).
    pub guest_address: u64,
    /// Its bytes.
    pub source: Source<'a>,
}

/// How the VMM may use the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// Output only, each line behind the VMM's name.
    Lines,
    /// The guest has the console: output as it comes, and typed input
    /// (the VMM gets READ and a notification bound to its thread).
    Interactive,
}

/// What to start.
#[derive(Clone, Copy, Debug)]
pub struct Spec<'a> {
    /// The VMM program's ELF: [`VMM_ELF`] but in the launcher's host tests.
    pub program: &'a [u8],
    /// The VMM's name (its console prefix), at most 16 bytes.
    pub name: &'a str,
    /// The parent's endpoint that hears the VMM's reports and faults,
    /// and the badge this VMM's capabilities to it carry.
    pub supervisor: u64,
    /// The badge.
    pub badge: u64,
    /// The parent's console capability.
    pub console_cap: u64,
    /// How the VMM uses it.
    pub console: Console,
    /// The parent's scheduling-control capability.
    pub sched_control: u64,
    /// The parent's CSpace root.
    pub parent: CSpaceRoot,
    /// vCPUs (1 to [`MAX_VCPUS`]).
    pub vcpus: usize,
    /// Guest RAM (page aligned; 2 MiB aligned for Linux).
    pub ram: GuestRange,
    /// The VMM's priority.
    pub vmm_priority: u8,
    /// Each vCPU's priority.
    pub guest_priority: u8,
    /// Each vCPU's budget and period (µs).
    pub budget: (u64, u64),
    /// Make the VMM fault after this many exits (0: never).
    pub crash_after_exits: u64,
    /// Wall-clock seconds since 1970 at counter value `clock.1` (0:
    /// unknown), and the counter frequency (`clock.2`).
    pub clock: (u64, u64, u64),
    /// The images.
    pub images: &'a [Image<'a>],
}

/// A VMM the parent started, and what it keeps of it.
#[derive(Clone, Copy, Debug)]
pub struct Vmm {
    /// The process.
    pub process: Process,
    /// Its badge at the supervisor endpoint.
    pub badge: u64,
    /// The guest's objects (the parent's capabilities).
    pub guest: Guest,
    /// The guest's RAM.
    pub ram: GuestRange,
    /// The first RAM frames as the guest maps them (the parent's
    /// capabilities; 0 past the RAM).
    pub guest_ram: [u64; GUEST_FRAMES_KEPT],
    /// The VMM's RAM frames, in its CNode.
    pub ram_frames: SlotRange,
    /// The VMM's image frames, in its CNode.
    pub module_frames: SlotRange,
    /// The notification bound to the VMM's thread for console input (the
    /// parent's capability), if interactive.
    pub input: Option<u64>,
}

/// Why a VMM was not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchError {
    /// The VMM program is missing (a host build).
    NoProgram,
    /// The request makes no sense (what).
    Spec(&'static str),
    /// Building the process failed.
    Process(ProcessError),
    /// Building the guest failed.
    Guest(BuildError),
    /// A step failed (what, why).
    Step(&'static str, Error),
}

impl core::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LaunchError::NoProgram => {
                write!(f, "no VMM program in this image: build with cargo xtask")
            }
            LaunchError::Spec(what) => write!(f, "bad request: {what}"),
            LaunchError::Process(e) => write!(f, "building the VMM process: {e}"),
            LaunchError::Guest(e) => write!(f, "building the guest: {e}"),
            LaunchError::Step(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

fn at(step: &'static str) -> impl Fn(Error) -> LaunchError {
    move |e| LaunchError::Step(step, e)
}

fn process_error(step: &'static str) -> impl Fn(ProcessError) -> LaunchError {
    move |e| match e {
        ProcessError::Kernel { error, .. } => LaunchError::Step(step, error),
        other => LaunchError::Process(other),
    }
}

/// The frames an image takes in the window: how many, each how large.
fn frames_of(image: &Image<'_>) -> (u64, u64) {
    match image.source {
        Source::Bytes(bytes) => ((bytes.len() as u64).div_ceil(PAGE), PAGE),
        Source::Frames {
            frames, frame_bits, ..
        } => (frames.len(), 1 << frame_bits.min(21)),
    }
}

/// The size in bytes of an image.
fn size_of(image: &Image<'_>) -> u64 {
    match image.source {
        Source::Bytes(bytes) => bytes.len() as u64,
        Source::Frames { size, .. } => size,
    }
}

/// How many frames `builder::map_ram` makes for `ram` seen at
/// `vmm_address`: 2 MiB ones where both addresses are aligned, 4 KiB ones
/// elsewhere.
fn ram_frame_count(ram: GuestRange, vmm_address: u64) -> u64 {
    const LARGE: u64 = 2 << 20;
    let (mut offset, mut count) = (0, 0);
    while offset < ram.size() {
        let large = (ram.start().raw() + offset).is_multiple_of(LARGE)
            && (vmm_address + offset).is_multiple_of(LARGE)
            && ram.size() - offset >= LARGE;
        offset += if large { LARGE } else { PAGE };
        count += 1;
    }
    count
}

/// The smallest CNode radix with room for the fixed slots and `variable`
/// more.
fn cnode_radix(variable: u64) -> u8 {
    let needed = slots::FIRST_VARIABLE + variable;
    (needed.next_power_of_two().trailing_zeros() as u8).max(6)
}

/// The parts of the system a launch needs: the builders' invocations, and
/// binding a notification to a thread.
pub trait Kernel: skyscope_client::Kernel {
    /// `TCB::BindNotification`.
    fn bind_notification(&mut self, tcb: u64, notification: u64) -> Result<(), Error>;
}

/// Builds the guest and the VMM process described by `spec` from
/// `objects`, gives the VMM that guest's capabilities and nothing else,
/// and starts it. `kernel` performs the invocations, `writer` fills
/// frames.
pub fn launch<K: Kernel + Clone>(
    objects: &mut impl Objects,
    kernel: &mut K,
    writer: &mut impl FrameWriter,
    spec: &Spec<'_>,
) -> Result<Vmm, LaunchError> {
    if spec.program.is_empty() {
        return Err(LaunchError::NoProgram);
    }
    if !(1..=MAX_VCPUS).contains(&spec.vcpus) {
        return Err(LaunchError::Spec("vcpu count"));
    }
    let ram_frames_count = ram_frame_count(spec.ram, WINDOW);
    let module_frames_count: u64 = spec.images.iter().map(|i| frames_of(i).0).sum();
    let radix = cnode_radix(ram_frames_count + module_frames_count);
    let fault_endpoint = objects
        .mint(spec.supervisor, CapRights::WRITE, spec.badge)
        .map_err(at("fault endpoint"))?;
    let process = ProcessBuilder::new(spec.program, spec.parent, spec.sched_control)
        .cnode_radix(radix)
        .priority(spec.vmm_priority)
        .fault_endpoint(fault_endpoint)
        .build(objects, kernel, writer)
        .map_err(LaunchError::Process)?;
    let guest = GuestBuilder::new(spec.sched_control)
        .priority(spec.guest_priority)
        .budget(spec.budget.0, spec.budget.1)
        .vcpus(spec.vcpus)
        .exits(Exits::NewChannel { badge: EXIT_BADGE })
        .build(objects, kernel)
        .map_err(LaunchError::Guest)?;
    // Guest RAM, mapped for the guest and into the VMM's window; the VMM
    // gets the capabilities of its own mappings.
    let ram = RamMapping {
        guest: spec.ram,
        vmm_address: WINDOW,
        vmm_space: process.vspace,
    };
    let mut guest_ram = [0; GUEST_FRAMES_KEPT];
    let mut kept = 0;
    let mut next = slots::FIRST_VARIABLE;
    let mut giver = kernel.clone();
    builder::map_ram(objects, kernel, guest.guest_space, ram, |frame| {
        if let Some(slot) = guest_ram.get_mut(kept) {
            *slot = frame.guest;
            kept += 1;
        }
        process
            .give(&mut giver, next, frame.view, Give::Move)
            .map_err(|e| BuildError {
                step: "hand the RAM over",
                error: match e {
                    ProcessError::Kernel { error, .. } => error,
                    _ => Error::InvalidArgument,
                },
            })?;
        next += 1;
        Ok(())
    })
    .map_err(LaunchError::Guest)?;
    let ram_frames = SlotRange {
        start: slots::FIRST_VARIABLE,
        end: next,
    };
    // The images, read-only, after the RAM in the window, each on a
    // boundary of its frames' size.
    let mut record = VmmStart::new();
    record
        .set_name(spec.name)
        .map_err(|_| LaunchError::Spec("name"))?;
    let mut offset = spec.ram.size();
    for image in spec.images {
        let (count, frame_size) = frames_of(image);
        offset = offset.next_multiple_of(frame_size);
        let first = next;
        for i in 0..count {
            let frame = match image.source {
                Source::Bytes(bytes) => {
                    let frame = objects
                        .make(ObjectType::Frame4K, 0, 1)
                        .map_err(at("image frame"))?;
                    let start = (i * PAGE) as usize;
                    let end = (start + PAGE as usize).min(bytes.len());
                    writer
                        .write(frame, 0, &bytes[start..end])
                        .map_err(at("write image frame"))?;
                    frame
                }
                Source::Frames { frames, .. } => objects
                    .copy(frames.start + i, CapRights::READ)
                    .map_err(at("copy module frame"))?,
            };
            process
                .map(
                    objects,
                    kernel,
                    frame,
                    WINDOW + offset + i * frame_size,
                    CapRights::READ,
                )
                .map_err(process_error("map image"))?;
            process
                .give(kernel, next, frame, Give::Move)
                .map_err(process_error("give image frame"))?;
            next += 1;
        }
        record
            .push_module(Module {
                kind: image.kind,
                guest_address: image.guest_address,
                window_offset: offset,
                size: size_of(image),
                frames: SlotRange {
                    start: first,
                    end: next,
                },
            })
            .map_err(|_| LaunchError::Spec("too many images"))?;
        offset += count * frame_size;
    }
    let module_frames = SlotRange {
        start: ram_frames.end,
        end: next,
    };
    // The fixed slots.
    let channel = guest.channel.ok_or(LaunchError::Spec("no exit channel"))?;
    let rw = CapRights::READ | CapRights::WRITE;
    let console_rights = match spec.console {
        Console::Lines => CapRights::WRITE,
        Console::Interactive => rw,
    };
    for (slot, source, how) in [
        (
            slots::EXIT_ENDPOINT,
            channel.endpoint,
            Give::Copy(CapRights::READ),
        ),
        (slots::EXIT_REPLY, channel.reply, Give::Move),
        (slots::CONSOLE, spec.console_cap, Give::Copy(console_rights)),
        (
            slots::SUPERVISOR,
            spec.supervisor,
            Give::Mint(CapRights::WRITE, spec.badge),
        ),
        (slots::GUEST_SPACE, guest.guest_space, Give::Copy(rw)),
    ] {
        process
            .give(kernel, slot, source, how)
            .map_err(process_error("give a fixed capability"))?;
    }
    for i in 0..spec.vcpus {
        let id = VcpuId::new(i).ok_or(LaunchError::Spec("vcpu count"))?;
        let vcpu = guest.vcpu(id).ok_or(LaunchError::Spec("vcpu missing"))?;
        process
            .give(kernel, slots::vcpu(i), vcpu.vcpu, Give::Copy(rw))
            .map_err(process_error("give a vcpu"))?;
        process
            .give(kernel, slots::vcpu_thread(i), vcpu.tcb, Give::Copy(rw))
            .map_err(process_error("give a vcpu thread"))?;
    }
    let input = match spec.console {
        Console::Lines => None,
        Console::Interactive => {
            let notification = objects
                .make(ObjectType::Notification, 0, 1)
                .map_err(at("input notification"))?;
            // Its receive on the exit endpoint also returns when the
            // notification is signalled.
            kernel
                .bind_notification(process.tcb, notification)
                .map_err(at("bind the input notification"))?;
            process
                .give(kernel, slots::CONSOLE_INPUT, notification, Give::Copy(rw))
                .map_err(process_error("give the input notification"))?;
            Some(notification)
        }
    };
    record.vcpus = spec.vcpus as u64;
    record.exit_badge = EXIT_BADGE;
    record.window = WINDOW;
    record.window_size = offset;
    record.ram_base = spec.ram.start().raw();
    record.ram_size = spec.ram.size();
    record.ram_frames = ram_frames;
    record.crash_after_exits = spec.crash_after_exits;
    (
        record.clock_seconds,
        record.clock_counter,
        record.counter_frequency,
    ) = spec.clock;
    record.flags = match spec.console {
        Console::Lines => 0,
        Console::Interactive => flags::CONSOLE_INPUT | flags::RAW_CONSOLE,
    };
    record
        .plan()
        .map_err(|_| LaunchError::Spec("the start record is inconsistent"))?;
    process
        .start(objects, kernel, writer, record.bytes())
        .map_err(process_error("start the VMM"))?;
    Ok(Vmm {
        process,
        badge: spec.badge,
        guest,
        ram: spec.ram,
        guest_ram,
        ram_frames,
        module_frames,
        input,
    })
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod linux;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod root;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use root::{RootObjects, ScratchWriter};

/// The kernel itself: every invocation a syscall.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use skyscope_client::Syscalls;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
impl Kernel for Syscalls {
    fn bind_notification(&mut self, tcb: u64, notification: u64) -> Result<(), Error> {
        skyscope_abi::invocation::tcb_bind_notification(tcb, notification)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod sizes {
    use super::*;

    #[test]
    fn the_cnode_fits_every_frame() {
        assert_eq!(cnode_radix(0), 6);
        assert_eq!(cnode_radix(40), 6);
        assert_eq!(cnode_radix(41), 7);
        // A 512 MiB guest: 256 frames of 2 MiB.
        let ram = GuestRange::new(skyscope_vmm::memory::GuestAddress(0x4000_0000), 512 << 20);
        assert_eq!(ram_frame_count(ram.unwrap(), WINDOW), 256);
        // 8 KiB and a page more than 2 MiB: one large frame, three small.
        let odd = GuestRange::new(
            skyscope_vmm::memory::GuestAddress(0x4000_0000),
            (2 << 20) + 0x3000,
        );
        assert_eq!(ram_frame_count(odd.unwrap(), WINDOW), 4);
        assert_eq!(ram_frame_count(odd.unwrap(), WINDOW + PAGE), 515);
    }

    #[test]
    fn images_take_whole_frames() {
        let bytes = [0u8; 5000];
        let image = Image {
            kind: 1,
            guest_address: 0,
            source: Source::Bytes(&bytes),
        };
        assert_eq!(frames_of(&image), (2, PAGE));
        assert_eq!(size_of(&image), 5000);
        let module = Image {
            kind: 2,
            guest_address: 0,
            source: Source::Frames {
                frames: SlotRange { start: 40, end: 61 },
                frame_bits: 21,
                size: 41 << 20,
            },
        };
        assert_eq!(frames_of(&module), (21, 2 << 20));
    }
}
