//! The Vcpu exit loop: receiving a guest thread's exits on the VMM's
//! endpoint and answering each, so that the guest resumes.

use crate::exit::{Exit, Resume};
use skyscope_abi::{Error, MessageInfo, fault, invocation as inv, ipc};

/// Where a VMM receives one guest's exits: the endpoint the Vcpu thread's
/// fault handler capability names, and the reply object to answer with.
#[derive(Clone, Copy, Debug)]
pub struct ExitChannel {
    /// Endpoint (receive right).
    pub endpoint: u64,
    /// Reply object.
    pub reply: u64,
}

/// One message received on an exit channel.
#[derive(Clone, Copy, Debug)]
pub struct ExitMessage {
    /// Badge of the sender's fault-handler capability (which Vcpu).
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

fn exit_message(r: ipc::Received) -> ExitMessage {
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

impl ExitChannel {
    /// Waits for the next exit.
    pub fn wait(&self) -> Result<ExitMessage, Error> {
        ipc::recv(self.endpoint, self.reply).map(exit_message)
    }

    /// Resumes the guest that exited last, then waits for the next exit.
    pub fn resume_and_wait(&self, resume: Resume) -> Result<ExitMessage, Error> {
        let (words, len) = resume.words();
        ipc::reply_recv(
            self.endpoint,
            self.reply,
            MessageInfo::new(0, len, 0),
            words,
        )
        .map(exit_message)
    }

    /// Resumes the guest that exited last.
    pub fn resume(&self, resume: Resume) -> Result<(), Error> {
        let (words, len) = resume.words();
        ipc::reply(self.reply, MessageInfo::new(0, len, 0), words)
    }
}

/// General register `x<n>` of the (stopped) Vcpu thread `tcb`.
pub fn guest_register(tcb: u64, n: u8) -> Result<u64, Error> {
    let index = inv::REG_X0 + usize::from(n);
    let r = inv::tcb_read_registers(tcb, index + 1)?;
    r.words.get(index).copied().ok_or(Error::RangeError)
}
