//! Starting a native process from an ELF image, in user space.
//!
//! A parent (the root task) turns an executable into a process of its own
//! out of untyped memory it chooses, as the kernel does for the root task
//! at boot, but with nothing the kernel does not let every thread do:
//!
//! - a VSpace holding the image's segments, each page mapped with its
//!   segment's rights only (W^X: the image is checked by
//!   `skyscope_core::elf`, the kernel's own validator, and the kernel
//!   refuses writable executable mappings again), page tables made on
//!   demand;
//! - a stack below [`STACK_TOP`] with an unmapped guard page under it, an
//!   IPC buffer, and a read-only start page whose address the first
//!   thread gets in `x0` (the layout the kernel gives the root task, so
//!   the `skyscope_abi::rt` runtime starts both);
//! - a CNode whose capability addresses are slot indices, holding exactly
//!   the capabilities the parent puts there ([`Process::give`]);
//! - a TCB on a scheduling context of a chosen budget, whose faults go to
//!   an endpoint of the parent's choosing, so the parent learns when the
//!   process faults.
//!
//! The parent keeps the capabilities to everything it made (the image's
//! frames, the tables, the TCB): the process cannot unmap its own code or
//! change its priority, and the parent can stop it or revoke the untyped
//! it all came from.
//!
//! The work is carried out as in `skyscope-vmm`'s guest builder, through
//! `skyscope-client`'s [`Objects`] (fresh objects in the parent's CSpace)
//! and [`Kernel`] (the invocations: syscalls on the target, a checking
//! model in the host tests), and this crate's [`FrameWriter`] (filling a
//! frame the parent holds, which needs a mapping in the parent's own
//! address space and so is the parent's business).
//!
//! This is a crate of its own rather than part of `skyscope-vmm`: loading
//! a process is not a VMM's job (a VMM process never starts one), and
//! keeping it apart keeps the ELF parser out of the VMM program.
#![no_std]
#![forbid(unsafe_code)]

use skyscope_abi::{
    CapRights, Error, ObjectType, bootinfo,
    invocation::{MAP_EXECUTE, REG_PC, REG_SP, REG_X0},
};
use skyscope_client::{
    CSpaceRoot, Give, Invocation, Kernel, Objects, START_REGISTERS, map_creating_tables as map,
};
use skyscope_core::elf::{ElfError, Executable, parse_executable};

/// The page size every mapping here uses.
pub const PAGE: u64 = 0x1000;
/// Where the read-only start page is mapped; its address is the first
/// thread's `x0`. The place the kernel puts the root task's boot info.
pub const START_PAGE_ADDRESS: u64 = bootinfo::BOOT_INFO_ADDRESS;
/// Where the IPC buffer is mapped.
pub const IPC_BUFFER_ADDRESS: u64 = bootinfo::IPC_BUFFER_ADDRESS;
/// Top of the stack (the stack grows down from here).
pub const STACK_TOP: u64 = bootinfo::ROOT_STACK_TOP;
/// Start of the area the builder keeps for the start page, the IPC
/// buffer, the stack and its guard page: the image and the parent's other
/// mappings lie below it.
pub const RESERVED_START: u64 = START_PAGE_ADDRESS;
/// Most stack pages: the stack and its guard page stay above the IPC
/// buffer.
pub const MAX_STACK_PAGES: u64 = (STACK_TOP - IPC_BUFFER_ADDRESS) / PAGE - 2;
const _: () = assert!(STACK_TOP - (MAX_STACK_PAGES + 1) * PAGE > IPC_BUFFER_ADDRESS);
/// Largest CNode radix a process gets (the kernel's own bound on retype
/// sizes is higher; 16 is 4 MiB of slots, more than any process here needs).
pub const MAX_CNODE_RADIX: u8 = 16;

/// Fills frames the parent holds a capability to.
pub trait FrameWriter {
    /// Copies `bytes` to `offset` in the 4 KiB frame `frame`. The frame
    /// is unmapped before and must be unmapped after (a frame capability
    /// maps once; the builder maps it into the process next). The bytes
    /// may be code: they must reach the point of unification for
    /// instruction fetches (clean the data cache, invalidate the
    /// instruction cache) before this returns.
    fn write(&mut self, frame: u64, offset: u64, bytes: &[u8]) -> Result<(), Error>;
}

/// Why a process could not be built or started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessError {
    /// The image was refused.
    Image(ElfError),
    /// A parameter is out of range: the CNode radix, the stack size, a
    /// mapping in the reserved area or executable, a start record larger
    /// than a page, a slot outside the CNode.
    Layout(&'static str),
    /// The kernel (or the parent's allocator or writer) refused a step.
    Kernel {
        /// What was being done.
        step: &'static str,
        /// The answer.
        error: Error,
    },
}

impl core::fmt::Display for ProcessError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProcessError::Image(e) => write!(f, "image refused: {e:?}"),
            ProcessError::Layout(what) => write!(f, "bad layout: {what}"),
            ProcessError::Kernel { step, error } => write!(f, "{step}: {error}"),
        }
    }
}

fn at(step: &'static str) -> impl Fn(Error) -> ProcessError {
    move |error| ProcessError::Kernel { step, error }
}

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct ProcessBuilder<'a> {
    image: &'a [u8],
    parent: CSpaceRoot,
    sched_control: u64,
    cnode_radix: u8,
    priority: u8,
    budget_us: u64,
    period_us: u64,
    stack_pages: u64,
    fault_endpoint: u64,
}

/// A built process: what the parent holds of it. Nothing runs until
/// [`Process::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Process {
    /// Its thread.
    pub tcb: u64,
    /// Its address space.
    pub vspace: u64,
    /// Its CSpace root.
    pub cnode: u64,
    /// log2 of its CNode's slot count.
    pub cnode_radix: u8,
    /// Its thread's scheduling context.
    pub sched_context: u64,
    /// The start page's frame (mapped when the process starts).
    pub start_frame: u64,
    /// Where it starts.
    pub entry: u64,
    /// Lowest address of its image.
    pub image_start: u64,
    /// One past the highest address of its image.
    pub image_end: u64,
    /// Lowest address of its stack; the page below is its guard page.
    pub stack_bottom: u64,
    parent: CSpaceRoot,
}

impl<'a> ProcessBuilder<'a> {
    /// A process running `image` (an ELF executable), with a CNode of 256
    /// slots, priority 100 on a full budget (10 ms of every 10 ms), a
    /// stack of 16 pages and no fault endpoint. `parent` is the parent's
    /// CSpace root, `sched_control` its scheduling-control capability.
    pub fn new(image: &'a [u8], parent: CSpaceRoot, sched_control: u64) -> ProcessBuilder<'a> {
        ProcessBuilder {
            image,
            parent,
            sched_control,
            cnode_radix: 8,
            priority: 100,
            budget_us: 10_000,
            period_us: 10_000,
            stack_pages: 16,
            fault_endpoint: 0,
        }
    }

    /// The CNode has `2^radix` slots (1 to [`MAX_CNODE_RADIX`]).
    pub fn cnode_radix(mut self, radix: u8) -> Self {
        self.cnode_radix = radix;
        self
    }

    /// The thread's priority.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    /// The thread's CPU time: `budget_us` per `period_us`.
    pub fn budget(mut self, budget_us: u64, period_us: u64) -> Self {
        self.budget_us = budget_us;
        self.period_us = period_us;
        self
    }

    /// Stack pages (1 to [`MAX_STACK_PAGES`]).
    pub fn stack_pages(mut self, pages: u64) -> Self {
        self.stack_pages = pages;
        self
    }

    /// The endpoint capability (of the parent) the thread's faults go to;
    /// the kernel keeps a copy in the TCB, so the process's CSpace needs
    /// none.
    pub fn fault_endpoint(mut self, endpoint: u64) -> Self {
        self.fault_endpoint = endpoint;
        self
    }

    /// Makes the address space, CNode, thread and scheduling context and
    /// loads the image; the process waits for [`Process::start`].
    pub fn build(
        &self,
        objects: &mut impl Objects,
        kernel: &mut impl Kernel,
        writer: &mut impl FrameWriter,
    ) -> Result<Process, ProcessError> {
        let exe = parse_executable(self.image, elf::abi::EM_AARCH64, RESERVED_START)
            .map_err(ProcessError::Image)?;
        if !(1..=MAX_CNODE_RADIX).contains(&self.cnode_radix) {
            return Err(ProcessError::Layout("cnode radix"));
        }
        if !(1..=MAX_STACK_PAGES).contains(&self.stack_pages) {
            return Err(ProcessError::Layout("stack pages"));
        }
        let vspace = objects
            .make(ObjectType::VSpace, 0, 1)
            .map_err(at("vspace"))?;
        let (image_start, image_end) = self.load(&exe, vspace, objects, kernel, writer)?;
        let stack_bottom = STACK_TOP - self.stack_pages * PAGE;
        for page in 0..self.stack_pages {
            let frame = objects
                .make(ObjectType::Frame4K, 0, 1)
                .map_err(at("stack frame"))?;
            let address = stack_bottom + page * PAGE;
            map(objects, kernel, frame, vspace, address, read_write(), 0)
                .map_err(at("map stack"))?;
        }
        let ipc_frame = objects
            .make(ObjectType::Frame4K, 0, 1)
            .map_err(at("ipc buffer frame"))?;
        map(
            objects,
            kernel,
            ipc_frame,
            vspace,
            IPC_BUFFER_ADDRESS,
            read_write(),
            0,
        )
        .map_err(at("map ipc buffer"))?;
        let start_frame = objects
            .make(ObjectType::Frame4K, 0, 1)
            .map_err(at("start page frame"))?;
        let cnode = objects
            .make(ObjectType::CNode, u64::from(self.cnode_radix), 1)
            .map_err(at("cnode"))?;
        let tcb = objects.make(ObjectType::Tcb, 0, 1).map_err(at("tcb"))?;
        kernel
            .invoke(Invocation::TcbConfigure {
                tcb,
                fault_endpoint: self.fault_endpoint,
                priority: self.priority,
                cspace: cnode,
                guard_bits: 64 - self.cnode_radix,
                space: vspace,
                ipc_buffer: IPC_BUFFER_ADDRESS,
                ipc_frame,
            })
            .map_err(at("tcb configure"))?;
        let sched_context = objects
            .make(ObjectType::SchedContext, 0, 1)
            .map_err(at("sched context"))?;
        kernel
            .invoke(Invocation::SchedControlConfigure {
                control: self.sched_control,
                sched_context,
                budget_us: self.budget_us,
                period_us: self.period_us,
            })
            .map_err(at("sched configure"))?;
        kernel
            .invoke(Invocation::SchedContextBind { sched_context, tcb })
            .map_err(at("sched bind"))?;
        Ok(Process {
            tcb,
            vspace,
            cnode,
            cnode_radix: self.cnode_radix,
            sched_context,
            start_frame,
            entry: exe.entry,
            image_start,
            image_end,
            stack_bottom,
            parent: self.parent,
        })
    }

    /// Copies and maps every page of every segment; returns the image's
    /// page range.
    fn load(
        &self,
        exe: &Executable,
        vspace: u64,
        objects: &mut impl Objects,
        kernel: &mut impl Kernel,
        writer: &mut impl FrameWriter,
    ) -> Result<(u64, u64), ProcessError> {
        let (mut lowest, mut highest) = (u64::MAX, 0);
        for segment in exe.segments() {
            let (start, end) = segment.pages();
            lowest = lowest.min(start);
            highest = highest.max(end);
            // The file's bytes occupy [vaddr, vaddr + file_size); the rest
            // of the segment is zero, as fresh frames are.
            let data_end = segment.vaddr + segment.file_size;
            let rights = if segment.write {
                read_write()
            } else {
                CapRights::READ
            };
            let attributes = if segment.execute { MAP_EXECUTE } else { 0 };
            for page in (start..end).step_by(PAGE as usize) {
                let frame = objects
                    .make(ObjectType::Frame4K, 0, 1)
                    .map_err(at("image frame"))?;
                let from = page.max(segment.vaddr);
                let to = (page + PAGE).min(data_end);
                if from < to {
                    // parse_executable checked that the file range lies in
                    // the image, so these offsets are in bounds.
                    let offset = (segment.file_offset + (from - segment.vaddr)) as usize;
                    let bytes = &self.image[offset..offset + (to - from) as usize];
                    writer
                        .write(frame, from - page, bytes)
                        .map_err(at("write image frame"))?;
                }
                map(objects, kernel, frame, vspace, page, rights, attributes)
                    .map_err(at("map image"))?;
            }
        }
        Ok((lowest, highest))
    }
}

/// Rights of a writable data mapping.
fn read_write() -> CapRights {
    CapRights::READ | CapRights::WRITE
}

impl Process {
    /// The unmapped page under the stack: a stack overflow faults there.
    pub fn guard_page(&self) -> u64 {
        self.stack_bottom - PAGE
    }

    /// Puts the parent's capability `source` into slot `index` of the
    /// process's CNode.
    pub fn give(
        &self,
        kernel: &mut impl Kernel,
        index: u64,
        source: u64,
        how: Give,
    ) -> Result<(), ProcessError> {
        if index == 0 || index >> self.cnode_radix != 0 {
            return Err(ProcessError::Layout("slot outside the CNode"));
        }
        kernel
            .invoke(Invocation::Give {
                cnode: self.cnode,
                index,
                depth: u64::from(self.cnode_radix),
                parent: self.parent,
                source,
                how,
            })
            .map_err(at("give capability"))
    }

    /// Maps the parent's 4 KiB frame `frame` at `address` in the process,
    /// never executable (code comes only from the image), making page
    /// tables as needed. Refused in the reserved area at the top (the
    /// stack's guard page must stay unmapped); the kernel refuses to map
    /// over the image or another mapping.
    pub fn map(
        &self,
        objects: &mut impl Objects,
        kernel: &mut impl Kernel,
        frame: u64,
        address: u64,
        rights: CapRights,
    ) -> Result<(), ProcessError> {
        if !address.is_multiple_of(PAGE)
            || address
                .checked_add(PAGE)
                .is_none_or(|end| end > RESERVED_START)
        {
            return Err(ProcessError::Layout(
                "mapping outside the process's free area",
            ));
        }
        map(objects, kernel, frame, self.vspace, address, rights, 0).map_err(at("map frame"))
    }

    /// Writes `record` to the start page, maps it read-only at
    /// [`START_PAGE_ADDRESS`], and starts the thread at the image's entry
    /// with the stack pointer at [`STACK_TOP`] and the start page's
    /// address in `x0`.
    pub fn start(
        &self,
        objects: &mut impl Objects,
        kernel: &mut impl Kernel,
        writer: &mut impl FrameWriter,
        record: &[u8],
    ) -> Result<(), ProcessError> {
        if record.len() as u64 > PAGE {
            return Err(ProcessError::Layout("start record larger than a page"));
        }
        writer
            .write(self.start_frame, 0, record)
            .map_err(at("write start page"))?;
        map(
            objects,
            kernel,
            self.start_frame,
            self.vspace,
            START_PAGE_ADDRESS,
            CapRights::READ,
            0,
        )
        .map_err(at("map start page"))?;
        let mut values = [0; START_REGISTERS];
        values[REG_PC] = self.entry;
        values[REG_SP] = STACK_TOP;
        values[REG_X0] = START_PAGE_ADDRESS;
        kernel
            .invoke(Invocation::TcbWriteRegisters {
                tcb: self.tcb,
                values,
            })
            .map_err(at("registers"))?;
        kernel
            .invoke(Invocation::TcbResume { tcb: self.tcb })
            .map_err(at("resume"))
    }
}

#[cfg(test)]
mod tests;
