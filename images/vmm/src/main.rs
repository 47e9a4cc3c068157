//! The VMM program: a native process of its own that runs one guest.
//!
//! Its parent (the root task) builds the guest and this process, gives it
//! the capabilities of that one guest in the fixed slots of its CNode
//! (`skyscope_vmm::process::slots`) and a `VmmStart` record on its start
//! page. The program checks the record, loads the guest's images from the
//! window the parent mapped into guest RAM, starts the boot vCPU and
//! serves the guest's exits on the library's `Board` until the guest
//! powers off, then reports to its parent. It cannot do more: it holds no
//! untyped memory, no CNode, VSpace or TCB of its own, no power or debug
//! capability.
//!
//! Its code is safe Rust but for one `unsafe` construction: the window
//! over guest RAM and images (the ABI's `MappedWindow`); syscalls go
//! through the ABI crate's wrappers.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use skyscope_abi::{
    Error, MessageInfo, fault, ipc, rt, syscall::console_write, window::MappedWindow,
};
use skyscope_vmm::{
    arch::aarch64::cpu::EntryState,
    builder::{Syscalls, start_vcpu},
    channel::{ExitChannel, ExitMessage},
    memory::{GuestAddress, GuestMemory},
    process::{Board, Failure, Module, Plan, Registers, Report, Step, VmmStart, slots},
    vcpu::{VcpuId, call_arguments, general_register},
};

fn main(start: &'static VmmStart) -> ! {
    rt::set_console(slots::CONSOLE);
    let report = run(start).unwrap_or_else(|failed| failed);
    if let Report::Failed {
        reason,
        detail,
        pc,
        exits,
    } = report
    {
        let name = start.plan().map_or("vmm", |p| p.name);
        rt::print(format_args!(
            "{name}: stopped the guest: {reason:?} (detail {detail:#x}, pc {pc:#x}, after {exits} exits)\n"
        ));
    }
    let (label, words) = report.encode();
    // If the supervisor endpoint is gone, the parent is tearing this
    // process down and nobody is left to tell.
    let _ = ipc::send(slots::SUPERVISOR, MessageInfo::new(label, 4, 0), words);
    park()
}

skyscope_abi::entry!(main);

/// Waits for good: every vCPU is stopped, so no exit arrives, and the
/// parent reclaims the process when it likes. Should the exit endpoint be
/// deleted, the runtime's exit stops the thread (a fault to the parent)
/// rather than letting it spin.
fn park() -> ! {
    while ipc::recv(slots::EXIT_ENDPOINT, slots::EXIT_REPLY).is_ok() {}
    rt::exit(0)
}

/// A failure report (the `Err` side of every step).
fn failed(reason: Failure, detail: u64, pc: u64, exits: u64) -> Report {
    Report::Failed {
        reason,
        detail,
        pc,
        exits,
    }
}

/// Loads the guest, runs it until it stops, and says how it ended.
fn run(start: &'static VmmStart) -> Result<Report, Report> {
    let plan = start
        .plan()
        .map_err(|e| failed(Failure::StartRecord, e.code(), 0, 0))?;
    let load_failed = |_| failed(Failure::Load, 0, 0, 0);
    let (ram, images) = window(&plan)
        .split_at(plan.ram.size() as usize)
        .map_err(load_failed)?;
    let mut memory =
        GuestMemory::new(plan.ram.start(), ram).map_err(|_| failed(Failure::Load, 1, 0, 0))?;
    for module in plan.modules {
        load(&mut memory, &images, plan.ram.size(), module)
            .map_err(|detail| failed(Failure::Load, detail, module.guest_address, 0))?;
    }
    start_vcpu(
        &mut Syscalls,
        slots::vcpu(0),
        slots::vcpu_thread(0),
        VcpuId::BOOT,
        EntryState::kernel(plan.entry.raw(), 0),
    )
    .map_err(|e| failed(Failure::StartVcpu, e.error.code(), plan.entry.raw(), 0))?;
    serve(&plan)
}

/// The window the parent mapped: guest RAM, then the images.
#[allow(unsafe_code)]
fn window(plan: &Plan<'_>) -> MappedWindow {
    // SAFETY: before starting this process the parent maps `window_size`
    // bytes at `window`, readable and writable — the guest's RAM frames,
    // then the image frames — and keeps them mapped while the process
    // lives (the start record is its word for it; were it wrong, this
    // process would fault, and only it). `plan` checked that the window
    // lies in `WINDOW_AREA`, above this program's image and below its
    // start page, IPC buffer and stack, so no Rust object lives there;
    // this window, built once, is the only way the program reaches it.
    unsafe { MappedWindow::new(plan.window as usize, plan.window_size as usize) }
}

/// Copies `module` from the image window into guest RAM, where the guest
/// may execute it. The error detail is a step number for the report.
fn load(
    memory: &mut GuestMemory<MappedWindow>,
    images: &MappedWindow,
    ram_size: u64,
    module: &Module,
) -> Result<(), u64> {
    // Through a bounded buffer: an image may be far larger than the stack.
    let mut chunk = [0u8; 512];
    let mut done = 0;
    while done < module.size {
        let n = (module.size - done).min(chunk.len() as u64) as usize;
        let from = (module.window_offset - ram_size + done) as usize;
        images.read(from, &mut chunk[..n]).map_err(|_| 2u64)?;
        memory
            .load(GuestAddress(module.guest_address + done), &chunk[..n])
            .map_err(|_| 3u64)?;
        done += n as u64;
    }
    Ok(())
}

/// The registers of the vCPU thread that exited.
struct VcpuRegisters(u64);

impl Registers for VcpuRegisters {
    fn general(&mut self, n: u8) -> Result<u64, Error> {
        general_register(self.0, n)
    }

    fn call_arguments(&mut self) -> Result<[u64; 4], Error> {
        call_arguments(self.0)
    }
}

/// Serves exits until the guest stops.
fn serve(plan: &Plan<'_>) -> Result<Report, Report> {
    let channel = ExitChannel {
        endpoint: slots::EXIT_ENDPOINT,
        reply: slots::EXIT_REPLY,
    };
    let mut board = Board::new(plan.vcpus, plan.ram);
    let mut console = Console::new(plan.name);
    let channel_failed = |e: Error, exits| failed(Failure::Channel, e.code(), 0, exits);
    let mut message = channel.wait().map_err(|e| channel_failed(e, 0))?;
    loop {
        let exits = board.stats().exits;
        if plan.crash_after_exits == Some(exits) {
            crash();
        }
        let vcpu = vcpu_of(plan, &message)
            .ok_or_else(|| failed(Failure::Stranger, message.badge, message.pc, exits))?;
        let thread = slots::vcpu_thread(vcpu.index());
        let step = board
            .handle(vcpu, message.exit, &mut VcpuRegisters(thread))
            .map_err(|e| failed(Failure::Registers, e.code(), message.pc, exits))?;
        let resume = match step {
            Step::Resume { resume, output } => {
                if let Some(byte) = output {
                    console.push(byte);
                }
                resume
            }
            Step::StartVcpu {
                vcpu: started,
                entry,
                resume,
            } => {
                let index = started.index();
                start_vcpu(
                    &mut Syscalls,
                    slots::vcpu(index),
                    slots::vcpu_thread(index),
                    started,
                    entry,
                )
                .map_err(|e| failed(Failure::StartVcpu, e.error.code(), message.pc, exits))?;
                board.vcpu_started(started);
                resume
            }
            Step::StopVcpu => {
                // Stopping the caller also drops its pending exit: it is
                // not answered, and the next exit is waited for afresh.
                skyscope_abi::invocation::tcb_suspend(thread)
                    .map_err(|e| failed(Failure::Registers, e.code(), message.pc, exits))?;
                message = channel.wait().map_err(|e| channel_failed(e, exits))?;
                continue;
            }
            Step::PowerOff { reset } => {
                console.flush();
                stop_all(plan.vcpus)
                    .map_err(|e| failed(Failure::Registers, e.code(), message.pc, exits))?;
                let stats = board.stats();
                return Ok(if reset {
                    Report::Reset(stats)
                } else {
                    Report::PoweredOff(stats)
                });
            }
            Step::GuestFault => {
                console.flush();
                stop_all(plan.vcpus)
                    .map_err(|e| failed(Failure::Registers, e.code(), message.pc, exits))?;
                return Err(failed(Failure::Guest, message.words[1], message.pc, exits));
            }
        };
        message = channel
            .resume_and_wait(resume)
            .map_err(|e| channel_failed(e, exits))?;
    }
}

/// The vCPU an exit came from: its badge less vCPU 0's, if a guest exit
/// of one of this guest's vCPUs.
fn vcpu_of(plan: &Plan<'_>, message: &ExitMessage) -> Option<VcpuId> {
    let index = message.badge.checked_sub(plan.exit_badge)?;
    if message.label != fault::GUEST_EXIT || index >= plan.vcpus as u64 {
        return None;
    }
    VcpuId::new(index as usize)
}

/// Stops every vCPU thread (a stopped thread's pending exit is dropped).
fn stop_all(vcpus: usize) -> Result<(), Error> {
    (0..vcpus).try_for_each(|i| skyscope_abi::invocation::tcb_suspend(slots::vcpu_thread(i)))
}

/// The fault the start record's `crash_after_exits` asks for: recursion
/// until the stack runs into its guard page, as a VMM bug might. A store
/// to an unmapped address, in safe Rust; the kernel stops the thread and
/// tells the parent.
fn crash() -> ! {
    let depth = overflow(0);
    // Unreachable while the guard page is unmapped; should it ever be
    // mapped, stopping here still ends this VMM.
    rt::exit(depth)
}

#[inline(never)]
fn overflow(depth: u64) -> u64 {
    // 1 KiB per call, kept by `black_box`, so each call's frame is real.
    let frame = core::hint::black_box([depth; 128]);
    if core::hint::black_box(depth) == u64::MAX {
        return frame[0];
    }
    overflow(depth + 1).wrapping_add(frame[1])
}

/// The guest's UART output, a line at a time, each prefixed with the
/// VMM's name, through the console capability.
struct Console {
    line: [u8; 160],
    prefix: usize,
    len: usize,
}

impl Console {
    fn new(name: &str) -> Console {
        let mut line = [0u8; 160];
        // A name is at most 16 bytes (the start record's capacity).
        let prefix = name.len().min(16) + 3;
        line[0] = b'[';
        line[1..prefix - 2].copy_from_slice(&name.as_bytes()[..prefix - 3]);
        line[prefix - 2..prefix].copy_from_slice(b"] ");
        Console {
            line,
            prefix,
            len: prefix,
        }
    }

    fn push(&mut self, byte: u8) {
        if byte == b'\n' {
            self.flush();
            return;
        }
        self.line[self.len] = byte;
        self.len += 1;
        // Leave room for the newline `flush` adds.
        if self.len == self.line.len() - 1 {
            self.flush();
        }
    }

    /// Writes what is buffered as one line.
    fn flush(&mut self) {
        if self.len == self.prefix {
            return;
        }
        self.line[self.len] = b'\n';
        // Console output is best effort: a failure has nowhere to go.
        let _ = console_write(slots::CONSOLE, &self.line[..=self.len]);
        self.len = self.prefix;
    }
}
