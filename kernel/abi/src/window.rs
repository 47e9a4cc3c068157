//! Memory a process maps for itself and shares with an agent that may
//! change it at any moment — a guest's RAM as its VMM sees it: bounds-checked
//! volatile copies in and out, and the cache maintenance that makes written
//! code visible to instruction fetch.
//!
//! The window never hands out references into the memory: the other side
//! (a guest vCPU running on another core, or later the same one) writes it
//! behind the compiler's back, so every access is a volatile copy, as
//! rust-vmm's `vm-memory` does for the same reason.

use crate::Error;

/// A range of the calling process's address space, mapped readable (and
/// writable up to a limit), that only volatile copies touch.
#[derive(Debug)]
pub struct MappedWindow {
    base: usize,
    len: usize,
    /// Bytes from the start that may be written: the rest is mapped
    /// read-only, and [`MappedWindow::write`] refuses it rather than fault.
    writable: usize,
}

impl MappedWindow {
    /// A window over `len` bytes at address `base`.
    ///
    /// # Safety
    ///
    /// `base..base + len` must stay mapped readable and writable in the
    /// calling process for as long as the window is used, and no Rust
    /// reference or object may live in that range: it is memory the process
    /// mapped for sharing (for instance frames it also mapped into a
    /// GuestSpace), reached only through this window.
    pub const unsafe fn new(base: usize, len: usize) -> MappedWindow {
        MappedWindow {
            base,
            len,
            writable: len,
        }
    }

    /// A window over `len` bytes at address `base` of which only the first
    /// `writable` are writable: the rest may be mapped read-only (images a
    /// VMM copies from, and must not be able to change).
    ///
    /// # Safety
    ///
    /// As for [`MappedWindow::new`], except that only `base..base +
    /// writable` need be mapped writable; the whole range must stay mapped
    /// readable.
    pub const unsafe fn with_read_only_tail(
        base: usize,
        len: usize,
        writable: usize,
    ) -> MappedWindow {
        MappedWindow {
            base,
            len,
            writable: if writable < len { writable } else { len },
        }
    }

    /// How many bytes from the start may be written.
    pub fn writable_len(&self) -> usize {
        self.writable
    }

    /// The window's size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The window's first address in the calling process.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Splits the window into `[0, mid)` and `[mid, len)`: two windows over
    /// disjoint memory, each keeping the constructor's contract, so one
    /// mapping can be handed to two users (a VMM's guest RAM and the
    /// images it loads from) without another `unsafe` construction.
    /// `RangeError` if `mid` lies past the end.
    pub fn split_at(self, mid: usize) -> Result<(MappedWindow, MappedWindow), Error> {
        if mid > self.len {
            return Err(Error::RangeError);
        }
        Ok((
            MappedWindow {
                base: self.base,
                len: mid,
                writable: self.writable.min(mid),
            },
            MappedWindow {
                base: self.base + mid,
                len: self.len - mid,
                writable: self.writable.saturating_sub(mid),
            },
        ))
    }

    /// The address of `offset..offset + len`, if that lies in the window.
    fn address(&self, offset: usize, len: usize) -> Result<usize, Error> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(self.base + offset),
            _ => Err(Error::RangeError),
        }
    }

    /// Copies `buf.len()` bytes from `offset` into `buf`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        let start = self.address(offset, buf.len())?;
        let mut i = 0;
        while i < buf.len() {
            let address = start + i;
            if address % 8 == 0 && buf.len() - i >= 8 {
                // SAFETY: `address..address + 8` is inside the window, which
                // the constructor's contract keeps mapped and free of Rust
                // objects; the address is 8-byte aligned.
                let word = unsafe { (address as *const u64).read_volatile() };
                buf[i..i + 8].copy_from_slice(&word.to_ne_bytes());
                i += 8;
            } else {
                // SAFETY: as above, one byte.
                buf[i] = unsafe { (address as *const u8).read_volatile() };
                i += 1;
            }
        }
        Ok(())
    }

    /// Copies `data` to `offset` (`RangeError` past the writable part).
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<(), Error> {
        let start = self.address(offset, data.len())?;
        if offset + data.len() > self.writable {
            return Err(Error::RangeError);
        }
        let mut i = 0;
        while i < data.len() {
            let address = start + i;
            if address % 8 == 0 && data.len() - i >= 8 {
                let mut word = [0; 8];
                word.copy_from_slice(&data[i..i + 8]);
                // SAFETY: `address..address + 8` is inside the window, which
                // the constructor's contract keeps mapped writable and free
                // of Rust objects; the address is 8-byte aligned.
                unsafe { (address as *mut u64).write_volatile(u64::from_ne_bytes(word)) };
                i += 8;
            } else {
                // SAFETY: as above, one byte.
                unsafe { (address as *mut u8).write_volatile(data[i]) };
                i += 1;
            }
        }
        Ok(())
    }

    /// Makes what was written to `offset..offset + len` visible to
    /// instruction fetches from any agent (see [`make_executable`]).
    #[cfg(target_arch = "aarch64")]
    pub fn make_executable(&self, offset: usize, len: usize) -> Result<(), Error> {
        let start = self.address(offset, len)?;
        make_executable(start, len);
        Ok(())
    }
}

/// Smallest data and instruction cache line sizes in bytes, from CTR_EL0
/// (Arm ARM chapter D23, "CTR_EL0, Cache Type Register": DminLine in bits
/// 19:16 and IminLine in bits 3:0, each log2 of the number of 4-byte words).
pub fn cache_line_sizes(ctr: u64) -> (usize, usize) {
    let dmin = (ctr >> 16) & 0xf;
    let imin = ctr & 0xf;
    (4 << dmin, 4 << imin)
}

/// Cleans the data cache to the point of coherency and invalidates the
/// instruction cache for `address..address + len`, so that code written
/// there is what an instruction fetch sees — also a fetch with the MMU and
/// caches off, as a guest kernel's first instructions are (Arm ARM B2,
/// "Synchronization and coherency issues between data and instruction
/// accesses": clean by VA, DSB, invalidate the instruction cache by VA,
/// DSB, ISB; cleaning to the PoC rather than the PoU covers fetches that
/// bypass the caches). Linux's arm64 boot protocol asks
/// for the same for its Image (booting.rst: "the Image must be cleaned
/// to the PoC").
///
/// Safe for any range: cache maintenance by VA does not change memory
/// contents, and an address the process has not mapped faults like any
/// other access (EL0 may do this: the kernel sets SCTLR_EL2.UCI and UCT).
#[cfg(target_arch = "aarch64")]
pub fn make_executable(address: usize, len: usize) {
    if len == 0 {
        return;
    }
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let (dline, iline) = cache_line_sizes(ctr);
    let end = address + len;
    let mut line = address & !(dline - 1);
    while line < end {
        // SAFETY: cleaning a line to the point of coherency writes dirty
        // data back without changing what memory holds.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) line, options(nostack)) };
        line += dline;
    }
    // SAFETY: a barrier only: the cleans complete before the invalidation.
    unsafe { core::arch::asm!("dsb ish", options(nostack)) };
    let mut line = address & !(iline - 1);
    while line < end {
        // SAFETY: invalidating instruction-cache lines has no effect on data.
        unsafe { core::arch::asm!("ic ivau, {}", in(reg) line, options(nostack)) };
        line += iline;
    }
    // SAFETY: barriers only: the invalidation completes and later fetches
    // see it.
    unsafe { core::arch::asm!("dsb ish", "isb", options(nostack)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_sizes_follow_ctr_el0() {
        // Cortex-A72's CTR_EL0 (0x8444c004): 64-byte lines both sides.
        assert_eq!(cache_line_sizes(0x8444_c004), (64, 64));
        assert_eq!(cache_line_sizes(0x0003_0002), (32, 16));
    }

    #[test]
    fn copies_stay_inside_the_window() {
        let mut backing = [0u64; 8]; // 64 bytes, 8-aligned
        let base = backing.as_mut_ptr() as usize;
        // SAFETY: `backing` outlives the window and is reached only through
        // it while the window is in use.
        let mut window = unsafe { MappedWindow::new(base, 64) };
        let data: [u8; 21] = core::array::from_fn(|i| i as u8 + 1);
        // Unaligned start: byte head, an aligned word, byte tail.
        window.write(3, &data).unwrap();
        let mut back = [0u8; 21];
        window.read(3, &mut back).unwrap();
        assert_eq!(back, data);
        let mut all = [0u8; 64];
        window.read(0, &mut all).unwrap();
        assert_eq!(&all[..3], &[0, 0, 0]);
        assert_eq!(&all[3..24], &data);
        assert!(all[24..].iter().all(|&b| b == 0));
        assert_eq!(window.write(60, &[1; 5]), Err(Error::RangeError));
        assert_eq!(window.read(usize::MAX, &mut [0; 2]), Err(Error::RangeError));
        assert_eq!(window.read(64, &mut []), Ok(()));
        assert_eq!(window.read(65, &mut []), Err(Error::RangeError));
        // Nothing outside was touched by the refused writes.
        window.read(56, &mut all[..8]).unwrap();
        assert!(all[..8].iter().all(|&b| b == 0));
        // Split windows reach only their own part.
        let (mut head, tail) = window.split_at(16).unwrap();
        assert_eq!((head.len(), tail.len(), tail.base()), (16, 48, base + 16));
        head.write(0, &[0xaa; 16]).unwrap();
        assert_eq!(head.write(15, &[0; 2]), Err(Error::RangeError));
        let mut first = [0u8; 1];
        tail.read(0, &mut first).unwrap();
        assert_eq!(first, [data[13]]);
        assert!(tail.split_at(49).is_err());
        // The windows are done with; their writes are in the backing memory.
        let _ = head;
        assert_eq!(backing[0].to_ne_bytes(), [0xaa; 8]);
        assert_eq!(backing[2].to_ne_bytes()[0], data[13]);
    }

    #[test]
    fn a_read_only_tail_is_never_written() {
        let mut backing = [0u64; 4];
        let base = backing.as_mut_ptr() as usize;
        // SAFETY: `backing` outlives the window and is reached only through it.
        let mut window = unsafe { MappedWindow::with_read_only_tail(base, 32, 8) };
        assert_eq!(window.writable_len(), 8);
        window.write(0, &[1; 8]).unwrap();
        assert_eq!(window.write(4, &[2; 5]), Err(Error::RangeError));
        assert_eq!(window.write(8, &[2]), Err(Error::RangeError));
        let (head, tail) = window.split_at(4).unwrap();
        assert_eq!((head.writable_len(), tail.writable_len()), (4, 4));
        let (mut ram, mut images) = tail.split_at(4).unwrap();
        assert_eq!((ram.writable_len(), images.writable_len()), (4, 0));
        assert_eq!(images.write(0, &[3]), Err(Error::RangeError));
        ram.write(0, &[4; 4]).unwrap();
        let _ = (head, ram, images);
        assert_eq!(backing[0].to_ne_bytes(), [1, 1, 1, 1, 4, 4, 4, 4]);
        assert_eq!(backing[1], 0);
        // SAFETY: as above.
        let clamped = unsafe { MappedWindow::with_read_only_tail(base, 8, 99) };
        assert_eq!(clamped.writable_len(), 8);
    }
}
