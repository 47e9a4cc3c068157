//! The core's view of this machine: objects in RAM through the physmap,
//! user address spaces in real translation tables, interrupts at the GIC;
//! and the CPU state that goes with the thread that runs (address space,
//! IPC-buffer pointer, FP/SIMD owner, the loaded Vcpu).

use crate::arch::{
    self, UserContext,
    mmu::{self, phys_to_virt},
    vcpu::{self, GuestSupport, VcpuObject},
};
use crate::drivers::gicv3::Gic;
use skyscope_abi::{Error, ObjectType};
use skyscope_core::{
    PhysAddr,
    addr::RamRange,
    cap::{FrameSize, SlotRef},
    machine::{
        Access, AddressSpace, Clock, Interrupts, MapError, ObjectMemory, Platform, SpaceKind,
        TableEntry, Translation, VcpuState,
    },
    object::{
        endpoint::Endpoint, notification::Notification, reply::Reply, sched_context::SchedContext,
        tcb::Tcb,
    },
    slot::{Slot, SlotStore},
};

/// The TCB layout on this architecture.
pub type KernelTcb = Tcb<UserContext>;

const TCB_BITS: u8 = 11;
const _: () = assert!(core::mem::size_of::<KernelTcb>() <= 1 << TCB_BITS);
const _: () = assert!(core::mem::size_of::<Endpoint>() <= 1 << 5);
const _: () = assert!(core::mem::size_of::<Notification>() <= 1 << 6);
const _: () = assert!(core::mem::size_of::<Reply>() <= 1 << 5);
const _: () = assert!(core::mem::size_of::<SchedContext>() <= 1 << 8);
const _: () = assert!(core::mem::size_of::<VcpuObject>() <= 1 << skyscope_abi::object::VCPU_BITS);

/// Trap switches after which an FP/SIMD owner no other thread displaced
/// is assumed done with the unit (see `KernelMachine::switch_fp_trap`).
pub const FP_TRAP_SWITCHES_BEFORE_RELEASE: u32 = 64;

/// Object memory and hardware, as handed to `skyscope_core::Kernel`.
pub struct KernelMachine {
    /// The interrupt controller.
    pub gic: Gic,
    /// The kernel's own timer interrupt (never given to user space).
    pub timer_intid: u32,
    /// The thread whose FP/SIMD state is in the registers (0: none; a
    /// plain address, not an `Option`, so the fastpath's switch compares
    /// one word).
    pub fp_owner: PhysAddr,
    /// Frequency of the counter budgets are measured with.
    pub counter_frequency: u64,
    /// RAM banks (device frames lie outside them).
    pub ram: skyscope_core::memory::FreeRegions,
    /// The Vcpu whose EL1 state is in the CPU's registers.
    pub loaded_vcpu: Option<PhysAddr>,
    /// The Vcpu that ran last, if the last thread entered was a guest
    /// (its TPIDRRO_EL0 is still in the CPU).
    pub in_guest: Option<PhysAddr>,
    /// TTBR0_EL2 as last written: the address space in it (top-level
    /// table and ASID, `mmu::user_ttbr`).
    pub active_ttbr0: u64,
    /// Whether EL0 may use the FP/SIMD unit without trapping.
    pub fp_enabled: bool,
    /// Times the FP/SIMD trap was switched for a thread switch since the
    /// unit last changed owner (see [`KernelMachine::set_fp_access`]).
    pub fp_trap_switches: u32,
    /// What running guests needs of this CPU.
    pub guest: GuestSupport,
    /// Kernel timer interrupts taken since boot.
    pub ticks: u64,
    /// The interrupts the kernel handles for guests.
    pub guest_interrupts: super::guest_irq::GuestInterrupts,
    /// Switched-out Vcpus with an armed timer (a list through the Vcpus).
    pub armed_vcpus: PhysAddr,
    /// What guests read from the ID registers.
    pub guest_ids: skyscope_el2::idregs::GuestIdRegisters,
}

/// How a thread runs once the CPU is switched to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadMode {
    /// A native thread at EL0.
    Native,
    /// A Vcpu's thread at EL1/EL0 of its guest.
    Guest,
}

impl KernelMachine {
    /// The Vcpu object at `p`.
    pub fn vcpu_object(&mut self, p: PhysAddr) -> &mut VcpuObject {
        // SAFETY: see `object`; Vcpu capabilities point at Vcpu objects.
        unsafe { &mut *object::<VcpuObject>(p) }
    }

    /// Makes the CPU's EL1 registers hold `v`'s state, saving whichever
    /// Vcpu's state they held.
    #[inline(always)]
    pub fn load_vcpu(&mut self, v: PhysAddr) {
        if self.loaded_vcpu != Some(v) {
            self.load_other_vcpu(v);
        }
    }

    #[inline(never)]
    fn load_other_vcpu(&mut self, v: PhysAddr) {
        self.unload_vcpu();
        vcpu::load(&self.vcpu_object(v).registers);
        self.loaded_vcpu = Some(v);
        self.load_virtual_interrupts(v);
    }

    /// Saves the loaded Vcpu's EL1 state into its object (the registers
    /// are then free for another Vcpu, or for the VMM to inspect).
    pub fn unload_vcpu(&mut self) {
        if let Some(old) = self.loaded_vcpu.take() {
            vcpu::save(&mut self.vcpu_object(old).registers);
            self.save_virtual_interrupts(old);
        }
    }

    /// Makes `t`'s address space (`space`) and IPC buffer pointer current,
    /// and lets it use the FP/SIMD unit directly only if its state is
    /// loaded there. A thread running as a Vcpu gets its GuestSpace, its
    /// EL1 state and (eagerly: a guest's FP use cannot be trapped without
    /// trapping the kernel's own save and restore) its FP/SIMD state.
    #[inline(always)]
    pub fn switch_to(
        &mut self,
        t: PhysAddr,
        space: AddressSpace,
        vcpu: PhysAddr,
        ipc_buffer: u64,
    ) -> Result<ThreadMode, &'static str> {
        self.leave_guest();
        match space.kind {
            SpaceKind::User => {
                let ttbr0 = mmu::user_ttbr(space.root, space.id);
                if self.active_ttbr0 != ttbr0 {
                    mmu::activate_user_space(ttbr0);
                    self.active_ttbr0 = ttbr0;
                }
                arch::set_ipc_buffer_pointer(ipc_buffer);
                self.set_fp_access(t);
                Ok(ThreadMode::Native)
            }
            SpaceKind::Guest => {
                if space.id > self.guest.max_vmid {
                    return Err("its GuestSpace's VMID is beyond what this CPU tags");
                }
                self.load_vcpu(vcpu);
                let tpidrro = self.vcpu_object(vcpu).registers
                    [skyscope_abi::vcpu::aarch64::TPIDRRO_EL0 as usize];
                vcpu::activate_guest_space(space.root, space.id, tpidrro);
                self.in_guest = Some(vcpu);
                self.load_fp(t);
                Ok(ThreadMode::Guest)
            }
        }
    }

    /// If a guest ran last, saves what of its state is still in the CPU
    /// and another thread would overwrite (its TPIDRRO_EL0).
    #[inline(always)]
    pub fn leave_guest(&mut self) {
        if let Some(v) = self.in_guest.take() {
            vcpu::save_tpidrro(&mut self.vcpu_object(v).registers);
        }
    }

    /// Enters the thread (already switched to) whose registers are
    /// `context`.
    #[inline(always)]
    pub fn enter(&self, context: &mut UserContext, mode: ThreadMode) -> ! {
        match mode {
            ThreadMode::Guest => vcpu::enter_guest(context, &self.guest),
            ThreadMode::Native => arch::enter_user(context),
        }
    }

    /// Lets native thread `t`, about to run, use the FP/SIMD unit without
    /// a trap only if the unit holds its state.
    #[inline(always)]
    pub fn set_fp_access(&mut self, t: PhysAddr) {
        let owns_fp = self.fp_owner == t;
        if owns_fp != self.fp_enabled {
            self.switch_fp_trap(owns_fp);
        }
    }

    /// [`KernelMachine::set_fp_access`] when the trap must change. An owner
    /// the trap has been switched for [`FP_TRAP_SWITCHES_BEFORE_RELEASE`]
    /// times without another thread taking the unit is assumed to have
    /// stopped using it (a thread that used FP/SIMD once, say in a
    /// `memcpy` at start-up, would otherwise cost every later switch to
    /// and from it two trap writes): its state is saved and the unit left
    /// without an owner, so that every thread traps on its next use and
    /// no switch changes the trap. seL4's lazy FPU switch does the same
    /// (`CONFIG_FPU_MAX_RESTORES_SINCE_SWITCH`, 64). An owner that still
    /// uses the unit takes one trap to get its state back. A Vcpu's thread
    /// is never released: its state is loaded again on every guest entry
    /// anyway, so releasing it would only add a save and a load.
    #[inline(never)]
    fn switch_fp_trap(&mut self, owns_fp: bool) {
        self.fp_trap_switches += 1;
        if self.fp_trap_switches >= FP_TRAP_SWITCHES_BEFORE_RELEASE {
            let owner = self.fp_owner;
            if owner.0 == 0 || self.tcb(owner).vcpu.0 == 0 {
                self.release_fp();
                return;
            }
            self.fp_trap_switches = 0;
        }
        arch::set_fp_trap_for_return(!owns_fp);
        self.fp_enabled = owns_fp;
    }

    /// Saves the FP/SIMD owner's state into its TCB and leaves the unit
    /// without an owner, trapped for whoever runs next.
    fn release_fp(&mut self) {
        let owner = self.fp_owner;
        if owner.0 != 0 {
            arch::set_fp_trap(false); // the kernel itself may now move FP registers
            self.tcb_mut(owner).context.fp.save();
            self.fp_owner = PhysAddr(0);
        }
        self.fp_trap_switches = 0;
        arch::set_fp_trap_for_return(true);
        self.fp_enabled = false;
    }

    /// Puts `t`'s FP/SIMD state in the unit and stops trapping its use
    /// (the lazy switch: threads that never use FP never pay for it).
    #[inline(always)]
    pub fn load_fp(&mut self, t: PhysAddr) {
        if self.fp_owner != t {
            self.fp_trap_switches = 0;
            arch::set_fp_trap(false); // the kernel itself may now move FP registers
            let owner = self.fp_owner;
            if owner.0 != 0 {
                self.tcb_mut(owner).context.fp.save();
            }
            self.tcb(t).context.fp.restore();
            self.fp_owner = t;
            self.fp_enabled = true;
        }
        if !self.fp_enabled {
            arch::set_fp_trap_for_return(false);
            self.fp_enabled = true;
        }
    }

    /// Whether `[base, base + 2^bits)` is RAM (and so in the physmap).
    fn is_ram(&self, base: PhysAddr, bits: u8) -> bool {
        let end = base.0 + (1u64 << bits);
        self.ram
            .iter()
            .any(|r| r.start.0 <= base.0 && end <= r.end.0)
    }
}

/// A typed pointer into the physmap.
///
/// The core only forms object addresses from capabilities, and a
/// capability of a type only ever points at memory that retype (or boot)
/// initialised as an object of that type, in RAM (see `object_virt`); so
/// the casts below are to valid, aligned, initialised objects. The
/// `&self`/`&mut self` receivers make the returned references exclusive
/// for their lifetime. The `dev` kernel also checks the address is RAM.
#[inline(always)]
fn object<T>(pa: PhysAddr) -> *mut T {
    debug_assert!(pa.0.is_multiple_of(core::mem::align_of::<T>() as u64));
    if cfg!(feature = "dev") {
        phys_to_virt(pa) as *mut T
    } else {
        mmu::object_virt(pa) as *mut T
    }
}

impl SlotStore for KernelMachine {
    #[inline(always)]
    fn slot(&self, s: SlotRef) -> &Slot {
        // SAFETY: see `object`; slot references point into live CNodes or TCBs.
        unsafe { &*object::<Slot>(PhysAddr(s.0)) }
    }

    #[inline(always)]
    fn slot_mut(&mut self, s: SlotRef) -> &mut Slot {
        // SAFETY: see `object`.
        unsafe { &mut *object::<Slot>(PhysAddr(s.0)) }
    }
}

impl ObjectMemory for KernelMachine {
    type Context = UserContext;

    #[inline(always)]
    fn tcb(&self, p: PhysAddr) -> &KernelTcb {
        // SAFETY: see `object`.
        unsafe { &*object::<KernelTcb>(p) }
    }

    #[inline(always)]
    fn tcb_mut(&mut self, p: PhysAddr) -> &mut KernelTcb {
        // SAFETY: see `object`.
        unsafe { &mut *object::<KernelTcb>(p) }
    }

    #[inline(always)]
    fn endpoint_mut(&mut self, p: PhysAddr) -> &mut Endpoint {
        // SAFETY: see `object`.
        unsafe { &mut *object::<Endpoint>(p) }
    }

    #[inline(always)]
    fn notification_mut(&mut self, p: PhysAddr) -> &mut Notification {
        // SAFETY: see `object`.
        unsafe { &mut *object::<Notification>(p) }
    }

    fn create_object(&mut self, ty: ObjectType, base: PhysAddr, _bits: u8, device: bool) {
        if device {
            return; // device memory is never touched
        }
        // The core zeroed the memory. Zeroed memory is already a CNode of
        // empty slots (`Slot: FromZeros`), an empty table and a zeroed
        // frame; the other objects get their initial state written.
        match ty {
            // SAFETY: fresh, exclusively owned, suitably aligned memory.
            ObjectType::Tcb => unsafe { object::<KernelTcb>(base).write(KernelTcb::default()) },
            // SAFETY: as above.
            ObjectType::Endpoint => unsafe { object::<Endpoint>(base).write(Endpoint::default()) },
            // SAFETY: as above.
            ObjectType::Notification => unsafe {
                object::<Notification>(base).write(Notification::default())
            },
            // SAFETY: as above.
            ObjectType::Reply => unsafe { object::<Reply>(base).write(Reply::default()) },
            // SAFETY: as above.
            ObjectType::SchedContext => unsafe {
                object::<SchedContext>(base).write(SchedContext::default())
            },
            // SAFETY: as above.
            ObjectType::Vcpu => unsafe { object::<VcpuObject>(base).write(VcpuObject::new()) },
            _ => {}
        }
    }

    fn zero_memory(&mut self, range: RamRange) {
        arch::zero_phys(range.base(), range.len());
    }

    fn destroy_object(&mut self, ty: ObjectType, base: PhysAddr, bits: u8) {
        // Hardened: scrub the memory of anything destroyed (frames included;
        // device frames are not RAM and are never touched).
        if cfg!(feature = "hardened") && ty != ObjectType::Untyped && self.is_ram(base, bits) {
            arch::zero_phys(base, 1u64 << bits);
        }
        if ty == ObjectType::Tcb && self.fp_owner == base {
            self.fp_owner = PhysAddr(0);
        }
        if ty == ObjectType::Vcpu {
            // Its state goes with it; its timers must not fire for it.
            let loaded = self.loaded_vcpu == Some(base);
            if loaded {
                self.loaded_vcpu = None;
            }
            self.discard_virtual_interrupts(base, loaded);
            if self.in_guest == Some(base) {
                self.in_guest = None;
            }
        }
    }

    fn read_words(&self, from: RamRange, out: &mut [u64]) {
        let n = out.len().min(from.words());
        arch::copy_from_phys(
            from.base(),
            zerocopy::IntoBytes::as_mut_bytes(&mut out[..n]),
        );
        out[n..].fill(0);
    }

    fn write_words(&mut self, to: RamRange, words: &[u64]) {
        let n = words.len().min(to.words());
        arch::copy_to_phys(to.base(), zerocopy::IntoBytes::as_bytes(&words[..n]));
    }

    fn copy_words(&mut self, from: RamRange, to: RamRange, count: usize) {
        let count = count.min(from.words()).min(to.words());
        let (src, dst) = (object::<u64>(from.base()), object::<u64>(to.base()));
        // Word by word (messages are a few words; a `memmove` call costs
        // more than the copy), upwards unless the destination overlaps
        // the source from above: two threads may share a buffer frame.
        // Volatile, so the loop is not turned back into that call.
        let down = (src as usize) < (dst as usize) && (dst as usize) < (src as usize) + 8 * count;
        for k in 0..count {
            let i = if down { count - 1 - k } else { k };
            // SAFETY: both ranges are RAM (`RamRange` is only made from
            // RAM frames and checked to lie inside them; `object` checks
            // the physmap range), and `count` words fit in each.
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        }
    }

    #[inline(always)]
    fn reply_mut(&mut self, p: PhysAddr) -> &mut Reply {
        // SAFETY: see `object`.
        unsafe { &mut *object::<Reply>(p) }
    }

    #[inline(always)]
    fn sched_context_mut(&mut self, p: PhysAddr) -> &mut SchedContext {
        // SAFETY: see `object`.
        unsafe { &mut *object::<SchedContext>(p) }
    }

    #[inline(always)]
    fn vcpu_mut(&mut self, p: PhysAddr) -> &mut skyscope_core::object::vcpu::Vcpu {
        &mut self.vcpu_object(p).head
    }
}

impl Translation for KernelMachine {
    fn map_frame(
        &mut self,
        space: AddressSpace,
        vaddr: u64,
        frame: PhysAddr,
        size: FrameSize,
        access: Access,
    ) -> Result<(), MapError> {
        mmu::map_frame(space, vaddr, frame, size.bytes(), access)
    }

    fn unmap_frame(&mut self, space: AddressSpace, vaddr: u64, frame: PhysAddr, size: FrameSize) {
        mmu::unmap_frame(space, vaddr, frame, size.bytes());
    }

    fn map_table(
        &mut self,
        space: AddressSpace,
        vaddr: u64,
        table: PhysAddr,
    ) -> Result<u8, MapError> {
        mmu::map_table(space, vaddr, table)
    }

    fn unmap_table(&mut self, space: AddressSpace, vaddr: u64, level: u8, table: PhysAddr) {
        mmu::unmap_table(space, vaddr, level, table);
    }

    fn empty_table(&mut self, space: Option<AddressSpace>, table: PhysAddr, level: u8) -> bool {
        mmu::empty_table(space, table, level)
    }

    fn table_entry(&self, table: PhysAddr, level: u8, index: usize) -> TableEntry {
        mmu::table_entry(table, level, index)
    }

    fn flush_space(&mut self, space: AddressSpace) {
        mmu::flush_space(space);
    }

    fn read_user(&self, space: AddressSpace, va: u64, out: &mut [u8]) -> Result<(), Error> {
        if space.kind != SpaceKind::User {
            return Err(Error::InvalidUserBuffer);
        }
        mmu::read_user(space.root, va, out)
    }
}

impl Platform for KernelMachine {
    fn console_write(&mut self, bytes: &[u8]) {
        crate::console::write_bytes(bytes);
    }

    fn console_waiting(&self) -> usize {
        crate::console::input_waiting()
    }

    fn console_read(&mut self, out: &mut [u8]) -> usize {
        crate::console::read_input(out)
    }

    fn timer_ticks(&self) -> u64 {
        self.ticks
    }

    fn check_hardware_invariants(&self) -> Result<(), &'static str> {
        if arch::pan_enabled() {
            Ok(())
        } else {
            Err("PSTATE.PAN is clear inside the kernel")
        }
    }

    fn simulate_guest_serror(&mut self) {
        vcpu::simulate_serror_at_next_exit();
    }
}

impl Interrupts for KernelMachine {
    fn preemption_pending(&mut self) -> bool {
        arch::interrupt_pending()
    }

    fn irq_reserved(&self, irq: u16) -> bool {
        // SGIs and PPIs belong to the kernel (its timer among them); user
        // space gets shared peripheral interrupts the GIC implements,
        // except the console UART's, which the kernel takes input from.
        u32::from(irq) < 32
            || u32::from(irq) >= self.gic.lines()
            || u32::from(irq) == self.timer_intid
            || Some(u32::from(irq)) == crate::console::input_intid()
    }

    fn set_irq_enabled(&mut self, irq: u16, enabled: bool) {
        if enabled {
            self.gic.enable(u32::from(irq));
        } else {
            self.gic.disable(u32::from(irq));
        }
    }
}

impl Clock for KernelMachine {
    fn now(&self) -> u64 {
        arch::timer::now()
    }

    fn counter_frequency(&self) -> u64 {
        self.counter_frequency
    }
}

impl VcpuState for KernelMachine {
    fn vcpu_register(
        &mut self,
        p: PhysAddr,
        bound: Option<PhysAddr>,
        index: u64,
        value: Option<u64>,
    ) -> Result<u64, skyscope_abi::Error> {
        use skyscope_abi::vcpu::aarch64 as reg;
        if index >= reg::COUNT {
            return Err(skyscope_abi::Error::InvalidArgument);
        }
        if index == reg::PSTATE {
            // PSTATE is the bound thread's saved SPSR.
            let t = bound.ok_or(skyscope_abi::Error::IllegalOperation)?;
            let context = &mut self.tcb_mut(t).context;
            if let Some(v) = value {
                context.spsr = vcpu::sanitize_pstate(v);
            }
            return Ok(context.spsr);
        }
        // The VMM sees (and changes) the state the guest will run with.
        if self.loaded_vcpu == Some(p) {
            self.unload_vcpu();
        }
        let register = &mut self.vcpu_object(p).registers[index as usize];
        if let Some(v) = value {
            *register = v;
        }
        Ok(*register)
    }

    fn vcpu_set_irq(&mut self, p: PhysAddr, intid: u32, priority: u8, flags: u64) -> bool {
        self.set_virtual_irq(p, intid, priority, flags)
    }
}
