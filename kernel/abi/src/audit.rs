//! The audit stream's record layout: what the kernel appends for every
//! security-relevant event, and what a holder of the `AuditLog`
//! capability reads back with `AuditLog::Read` (in the CMSR seed's terms:
//! issuance, delegation and revocation of authority, refusals, faults and
//! thread lifecycle).

/// Words per record in an `AuditRead` reply.
pub const RECORD_WORDS: usize = 7;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Kind {
    /// An invocation or IPC syscall was refused: `object` = capability
    /// address, `detail` = label, `reason` = error code.
    Denied = 1,
    /// The last capability to an object went: `object` = its address,
    /// `detail` = its object type.
    Finalised = 2,
    /// A thread faulted: `object` = pc, `detail` = fault label.
    Fault = 3,
    /// A thread was started (`detail` = 1), stopped (2) or destroyed (3);
    /// `object` = 0.
    Lifecycle = 4,
    /// New authority: retype made objects (`object` = first object's
    /// address, `detail` = object type, `reason` = count), or IRQ control
    /// issued a handler (`object` = IRQ number, `detail` =
    /// [`ISSUED_IRQ_HANDLER`], `reason` = 1).
    Issued = 5,
    /// A capability was handed on: `object` = its object's address (0 for
    /// object-less capabilities), `detail` = how ([`COPY`], [`MINT`],
    /// [`MOVE`], [`TRANSFER`]), `reason` = the new capability's rights.
    Delegated = 6,
    /// Every capability derived from one was deleted: `object` = its
    /// object's address, `detail` = its object type (0 if none).
    Revoked = 7,
    /// A frame or page table was mapped: `object` = its address,
    /// `detail` = virtual (or guest-physical) address, `reason` = the
    /// space's identifier (ASID or VMID).
    Mapped = 8,
    /// A frame or page table was unmapped (as [`Kind::Mapped`]).
    Unmapped = 9,
    /// A Vcpu was bound to a thread: `object` = Vcpu, `detail` = TCB.
    Bound = 10,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 10] = [
        Kind::Denied,
        Kind::Finalised,
        Kind::Fault,
        Kind::Lifecycle,
        Kind::Issued,
        Kind::Delegated,
        Kind::Revoked,
        Kind::Mapped,
        Kind::Unmapped,
        Kind::Bound,
    ];

    /// Decodes a kind word.
    pub fn from_word(w: u64) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u64 == w)
    }
}

/// [`Kind::Delegated`] detail: `CNode::Copy`.
pub const COPY: u64 = 1;
/// [`Kind::Delegated`] detail: `CNode::Mint`.
pub const MINT: u64 = 2;
/// [`Kind::Delegated`] detail: `CNode::Move` or `Mutate`.
pub const MOVE: u64 = 3;
/// [`Kind::Delegated`] detail: transfer in an IPC message.
pub const TRANSFER: u64 = 4;
/// [`Kind::Issued`] detail of an IRQ handler capability.
pub const ISSUED_IRQ_HANDLER: u64 = 0x100;

/// One record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Sequence number (counts every event, lost ones included).
    pub sequence: u64,
    /// What happened ([`Kind`] as a word).
    pub kind: u64,
    /// The kernel's counter when it happened (the boot info's timer
    /// frequency converts it to time).
    pub time: u64,
    /// The thread concerned (its TCB address; 0 if none).
    pub thread: u64,
    /// See [`Kind`].
    pub object: u64,
    /// See [`Kind`].
    pub detail: u64,
    /// See [`Kind`].
    pub reason: u64,
}

impl Record {
    /// The record as reply words.
    pub fn words(&self) -> [u64; RECORD_WORDS] {
        [
            self.sequence,
            self.kind,
            self.time,
            self.thread,
            self.object,
            self.detail,
            self.reason,
        ]
    }

    /// A record from reply words.
    pub fn from_words(w: [u64; RECORD_WORDS]) -> Record {
        Record {
            sequence: w[0],
            kind: w[1],
            time: w[2],
            thread: w[3],
            object: w[4],
            detail: w[5],
            reason: w[6],
        }
    }

    /// The kind, if known.
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_word(self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_kinds_decode() {
        let r = Record {
            sequence: 1,
            kind: Kind::Mapped as u64,
            time: 3,
            thread: 4,
            object: 5,
            detail: 6,
            reason: 7,
        };
        assert_eq!(Record::from_words(r.words()), r);
        assert_eq!(r.kind(), Some(Kind::Mapped));
        for k in Kind::ALL {
            assert_eq!(Kind::from_word(k as u64), Some(k));
        }
        assert_eq!(Kind::from_word(0), None);
    }
}
