//! The audit stream: security-relevant events in a bounded ring.
//!
//! The kernel appends a timestamped record (layout in
//! `skyscope_abi::audit`) for every issuance of authority (retype, IRQ
//! handlers), delegation (copy, mint, move, transfer in a message),
//! revocation, mapping and unmapping, Vcpu binding, refused invocation or
//! IPC syscall, finalised object, thread fault and thread start, stop and
//! destruction. The ring never blocks the kernel: when it is full, new
//! events are counted as lost. Only a holder of the `AuditLog` capability
//! (with READ) can drain it.

use crate::PhysAddr;

/// Records the ring holds.
pub const AUDIT_CAPACITY: usize = 256;
pub use skyscope_abi::audit::{Kind as AuditKind, RECORD_WORDS, Record as AuditRecord};

/// The ring.
#[derive(Clone)]
pub struct AuditLog {
    records: [Option<AuditRecord>; AUDIT_CAPACITY],
    head: usize,
    len: usize,
    sequence: u64,
    /// Events dropped because the ring was full.
    pub lost: u64,
}

impl Default for AuditLog {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditLog {
    /// An empty ring.
    pub const fn new() -> AuditLog {
        AuditLog {
            records: [None; AUDIT_CAPACITY],
            head: 0,
            len: 0,
            sequence: 0,
            lost: 0,
        }
    }

    /// Appends an event that happened at `time`, or counts it lost if the
    /// ring is full.
    pub fn record(
        &mut self,
        kind: AuditKind,
        time: u64,
        thread: PhysAddr,
        object: u64,
        detail: u64,
        reason: u64,
    ) {
        let sequence = self.sequence;
        self.sequence += 1;
        if self.len == AUDIT_CAPACITY {
            self.lost += 1;
            return;
        }
        let at = (self.head + self.len) % AUDIT_CAPACITY;
        self.records[at] = Some(AuditRecord {
            sequence,
            kind: kind as u64,
            time,
            thread: thread.0,
            object,
            detail,
            reason,
        });
        self.len += 1;
    }

    /// Removes and returns the oldest event.
    pub fn pop(&mut self) -> Option<AuditRecord> {
        if self.len == 0 {
            return None;
        }
        let r = self.records[self.head].take();
        self.head = (self.head + 1) % AUDIT_CAPACITY;
        self.len -= 1;
        r
    }

    /// Events waiting to be read.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits to be read.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<M: crate::machine::Machine> crate::kernel::Kernel<M> {
    /// Records an event of the running thread, timestamped now.
    pub(crate) fn audit_event(&mut self, kind: AuditKind, object: u64, detail: u64, reason: u64) {
        let time = self.machine.now();
        let thread = self.current.unwrap_or(PhysAddr(0));
        self.audit
            .record(kind, time, thread, object, detail, reason);
    }

    /// `AuditLog::Read(max)`: replies `[lost, count, records…]`, oldest
    /// first, at most `max` records (and at most what one reply holds).
    pub(crate) fn invoke_audit_log(
        &mut self,
        rights: skyscope_abi::CapRights,
        inv: &crate::kernel::Invocation<'_>,
    ) -> Result<crate::kernel::Reply, skyscope_abi::Error> {
        use skyscope_abi::{Error, Label};
        if skyscope_abi::Label::from_word(inv.label) != Some(Label::AuditRead) {
            return Err(Error::IllegalOperation);
        }
        if !rights.contains(skyscope_abi::CapRights::READ) {
            return Err(Error::InsufficientRights);
        }
        let fits = (crate::kernel::MAX_REPLY_WORDS - 2) / RECORD_WORDS;
        let max = usize::try_from(inv.arg(0)?).unwrap_or(usize::MAX).min(fits);
        let mut reply = crate::kernel::Reply::empty();
        reply.push(self.audit.lost);
        let count = max.min(self.audit.len());
        reply.push(count as u64);
        for _ in 0..count {
            if let Some(r) = self.audit.pop() {
                for w in r.words() {
                    reply.push(w);
                }
            }
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_counted_never_blocks() {
        let mut log = AuditLog::new();
        for i in 0..AUDIT_CAPACITY as u64 + 10 {
            log.record(AuditKind::Denied, i, PhysAddr(1), i, 0, 0);
        }
        assert_eq!(log.len(), AUDIT_CAPACITY);
        assert_eq!(log.lost, 10);
        assert_eq!(log.pop().map(|r| r.object), Some(0));
        log.record(AuditKind::Fault, 7, PhysAddr(2), 99, 0, 0);
        let last = core::iter::from_fn(|| log.pop()).last().unwrap();
        assert_eq!(
            (last.object, last.sequence),
            (99, AUDIT_CAPACITY as u64 + 10)
        );
    }
}
