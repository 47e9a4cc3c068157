//! What a VMM process tells its parent: how its guest ended.
//!
//! A report is one message on the supervisor endpoint
//! ([`super::slots::SUPERVISOR`]): the label says what happened, four
//! words say more. The labels lie above the kernel's fault labels
//! ([`skyscope_abi::fault`]), so a parent may give the VMM's thread the
//! same endpoint (another badge) as its fault handler and tell a VMM's
//! report from the VMM's own fault by the label alone.

use skyscope_abi::fault;

/// Message labels.
pub mod label {
    /// The guest powered off (PSCI SYSTEM_OFF). Words: [`super::Stats`].
    pub const POWERED_OFF: u64 = 0x100;
    /// The guest asked for a reset (PSCI SYSTEM_RESET). Words:
    /// [`super::Stats`].
    pub const RESET: u64 = 0x101;
    /// The VMM stopped the guest: `[reason, detail, pc, exits]`.
    pub const FAILED: u64 = 0x102;
}

const _: () = assert!(label::POWERED_OFF > fault::GUEST_EXIT);

/// What a VMM counted while its guest ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Exits handled.
    pub exits: u64,
    /// Bytes the guest wrote to its UART.
    pub console_bytes: u64,
    /// Exits answered by default rather than by a model: calls answered
    /// NOT_SUPPORTED, loads of nothing read as zero, stores to nothing
    /// and trapped system registers ignored.
    pub defaulted: u64,
}

/// Why a VMM stopped its guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The start record is inconsistent (detail: [`super::StartError::code`]).
    StartRecord,
    /// An image could not be loaded into guest RAM (detail: 0 the window
    /// is smaller than the RAM, 1 the RAM cannot be placed, 2 the image
    /// lies outside the window, 3 it does not fit in RAM; pc: where it was
    /// to go).
    Load,
    /// A vCPU could not be started (detail: the kernel's error code).
    StartVcpu,
    /// Receiving or answering an exit failed (detail: the error code).
    Channel,
    /// Reading or writing a vCPU's registers failed (detail: the error
    /// code).
    Registers,
    /// The guest did what the board does not emulate (an SError, an
    /// instruction fetch from a hole, an access without syndrome; detail:
    /// the exit's syndrome).
    Guest,
    /// An exit came from no vCPU of this guest (detail: the badge).
    Stranger,
}

impl Failure {
    const ALL: [Failure; 7] = [
        Failure::StartRecord,
        Failure::Load,
        Failure::StartVcpu,
        Failure::Channel,
        Failure::Registers,
        Failure::Guest,
        Failure::Stranger,
    ];

    fn code(self) -> u64 {
        Failure::ALL.iter().position(|&f| f == self).unwrap_or(0) as u64 + 1
    }

    fn from_code(code: u64) -> Option<Failure> {
        Failure::ALL
            .get(usize::try_from(code).ok()?.checked_sub(1)?)
            .copied()
    }
}

/// A report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// The guest powered off.
    PoweredOff(Stats),
    /// The guest asked for a reset; the VMM stopped it.
    Reset(Stats),
    /// The VMM stopped the guest.
    Failed {
        /// Why.
        reason: Failure,
        /// More about it (see [`Failure`]).
        detail: u64,
        /// The guest's pc at the exit concerned (0 if none).
        pc: u64,
        /// Exits handled before.
        exits: u64,
    },
}

impl Report {
    /// The message: label and words.
    pub fn encode(&self) -> (u64, [u64; 4]) {
        match *self {
            Report::PoweredOff(s) => (label::POWERED_OFF, stats_words(s)),
            Report::Reset(s) => (label::RESET, stats_words(s)),
            Report::Failed {
                reason,
                detail,
                pc,
                exits,
            } => (label::FAILED, [reason.code(), detail, pc, exits]),
        }
    }

    /// Reads a message; `None` if it is not a report.
    pub fn decode(label: u64, words: [u64; 4]) -> Option<Report> {
        let stats = Stats {
            exits: words[0],
            console_bytes: words[1],
            defaulted: words[2],
        };
        match label {
            label::POWERED_OFF => Some(Report::PoweredOff(stats)),
            label::RESET => Some(Report::Reset(stats)),
            label::FAILED => Some(Report::Failed {
                reason: Failure::from_code(words[0])?,
                detail: words[1],
                pc: words[2],
                exits: words[3],
            }),
            _ => None,
        }
    }
}

fn stats_words(s: Stats) -> [u64; 4] {
    [s.exits, s.console_bytes, s.defaulted, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_faults_are_not_reports() {
        let stats = Stats {
            exits: 36,
            console_bytes: 28,
            defaulted: 5,
        };
        let mut all = std::vec![Report::PoweredOff(stats), Report::Reset(stats)];
        for reason in Failure::ALL {
            all.push(Report::Failed {
                reason,
                detail: 9,
                pc: 0x4000_0010,
                exits: 3,
            });
        }
        for r in all {
            let (l, w) = r.encode();
            assert_eq!(Report::decode(l, w), Some(r));
        }
        for l in [
            fault::VM_FAULT,
            fault::UNKNOWN_SYSCALL,
            fault::USER_EXCEPTION,
        ] {
            assert_eq!(Report::decode(l, [1, 2, 3, 4]), None);
        }
        assert_eq!(Report::decode(label::FAILED, [0, 0, 0, 0]), None);
        assert_eq!(Report::decode(label::FAILED, [99, 0, 0, 0]), None);
    }
}
