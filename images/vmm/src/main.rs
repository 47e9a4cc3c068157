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
//! Two kinds of guest: a bare-metal test program, served on the small
//! `Board` (a UART and PSCI), and a Linux kernel, loaded by the arm64 boot
//! protocol with a device tree and served on the `Machine` (GICv3 through
//! the kernel's virtual interrupts, PL011 with console input, PL031, PSCI
//! for several vCPUs, architectural answers for everything else).
//!
//! Its code is safe Rust but for one `unsafe` construction: the window
//! over guest RAM and images (the ABI's `MappedWindow`); syscalls go
//! through the ABI crate's wrappers.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use core::mem::MaybeUninit;
use linked_list_allocator::LockedHeap;
use skyscope_abi::{
    Error, MessageInfo, fault, invocation as inv, ipc, rt,
    syscall::{CONSOLE_READ_MAX, console_notify, console_read, console_write, counter_now},
    window::MappedWindow,
};
use skyscope_client::Syscalls;
use skyscope_vmm::{
    arch::aarch64::{cpu::EntryState, layout::Layout},
    builder::start_vcpu,
    channel::{ExitChannel, ExitMessage},
    memory::{GuestAddress, GuestMemory},
    process::{
        Board, Failure, Machine, Module, Plan, Registers, Report, Step, Vm, VmmStart, linux, slots,
        start::{Boot, flags},
    },
    vcpu::{VcpuId, call_arguments, general_register},
};
use static_cell::ConstStaticCell;

/// Heap for what needs one: the device tree the Linux loader builds with
/// vm-fdt (a few KiB). It lies in this program's BSS, which the parent
/// maps as fresh zeroed frames like the rest of its image.
const HEAP_BYTES: usize = 128 * 1024;
static HEAP: ConstStaticCell<[MaybeUninit<u8>; HEAP_BYTES]> =
    ConstStaticCell::new([MaybeUninit::uninit(); HEAP_BYTES]);
#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

fn main(start: &'static VmmStart) -> ! {
    // The heap's memory, taken once, for the life of the program.
    ALLOCATOR.lock().init_from_slice(HEAP.take());
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
    match plan.boot {
        Boot::Program { entry } => {
            for module in plan.modules {
                load(&mut memory, &images, plan.ram.size(), module)
                    .map_err(|detail| failed(Failure::Load, detail, module.guest_address, 0))?;
            }
            boot_vcpu(EntryState::kernel(entry.raw(), 0))?;
            serve_program(&plan)
        }
        Boot::Linux {
            kernel,
            initramfs,
            cmdline,
        } => {
            let layout = Layout::new(plan.ram.start(), plan.ram.size(), plan.vcpus)
                .map_err(|_| failed(Failure::StartRecord, 5, 0, 0))?;
            let started = counter_now();
            let boot = linux::load(&mut memory, &images, layout, kernel, initramfs, cmdline)
                .map_err(|e| failed(Failure::Load, e.code(), 0, 0))?;
            let ms = (counter_now() - started) * 1000 / plan.clock.frequency;
            rt::print(format_args!(
                "{}: Image at {:#x}, initramfs at {:#x}, device tree at {:#x}; loaded in {ms} ms\n",
                plan.name,
                boot.kernel.raw(),
                boot.initrd.map_or(0, |r| r.start().raw()),
                boot.dtb.raw(),
            ));
            if plan.has(flags::CONSOLE_INPUT) {
                console_notify(slots::CONSOLE, slots::CONSOLE_INPUT)
                    .map_err(|e| failed(Failure::Channel, e.code(), 0, 0))?;
            }
            boot_vcpu(boot.entry)?;
            serve_linux(&plan, layout)
        }
    }
}

/// Starts vCPU 0 with `entry`.
fn boot_vcpu(entry: EntryState) -> Result<(), Report> {
    start(VcpuId::BOOT, entry, entry.pc, 0)
}

/// Starts `vcpu` with `entry` (the boot vCPU, or one a guest's PSCI
/// `CPU_ON` asked for at `pc` after `exits` exits).
fn start(vcpu: VcpuId, entry: EntryState, pc: u64, exits: u64) -> Result<(), Report> {
    let index = vcpu.index();
    start_vcpu(
        &mut Syscalls,
        slots::vcpu(index),
        slots::vcpu_thread(index),
        vcpu,
        entry,
    )
    .map_err(|e| failed(Failure::StartVcpu, e.error.code(), pc, exits))
}

/// The window the parent mapped: guest RAM, then the images.
#[allow(unsafe_code)]
fn window(plan: &Plan<'_>) -> MappedWindow {
    // SAFETY: before starting this process the parent maps `window_size`
    // bytes at `window` — the guest's RAM frames, readable and writable,
    // then the image frames, readable — and keeps them mapped while the
    // process lives (the start record is its word for it; were it wrong,
    // this process would fault, and only it). `plan` checked that the
    // window lies in `WINDOW_AREA`, above this program's image and below
    // its start page, IPC buffer and stack, so no Rust object lives there;
    // this window, built once, is the only way the program reaches it, and
    // it writes only the RAM.
    unsafe {
        MappedWindow::with_read_only_tail(
            plan.window as usize,
            plan.window_size as usize,
            plan.ram.size() as usize,
        )
    }
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

/// Serves a bare-metal program's exits until it stops.
fn serve_program(plan: &Plan<'_>) -> Result<Report, Report> {
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
                start(started, entry, message.pc, exits)?;
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

/// The kernel as the Linux machine sees it: vCPU `i` is the Vcpu in
/// [`slots::vcpu`] run by the thread in [`slots::vcpu_thread`].
struct Kernel;

impl Vm for Kernel {
    fn general(&mut self, vcpu: VcpuId, n: u8) -> Result<u64, Error> {
        general_register(slots::vcpu_thread(vcpu.index()), n)
    }

    fn call_arguments(&mut self, vcpu: VcpuId) -> Result<[u64; 4], Error> {
        call_arguments(slots::vcpu_thread(vcpu.index()))
    }

    fn read_vcpu(&mut self, vcpu: VcpuId, register: u64) -> Result<u64, Error> {
        inv::vcpu_read_register(slots::vcpu(vcpu.index()), register)
    }

    fn write_vcpu(&mut self, vcpu: VcpuId, register: u64, value: u64) -> Result<(), Error> {
        inv::vcpu_write_register(slots::vcpu(vcpu.index()), register, value)
    }

    fn set_pc(&mut self, vcpu: VcpuId, pc: u64) -> Result<(), Error> {
        // The register order starts with the pc: one value sets it alone.
        inv::tcb_write_registers(slots::vcpu_thread(vcpu.index()), &[pc])
    }

    fn set_irq(&mut self, vcpu: VcpuId, intid: u32, priority: u8, flags: u64) -> Result<(), Error> {
        inv::vcpu_set_irq(slots::vcpu(vcpu.index()), intid, priority, flags)
    }
}

/// Serves a Linux guest's exits, and console input, until it stops.
fn serve_linux(plan: &Plan<'_>, layout: Layout) -> Result<Report, Report> {
    let channel = ExitChannel {
        endpoint: slots::EXIT_ENDPOINT,
        reply: slots::EXIT_REPLY,
    };
    let clock = plan.clock;
    let mut machine = Machine::new(layout, clock.seconds, clock.counter, clock.frequency);
    let mut output = Output::new(plan);
    let input = plan.has(flags::CONSOLE_INPUT);
    // Typed bytes the kernel still holds because the machine had no room.
    let mut input_waiting = input;
    let channel_failed = |e: Error, exits| failed(Failure::Channel, e.code(), 0, exits);
    let started = counter_now();
    // What the guest cost in exits, printed when it ends (`cargo xtask
    // bench boot` reads this line).
    let summary = |machine: &Machine| {
        let ms = (counter_now() - started) * 1000 / clock.frequency.max(1);
        rt::print(format_args!(
            "{}: {} exits in {ms} ms: {}\n",
            plan.name,
            machine.stats().exits,
            machine.exit_counts().summary()
        ));
    };
    let mut message = channel.wait().map_err(|e| channel_failed(e, 0))?;
    loop {
        let exits = machine.stats().exits;
        let fail = |e: Error| failed(Failure::Registers, e.code(), message.pc, exits);
        // A bound notification's signal arrives as a message without a
        // label; the only one bound here is console input's.
        let answer = if input && message.is_notification() {
            input_waiting = true;
            None
        } else {
            let vcpu = vcpu_of(plan, &message)
                .ok_or_else(|| failed(Failure::Stranger, message.badge, message.pc, exits))?;
            let step = machine
                .handle(vcpu, message.pc, message.exit, counter_now(), &mut Kernel)
                .map_err(fail)?;
            match step {
                Step::Resume { resume, .. } => Some(resume),
                Step::StartVcpu {
                    vcpu: started,
                    entry,
                    resume,
                } => {
                    start(started, entry, message.pc, exits)?;
                    machine.vcpu_started(started);
                    Some(resume)
                }
                Step::StopVcpu => {
                    // Its pending exit is dropped with it: not answered.
                    inv::tcb_suspend(slots::vcpu_thread(vcpu.index())).map_err(fail)?;
                    None
                }
                Step::PowerOff { reset } => {
                    machine.flush_output(true, |bytes| output.write(bytes));
                    output.finish();
                    summary(&machine);
                    stop_all(plan.vcpus).map_err(fail)?;
                    let stats = machine.stats();
                    return Ok(if reset {
                        Report::Reset(stats)
                    } else {
                        Report::PoweredOff(stats)
                    });
                }
                Step::GuestFault => {
                    machine.flush_output(true, |bytes| output.write(bytes));
                    output.finish();
                    summary(&machine);
                    stop_all(plan.vcpus).map_err(fail)?;
                    return Err(failed(Failure::Guest, message.words[1], message.pc, exits));
                }
            }
        };
        if input_waiting {
            input_waiting = take_input(&mut machine).map_err(fail)?;
        }
        machine.flush_output(false, |bytes| output.write(bytes));
        message = match answer {
            Some(resume) => channel.resume_and_wait(resume),
            None => channel.wait(),
        }
        .map_err(|e| channel_failed(e, exits))?;
    }
}

/// Moves typed input from the kernel into the machine while it has room.
/// Returns whether input may still be waiting in the kernel (the machine
/// filled up first).
fn take_input(machine: &mut Machine) -> Result<bool, Error> {
    let mut buffer = [0u8; CONSOLE_READ_MAX];
    while machine.input_room() >= CONSOLE_READ_MAX {
        let n = console_read(slots::CONSOLE, &mut buffer)?;
        if n == 0 {
            return Ok(false);
        }
        machine.receive(&buffer[..n], &mut Kernel)?;
    }
    Ok(true)
}

/// Where a Linux guest's console output goes: straight to the console
/// when it has the console to itself, else a line at a time behind its
/// name.
enum Output {
    Raw,
    Lines(Console),
}

impl Output {
    fn new(plan: &Plan<'_>) -> Output {
        if plan.has(flags::RAW_CONSOLE) {
            Output::Raw
        } else {
            Output::Lines(Console::new(plan.name))
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        match self {
            // Console output is best effort: a failure has nowhere to go.
            Output::Raw => {
                let _ = console_write(slots::CONSOLE, bytes);
            }
            Output::Lines(console) => bytes.iter().for_each(|&b| console.push(b)),
        }
    }

    fn finish(&mut self) {
        if let Output::Lines(console) = self {
            console.flush();
        }
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
