//! User-space IPC: send, receive, call and reply on endpoints; signal, wait
//! and poll on notifications.
//!
//! Message words 0..4 travel in registers; longer messages put the rest in
//! the IPC buffer's `msg` array (`msg[4..]`), where received words arrive
//! too. Capabilities to transfer are named in `caps_or_badges`, and a
//! received capability lands in the slot named by `receive_*`.

use crate::MessageInfo;

/// A received message: the sender's badge, the message info and the
/// register words (the rest are in the IPC buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The badge of the capability the sender used (or the notification
    /// word, when a bound notification woke the receiver).
    pub badge: u64,
    /// Label, length and capabilities of the message.
    pub info: MessageInfo,
    /// Message words 0..4.
    pub words: [u64; 4],
}

#[cfg(target_arch = "aarch64")]
mod user {
    use super::Received;
    use crate::{Error, MessageInfo, Syscall, syscall::imp::full};

    #[inline(always)]
    fn status(regs: &[u64; 7]) -> Result<(), Error> {
        Error::check(regs[crate::regs::STATUS])
    }

    #[inline(always)]
    fn received(regs: [u64; 7]) -> Result<Received, Error> {
        status(&regs)?;
        Ok(Received {
            badge: regs[0],
            info: MessageInfo::from_raw(regs[1]),
            words: [regs[2], regs[3], regs[4], regs[5]],
        })
    }

    /// Sends a message and waits for the reply.
    #[inline]
    pub fn call(endpoint: u64, info: MessageInfo, words: [u64; 4]) -> Result<Received, Error> {
        received(full(
            Syscall::Call,
            [
                endpoint,
                info.raw(),
                words[0],
                words[1],
                words[2],
                words[3],
                0,
            ],
        ))
    }

    /// Sends a message, waiting for a receiver (signals a notification).
    #[inline]
    pub fn send(endpoint: u64, info: MessageInfo, words: [u64; 4]) -> Result<(), Error> {
        status(&full(
            Syscall::Send,
            [
                endpoint,
                info.raw(),
                words[0],
                words[1],
                words[2],
                words[3],
                0,
            ],
        ))
    }

    /// Sends a message if a receiver is waiting; drops it otherwise.
    #[inline]
    pub fn nb_send(endpoint: u64, info: MessageInfo, words: [u64; 4]) -> Result<(), Error> {
        status(&full(
            Syscall::NBSend,
            [
                endpoint,
                info.raw(),
                words[0],
                words[1],
                words[2],
                words[3],
                0,
            ],
        ))
    }

    /// Waits for a message; `reply` names the reply object for a `Call` (0: none).
    #[inline]
    pub fn recv(endpoint: u64, reply: u64) -> Result<Received, Error> {
        received(full(Syscall::Recv, [endpoint, 0, 0, 0, 0, 0, reply]))
    }

    /// Takes a message if one is waiting (`WouldBlock` otherwise).
    #[inline]
    pub fn nb_recv(endpoint: u64, reply: u64) -> Result<Received, Error> {
        received(full(Syscall::NBRecv, [endpoint, 0, 0, 0, 0, 0, reply]))
    }

    /// Answers the `Call` recorded in `reply`.
    #[inline]
    pub fn reply(reply: u64, info: MessageInfo, words: [u64; 4]) -> Result<(), Error> {
        status(&full(
            Syscall::Reply,
            [0, info.raw(), words[0], words[1], words[2], words[3], reply],
        ))
    }

    /// Answers the `Call` recorded in `reply` (if any) and waits for the
    /// next message on `endpoint`, naming `reply` for it.
    #[inline]
    pub fn reply_recv(
        endpoint: u64,
        reply: u64,
        info: MessageInfo,
        words: [u64; 4],
    ) -> Result<Received, Error> {
        received(full(
            Syscall::ReplyRecv,
            [
                endpoint,
                info.raw(),
                words[0],
                words[1],
                words[2],
                words[3],
                reply,
            ],
        ))
    }

    /// Signals a notification (ORs the capability's badge into its word).
    #[inline]
    pub fn signal(notification: u64) -> Result<(), Error> {
        status(&full(Syscall::Send, [notification, 0, 0, 0, 0, 0, 0]))
    }

    /// Waits for a notification; returns its word (the OR of the badges).
    #[inline]
    pub fn wait(notification: u64) -> Result<u64, Error> {
        received(full(Syscall::Recv, [notification, 0, 0, 0, 0, 0, 0])).map(|r| r.badge)
    }

    /// Takes a notification's word without waiting (0 if nothing is pending).
    #[inline]
    pub fn poll(notification: u64) -> Result<u64, Error> {
        match received(full(Syscall::NBRecv, [notification, 0, 0, 0, 0, 0, 0])) {
            Ok(r) => Ok(r.badge),
            Err(Error::WouldBlock) => Ok(0),
            Err(e) => Err(e),
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub use user::*;
