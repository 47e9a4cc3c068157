//! Guest memory: the guest's RAM as the VMM sees it.
//!
//! The same frames are mapped twice: into the GuestSpace at guest-physical
//! addresses (what the guest uses) and into the VMM's own VSpace at some
//! VMM virtual address (how the VMM reads and writes them). [`GuestMemory`]
//! ties the two together: it takes guest-physical addresses
//! ([`GuestAddress`], a newtype as in rust-vmm's `vm-memory`, so they are
//! never confused with VMM addresses), checks them against the RAM's range
//! and reaches the bytes through a [`GuestRam`] backend — on the target,
//! the ABI's [`MappedWindow`](skyscope_abi::window::MappedWindow) over the
//! VMM's mapping.

use core::fmt;

/// A guest-physical address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestAddress(pub u64);

impl GuestAddress {
    /// The address as a number.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// `self + offset`, if that does not wrap.
    pub const fn checked_add(self, offset: u64) -> Option<GuestAddress> {
        match self.0.checked_add(offset) {
            Some(a) => Some(GuestAddress(a)),
            None => None,
        }
    }

    /// `self - base`, if `self` is not below `base`.
    pub const fn checked_offset_from(self, base: GuestAddress) -> Option<u64> {
        self.0.checked_sub(base.0)
    }

    /// Whether the address is a multiple of `align` (a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }

    /// The address rounded down to a multiple of `align` (a power of two).
    pub const fn align_down(self, align: u64) -> GuestAddress {
        GuestAddress(self.0 & !(align - 1))
    }

    /// The address rounded up to a multiple of `align` (a power of two),
    /// if that does not wrap.
    pub const fn align_up(self, align: u64) -> Option<GuestAddress> {
        match self.0.checked_add(align - 1) {
            Some(a) => Some(GuestAddress(a & !(align - 1))),
            None => None,
        }
    }
}

impl fmt::LowerHex for GuestAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// A non-empty range of guest-physical addresses that does not wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestRange {
    start: GuestAddress,
    size: u64,
}

impl GuestRange {
    /// `size` bytes from `start`; `None` if empty or past the top of the
    /// 64-bit space (the end must be representable).
    pub const fn new(start: GuestAddress, size: u64) -> Option<GuestRange> {
        if size == 0 || start.0.checked_add(size).is_none() {
            None
        } else {
            Some(GuestRange { start, size })
        }
    }

    /// The first address.
    pub const fn start(self) -> GuestAddress {
        self.start
    }

    /// The size in bytes.
    pub const fn size(self) -> u64 {
        self.size
    }

    /// The first address past the range.
    pub const fn end(self) -> GuestAddress {
        GuestAddress(self.start.0 + self.size)
    }

    /// Whether `address` lies in the range.
    pub const fn contains(self, address: GuestAddress) -> bool {
        address.0 >= self.start.0 && address.0 - self.start.0 < self.size
    }

    /// Whether all of `other` lies in the range.
    pub const fn covers(self, other: GuestRange) -> bool {
        other.start.0 >= self.start.0 && other.end().0 <= self.end().0
    }

    /// Whether the ranges share an address.
    pub const fn overlaps(self, other: GuestRange) -> bool {
        self.start.0 < other.end().0 && other.start.0 < self.end().0
    }
}

/// Why a guest-memory access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// Some of `len` bytes at the address lie outside guest RAM.
    OutOfRange {
        /// The first guest-physical address of the access.
        address: GuestAddress,
        /// Its length in bytes.
        len: u64,
    },
    /// The backend cannot hold RAM at the given base (the range would
    /// wrap, or the backend is empty).
    BadLayout,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::OutOfRange { address, len } => {
                write!(f, "{len} bytes at {address:#x} are not all guest RAM")
            }
            MemoryError::BadLayout => write!(f, "guest RAM cannot be placed there"),
        }
    }
}

/// A backend's refusal of an access outside its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfBounds;

/// Bytes backing guest RAM, addressed by offset from its start. Offsets
/// passed in are already checked by [`GuestMemory`]; a backend still
/// refuses what is out of its range rather than trusting that.
pub trait GuestRam {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Copies `buf.len()` bytes at `offset` into `buf`.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfBounds>;
    /// Copies `data` to `offset`.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), OutOfBounds>;
    /// Makes `len` bytes at `offset` visible to the guest's instruction
    /// fetches, also with its MMU and caches off (arm64: clean the data
    /// cache to the point of coherency, invalidate the instruction cache).
    fn make_executable(&mut self, offset: u64, len: u64) -> Result<(), OutOfBounds>;
}

#[cfg(target_arch = "aarch64")]
impl GuestRam for skyscope_abi::window::MappedWindow {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        let offset = usize::try_from(offset).map_err(|_| OutOfBounds)?;
        skyscope_abi::window::MappedWindow::read(self, offset, buf).map_err(|_| OutOfBounds)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), OutOfBounds> {
        let offset = usize::try_from(offset).map_err(|_| OutOfBounds)?;
        skyscope_abi::window::MappedWindow::write(self, offset, data).map_err(|_| OutOfBounds)
    }

    fn make_executable(&mut self, offset: u64, len: u64) -> Result<(), OutOfBounds> {
        let offset = usize::try_from(offset).map_err(|_| OutOfBounds)?;
        let len = usize::try_from(len).map_err(|_| OutOfBounds)?;
        skyscope_abi::window::MappedWindow::make_executable(self, offset, len)
            .map_err(|_| OutOfBounds)
    }
}

/// The guest's RAM: one contiguous range of guest-physical addresses
/// backed by `R`.
#[derive(Debug)]
pub struct GuestMemory<R> {
    range: GuestRange,
    ram: R,
}

impl<R: GuestRam> GuestMemory<R> {
    /// RAM of `ram.size()` bytes at guest-physical `base`.
    pub fn new(base: GuestAddress, ram: R) -> Result<GuestMemory<R>, MemoryError> {
        let range = GuestRange::new(base, ram.size()).ok_or(MemoryError::BadLayout)?;
        Ok(GuestMemory { range, ram })
    }

    /// The guest-physical range the RAM occupies.
    pub fn range(&self) -> GuestRange {
        self.range
    }

    /// The backing bytes (for tests that check what loading did).
    #[cfg(test)]
    pub(crate) fn ram(&self) -> &R {
        &self.ram
    }

    /// The RAM offset of `len` bytes at `address`, if all are RAM.
    fn offset(&self, address: GuestAddress, len: usize) -> Result<u64, MemoryError> {
        let refused = MemoryError::OutOfRange {
            address,
            len: len as u64,
        };
        if len == 0 {
            // An empty access is fine anywhere in RAM or at its very end.
            return match address.checked_offset_from(self.range.start()) {
                Some(offset) if offset <= self.range.size() => Ok(offset),
                _ => Err(refused),
            };
        }
        match GuestRange::new(address, len as u64) {
            Some(access) if self.range.covers(access) => {
                Ok(address.raw() - self.range.start().raw())
            }
            _ => Err(refused),
        }
    }

    /// Copies `buf.len()` bytes at guest-physical `address` into `buf`.
    pub fn read(&self, address: GuestAddress, buf: &mut [u8]) -> Result<(), MemoryError> {
        let offset = self.offset(address, buf.len())?;
        self.ram
            .read(offset, buf)
            .map_err(|OutOfBounds| MemoryError::OutOfRange {
                address,
                len: buf.len() as u64,
            })
    }

    /// Copies `data` to guest-physical `address`.
    pub fn write(&mut self, address: GuestAddress, data: &[u8]) -> Result<(), MemoryError> {
        let offset = self.offset(address, data.len())?;
        self.ram
            .write(offset, data)
            .map_err(|OutOfBounds| MemoryError::OutOfRange {
                address,
                len: data.len() as u64,
            })
    }

    /// Writes a little-endian `u64` at `address`.
    pub fn write_u64(&mut self, address: GuestAddress, value: u64) -> Result<(), MemoryError> {
        self.write(address, &value.to_le_bytes())
    }

    /// The little-endian 64-bit word at `address`.
    pub fn read_u64(&self, address: GuestAddress) -> Result<u64, MemoryError> {
        let mut bytes = [0; 8];
        self.read(address, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Loads `blob` (code, or data the guest may execute) at `address`
    /// and makes it visible to the guest's instruction fetches. Returns
    /// the range it now occupies (`None` for an empty blob).
    pub fn load(
        &mut self,
        address: GuestAddress,
        blob: &[u8],
    ) -> Result<Option<GuestRange>, MemoryError> {
        self.write(address, blob)?;
        let Some(range) = GuestRange::new(address, blob.len() as u64) else {
            return Ok(None);
        };
        let offset = self.offset(address, blob.len())?;
        self.ram
            .make_executable(offset, range.size())
            .map_err(|OutOfBounds| MemoryError::OutOfRange {
                address,
                len: range.size(),
            })?;
        Ok(Some(range))
    }
}

/// Host-test RAM: a byte vector that records which ranges were made
/// executable, so tests can check that loading did.
#[cfg(test)]
pub(crate) mod test_ram {
    use super::OutOfBounds;
    use std::vec::Vec;

    pub struct VecRam {
        pub bytes: Vec<u8>,
        pub executable: Vec<(u64, u64)>,
    }

    impl VecRam {
        pub fn new(size: usize) -> VecRam {
            VecRam {
                bytes: std::vec![0; size],
                executable: Vec::new(),
            }
        }

        fn slice(&self, offset: u64, len: u64) -> Result<core::ops::Range<usize>, OutOfBounds> {
            let start = usize::try_from(offset).map_err(|_| OutOfBounds)?;
            let end = start
                .checked_add(usize::try_from(len).map_err(|_| OutOfBounds)?)
                .ok_or(OutOfBounds)?;
            (end <= self.bytes.len())
                .then_some(start..end)
                .ok_or(OutOfBounds)
        }
    }

    impl super::GuestRam for VecRam {
        fn size(&self) -> u64 {
            self.bytes.len() as u64
        }

        fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
            let r = self.slice(offset, buf.len() as u64)?;
            buf.copy_from_slice(&self.bytes[r]);
            Ok(())
        }

        fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), OutOfBounds> {
            let r = self.slice(offset, data.len() as u64)?;
            self.bytes[r].copy_from_slice(data);
            Ok(())
        }

        fn make_executable(&mut self, offset: u64, len: u64) -> Result<(), OutOfBounds> {
            self.slice(offset, len)?;
            self.executable.push((offset, len));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_ram::VecRam;
    use super::*;
    use proptest::prelude::*;

    const BASE: GuestAddress = GuestAddress(0x4000_0000);

    #[test]
    fn addresses_align_and_offset() {
        let a = GuestAddress(0x4020_1234);
        assert_eq!(a.align_down(0x20_0000), GuestAddress(0x4020_0000));
        assert_eq!(a.align_up(0x20_0000), Some(GuestAddress(0x4040_0000)));
        assert_eq!(GuestAddress(u64::MAX).align_up(8), None);
        assert_eq!(a.checked_offset_from(BASE), Some(0x20_1234));
        assert_eq!(BASE.checked_offset_from(a), None);
        assert!(GuestAddress(0x1000).is_aligned(0x1000));
        assert_eq!(GuestAddress(u64::MAX).checked_add(1), None);
    }

    #[test]
    fn ranges() {
        let r = GuestRange::new(GuestAddress(0x1000), 0x1000).unwrap();
        assert!(r.contains(GuestAddress(0x1fff)) && !r.contains(GuestAddress(0x2000)));
        assert!(!r.contains(GuestAddress(0xfff)));
        let s = GuestRange::new(GuestAddress(0x1fff), 2).unwrap();
        assert!(r.overlaps(s) && s.overlaps(r) && !r.covers(s));
        let t = GuestRange::new(GuestAddress(0x2000), 1).unwrap();
        assert!(!r.overlaps(t));
        assert_eq!(GuestRange::new(GuestAddress(0), 0), None);
        assert_eq!(GuestRange::new(GuestAddress(u64::MAX), 1), None);
        assert!(GuestRange::new(GuestAddress(u64::MAX - 1), 1).is_some());
    }

    #[test]
    fn reads_and_writes_stay_in_ram() {
        let mut mem = GuestMemory::new(BASE, VecRam::new(0x2000)).unwrap();
        mem.write(GuestAddress(0x4000_1ff8), &7u64.to_le_bytes())
            .unwrap();
        assert_eq!(mem.read_u64(GuestAddress(0x4000_1ff8)), Ok(7));
        assert_eq!(
            mem.write(GuestAddress(0x4000_1ff9), &[0; 8]),
            Err(MemoryError::OutOfRange {
                address: GuestAddress(0x4000_1ff9),
                len: 8
            })
        );
        assert!(mem.read(GuestAddress(0x3fff_ffff), &mut [0; 2]).is_err());
        assert!(mem.read(GuestAddress(u64::MAX), &mut [0; 2]).is_err());
        assert_eq!(mem.read(GuestAddress(0x4000_2000), &mut []), Ok(()));
        assert!(mem.read(GuestAddress(0x4000_2001), &mut []).is_err());
        // Nothing outside the accepted write changed.
        assert!(mem.ram.bytes[..0x1ff8].iter().all(|&b| b == 0));
    }

    #[test]
    fn loading_makes_code_executable() {
        let mut mem = GuestMemory::new(BASE, VecRam::new(0x3000)).unwrap();
        let range = mem.load(GuestAddress(0x4000_1000), &[0xd5; 100]).unwrap();
        assert_eq!(range, GuestRange::new(GuestAddress(0x4000_1000), 100));
        assert_eq!(mem.ram.executable, [(0x1000, 100)]);
        assert_eq!(mem.ram.bytes[0x1000 + 99], 0xd5);
        assert_eq!(mem.load(GuestAddress(0x4000_0000), &[]), Ok(None));
        assert!(mem.load(GuestAddress(0x4000_2f00), &[1; 0x101]).is_err());
        assert_eq!(mem.ram.executable.len(), 1, "a refused load syncs nothing");
    }

    #[test]
    fn ram_must_fit_the_address_space() {
        assert_eq!(
            GuestMemory::new(GuestAddress(u64::MAX - 0xfff), VecRam::new(0x2000)).err(),
            Some(MemoryError::BadLayout)
        );
        assert!(GuestMemory::new(BASE, VecRam::new(0)).is_err());
    }

    proptest! {
        /// Any access the guest-physical check accepts lies inside RAM,
        /// and any access inside RAM is accepted.
        #[test]
        fn accepted_exactly_when_inside(address in 0x3fff_0000u64..0x4001_0000, len in 0usize..0x3000) {
            let mem = GuestMemory::new(BASE, VecRam::new(0x2000)).unwrap();
            let mut buf = std::vec![0; len];
            let inside = address >= BASE.raw() && address + len as u64 <= BASE.raw() + 0x2000;
            prop_assert_eq!(mem.read(GuestAddress(address), &mut buf).is_ok(), inside);
        }
    }
}
