//! Audit-stream scenarios.

use crate::{
    Outcome,
    support::{Env, ROOT, ROOT_DEPTH},
};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use skyscope_abi::{
    BootInfo, CapRights, Error, Label, ObjectType,
    audit::{self, Kind, Record},
    bootinfo::slots,
    invocation::{self as inv, AUDIT_READ_MAX},
    println,
};

/// Drains the whole stream; returns (lost, records seen, whether `want` matched one).
fn drain(log: u64, mut want: impl FnMut(&Record) -> bool) -> Result<(u64, u64, bool), Error> {
    let mut out = [Record::default(); AUDIT_READ_MAX];
    let (mut lost, mut seen, mut found) = (0, 0, false);
    loop {
        let (l, n) = inv::audit_read(log, &mut out)?;
        lost = lost.max(l);
        seen += n as u64;
        found |= out[..n].iter().any(&mut want);
        if n == 0 {
            return Ok((lost, seen, found));
        }
    }
}

pub fn denied_invocation_recorded(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    drain(slots::AUDIT_LOG, |_| false).map_err(|e| fail!("drain: {e}"))?;
    let ut = env.private_untyped(16).map_err(|e| fail!("{e}"))?;
    let tcb = env
        .retype(ut, ObjectType::Tcb, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let read_only = env.copy(tcb, CapRights::READ).map_err(|e| fail!("{e}"))?;
    check_eq!(inv::tcb_resume(read_only), Err(Error::InsufficientRights));
    let (_, _, found) = drain(slots::AUDIT_LOG, |r| {
        r.kind() == Some(Kind::Denied)
            && r.object == read_only
            && r.detail == Label::TcbResume as u64
            && r.reason == Error::InsufficientRights.code()
    })
    .map_err(|e| fail!("drain: {e}"))?;
    check!(
        found,
        "no record of the refused TcbResume on slot {read_only}"
    );
    // Deleting the last capability to an object is recorded too.
    env.retype(ut, ObjectType::Endpoint, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    let (_, _, found) = drain(slots::AUDIT_LOG, |r| {
        r.kind() == Some(Kind::Finalised) && r.detail == ObjectType::Endpoint as u64
    })
    .map_err(|e| fail!("drain: {e}"))?;
    check!(found, "no record of the endpoint finalised by the revoke");
    println!(
        "  the refused invocation (cap, label, reason) and the finalised endpoint are in the stream"
    );
    Ok(())
}

pub fn reader_needs_cap(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    // Without READ the stream cannot be drained; other capabilities cannot read it.
    let blind = env
        .copy(slots::AUDIT_LOG, CapRights::WRITE)
        .map_err(|e| fail!("{e}"))?;
    let mut out = [Record::default(); AUDIT_READ_MAX];
    check_eq!(
        inv::audit_read(blind, &mut out).map(|r| r.1),
        Err(Error::InsufficientRights)
    );
    check_eq!(
        inv::invoke(slots::TCB, Label::AuditRead, &[6], &[]).map(drop),
        Err(Error::IllegalOperation)
    );
    check_eq!(
        inv::invoke(slots::CNODE, Label::AuditRead, &[6], &[]).map(drop),
        Err(Error::IllegalOperation)
    );
    let empty = env.slot();
    check_eq!(
        inv::audit_read(empty, &mut out).map(|r| r.1),
        Err(Error::InvalidCapability)
    );
    // The holder of the capability can.
    check!(
        inv::audit_read(slots::AUDIT_LOG, &mut out).is_ok(),
        "the audit capability could not read"
    );
    println!("  only a capability to the audit log with READ drains it");
    Ok(())
}

pub fn overflow_counted(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    drain(slots::AUDIT_LOG, |_| false).map_err(|e| fail!("drain: {e}"))?;
    let empty = env.slot();
    // 300 refusals into a 256-record ring: the kernel keeps going and counts.
    for _ in 0..300 {
        check_eq!(inv::tcb_resume(empty), Err(Error::InvalidCapability));
    }
    let (lost, seen, _) = drain(slots::AUDIT_LOG, |_| false).map_err(|e| fail!("drain: {e}"))?;
    println!("  300 refusals: {seen} records read, {lost} counted lost");
    check!(
        lost >= 44,
        "expected at least 44 lost records, the kernel counted {lost}"
    );
    check!(
        seen >= 256,
        "the ring should have been full ({seen} records)"
    );
    // Once drained, recording resumes.
    check_eq!(inv::tcb_resume(empty), Err(Error::InvalidCapability));
    let (_, seen, found) = drain(slots::AUDIT_LOG, |r| {
        r.kind() == Some(Kind::Denied) && r.object == empty
    })
    .map_err(|e| fail!("{e}"))?;
    check!(found && seen >= 1, "no record after draining");
    Ok(())
}

/// Every record of the stream, in order (at most `N`).
fn collect<const N: usize>(log: u64) -> Result<([Record; N], usize), Error> {
    let mut all = [Record::default(); N];
    let mut count = 0;
    let mut out = [Record::default(); AUDIT_READ_MAX];
    loop {
        let (_, n) = inv::audit_read(log, &mut out)?;
        for r in &out[..n] {
            if count < N {
                all[count] = *r;
                count += 1;
            }
        }
        if n == 0 {
            return Ok((all, count));
        }
    }
}

/// Issuance (retype, an IRQ handler), delegation (copy, mint, move, a
/// capability sent in a message), mapping and unmapping, Vcpu binding and
/// revocation each leave a timestamped record naming the thread, the
/// object and how.
pub fn authority_changes_recorded(info: &'static BootInfo) -> Outcome {
    use skyscope_abi::ipc;
    let mut env = Env::new(info);
    let ut = env.private_untyped(18).map_err(|e| fail!("{e}"))?;
    drain(slots::AUDIT_LOG, |_| false).map_err(|e| fail!("drain: {e}"))?;
    let e = |e| fail!("{e}");
    let ep = env.retype(ut, ObjectType::Endpoint, 0, 1).map_err(e)?;
    let copy = env
        .copy(ep, CapRights::READ | CapRights::WRITE)
        .map_err(e)?;
    let minted = env.mint(ep, CapRights::WRITE, 7).map_err(e)?;
    let moved = env.slot();
    check_ok!(inv::cnode_move(
        ROOT, moved, ROOT_DEPTH, ROOT, copy, ROOT_DEPTH
    ));
    let frame = env.retype(ut, ObjectType::Frame4K, 0, 1).map_err(e)?;
    let frame_address = inv::frame_get_address(frame).map_err(e)?;
    let va = 0x33_0000_0000;
    crate::support::map_into(&mut env, ut, slots::VSPACE, frame, va, CapRights::ALL, 0)
        .map_err(e)?;
    check_ok!(inv::frame_unmap(frame));
    let irq = env.slot();
    check_ok!(inv::irq_control_get(
        slots::IRQ_CONTROL,
        40,
        ROOT,
        irq,
        ROOT_DEPTH
    ));
    let vcpu = env.retype(ut, ObjectType::Vcpu, 0, 1).map_err(e)?;
    let tcb = env.retype(ut, ObjectType::Tcb, 0, 1).map_err(e)?;
    check_ok!(inv::vcpu_set_tcb(vcpu, tcb));
    // A capability sent in a message: a thread receives it.
    let reply = env.retype(ut, ObjectType::Reply, 0, 1).map_err(e)?;
    for (i, v) in [ep, reply, env.slot()].into_iter().enumerate() {
        RECEIVER[i].store(v, SeqCst);
    }
    crate::support::spawn(&mut env, ut, 0, receiver, 0, 254, 10_000, 10_000).map_err(e)?;
    crate::support::ipc_buffer().caps_or_badges[0] = frame;
    let sent = ipc::call(ep, skyscope_abi::MessageInfo::new(0, 0, 1), [0; 4])
        .map_err(|e| fail!("call: {e}"))?;
    check_eq!(sent.info.label(), 1); // the receiver got one capability
    check_ok!(inv::cnode_revoke(ROOT, ep, ROOT_DEPTH));
    let (records, n) = collect::<64>(slots::AUDIT_LOG).map_err(|e| fail!("drain: {e}"))?;
    let records = &records[..n];
    let find = |kind: Kind, pred: &dyn Fn(&Record) -> bool| {
        records
            .iter()
            .position(|r| r.kind() == Some(kind) && pred(r))
    };
    let steps = [
        (
            "retype of the endpoint",
            find(Kind::Issued, &|r| {
                r.detail == ObjectType::Endpoint as u64 && r.reason == 1
            }),
        ),
        (
            "copy",
            find(Kind::Delegated, &|r| {
                r.detail == audit::COPY
                    && r.reason == u64::from((CapRights::READ | CapRights::WRITE).bits())
            }),
        ),
        (
            "mint",
            find(Kind::Delegated, &|r| {
                r.detail == audit::MINT && r.reason == u64::from(CapRights::WRITE.bits())
            }),
        ),
        ("move", find(Kind::Delegated, &|r| r.detail == audit::MOVE)),
        (
            "frame map",
            find(Kind::Mapped, &|r| {
                r.object == frame_address && r.detail == va
            }),
        ),
        (
            "frame unmap",
            find(Kind::Unmapped, &|r| {
                r.object == frame_address && r.detail == va
            }),
        ),
        (
            "IRQ handler",
            find(Kind::Issued, &|r| {
                r.detail == audit::ISSUED_IRQ_HANDLER && r.object == 40
            }),
        ),
        ("Vcpu binding", find(Kind::Bound, &|_| true)),
        (
            "capability sent in a message",
            find(Kind::Delegated, &|r| {
                r.detail == audit::TRANSFER && r.object == frame_address
            }),
        ),
        (
            "revoke",
            find(Kind::Revoked, &|r| r.detail == ObjectType::Endpoint as u64),
        ),
    ];
    let mut last = 0;
    for (what, at) in steps {
        let Some(at) = at else {
            check!(false, "no audit record of the {what}");
            unreachable!();
        };
        check!(at >= last, "the {what} is recorded out of order");
        last = at;
    }
    // Timestamps never go backwards; every change of authority names the
    // root task, which made it (lifecycle records name the thread started).
    let root_tcb = records[0].thread;
    for w in records.windows(2) {
        check!(w[0].time <= w[1].time, "timestamps go backwards: {:?}", w);
        check!(w[1].sequence == w[0].sequence + 1, "sequence gap: {:?}", w);
    }
    let authority = |r: &&Record| {
        matches!(
            r.kind(),
            Some(
                Kind::Issued
                    | Kind::Delegated
                    | Kind::Revoked
                    | Kind::Mapped
                    | Kind::Unmapped
                    | Kind::Bound
            )
        )
    };
    check!(
        records
            .iter()
            .filter(authority)
            .all(|r| r.thread == root_tcb && r.thread != 0),
        "a change of authority names another thread"
    );
    println!(
        "  {n} records: issuance, delegation, mapping, binding and revocation, in order, timestamped"
    );
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    check_ok!(inv::cnode_delete(ROOT, irq, ROOT_DEPTH));
    let _ = minted;
    Ok(())
}

/// Endpoint, reply object and receive slot of [`receiver`].
static RECEIVER: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Receives one message with a capability, answers with how many came.
extern "C" fn receiver(_: u64) -> ! {
    use skyscope_abi::{MessageInfo, ipc};
    let [ep, reply, slot] = [0, 1, 2].map(|i| RECEIVER[i].load(SeqCst));
    let b = crate::support::ipc_buffer();
    b.receive_cnode = ROOT;
    b.receive_index = slot;
    b.receive_depth = ROOT_DEPTH;
    if let Ok(r) = ipc::recv(ep, reply) {
        let _ = ipc::reply(
            reply,
            MessageInfo::new(r.info.extra_caps() as u64, 0, 0),
            [0; 4],
        );
    }
    loop {
        skyscope_abi::syscall::wait_for_interrupt();
    }
}
