//! Audit-stream scenarios.

use crate::{
    Outcome,
    support::{Env, ROOT, ROOT_DEPTH},
};
use skyscope_abi::{
    BootInfo, CapRights, Error, Label, ObjectType, bootinfo::slots, invocation as inv, println,
};

const DENIED: u64 = 1;
const FINALISED: u64 = 2;

/// Drains the whole stream; returns (lost, records seen, whether `want` matched one).
fn drain(log: u64, mut want: impl FnMut(&[u64; 6]) -> bool) -> Result<(u64, u64, bool), Error> {
    let mut out = [[0u64; 6]; 6];
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
        r[1] == DENIED
            && r[3] == read_only
            && r[4] == Label::TcbResume as u64
            && r[5] == Error::InsufficientRights.code()
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
        r[1] == FINALISED && r[4] == ObjectType::Endpoint as u64
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
    let mut out = [[0u64; 6]; 6];
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
    let (_, seen, found) =
        drain(slots::AUDIT_LOG, |r| r[1] == DENIED && r[3] == empty).map_err(|e| fail!("{e}"))?;
    check!(found && seen >= 1, "no record after draining");
    Ok(())
}
