//! The exit channel: where a VMM receives its guest's exits and how it
//! answers them.
//!
//! A guest's vCPU thread has a fault-handler capability naming an endpoint
//! of the VMM. Every exit arrives there as a [`fault::GUEST_EXIT`] message
//! (the vCPU thread waits as if it had made a `Call`); the VMM decodes it
//! ([`ExitMessage`]), emulates what the guest did, and replies with a
//! [`Resume`], which restarts the vCPU. Receiving and replying are the only
//! syscalls here; the decoding and the reply encoding are plain code.

use crate::arch::Exit;
use skyscope_abi::{fault, invocation::REG_X0, ipc::Received};

/// Where a VMM receives one guest's exits: the endpoint the vCPU thread's
/// fault-handler capability names, and the reply object to answer with.
#[derive(Clone, Copy, Debug)]
pub struct ExitChannel {
    /// Endpoint (receive right).
    pub endpoint: u64,
    /// Reply object.
    pub reply: u64,
}

/// One message received on an exit channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitMessage {
    /// Badge of the sender's fault-handler capability (which vCPU).
    pub badge: u64,
    /// Fault label: [`fault::GUEST_EXIT`] for guest exits; other labels
    /// are faults of native threads sharing the endpoint.
    pub label: u64,
    /// Address of the trapping instruction.
    pub pc: u64,
    /// The decoded exit ([`Exit::Unsupported`] for other labels).
    pub exit: Exit,
    /// The raw words.
    pub words: [u64; fault::WORDS],
}

impl ExitMessage {
    /// Whether this is the signal of a notification bound to the
    /// receiving thread rather than a message: the kernel returns a bound
    /// notification's word as the badge with an empty message info (label
    /// 0, no words), and every fault label is above 0.
    pub fn is_notification(&self) -> bool {
        self.label == 0
    }

    /// Decodes a received message.
    pub fn decode(r: Received) -> ExitMessage {
        let label = r.info.label();
        let exit = if label == fault::GUEST_EXIT {
            Exit::decode(r.words)
        } else {
            Exit::Unsupported
        };
        ExitMessage {
            badge: r.badge,
            label,
            pc: r.words[0],
            exit,
            words: r.words,
        }
    }
}

/// How the VMM answers an exit (the reply message to the fault).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// Continue after the trapping instruction (else retry it).
    pub skip: bool,
    /// Set general register `x<n>` to a value first.
    pub set: Option<(u8, u64)>,
}

impl Resume {
    /// Step over the instruction.
    pub const SKIP: Resume = Resume {
        skip: true,
        set: None,
    };

    /// Step over the instruction, setting `x<register>` to `value`
    /// (`None` register: nothing to set, as for a load into `xzr`).
    pub fn skip_setting(register: Option<u8>, value: u64) -> Resume {
        Resume {
            skip: true,
            set: register.map(|r| (r, value)),
        }
    }

    /// The reply's words: `[flags, register index, value]`, and how many
    /// of them to send.
    pub fn words(&self) -> ([u64; 4], usize) {
        let mut flags = 0;
        if self.skip {
            flags |= fault::REPLY_SKIP_INSTRUCTION;
        }
        match self.set {
            Some((r, v)) => {
                flags |= fault::REPLY_SET_REGISTER;
                let index = REG_X0 as u64 + u64::from(r);
                ([flags, index, v, 0], 3)
            }
            None => ([flags, 0, 0, 0], 1),
        }
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
impl ExitChannel {
    /// Waits for the next exit.
    pub fn wait(&self) -> Result<ExitMessage, skyscope_abi::Error> {
        skyscope_abi::ipc::recv(self.endpoint, self.reply).map(ExitMessage::decode)
    }

    /// Resumes the guest that exited last, then waits for the next exit.
    pub fn resume_and_wait(&self, resume: Resume) -> Result<ExitMessage, skyscope_abi::Error> {
        let (words, len) = resume.words();
        skyscope_abi::ipc::reply_recv(
            self.endpoint,
            self.reply,
            skyscope_abi::MessageInfo::new(0, len, 0),
            words,
        )
        .map(ExitMessage::decode)
    }

    /// Resumes the guest that exited last.
    pub fn resume(&self, resume: Resume) -> Result<(), skyscope_abi::Error> {
        let (words, len) = resume.words();
        skyscope_abi::ipc::reply(self.reply, skyscope_abi::MessageInfo::new(0, len, 0), words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyscope_abi::MessageInfo;

    #[test]
    fn replies_carry_flags_and_registers() {
        assert_eq!(
            Resume::SKIP.words(),
            ([fault::REPLY_SKIP_INSTRUCTION, 0, 0, 0], 1)
        );
        let (w, n) = Resume::skip_setting(Some(4), 7).words();
        assert_eq!(n, 3);
        assert_eq!(
            w[0],
            fault::REPLY_SKIP_INSTRUCTION | fault::REPLY_SET_REGISTER
        );
        assert_eq!(w[1], (REG_X0 + 4) as u64);
        assert_eq!(w[2], 7);
        assert_eq!(Resume::skip_setting(None, 7).words().1, 1);
        assert_eq!(Resume::default().words(), ([0; 4], 1));
    }

    #[test]
    fn only_guest_exits_are_decoded() {
        let hvc = [
            0x4000_0010,
            0x5a00_0002,
            2,
            fault::ExitKind::Hypercall as u64,
        ];
        let m = ExitMessage::decode(Received {
            badge: 0x77,
            info: MessageInfo::new(fault::GUEST_EXIT, 4, 0),
            words: hvc,
        });
        assert_eq!(m.exit, Exit::Hypercall { imm: 2 });
        assert_eq!((m.badge, m.pc), (0x77, 0x4000_0010));
        // A native thread's VM fault on the same endpoint is not an exit.
        let m = ExitMessage::decode(Received {
            badge: 1,
            info: MessageInfo::new(fault::VM_FAULT, 4, 0),
            words: hvc,
        });
        assert_eq!(m.exit, Exit::Unsupported);
        assert_eq!(m.label, fault::VM_FAULT);
        assert!(!m.is_notification());
        // A bound notification's signal: the word as the badge, no label.
        let m = ExitMessage::decode(Received {
            badge: 0b100,
            info: MessageInfo::from_raw(0),
            words: hvc,
        });
        assert!(m.is_notification());
        assert_eq!(m.exit, Exit::Unsupported);
    }
}
