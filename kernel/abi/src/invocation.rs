//! Invocation labels and argument layouts of every kernel object.
//!
//! An invocation is a `Call` on a capability to a kernel object: the label
//! of the [`MessageInfo`](crate::MessageInfo) picks the operation, the
//! message words are its arguments (the first four in `x2..x5`, the rest in
//! the IPC buffer), and extra capabilities are named by their addresses in
//! the IPC buffer's `caps_or_badges` array. The kernel answers with a
//! message whose label is 0 on success or an [`Error`](crate::Error) code.
//!
//! Capability addresses (`CPtr`) are resolved through the caller's CSpace
//! as in seL4: each CNode on the way consumes its guard bits and then its
//! radix bits of the address, most significant first. Slot arguments are a
//! CNode capability (the invoked cap or an extra cap) plus an index and the
//! number of address bits (depth) to resolve it with.

/// Operation selectors, one number space for all objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Label {
    /// Untyped: `(type, size_bits, node_index, node_depth, node_offset,
    /// count)`, extra cap 0 = destination CNode root. Creates `count`
    /// objects in slots `node_offset..` of the CNode found at
    /// `(node_index, node_depth)` from that root (depth 0: the root itself).
    UntypedRetype = 1,

    /// CNode: `(dest_index, dest_depth, src_index, src_depth, rights)`,
    /// extra cap 0 = source root. Copies with rights masked by `rights`.
    CNodeCopy = 10,
    /// CNode: like `CNodeCopy` plus a sixth word: the badge (endpoints,
    /// notifications) or the guard `(guard_bits << 58) | guard` (CNodes).
    CNodeMint = 11,
    /// CNode: `(dest_index, dest_depth, src_index, src_depth)`, extra cap 0
    /// = source root. Moves the capability (and its derivation position).
    CNodeMove = 12,
    /// CNode: like `CNodeMove` plus the badge/guard word of `CNodeMint`;
    /// the moved capability is the mutated one (no new derivation).
    CNodeMutate = 13,
    /// CNode: `(index, depth)`. Deletes the capability in the slot.
    CNodeDelete = 14,
    /// CNode: `(index, depth)`. Deletes every capability derived from it.
    CNodeRevoke = 15,

    /// TCB: `(fault_ep_cptr, priority, cspace_guard_word, ipc_buffer_addr)`,
    /// extra caps = (CSpace root CNode, VSpace, IPC-buffer frame). The
    /// guard word is applied to the copied CSpace cap as in `CNodeMint`.
    TcbConfigure = 20,
    /// TCB: `(priority)`.
    TcbSetPriority = 21,
    /// TCB: `(count)`. Replies with the first `count` registers in the
    /// order of [`REGISTER_ORDER_DOC`].
    TcbReadRegisters = 22,
    /// TCB: `(count, values…)`. Writes the first `count` registers.
    TcbWriteRegisters = 23,
    /// TCB: no arguments. Starts (or restarts) the thread.
    TcbResume = 24,
    /// TCB: no arguments. Stops the thread, cancelling any blocking IPC.
    TcbSuspend = 25,
    /// TCB: extra cap 0 = notification. Signals to it also wake the thread
    /// while it waits on an endpoint.
    TcbBindNotification = 26,
    /// TCB: no arguments.
    TcbUnbindNotification = 27,

    /// Frame: `(address, rights, attributes)`, extra cap 0 = VSpace (maps
    /// at a virtual address) or GuestSpace (at a guest-physical address).
    FrameMap = 40,
    /// Frame: no arguments. Removes this capability's mapping.
    FrameUnmap = 41,
    /// Frame: no arguments. Replies with the physical address.
    FrameGetAddress = 42,

    /// PageTable: `(address)`, extra cap 0 = VSpace or GuestSpace. Installs
    /// the table at the first level of the address's walk that has no table.
    PageTableMap = 50,
    /// PageTable: no arguments.
    PageTableUnmap = 51,

    /// IRQControl: `(irq, dest_index, dest_depth)`, extra cap 0 = dest root.
    IrqControlGet = 60,
    /// IRQHandler: no arguments. Re-enables the line after handling.
    IrqHandlerAck = 61,
    /// IRQHandler: extra cap 0 = notification signalled (with its badge)
    /// when the interrupt fires; enables the line.
    IrqHandlerSetNotification = 62,

    /// SchedControl: `(budget_us, period_us)`, extra cap 0 = scheduling
    /// context. A thread on it runs at most `budget` in every `period`
    /// (a periodic server: the budget is refilled at each period boundary).
    SchedControlConfigure = 70,
    /// SchedContext: extra cap 0 = TCB to run on it.
    SchedContextBind = 71,
    /// SchedContext: no arguments. The bound thread stops being scheduled.
    SchedContextUnbind = 72,

    /// AuditLog: `(max)`. Removes up to `max` records (at most 5 fit one
    /// reply) and replies `[lost, count, records…]`, each record being
    /// [`crate::audit::Record::words`].
    AuditRead = 80,

    /// Vcpu: extra cap 0 = TCB. The thread runs as this virtual CPU (its
    /// VSpace slot must then hold a GuestSpace); a Vcpu and a TCB bind to
    /// one partner at a time.
    VcpuSetTcb = 90,
    /// Vcpu: `(register)`. Replies with the register's value (indices in
    /// [`crate::vcpu`], per architecture).
    VcpuReadRegister = 91,
    /// Vcpu: `(register, value)`.
    VcpuWriteRegister = 92,
    /// Vcpu: `(intid, priority, flags)` with flags from
    /// [`crate::vcpu::irq`]: raise, lower or fire one of the guest's
    /// virtual interrupts. A thread waiting in the guest's `wfi` wakes when
    /// something becomes pending for it.
    VcpuSetIrq = 93,
}

impl Label {
    /// Every label.
    pub const ALL: [Label; 31] = [
        Label::UntypedRetype,
        Label::CNodeCopy,
        Label::CNodeMint,
        Label::CNodeMove,
        Label::CNodeMutate,
        Label::CNodeDelete,
        Label::CNodeRevoke,
        Label::TcbConfigure,
        Label::TcbSetPriority,
        Label::TcbReadRegisters,
        Label::TcbWriteRegisters,
        Label::TcbResume,
        Label::TcbSuspend,
        Label::TcbBindNotification,
        Label::TcbUnbindNotification,
        Label::FrameMap,
        Label::FrameUnmap,
        Label::FrameGetAddress,
        Label::PageTableMap,
        Label::PageTableUnmap,
        Label::IrqControlGet,
        Label::IrqHandlerAck,
        Label::IrqHandlerSetNotification,
        Label::SchedControlConfigure,
        Label::SchedContextBind,
        Label::SchedContextUnbind,
        Label::AuditRead,
        Label::VcpuSetTcb,
        Label::VcpuReadRegister,
        Label::VcpuWriteRegister,
        Label::VcpuSetIrq,
    ];

    /// Decodes a message label.
    pub fn from_word(w: u64) -> Option<Label> {
        Label::ALL.into_iter().find(|l| *l as u64 == w)
    }
}

/// Order of registers in `TcbReadRegisters`/`TcbWriteRegisters` (aarch64):
/// pc, sp, spsr (flags only), x0..x30, tpidr_el0.
pub const REGISTER_ORDER_DOC: &str = "pc, sp, flags, x0..x30, tpidr";
/// Number of registers `TcbReadRegisters` can return.
pub const REGISTER_COUNT: usize = 35;
/// Index of the program counter in the register order.
pub const REG_PC: usize = 0;
/// Index of the stack pointer.
pub const REG_SP: usize = 1;
/// Index of the condition flags word.
pub const REG_FLAGS: usize = 2;
/// Index of x0 (x`n` is at `REG_X0 + n`).
pub const REG_X0: usize = 3;
/// Index of the thread pointer (TPIDR_EL0).
pub const REG_TPIDR: usize = 34;

/// Bit in `FrameMap`'s attribute word: allow instruction fetch.
pub const MAP_EXECUTE: u64 = 1 << 0;
/// Bit in `FrameMap`'s attribute word: device memory (nGnRE, uncached).
pub const MAP_DEVICE: u64 = 1 << 1;

/// Position of the guard-bits count in a CNode mint/configure guard word.
pub const GUARD_BITS_SHIFT: u32 = 58;

/// Builds a CNode guard word: `guard_bits` bits of `guard`.
pub const fn guard_word(guard: u64, guard_bits: u8) -> u64 {
    ((guard_bits as u64) << GUARD_BITS_SHIFT) | (guard & ((1 << GUARD_BITS_SHIFT) - 1))
}

/// The per-thread IPC buffer: message words past the four carried in
/// registers, and capability addresses for invocations and transfers.
#[derive(Clone)]
#[repr(C)]
pub struct IpcBuffer {
    /// Unused by the kernel; the message-info word for software use.
    pub tag: u64,
    /// Message words (0..4 mirror the registers; 4.. are read from here).
    pub msg: [u64; crate::message::MAX_MESSAGE_WORDS],
    /// Free for the thread's own use (e.g. a thread-local pointer).
    pub user_data: u64,
    /// Addresses of extra capabilities sent (or badges received).
    pub caps_or_badges: [u64; crate::message::MAX_EXTRA_CAPS],
    /// Where a received capability goes: CNode address, index, depth.
    pub receive_cnode: u64,
    /// Index within `receive_cnode`.
    pub receive_index: u64,
    /// Depth for resolving `receive_index`.
    pub receive_depth: u64,
}

/// Byte offset of `msg[0]` in the IPC buffer.
pub const IPC_BUFFER_MSG_OFFSET: usize = 8;
/// Byte offset of `caps_or_badges[0]` in the IPC buffer.
pub const IPC_BUFFER_CAPS_OFFSET: usize = 8 + 8 * crate::message::MAX_MESSAGE_WORDS + 8;
const _: () = assert!(core::mem::offset_of!(IpcBuffer, caps_or_badges) == IPC_BUFFER_CAPS_OFFSET);
const _: () = assert!(core::mem::size_of::<IpcBuffer>() <= 4096);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_decode() {
        for l in Label::ALL {
            assert_eq!(Label::from_word(l as u64), Some(l));
        }
        assert_eq!(Label::from_word(0), None);
        assert_eq!(guard_word(0b101, 3) >> GUARD_BITS_SHIFT, 3);
    }
}

/// The answer to a successful invocation.
#[derive(Clone, Copy, Debug)]
pub struct InvocationReply {
    /// Reply words (only the first `len` are meaningful).
    pub words: [u64; 40],
    /// Number of reply words.
    pub len: usize,
}

#[cfg(target_arch = "aarch64")]
mod user {
    use super::{InvocationReply, IpcBuffer, Label, guard_word};
    use crate::{
        CapRights, Error, MessageInfo, ObjectType,
        message::{MAX_EXTRA_CAPS, MAX_MESSAGE_WORDS, REGISTER_MESSAGE_WORDS},
        syscall::imp,
    };

    /// This thread's IPC buffer, whose address the kernel keeps in TPIDRRO_EL0.
    fn ipc_buffer() -> *mut IpcBuffer {
        let address: u64;
        // SAFETY: reading TPIDRRO_EL0 has no side effects.
        unsafe {
            core::arch::asm!("mrs {}, tpidrro_el0", out(reg) address, options(nomem, nostack))
        };
        address as *mut IpcBuffer
    }

    /// Invokes the capability at `cptr`: `label`, argument words and extra
    /// capability addresses in, the kernel's answer out.
    pub fn invoke(
        cptr: u64,
        label: Label,
        args: &[u64],
        caps: &[u64],
    ) -> Result<InvocationReply, Error> {
        if args.len() > MAX_MESSAGE_WORDS || caps.len() > MAX_EXTRA_CAPS {
            return Err(Error::InvalidArgument);
        }
        let buffer = ipc_buffer();
        if (args.len() > REGISTER_MESSAGE_WORDS || !caps.is_empty()) && buffer.is_null() {
            return Err(Error::TruncatedMessage);
        }
        let mut mrs = [0u64; REGISTER_MESSAGE_WORDS];
        for (i, &a) in args.iter().enumerate() {
            if i < REGISTER_MESSAGE_WORDS {
                mrs[i] = a;
            } else {
                // SAFETY: `buffer` is this thread's IPC buffer (set by the
                // kernel with the buffer's mapping) and `i` is in bounds.
                unsafe { (*buffer).msg[i] = a };
            }
        }
        for (i, &c) in caps.iter().enumerate() {
            // SAFETY: as above.
            unsafe { (*buffer).caps_or_badges[i] = c };
        }
        let info = MessageInfo::new(label as u64, args.len(), caps.len());
        let (reply_info, reply_mrs) = imp::call(cptr, info.raw(), mrs);
        let reply_info = MessageInfo::from_raw(reply_info);
        Error::check(reply_info.label())?;
        let mut reply = InvocationReply {
            words: [0; 40],
            len: reply_info.length().min(40),
        };
        for (i, word) in reply.words.iter_mut().enumerate().take(reply.len) {
            *word = match reply_mrs.get(i) {
                Some(&w) => w,
                // SAFETY: as above; the kernel wrote the reply words here.
                None => unsafe { (*buffer).msg[i] },
            };
        }
        Ok(reply)
    }

    fn unit(r: Result<InvocationReply, Error>) -> Result<(), Error> {
        r.map(drop)
    }

    /// `Untyped::Retype` (see [`Label::UntypedRetype`]).
    #[allow(clippy::too_many_arguments)]
    pub fn untyped_retype(
        untyped: u64,
        ty: ObjectType,
        size_bits: u64,
        root: u64,
        node_index: u64,
        node_depth: u64,
        offset: u64,
        count: u64,
    ) -> Result<(), Error> {
        unit(invoke(
            untyped,
            Label::UntypedRetype,
            &[ty as u64, size_bits, node_index, node_depth, offset, count],
            &[root],
        ))
    }

    /// `CNode::Copy`.
    pub fn cnode_copy(
        root: u64,
        dest: u64,
        dest_depth: u64,
        src_root: u64,
        src: u64,
        src_depth: u64,
        rights: CapRights,
    ) -> Result<(), Error> {
        unit(invoke(
            root,
            Label::CNodeCopy,
            &[dest, dest_depth, src, src_depth, u64::from(rights.bits())],
            &[src_root],
        ))
    }

    /// `CNode::Mint`.
    #[allow(clippy::too_many_arguments)]
    pub fn cnode_mint(
        root: u64,
        dest: u64,
        dest_depth: u64,
        src_root: u64,
        src: u64,
        src_depth: u64,
        rights: CapRights,
        data: u64,
    ) -> Result<(), Error> {
        unit(invoke(
            root,
            Label::CNodeMint,
            &[
                dest,
                dest_depth,
                src,
                src_depth,
                u64::from(rights.bits()),
                data,
            ],
            &[src_root],
        ))
    }

    /// `CNode::Move`.
    pub fn cnode_move(
        root: u64,
        dest: u64,
        dest_depth: u64,
        src_root: u64,
        src: u64,
        src_depth: u64,
    ) -> Result<(), Error> {
        unit(invoke(
            root,
            Label::CNodeMove,
            &[dest, dest_depth, src, src_depth],
            &[src_root],
        ))
    }

    /// `CNode::Mutate`.
    pub fn cnode_mutate(
        root: u64,
        dest: u64,
        dest_depth: u64,
        src_root: u64,
        src: u64,
        src_depth: u64,
        data: u64,
    ) -> Result<(), Error> {
        unit(invoke(
            root,
            Label::CNodeMutate,
            &[dest, dest_depth, src, src_depth, data],
            &[src_root],
        ))
    }

    /// `CNode::Delete`.
    pub fn cnode_delete(root: u64, index: u64, depth: u64) -> Result<(), Error> {
        unit(invoke(root, Label::CNodeDelete, &[index, depth], &[]))
    }

    /// `CNode::Revoke`.
    pub fn cnode_revoke(root: u64, index: u64, depth: u64) -> Result<(), Error> {
        unit(invoke(root, Label::CNodeRevoke, &[index, depth], &[]))
    }

    /// `TCB::Configure`: CSpace root (with a guard of `guard_bits` zero
    /// bits), VSpace, IPC buffer (`ipc_frame` 0 for none), fault endpoint
    /// (0 for none) and priority.
    #[allow(clippy::too_many_arguments)]
    pub fn tcb_configure(
        tcb: u64,
        fault_ep: u64,
        priority: u8,
        cspace: u64,
        guard_bits: u8,
        vspace: u64,
        ipc_buffer: u64,
        ipc_frame: u64,
    ) -> Result<(), Error> {
        let args = [
            fault_ep,
            u64::from(priority),
            guard_word(0, guard_bits),
            ipc_buffer,
        ];
        if ipc_frame == 0 {
            unit(invoke(tcb, Label::TcbConfigure, &args, &[cspace, vspace]))
        } else {
            unit(invoke(
                tcb,
                Label::TcbConfigure,
                &args,
                &[cspace, vspace, ipc_frame],
            ))
        }
    }

    /// `TCB::SetPriority`.
    pub fn tcb_set_priority(tcb: u64, priority: u8) -> Result<(), Error> {
        unit(invoke(
            tcb,
            Label::TcbSetPriority,
            &[u64::from(priority)],
            &[],
        ))
    }

    /// `TCB::ReadRegisters`: the first `count` registers.
    pub fn tcb_read_registers(tcb: u64, count: usize) -> Result<InvocationReply, Error> {
        invoke(tcb, Label::TcbReadRegisters, &[count as u64], &[])
    }

    /// `TCB::WriteRegisters`: the first `values.len()` registers.
    pub fn tcb_write_registers(tcb: u64, values: &[u64]) -> Result<(), Error> {
        let mut args = [0u64; 1 + super::REGISTER_COUNT];
        let n = values.len().min(super::REGISTER_COUNT);
        args[0] = n as u64;
        args[1..=n].copy_from_slice(&values[..n]);
        unit(invoke(tcb, Label::TcbWriteRegisters, &args[..=n], &[]))
    }

    /// `TCB::Resume`.
    pub fn tcb_resume(tcb: u64) -> Result<(), Error> {
        unit(invoke(tcb, Label::TcbResume, &[], &[]))
    }

    /// `TCB::Suspend`.
    pub fn tcb_suspend(tcb: u64) -> Result<(), Error> {
        unit(invoke(tcb, Label::TcbSuspend, &[], &[]))
    }

    /// `Frame::Map`.
    pub fn frame_map(
        frame: u64,
        vspace: u64,
        vaddr: u64,
        rights: CapRights,
        attributes: u64,
    ) -> Result<(), Error> {
        unit(invoke(
            frame,
            Label::FrameMap,
            &[vaddr, u64::from(rights.bits()), attributes],
            &[vspace],
        ))
    }

    /// `Frame::Unmap`.
    pub fn frame_unmap(frame: u64) -> Result<(), Error> {
        unit(invoke(frame, Label::FrameUnmap, &[], &[]))
    }

    /// `Frame::GetAddress`: the frame's physical address.
    pub fn frame_get_address(frame: u64) -> Result<u64, Error> {
        invoke(frame, Label::FrameGetAddress, &[], &[]).map(|r| r.words[0])
    }

    /// `PageTable::Map`.
    pub fn page_table_map(table: u64, vspace: u64, vaddr: u64) -> Result<(), Error> {
        unit(invoke(table, Label::PageTableMap, &[vaddr], &[vspace]))
    }

    /// `PageTable::Unmap`.
    pub fn page_table_unmap(table: u64) -> Result<(), Error> {
        unit(invoke(table, Label::PageTableUnmap, &[], &[]))
    }

    /// `IRQControl::Get`.
    pub fn irq_control_get(
        control: u64,
        irq: u64,
        root: u64,
        index: u64,
        depth: u64,
    ) -> Result<(), Error> {
        unit(invoke(
            control,
            Label::IrqControlGet,
            &[irq, index, depth],
            &[root],
        ))
    }

    /// `TCB::BindNotification`.
    pub fn tcb_bind_notification(tcb: u64, notification: u64) -> Result<(), Error> {
        unit(invoke(
            tcb,
            Label::TcbBindNotification,
            &[],
            &[notification],
        ))
    }

    /// `TCB::UnbindNotification`.
    pub fn tcb_unbind_notification(tcb: u64) -> Result<(), Error> {
        unit(invoke(tcb, Label::TcbUnbindNotification, &[], &[]))
    }

    /// `SchedControl::Configure`: `budget_us` of CPU time per `period_us`.
    pub fn sched_control_configure(
        control: u64,
        sched_context: u64,
        budget_us: u64,
        period_us: u64,
    ) -> Result<(), Error> {
        unit(invoke(
            control,
            Label::SchedControlConfigure,
            &[budget_us, period_us],
            &[sched_context],
        ))
    }

    /// `SchedContext::Bind`: the thread runs on this scheduling context.
    pub fn sched_context_bind(sched_context: u64, tcb: u64) -> Result<(), Error> {
        unit(invoke(sched_context, Label::SchedContextBind, &[], &[tcb]))
    }

    /// `SchedContext::Unbind`.
    pub fn sched_context_unbind(sched_context: u64) -> Result<(), Error> {
        unit(invoke(sched_context, Label::SchedContextUnbind, &[], &[]))
    }

    /// `IRQHandler::SetNotification`.
    pub fn irq_handler_set_notification(handler: u64, notification: u64) -> Result<(), Error> {
        unit(invoke(
            handler,
            Label::IrqHandlerSetNotification,
            &[],
            &[notification],
        ))
    }

    /// Records one `AuditLog::Read` returns at most.
    pub const AUDIT_READ_MAX: usize = 5;

    /// `AuditLog::Read`: `(lost, records)` with up to [`AUDIT_READ_MAX`]
    /// records, oldest first.
    pub fn audit_read(
        log: u64,
        out: &mut [crate::audit::Record; AUDIT_READ_MAX],
    ) -> Result<(u64, usize), Error> {
        use crate::audit::{RECORD_WORDS, Record};
        let r = invoke(log, Label::AuditRead, &[AUDIT_READ_MAX as u64], &[])?;
        let count = (r.words[1] as usize).min(AUDIT_READ_MAX);
        for (i, record) in out.iter_mut().enumerate().take(count) {
            let at = 2 + RECORD_WORDS * i;
            let mut w = [0u64; RECORD_WORDS];
            w.copy_from_slice(&r.words[at..at + RECORD_WORDS]);
            *record = Record::from_words(w);
        }
        Ok((r.words[0], count))
    }

    /// `IRQHandler::Ack`.
    pub fn irq_handler_ack(handler: u64) -> Result<(), Error> {
        unit(invoke(handler, Label::IrqHandlerAck, &[], &[]))
    }

    /// `Vcpu::SetTcb`: `tcb` runs as this virtual CPU.
    pub fn vcpu_set_tcb(vcpu: u64, tcb: u64) -> Result<(), Error> {
        unit(invoke(vcpu, Label::VcpuSetTcb, &[], &[tcb]))
    }

    /// `Vcpu::ReadRegister`.
    pub fn vcpu_read_register(vcpu: u64, register: u64) -> Result<u64, Error> {
        invoke(vcpu, Label::VcpuReadRegister, &[register], &[]).map(|r| r.words[0])
    }

    /// `Vcpu::WriteRegister`.
    pub fn vcpu_write_register(vcpu: u64, register: u64, value: u64) -> Result<(), Error> {
        unit(invoke(
            vcpu,
            Label::VcpuWriteRegister,
            &[register, value],
            &[],
        ))
    }

    /// `Vcpu::SetIrq`: drives virtual interrupt `intid` (flags from
    /// [`crate::vcpu::irq`]).
    pub fn vcpu_set_irq(vcpu: u64, intid: u32, priority: u8, flags: u64) -> Result<(), Error> {
        unit(invoke(
            vcpu,
            Label::VcpuSetIrq,
            &[u64::from(intid), u64::from(priority), flags],
            &[],
        ))
    }
}

#[cfg(target_arch = "aarch64")]
pub use user::*;
