//! What the core needs from the machine it runs on.
//!
//! The kernel binary implements [`Machine`] over real memory (objects are
//! reached through the physmap) and real translation tables; the host test
//! suite implements it over typed maps, which also catch use-after-free and
//! double finalisation. The core never names an architecture.

use crate::{
    PhysAddr,
    addr::RamRange,
    cap::{Asid, FrameSize},
    object::{endpoint::Endpoint, notification::Notification, tcb::Tcb},
    slot::SlotStore,
};
use skyscope_abi::{Error, ObjectType};

/// A thread's saved user registers, in the ABI's register order
/// (see `skyscope_abi::invocation::REGISTER_COUNT`).
pub trait ThreadContext: Copy + Default {
    /// Register `index` (ABI order).
    fn register(&self, index: usize) -> u64;
    /// Sets register `index` (ABI order); the architecture may sanitise
    /// the value (e.g. keep only the condition flags of the status word).
    fn set_register(&mut self, index: usize, value: u64);
    /// Moves the program counter past the instruction at it (the
    /// architecture knows its length).
    fn skip_instruction(&mut self);
    /// Moves the program counter back to the syscall instruction that
    /// trapped, so the thread issues the syscall again when it next runs
    /// (a preempted operation continues then).
    fn restart_syscall(&mut self);

    /// Syscall register `i` (`skyscope_abi::regs`: 0 capability/badge,
    /// 1 message info, 2..6 message words, 6 reply capability/status).
    fn arg(&self, i: usize) -> u64 {
        self.register(skyscope_abi::invocation::REG_X0 + i)
    }

    /// Sets syscall register `i`.
    fn set_arg(&mut self, i: usize, value: u64) {
        self.set_register(skyscope_abi::invocation::REG_X0 + i, value);
    }

    /// Syscall registers 0..7 at once.
    fn syscall_args(&self) -> [u64; 7] {
        core::array::from_fn(|i| self.arg(i))
    }

    /// Sets syscall registers 0..7 at once.
    fn set_syscall_results(&mut self, values: [u64; 7]) {
        for (i, v) in values.into_iter().enumerate() {
            self.set_arg(i, v);
        }
    }
}

/// What a mapping allows: the one definition of the access type for
/// stage 1, stage 2 and the kernel's own map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Writable.
    pub write: bool,
    /// Executable (by EL0 for user mappings, by EL1 for guest mappings, by
    /// the kernel for its own map).
    pub execute: bool,
    /// Device memory (nGnRE) rather than normal memory.
    pub device: bool,
}

impl Access {
    /// Read-only data.
    pub const READ: Access = Access {
        write: false,
        execute: false,
        device: false,
    };
    /// Read-write data.
    pub const READ_WRITE: Access = Access {
        write: true,
        execute: false,
        device: false,
    };
    /// Read-execute code.
    pub const READ_EXECUTE: Access = Access {
        write: false,
        execute: true,
        device: false,
    };
    /// Device registers.
    pub const DEVICE: Access = Access {
        write: true,
        execute: false,
        device: true,
    };
}

/// The translation format of an address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpaceKind {
    /// A user address space of native threads (stage 1, tagged by ASID).
    User,
    /// A guest-physical address space (stage 2 / EPT, tagged by VMID).
    Guest,
}

/// An address space as the machine sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    /// The top-level table.
    pub root: PhysAddr,
    /// Its tag: the ASID of a user space, the VMID of a guest space.
    pub id: Asid,
    /// Its format.
    pub kind: SpaceKind,
}

/// Why an address-space operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// A translation table on the way is missing (map a page table first).
    MissingTable,
    /// Something is mapped there already.
    AlreadyMapped,
    /// The address is outside the user range or misaligned.
    BadAddress,
}

impl From<MapError> for skyscope_abi::Error {
    fn from(e: MapError) -> Self {
        match e {
            MapError::MissingTable => skyscope_abi::Error::FailedLookup,
            MapError::AlreadyMapped => skyscope_abi::Error::DeleteFirst,
            MapError::BadAddress => skyscope_abi::Error::InvalidArgument,
        }
    }
}

/// One entry of a translation table, as the invariant check sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableEntry {
    /// Nothing there.
    Invalid,
    /// The next-level table at this address.
    Table(PhysAddr),
    /// A frame of this size mapped here.
    Frame(PhysAddr, FrameSize),
}

/// Entries per translation table (4 KiB granule).
pub const TABLE_ENTRIES: usize = 512;

/// Every machine trait, for code that calls them on a concrete machine.
pub mod prelude {
    pub use super::{
        Clock, Interrupts, Machine, ObjectMemory, Platform, ThreadContext, Translation, VcpuState,
    };
}

/// What the core needs of the machine: small traits by concern, so a
/// second architecture or an IOMMU implements only what it provides.
pub trait Machine:
    SlotStore + ObjectMemory + Translation + Interrupts + Clock + VcpuState + Platform
{
}

impl<M> Machine for M where
    M: SlotStore + ObjectMemory + Translation + Interrupts + Clock + VcpuState + Platform
{
}

/// Kernel objects in memory, and RAM the core reads or writes on a
/// capability holder's behalf.
pub trait ObjectMemory {
    /// The architecture's saved user registers.
    type Context: ThreadContext;

    /// The TCB at `p`.
    fn tcb(&self, p: PhysAddr) -> &Tcb<Self::Context>;
    /// The TCB at `p`, mutably.
    fn tcb_mut(&mut self, p: PhysAddr) -> &mut Tcb<Self::Context>;
    /// The endpoint at `p`, mutably.
    fn endpoint_mut(&mut self, p: PhysAddr) -> &mut Endpoint;
    /// The notification at `p`, mutably.
    fn notification_mut(&mut self, p: PhysAddr) -> &mut Notification;
    /// The reply object at `p`, mutably.
    fn reply_mut(&mut self, p: PhysAddr) -> &mut crate::object::reply::Reply;
    /// The scheduling context at `p`, mutably.
    fn sched_context_mut(&mut self, p: PhysAddr)
    -> &mut crate::object::sched_context::SchedContext;
    /// The architecture-neutral part of the Vcpu at `p`.
    fn vcpu_mut(&mut self, p: PhysAddr) -> &mut crate::object::vcpu::Vcpu;

    /// Prepares `2^bits` bytes at `base` as a new object of type `ty`.
    /// The core has zeroed the memory (unless it is `device` memory, only
    /// ever frames or untyped, which is not touched); the machine writes
    /// the initial state of objects whose initial state is not all zeros
    /// (a TCB, a Vcpu). Zeroed memory already is a CNode of empty slots
    /// (`Slot: FromZeros`), an empty table, a zeroed frame.
    fn create_object(&mut self, ty: ObjectType, base: PhysAddr, bits: u8, device: bool);
    /// The object at `base` is gone; its memory goes back to its untyped.
    fn destroy_object(&mut self, ty: ObjectType, base: PhysAddr, bits: u8);
    /// Zeroes RAM (untyped memory about to become objects).
    fn zero_memory(&mut self, range: RamRange);

    /// Reads the first `out.len()` words of `from` (an IPC buffer); words
    /// beyond the range read as zero.
    fn read_words(&self, from: RamRange, out: &mut [u64]);
    /// Writes `words` at the start of `to` (an IPC buffer); words beyond
    /// the range are dropped.
    fn write_words(&mut self, to: RamRange, words: &[u64]);
    /// Copies the first `count` words of `from` to `to` (IPC buffer to IPC
    /// buffer, possibly the same frame); at most as many as both hold.
    fn copy_words(&mut self, from: RamRange, to: RamRange, count: usize) {
        let count = count.min(from.words()).min(to.words());
        let mut chunk = [0u64; 16];
        let mut done = 0;
        while done < count {
            let n = (count - done).min(chunk.len());
            let at = 8 * done as u64;
            let bytes = 8 * n as u64;
            if let (Some(f), Some(t)) = (from.sub(at, bytes), to.sub(at, bytes)) {
                self.read_words(f, &mut chunk[..n]);
                self.write_words(t, &chunk[..n]);
            }
            done += n;
        }
    }
}

/// Translation tables: user VSpaces (stage 1) and guest spaces (stage 2 /
/// EPT) share one shape, built from user-supplied tables; an IoSpace will
/// too.
pub trait Translation {
    /// Maps `frame` at `vaddr` (a guest-physical address in a guest space)
    /// in `space`.
    fn map_frame(
        &mut self,
        space: AddressSpace,
        vaddr: u64,
        frame: PhysAddr,
        size: FrameSize,
        access: Access,
    ) -> Result<(), MapError>;
    /// Removes the mapping at `vaddr` if it maps `frame` (it may have been
    /// replaced after its page table was deleted), and flushes the TLB.
    fn unmap_frame(&mut self, space: AddressSpace, vaddr: u64, frame: PhysAddr, size: FrameSize);
    /// Installs the table `table` at the first level of `vaddr`'s walk
    /// that has none; returns that level.
    fn map_table(
        &mut self,
        space: AddressSpace,
        vaddr: u64,
        table: PhysAddr,
    ) -> Result<u8, MapError>;
    /// Removes `table` from `level` of `vaddr`'s walk if it is installed
    /// there, and flushes the TLB. The core empties a table before it
    /// leaves its space ([`Translation::empty_table`]).
    fn unmap_table(&mut self, space: AddressSpace, vaddr: u64, level: u8, table: PhysAddr);
    /// Removes a bounded number of entries from `table` (serving `level`:
    /// 1 for a space's top-level table, then 2 and 3) and from the tables
    /// below it, deepest first, so that every table stays consistent in
    /// between; flushes `space`'s translations if it is given and anything
    /// was removed. Returns `true` once `table` is empty.
    fn empty_table(&mut self, space: Option<AddressSpace>, table: PhysAddr, level: u8) -> bool;
    /// Entry `index` of `table` (serving `level`), for the invariant check.
    fn table_entry(&self, table: PhysAddr, level: u8, index: usize) -> TableEntry;
    /// Forgets every TLB entry of `space` (it is being destroyed).
    fn flush_space(&mut self, space: AddressSpace);
    /// Copies `out.len()` bytes of the user memory at `va` in the space
    /// `space` (whose top-level table is kernel-held), checking every page
    /// is mapped readable for the thread and is normal memory (device
    /// registers are never read on a thread's behalf).
    fn read_user(&self, space: AddressSpace, va: u64, out: &mut [u8]) -> Result<(), Error>;
}

/// The interrupt controller, as far as capabilities reach it.
pub trait Interrupts {
    /// Whether the kernel keeps interrupt `irq` for itself (or it does not exist).
    fn irq_reserved(&self, irq: u16) -> bool;
    /// Masks or unmasks interrupt `irq` at the interrupt controller.
    fn set_irq_enabled(&mut self, irq: u16, enabled: bool);
    /// Whether an interrupt is waiting: a long operation stops at its next
    /// preemption point and the syscall is restarted after the interrupt.
    fn preemption_pending(&mut self) -> bool;
}

/// Time.
pub trait Clock {
    /// The free-running counter that times budgets.
    fn now(&self) -> u64;
    /// Its frequency in Hz.
    fn counter_frequency(&self) -> u64;
}

/// The architectural state of virtual CPUs.
pub trait VcpuState {
    /// Reads (`value` = `None`) or writes one architectural register of the
    /// Vcpu at `p` (index per `skyscope_abi::vcpu`); returns the value read
    /// or written. Registers that live in the bound thread's context (the
    /// guest PSTATE) are reached through `bound`, the bound TCB, if any.
    /// The Vcpu may be loaded in the CPU: the machine reads and writes the
    /// live registers then.
    fn vcpu_register(
        &mut self,
        p: PhysAddr,
        bound: Option<PhysAddr>,
        index: u64,
        value: Option<u64>,
    ) -> Result<u64, Error>;

    /// Drives virtual interrupt `intid` (below
    /// `skyscope_abi::vcpu::irq::INTID_LIMIT`, checked by the core) of the
    /// Vcpu at `p` with `flags` from `skyscope_abi::vcpu::irq`. Returns
    /// whether the Vcpu now has an interrupt pending (its thread, if idle
    /// in the guest, should run).
    fn vcpu_set_irq(&mut self, p: PhysAddr, intid: u32, priority: u8, flags: u64) -> bool;
}

/// Services of the platform the kernel offers to holders of capabilities:
/// the console, and (with the `debug-syscalls` feature) debugging aids.
pub trait Platform {
    /// Writes bytes to the kernel console.
    fn console_write(&mut self, bytes: &[u8]);
    /// Takes up to `out.len()` bytes of console input the kernel has
    /// buffered; returns how many.
    fn console_read(&mut self, out: &mut [u8]) -> usize;
    /// How many bytes of console input are buffered.
    fn console_waiting(&self) -> usize;
    /// Kernel timer interrupts taken since boot.
    fn timer_ticks(&self) -> u64;
    /// Checks what only the hardware can show (e.g. PAN set in the kernel).
    fn check_hardware_invariants(&self) -> Result<(), &'static str>;
    /// Makes the next guest exit report a pending SError (a test of the
    /// path after the hardware; emulators raise no physical SErrors).
    fn simulate_guest_serror(&mut self);
}
