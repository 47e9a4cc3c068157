//! Error codes returned by syscalls and object invocations.

/// Every way a syscall or invocation can fail.
///
/// The numeric values are ABI: a failed invocation returns the code in the
/// label of the reply [`MessageInfo`](crate::MessageInfo), and plain syscalls
/// return it in `x0`. `0` always means success and is not an `Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Error {
    /// An argument word is invalid for this operation (e.g. an unknown object
    /// type or a malformed flag set).
    InvalidArgument = 1,
    /// The capability is null or does not refer to a usable object.
    InvalidCapability = 2,
    /// The capability refers to an object of the wrong type for this use.
    WrongType = 3,
    /// The operation is not valid on this object in its current state
    /// (e.g. unknown invocation label, mapping an already mapped frame).
    IllegalOperation = 4,
    /// A numeric argument is outside the permitted range.
    RangeError = 5,
    /// An address or size is not suitably aligned.
    AlignmentError = 6,
    /// A capability address did not resolve to a slot.
    FailedLookup = 7,
    /// The message is shorter than the invocation requires.
    TruncatedMessage = 8,
    /// The destination slot is occupied: delete its capability first.
    DeleteFirst = 9,
    /// The object still has derived capabilities or children: revoke first.
    RevokeFirst = 10,
    /// The untyped region has too little free memory for the request.
    NotEnoughMemory = 11,
    /// The capability lacks a right the operation needs.
    InsufficientRights = 12,
    /// The syscall number is not one the kernel knows.
    InvalidSyscall = 13,
    /// A user-space buffer address is unmapped or lacks the needed access.
    InvalidUserBuffer = 14,
    /// The blocking operation was cancelled (object deleted, thread suspended).
    Cancelled = 15,
    /// A bounded queue or table is full; retry later.
    QueueFull = 16,
    /// A non-blocking operation found nothing to do (no message, no signal).
    WouldBlock = 17,
    /// Kernel-internal, never returned to user space: a long operation
    /// stopped at a preemption point because an interrupt is waiting. The
    /// kernel restarts the syscall once the thread runs again, and the
    /// operation continues where it stopped.
    Preempted = 18,
}

impl Error {
    /// Every error code, in numeric order.
    pub const ALL: [Error; 18] = [
        Error::InvalidArgument,
        Error::InvalidCapability,
        Error::WrongType,
        Error::IllegalOperation,
        Error::RangeError,
        Error::AlignmentError,
        Error::FailedLookup,
        Error::TruncatedMessage,
        Error::DeleteFirst,
        Error::RevokeFirst,
        Error::NotEnoughMemory,
        Error::InsufficientRights,
        Error::InvalidSyscall,
        Error::InvalidUserBuffer,
        Error::Cancelled,
        Error::QueueFull,
        Error::WouldBlock,
        Error::Preempted,
    ];

    /// The ABI code of this error.
    pub const fn code(self) -> u64 {
        self as u64
    }

    /// Decodes an ABI code; `None` for `0` (success) and unknown codes.
    pub fn from_code(code: u64) -> Option<Error> {
        Error::ALL.into_iter().find(|e| e.code() == code)
    }

    /// Converts a raw return word into a `Result`: `0` is success.
    #[inline]
    pub fn check(code: u64) -> Result<(), Error> {
        match code {
            0 => Ok(()),
            other => Err(Error::from_code(other).unwrap_or(Error::InvalidArgument)),
        }
    }

    /// A short, stable name for logs and test output.
    pub const fn name(self) -> &'static str {
        match self {
            Error::InvalidArgument => "InvalidArgument",
            Error::InvalidCapability => "InvalidCapability",
            Error::WrongType => "WrongType",
            Error::IllegalOperation => "IllegalOperation",
            Error::RangeError => "RangeError",
            Error::AlignmentError => "AlignmentError",
            Error::FailedLookup => "FailedLookup",
            Error::TruncatedMessage => "TruncatedMessage",
            Error::DeleteFirst => "DeleteFirst",
            Error::RevokeFirst => "RevokeFirst",
            Error::NotEnoughMemory => "NotEnoughMemory",
            Error::InsufficientRights => "InsufficientRights",
            Error::InvalidSyscall => "InvalidSyscall",
            Error::InvalidUserBuffer => "InvalidUserBuffer",
            Error::Cancelled => "Cancelled",
            Error::QueueFull => "QueueFull",
            Error::WouldBlock => "WouldBlock",
            Error::Preempted => "Preempted",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_dense() {
        for (i, e) in Error::ALL.iter().enumerate() {
            assert_eq!(e.code(), i as u64 + 1);
            assert_eq!(Error::from_code(e.code()), Some(*e));
        }
        assert_eq!(Error::from_code(0), None);
        assert_eq!(Error::from_code(999), None);
        assert_eq!(Error::check(0), Ok(()));
        assert_eq!(Error::check(12), Err(Error::InsufficientRights));
    }
}
