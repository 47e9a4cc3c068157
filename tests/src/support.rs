//! Helpers for scenarios: slot allocation, untyped selection, and the
//! root CNode addressing convention.

use skyscope_abi::{
    BootInfo, Error, ObjectType,
    bootinfo::{ROOT_CNODE_RADIX, slots},
    invocation as inv,
};

/// Depth of a slot argument in the root CNode: its capability has a guard
/// making every address a plain 64-bit slot index.
pub const ROOT_DEPTH: u64 = 64;
/// The root CNode.
pub const ROOT: u64 = slots::CNODE;

/// A scenario's view of the root task's resources.
pub struct Env {
    /// The boot info.
    pub info: &'static BootInfo,
    next_slot: u64,
}

impl Env {
    /// Starts handing out the boot info's empty slots.
    pub fn new(info: &'static BootInfo) -> Env {
        Env {
            info,
            next_slot: info.empty.start,
        }
    }

    /// A fresh empty slot of the root CNode.
    pub fn slot(&mut self) -> u64 {
        assert!(
            self.next_slot < (1 << ROOT_CNODE_RADIX),
            "out of root CNode slots"
        );
        self.next_slot += 1;
        self.next_slot - 1
    }

    /// `n` consecutive fresh slots; returns the first.
    pub fn slots(&mut self, n: u64) -> u64 {
        let first = self.next_slot;
        self.next_slot += n;
        assert!(
            self.next_slot <= (1 << ROOT_CNODE_RADIX),
            "out of root CNode slots"
        );
        first
    }

    /// The slot of a RAM untyped of at least `2^bits` bytes.
    pub fn ram_untyped(&self, bits: u8) -> Option<u64> {
        self.info
            .untyped_regions()
            .iter()
            .enumerate()
            .find(|(_, d)| d.is_device == 0 && d.size_bits >= bits)
            .map(|(i, _)| self.info.untyped.start + i as u64)
    }

    /// Carves a private untyped of `2^bits` bytes (so the scenario can
    /// revoke everything it made at once) and returns its slot.
    pub fn private_untyped(&mut self, bits: u8) -> Result<u64, Error> {
        let slot = self.slot();
        // The first RAM region with room left (one may be used up by
        // earlier private untyped the scenario still holds).
        let candidates = self
            .info
            .untyped_regions()
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_device == 0 && d.size_bits > bits)
            .map(|(i, _)| self.info.untyped.start + i as u64);
        for parent in candidates {
            match inv::untyped_retype(
                parent,
                ObjectType::Untyped,
                u64::from(bits),
                ROOT,
                0,
                0,
                slot,
                1,
            ) {
                Err(Error::NotEnoughMemory) => continue,
                other => return other.map(|()| slot),
            }
        }
        Err(Error::NotEnoughMemory)
    }

    /// Retypes `count` objects from `untyped` into fresh slots; returns the first.
    pub fn retype(
        &mut self,
        untyped: u64,
        ty: ObjectType,
        size_bits: u64,
        count: u64,
    ) -> Result<u64, Error> {
        let first = self.slots(count);
        inv::untyped_retype(untyped, ty, size_bits, ROOT, 0, 0, first, count)?;
        Ok(first)
    }

    /// Copies root slot `src` to a fresh slot with `rights`.
    pub fn copy(&mut self, src: u64, rights: skyscope_abi::CapRights) -> Result<u64, Error> {
        let dst = self.slot();
        inv::cnode_copy(ROOT, dst, ROOT_DEPTH, ROOT, src, ROOT_DEPTH, rights)?;
        Ok(dst)
    }

    /// Mints root slot `src` into a fresh slot.
    pub fn mint(
        &mut self,
        src: u64,
        rights: skyscope_abi::CapRights,
        data: u64,
    ) -> Result<u64, Error> {
        let dst = self.slot();
        inv::cnode_mint(ROOT, dst, ROOT_DEPTH, ROOT, src, ROOT_DEPTH, rights, data)?;
        Ok(dst)
    }
}

/// Whether root slot `cptr` is empty: copying from an empty slot is the
/// one way to get `FailedLookup` for a valid slot address.
pub fn is_empty(cptr: u64) -> bool {
    const PROBE: u64 = (1 << ROOT_CNODE_RADIX) - 1; // kept free for this probe
    match inv::cnode_copy(
        ROOT,
        PROBE,
        ROOT_DEPTH,
        ROOT,
        cptr,
        ROOT_DEPTH,
        skyscope_abi::CapRights::ALL,
    ) {
        Err(Error::FailedLookup) => true,
        Ok(()) => {
            let _ = inv::cnode_delete(ROOT, PROBE, ROOT_DEPTH);
            false
        }
        Err(_) => false,
    }
}

/// Reads a word of user memory.
pub fn read(address: u64) -> u64 {
    // SAFETY: scenarios only pass addresses of pages they mapped readable.
    unsafe { (address as *const u64).read_volatile() }
}

/// Gives thread `tcb` a scheduling context (made from `untyped` into a
/// fresh slot) with `budget_us` of CPU per `period_us`; returns its slot.
pub fn give_sched_context(
    env: &mut Env,
    untyped: u64,
    tcb: u64,
    budget_us: u64,
    period_us: u64,
) -> Result<u64, Error> {
    let sc = env.retype(untyped, ObjectType::SchedContext, 0, 1)?;
    inv::sched_control_configure(slots::SCHED_CONTROL, sc, budget_us, period_us)?;
    inv::sched_context_bind(sc, tcb)?;
    Ok(sc)
}

/// Base of the region where scenarios put thread stacks and IPC buffers in
/// the root task's address space (64 GiB: far from the image and stack).
const THREAD_AREA: u64 = 0x10_0000_0000;
/// Address space reserved per thread: 64 KiB of stack (the pages below
/// stay unmapped as guards) and an IPC buffer page.
const THREAD_SPAN: u64 = 0x2_0000;
const THREAD_STACK_PAGES: u64 = 4;

/// A thread a scenario started in the root task's address space.
#[derive(Clone, Copy, Debug)]
pub struct Thread {
    /// Root slot of its TCB capability.
    pub tcb: u64,
    /// Root slot of its scheduling context.
    #[allow(dead_code)] // for scenarios that change budgets
    pub sched_context: u64,
}

/// Maps a fresh frame at `vaddr` in the root task's VSpace, creating page
/// tables from `untyped` as needed.
pub fn map_fresh_page(env: &mut Env, untyped: u64, vaddr: u64) -> Result<u64, Error> {
    let frame = env.retype(untyped, ObjectType::Frame4K, 0, 1)?;
    for _ in 0..3 {
        match inv::frame_map(frame, slots::VSPACE, vaddr, skyscope_abi::CapRights::ALL, 0) {
            Err(Error::FailedLookup) => {
                let table = env.retype(untyped, ObjectType::PageTable, 0, 1)?;
                inv::page_table_map(table, slots::VSPACE, vaddr)?;
            }
            other => return other.map(|()| frame),
        }
    }
    Err(Error::FailedLookup)
}

/// Starts a thread in the root task's address space and CSpace, running
/// `entry(arg)` at `priority` on a scheduling context of `budget_us` per
/// `period_us`, with its own stack and IPC buffer. Thread number `n`
/// picks its place in the thread area.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    env: &mut Env,
    untyped: u64,
    n: u64,
    entry: extern "C" fn(u64) -> !,
    arg: u64,
    priority: u8,
    budget_us: u64,
    period_us: u64,
) -> Result<Thread, Error> {
    spawn_with_fault_handler(
        env, untyped, n, entry, arg, priority, budget_us, period_us, 0,
    )
}

/// As [`spawn`], with faults sent to the endpoint at `fault_ep` (0: none).
#[allow(clippy::too_many_arguments)]
pub fn spawn_with_fault_handler(
    env: &mut Env,
    untyped: u64,
    n: u64,
    entry: extern "C" fn(u64) -> !,
    arg: u64,
    priority: u8,
    budget_us: u64,
    period_us: u64,
    fault_ep: u64,
) -> Result<Thread, Error> {
    spawn_in_cspace(
        env,
        untyped,
        n,
        entry,
        arg,
        (priority, budget_us, period_us),
        fault_ep,
        (ROOT, 64 - ROOT_CNODE_RADIX),
    )
}

/// As [`spawn_with_fault_handler`], with `cspace = (CNode slot, guard
/// bits)` as the thread's CSpace and `schedule = (priority, budget_us,
/// period_us)`.
#[allow(clippy::too_many_arguments)]
pub fn spawn_in_cspace(
    env: &mut Env,
    untyped: u64,
    n: u64,
    entry: extern "C" fn(u64) -> !,
    arg: u64,
    schedule: (u8, u64, u64),
    fault_ep: u64,
    cspace: (u64, u8),
) -> Result<Thread, Error> {
    use skyscope_abi::invocation::{REG_PC, REG_SP, REG_X0};
    let (priority, budget_us, period_us) = schedule;
    let base = THREAD_AREA + n * THREAD_SPAN;
    for page in 0..THREAD_STACK_PAGES {
        map_fresh_page(env, untyped, base + 0x1_0000 - (page + 1) * 4096)?;
    }
    let ipc_va = base + 0x1_0000;
    let ipc_frame = map_fresh_page(env, untyped, ipc_va)?;
    let tcb = env.retype(untyped, ObjectType::Tcb, 0, 1)?;
    inv::tcb_configure(
        tcb,
        fault_ep,
        priority,
        cspace.0,
        cspace.1,
        slots::VSPACE,
        ipc_va,
        ipc_frame,
    )?;
    let mut regs = [0u64; REG_X0 + 1];
    regs[REG_PC] = entry as *const () as u64;
    regs[REG_SP] = base + 0x1_0000;
    regs[REG_X0] = arg;
    inv::tcb_write_registers(tcb, &regs)?;
    let sched_context = give_sched_context(env, untyped, tcb, budget_us, period_us)?;
    inv::tcb_resume(tcb)?;
    Ok(Thread { tcb, sched_context })
}

/// The calling thread's IPC buffer.
pub fn ipc_buffer() -> &'static mut skyscope_abi::invocation::IpcBuffer {
    let address: u64;
    // SAFETY: reading TPIDRRO_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, tpidrro_el0", out(reg) address, options(nomem, nostack)) };
    // SAFETY: the kernel points TPIDRRO_EL0 at this thread's IPC buffer,
    // mapped read-write for it; only this thread uses it.
    unsafe { &mut *(address as *mut skyscope_abi::invocation::IpcBuffer) }
}

/// Maps `frame` at `vaddr` in `vspace`, creating page tables from
/// `untyped` as needed.
pub fn map_into(
    env: &mut Env,
    untyped: u64,
    vspace: u64,
    frame: u64,
    vaddr: u64,
    rights: skyscope_abi::CapRights,
    attributes: u64,
) -> Result<(), Error> {
    for _ in 0..3 {
        match inv::frame_map(frame, vspace, vaddr, rights, attributes) {
            Err(Error::FailedLookup) => {
                let table = env.retype(untyped, ObjectType::PageTable, 0, 1)?;
                inv::page_table_map(table, vspace, vaddr)?;
            }
            other => return other,
        }
    }
    Err(Error::FailedLookup)
}

/// Starts `entry(arg)` in a new address space that holds the root task's
/// image (read-only, executable: the code may use no globals), a stack,
/// an IPC buffer and the `shared` frames (copies are mapped at the given
/// addresses). Its CSpace is the root task's. Returns its TCB slot.
pub fn spawn_process(
    env: &mut Env,
    untyped: u64,
    entry: extern "C" fn(u64) -> !,
    arg: u64,
    priority: u8,
    shared: &[(u64, u64)],
) -> Result<u64, Error> {
    use skyscope_abi::{
        CapRights,
        invocation::{MAP_EXECUTE, REG_PC, REG_SP, REG_X0},
    };
    const STACK_TOP: u64 = 0x7f_fff0_0000;
    const IPC_BUFFER: u64 = 0x7f_ffe0_1000;
    let vspace = env.retype(untyped, ObjectType::VSpace, 0, 1)?;
    let info = env.info;
    let pages = (info.image_end - info.image_start) / 4096;
    for i in 0..pages {
        let copy = env.copy(info.image_frames.start + i, CapRights::READ)?;
        map_into(
            env,
            untyped,
            vspace,
            copy,
            info.image_start + i * 4096,
            CapRights::READ,
            MAP_EXECUTE,
        )?;
    }
    for i in 1..=THREAD_STACK_PAGES {
        let frame = env.retype(untyped, ObjectType::Frame4K, 0, 1)?;
        map_into(
            env,
            untyped,
            vspace,
            frame,
            STACK_TOP - i * 4096,
            CapRights::ALL,
            0,
        )?;
    }
    let ipc_frame = env.retype(untyped, ObjectType::Frame4K, 0, 1)?;
    map_into(
        env,
        untyped,
        vspace,
        ipc_frame,
        IPC_BUFFER,
        CapRights::ALL,
        0,
    )?;
    for &(frame, vaddr) in shared {
        let copy = env.copy(frame, CapRights::ALL)?;
        map_into(env, untyped, vspace, copy, vaddr, CapRights::ALL, 0)?;
    }
    let tcb = env.retype(untyped, ObjectType::Tcb, 0, 1)?;
    inv::tcb_configure(
        tcb,
        0,
        priority,
        ROOT,
        64 - ROOT_CNODE_RADIX,
        vspace,
        IPC_BUFFER,
        ipc_frame,
    )?;
    let mut regs = [0u64; REG_X0 + 1];
    regs[REG_PC] = entry as *const () as u64;
    regs[REG_SP] = STACK_TOP;
    regs[REG_X0] = arg;
    inv::tcb_write_registers(tcb, &regs)?;
    give_sched_context(env, untyped, tcb, 10_000, 10_000)?;
    inv::tcb_resume(tcb)?;
    Ok(tcb)
}

/// The builders' object allocation for a scenario: fresh root slots,
/// objects carved from one untyped.
pub struct Carve<'a> {
    /// The scenario's slots.
    pub env: &'a mut Env,
    /// Where objects come from.
    pub untyped: u64,
}

impl skyscope_client::Objects for Carve<'_> {
    fn make(&mut self, ty: ObjectType, size_bits: u64, count: u64) -> Result<u64, Error> {
        self.env.retype(self.untyped, ty, size_bits, count)
    }

    fn copy(&mut self, cap: u64, rights: skyscope_abi::CapRights) -> Result<u64, Error> {
        self.env.copy(cap, rights)
    }

    fn mint(
        &mut self,
        cap: u64,
        rights: skyscope_abi::CapRights,
        badge: u64,
    ) -> Result<u64, Error> {
        self.env.mint(cap, rights, badge)
    }
}
