//! Talking to the kernel from user space, for the code that builds things
//! out of untyped memory: the process builder (`skyscope-process`), the
//! guest builder (`skyscope-vmm`'s `builder`) and the launcher that uses
//! both.
//!
//! Builders decide what to make and in which order; three small pieces
//! carry it out, so that the same builder runs against the kernel on the
//! target and against a checking model in host tests:
//!
//! - [`Objects`]: where new capabilities come from (fresh slots of the
//!   caller's CSpace, untyped memory) — the caller's own bookkeeping;
//! - [`Kernel`]: performs an [`Invocation`] — [`Syscalls`] on the target,
//!   a model that records and checks them in the tests;
//! - [`map_creating_tables`]: maps a frame, making the page tables its
//!   walk lacks on the way.
#![no_std]
#![forbid(unsafe_code)]

use skyscope_abi::{CapRights, Error, ObjectType, invocation::REG_X0};

/// Registers a builder's `TCB::WriteRegisters` sets when a thread starts,
/// in the ABI's register order: pc, sp, flags, x0..x3.
pub const START_REGISTERS: usize = REG_X0 + 4;

/// Where new capabilities come from: the caller's slot allocation and
/// untyped memory.
pub trait Objects {
    /// Makes `count` objects of type `ty` (`size_bits` as for
    /// `Untyped::Retype`) in consecutive fresh slots; returns the first.
    fn make(&mut self, ty: ObjectType, size_bits: u64, count: u64) -> Result<u64, Error>;
    /// Copies the capability in slot `cap` to a fresh slot with `rights`.
    fn copy(&mut self, cap: u64, rights: CapRights) -> Result<u64, Error>;
    /// Mints the capability in slot `cap` to a fresh slot with `rights`
    /// and `badge`.
    fn mint(&mut self, cap: u64, rights: CapRights, badge: u64) -> Result<u64, Error>;
}

/// A CSpace root (a CNode capability) and the depth its addresses resolve
/// with: how a caller names its own capabilities in CNode invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSpaceRoot {
    /// The CNode capability.
    pub cnode: u64,
    /// Address bits resolved through it.
    pub depth: u64,
}

/// How a capability goes from the caller into another CNode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Give {
    /// A copy with these rights (the caller keeps its own).
    Copy(CapRights),
    /// A copy with these rights and a badge (endpoints, notifications).
    Mint(CapRights, u64),
    /// The caller's capability itself, with its mapping if it has one
    /// (reply objects and mapped frames cannot be copied as they are).
    Move,
}

/// An invocation a builder makes (see [`skyscope_abi::Label`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// `Frame::Map`.
    FrameMap {
        /// The frame.
        frame: u64,
        /// A VSpace or GuestSpace.
        space: u64,
        /// Virtual or guest-physical address.
        address: u64,
        /// Rights of the mapping.
        rights: CapRights,
        /// `MAP_*` attributes.
        attributes: u64,
    },
    /// `PageTable::Map`.
    PageTableMap {
        /// The table.
        table: u64,
        /// A VSpace or GuestSpace.
        space: u64,
        /// An address the table will translate.
        address: u64,
    },
    /// `TCB::Configure`.
    TcbConfigure {
        /// The thread.
        tcb: u64,
        /// Where its faults (a guest's exits) go (0: nowhere; the kernel
        /// then stops it).
        fault_endpoint: u64,
        /// Its priority (and the highest it may give others).
        priority: u8,
        /// Its CSpace root.
        cspace: u64,
        /// Guard bits the root gets.
        guard_bits: u8,
        /// Its address space: a VSpace, or a Vcpu thread's GuestSpace.
        space: u64,
        /// Its IPC buffer's address (0: none).
        ipc_buffer: u64,
        /// The IPC buffer's frame (0: none).
        ipc_frame: u64,
    },
    /// `TCB::WriteRegisters` of the first [`START_REGISTERS`] registers.
    TcbWriteRegisters {
        /// The thread.
        tcb: u64,
        /// The values, in the ABI's register order.
        values: [u64; START_REGISTERS],
    },
    /// `SchedControl::Configure`.
    SchedControlConfigure {
        /// The scheduling-control capability.
        control: u64,
        /// The scheduling context.
        sched_context: u64,
        /// CPU time per period.
        budget_us: u64,
        /// The period.
        period_us: u64,
    },
    /// `SchedContext::Bind`.
    SchedContextBind {
        /// The scheduling context.
        sched_context: u64,
        /// The thread.
        tcb: u64,
    },
    /// `TCB::Resume`.
    TcbResume {
        /// The thread.
        tcb: u64,
    },
    /// `Vcpu::SetTcb`.
    VcpuSetTcb {
        /// The Vcpu.
        vcpu: u64,
        /// The thread that runs as it.
        tcb: u64,
    },
    /// `Vcpu::WriteRegister`.
    VcpuWriteRegister {
        /// The Vcpu.
        vcpu: u64,
        /// Register index (`skyscope_abi::vcpu::aarch64`).
        register: u64,
        /// The value.
        value: u64,
    },
    /// `CNode::Copy`, `Mint` or `Move` from the caller's CSpace into slot
    /// `index` of another CNode.
    Give {
        /// The receiving CNode (a capability of the caller).
        cnode: u64,
        /// The slot.
        index: u64,
        /// Its depth: the CNode's radix.
        depth: u64,
        /// The caller's CSpace root and its depth.
        parent: CSpaceRoot,
        /// The caller's capability.
        source: u64,
        /// How.
        how: Give,
    },
}

/// Performs invocations.
pub trait Kernel {
    /// Performs one invocation.
    fn invoke(&mut self, invocation: Invocation) -> Result<(), Error>;
}

/// The kernel itself: each invocation is its syscall.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[derive(Clone, Copy, Debug, Default)]
pub struct Syscalls;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
impl Kernel for Syscalls {
    fn invoke(&mut self, invocation: Invocation) -> Result<(), Error> {
        use skyscope_abi::invocation as inv;
        match invocation {
            Invocation::FrameMap {
                frame,
                space,
                address,
                rights,
                attributes,
            } => inv::frame_map(frame, space, address, rights, attributes),
            Invocation::PageTableMap {
                table,
                space,
                address,
            } => inv::page_table_map(table, space, address),
            Invocation::TcbConfigure {
                tcb,
                fault_endpoint,
                priority,
                cspace,
                guard_bits,
                space,
                ipc_buffer,
                ipc_frame,
            } => inv::tcb_configure(
                tcb,
                fault_endpoint,
                priority,
                cspace,
                guard_bits,
                space,
                ipc_buffer,
                ipc_frame,
            ),
            Invocation::TcbWriteRegisters { tcb, values } => inv::tcb_write_registers(tcb, &values),
            Invocation::SchedControlConfigure {
                control,
                sched_context,
                budget_us,
                period_us,
            } => inv::sched_control_configure(control, sched_context, budget_us, period_us),
            Invocation::SchedContextBind { sched_context, tcb } => {
                inv::sched_context_bind(sched_context, tcb)
            }
            Invocation::TcbResume { tcb } => inv::tcb_resume(tcb),
            Invocation::VcpuSetTcb { vcpu, tcb } => inv::vcpu_set_tcb(vcpu, tcb),
            Invocation::VcpuWriteRegister {
                vcpu,
                register,
                value,
            } => inv::vcpu_write_register(vcpu, register, value),
            Invocation::Give {
                cnode,
                index,
                depth,
                parent,
                source,
                how,
            } => match how {
                Give::Copy(rights) => inv::cnode_copy(
                    cnode,
                    index,
                    depth,
                    parent.cnode,
                    source,
                    parent.depth,
                    rights,
                ),
                Give::Mint(rights, badge) => inv::cnode_mint(
                    cnode,
                    index,
                    depth,
                    parent.cnode,
                    source,
                    parent.depth,
                    rights,
                    badge,
                ),
                Give::Move => {
                    inv::cnode_move(cnode, index, depth, parent.cnode, source, parent.depth)
                }
            },
        }
    }
}

/// Maps `frame` at `address` in `space` (a VSpace or a GuestSpace),
/// making page tables for the levels the walk lacks: the kernel installs
/// each new table at the first missing level, so each `FailedLookup` asks
/// for one more.
pub fn map_creating_tables(
    objects: &mut impl Objects,
    kernel: &mut impl Kernel,
    frame: u64,
    space: u64,
    address: u64,
    rights: CapRights,
    attributes: u64,
) -> Result<(), Error> {
    // A 39-bit space walks three levels and the root exists: at most two
    // tables are missing.
    for _ in 0..3 {
        match kernel.invoke(Invocation::FrameMap {
            frame,
            space,
            address,
            rights,
            attributes,
        }) {
            Err(Error::FailedLookup) => {
                let table = objects.make(ObjectType::PageTable, 0, 1)?;
                kernel.invoke(Invocation::PageTableMap {
                    table,
                    space,
                    address,
                })?;
            }
            other => return other,
        }
    }
    Err(Error::FailedLookup)
}
