//! Console input the kernel holds until user space reads it.
//!
//! The UART's receive interrupt moves bytes from the device's small FIFO
//! into an [`InputRing`]; `ConsoleRead` takes them out. The ring has a
//! fixed size, never blocks and never overwrites: bytes that arrive while
//! it is full are dropped and counted, so a reader that falls behind
//! loses the newest input, not what it has not read yet.

/// A fixed-size byte FIFO with a count of what it dropped.
#[derive(Clone, Debug)]
pub struct InputRing<const N: usize> {
    bytes: [u8; N],
    /// Index of the oldest byte.
    head: usize,
    /// Bytes held.
    len: usize,
    /// Bytes dropped because the ring was full, since boot.
    dropped: u64,
}

impl<const N: usize> Default for InputRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> InputRing<N> {
    /// An empty ring.
    pub const fn new() -> InputRing<N> {
        InputRing {
            bytes: [0; N],
            head: 0,
            len: 0,
            dropped: 0,
        }
    }

    /// Appends `byte`; `false` (and counted) if the ring is full.
    pub fn push(&mut self, byte: u8) -> bool {
        if self.len == N {
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        self.bytes[(self.head + self.len) % N] = byte;
        self.len += 1;
        true
    }

    /// Moves up to `out.len()` of the oldest bytes into `out`; returns how
    /// many.
    pub fn take(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        for slot in &mut out[..n] {
            *slot = self.bytes[self.head];
            self.head = (self.head + 1) % N;
        }
        self.len -= n;
        n
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes dropped since boot because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::vec::Vec;

    #[test]
    fn keeps_order_and_drops_the_newest_when_full() {
        let mut ring = InputRing::<4>::new();
        for b in b"abcdef" {
            ring.push(*b);
        }
        assert_eq!((ring.len(), ring.dropped()), (4, 2));
        let mut out = [0u8; 3];
        assert_eq!(ring.take(&mut out), 3);
        assert_eq!(&out, b"abc");
        assert!(ring.push(b'g'));
        let mut out = [0u8; 8];
        assert_eq!(ring.take(&mut out), 2);
        assert_eq!(&out[..2], b"dg");
        assert_eq!(ring.take(&mut out), 0);
        assert!(ring.is_empty());
    }

    proptest! {
        /// Against a bounded queue model: same bytes out, same drop count.
        #[test]
        fn matches_a_bounded_queue(ops in proptest::collection::vec(
            prop_oneof![any::<u8>().prop_map(Ok), (0usize..40).prop_map(Err)], 0..400)
        ) {
            let mut ring = InputRing::<16>::new();
            let mut model = VecDeque::new();
            let mut dropped = 0u64;
            for op in ops {
                match op {
                    Ok(byte) => {
                        let full = model.len() == 16;
                        prop_assert_eq!(ring.push(byte), !full);
                        if full { dropped += 1; } else { model.push_back(byte); }
                    }
                    Err(n) => {
                        let mut out = std::vec![0u8; n];
                        let got = ring.take(&mut out);
                        let expected: Vec<u8> = model.drain(..n.min(model.len())).collect();
                        prop_assert_eq!(&out[..got], &expected[..]);
                    }
                }
                prop_assert_eq!(ring.len(), model.len());
                prop_assert_eq!(ring.dropped(), dropped);
            }
        }
    }
}
