//! The message-info word that describes an IPC message or invocation.

/// Number of message registers passed in CPU registers (`x2..x5`).
pub const REGISTER_MESSAGE_WORDS: usize = 4;
/// Largest message, in words; the words past the register ones travel in
/// the IPC buffer.
pub const MAX_MESSAGE_WORDS: usize = 120;
/// Largest number of capabilities carried by one message.
pub const MAX_EXTRA_CAPS: usize = 3;

/// Describes a message: its label, length in words and attached caps.
///
/// Bit layout (as seL4's `seL4_MessageInfo`): `length` in bits 0..7,
/// `extra_caps` in bits 7..9, `caps_unwrapped` in bits 9..12, `label` in
/// bits 12..64. For object invocations the label selects the operation; in
/// a reply from the kernel it carries the [`Error`](crate::Error) code, 0
/// for success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MessageInfo(u64);

impl MessageInfo {
    const LENGTH_BITS: u32 = 7;
    const EXTRA_CAPS_SHIFT: u32 = 7;
    const UNWRAPPED_SHIFT: u32 = 9;
    const LABEL_SHIFT: u32 = 12;

    /// Builds a message-info word. Lengths and cap counts beyond the ABI
    /// maxima are clamped, so the result always decodes to a valid message.
    pub const fn new(label: u64, length: usize, extra_caps: usize) -> MessageInfo {
        let length = if length > MAX_MESSAGE_WORDS {
            MAX_MESSAGE_WORDS
        } else {
            length
        };
        let caps = if extra_caps > MAX_EXTRA_CAPS {
            MAX_EXTRA_CAPS
        } else {
            extra_caps
        };
        MessageInfo(
            (label << Self::LABEL_SHIFT)
                | ((caps as u64) << Self::EXTRA_CAPS_SHIFT)
                | length as u64,
        )
    }

    /// Wraps a raw word as received from a register.
    pub const fn from_raw(raw: u64) -> MessageInfo {
        MessageInfo(raw)
    }

    /// The raw word, for placing in a register.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The label: the operation of an invocation, or an error code in a reply.
    pub const fn label(self) -> u64 {
        self.0 >> Self::LABEL_SHIFT
    }

    /// Message length in words, as the sender wrote it (may exceed
    /// [`MAX_MESSAGE_WORDS`] in a malformed word; see [`Self::length`]).
    pub const fn raw_length(self) -> usize {
        (self.0 & ((1 << Self::LENGTH_BITS) - 1)) as usize
    }

    /// Message length in words, clamped to [`MAX_MESSAGE_WORDS`].
    pub const fn length(self) -> usize {
        let l = self.raw_length();
        if l > MAX_MESSAGE_WORDS {
            MAX_MESSAGE_WORDS
        } else {
            l
        }
    }

    /// Number of extra capabilities attached.
    pub const fn extra_caps(self) -> usize {
        ((self.0 >> Self::EXTRA_CAPS_SHIFT) & 0b11) as usize
    }

    /// Bit `i` set: extra cap `i` was unwrapped to its badge (same endpoint).
    pub const fn caps_unwrapped(self) -> u64 {
        (self.0 >> Self::UNWRAPPED_SHIFT) & 0b111
    }

    /// Returns a copy with the unwrapped-caps mask replaced.
    pub const fn with_caps_unwrapped(self, mask: u64) -> MessageInfo {
        MessageInfo(
            (self.0 & !(0b111 << Self::UNWRAPPED_SHIFT))
                | ((mask & 0b111) << Self::UNWRAPPED_SHIFT),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let m = MessageInfo::new(0xABCDE, 17, 2).with_caps_unwrapped(0b101);
        assert_eq!(m.label(), 0xABCDE);
        assert_eq!(m.length(), 17);
        assert_eq!(m.extra_caps(), 2);
        assert_eq!(m.caps_unwrapped(), 0b101);
        assert_eq!(MessageInfo::from_raw(m.raw()), m);
    }

    #[test]
    fn oversize_values_are_clamped() {
        let m = MessageInfo::new(1, 500, 9);
        assert_eq!(m.length(), MAX_MESSAGE_WORDS);
        assert_eq!(m.extra_caps(), MAX_EXTRA_CAPS);
        // A hand-made word with length 127 still decodes to the maximum.
        assert_eq!(MessageInfo::from_raw(127).length(), MAX_MESSAGE_WORDS);
    }
}
