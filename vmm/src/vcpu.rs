//! Naming a guest's virtual CPUs: an index per vCPU and sets of them, the
//! currency of the actions device models and firmware emulation return
//! ("raise this interrupt on vCPU 2", "start vCPU 1").

/// Most vCPUs one guest may have. Sets of vCPUs are one machine word, and
/// the arm64 parts give every vCPU an Aff0 below 16 (see
/// [`crate::arch::aarch64::cpu`]), so SGI target lists reach each one.
pub const MAX_VCPUS: usize = 8;

/// A vCPU of the guest, by index (`0..MAX_VCPUS`); vCPU 0 boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId(u8);

impl VcpuId {
    /// vCPU `index`, if below [`MAX_VCPUS`].
    pub const fn new(index: usize) -> Option<VcpuId> {
        if index < MAX_VCPUS {
            Some(VcpuId(index as u8))
        } else {
            None
        }
    }

    /// The boot vCPU.
    pub const BOOT: VcpuId = VcpuId(0);

    /// The index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A set of vCPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VcpuSet(u8);

const _: () = assert!(MAX_VCPUS <= u8::BITS as usize);

impl VcpuSet {
    /// No vCPU.
    pub const EMPTY: VcpuSet = VcpuSet(0);

    /// The first `count` vCPUs (all of them if `count` exceeds
    /// [`MAX_VCPUS`]).
    pub const fn first(count: usize) -> VcpuSet {
        if count >= MAX_VCPUS {
            VcpuSet(u8::MAX)
        } else {
            VcpuSet(((1u16 << count) - 1) as u8)
        }
    }

    /// The set holding only `vcpu`.
    pub const fn only(vcpu: VcpuId) -> VcpuSet {
        VcpuSet(1 << vcpu.0)
    }

    /// Adds `vcpu`.
    pub fn insert(&mut self, vcpu: VcpuId) {
        self.0 |= 1 << vcpu.0;
    }

    /// Removes `vcpu`.
    pub fn remove(&mut self, vcpu: VcpuId) {
        self.0 &= !(1 << vcpu.0);
    }

    /// Whether `vcpu` is in the set.
    pub const fn contains(self, vcpu: VcpuId) -> bool {
        self.0 & (1 << vcpu.0) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The union.
    pub const fn union(self, other: VcpuSet) -> VcpuSet {
        VcpuSet(self.0 | other.0)
    }

    /// The members, lowest index first.
    pub fn iter(self) -> impl Iterator<Item = VcpuId> {
        (0..MAX_VCPUS as u8)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(VcpuId)
    }

    /// The bit mask (bit n: vCPU n).
    pub const fn bits(self) -> u8 {
        self.0
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use registers::{call_arguments, general_register};

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod registers {
    use skyscope_abi::{Error, invocation as inv};

    /// General register `x<n>` of the stopped vCPU thread `tcb` (a guest
    /// that exited waits for its reply, so its registers hold still).
    pub fn general_register(tcb: u64, n: u8) -> Result<u64, Error> {
        let index = inv::REG_X0 + usize::from(n);
        let r = inv::tcb_read_registers(tcb, index + 1)?;
        r.words.get(index).copied().ok_or(Error::RangeError)
    }

    /// `x0..x3` of the stopped vCPU thread `tcb`, in one invocation: the
    /// function ID and arguments of a hypercall (SMC Calling Convention).
    pub fn call_arguments(tcb: u64) -> Result<[u64; 4], Error> {
        let r = inv::tcb_read_registers(tcb, inv::REG_X0 + 4)?;
        let mut x = [0; 4];
        x.copy_from_slice(
            r.words
                .get(inv::REG_X0..inv::REG_X0 + 4)
                .ok_or(Error::RangeError)?,
        );
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_what_was_put_in() {
        let mut s = VcpuSet::EMPTY;
        assert!(s.is_empty());
        let (a, b) = (VcpuId::new(1).unwrap(), VcpuId::new(7).unwrap());
        s.insert(a);
        s.insert(b);
        assert!(s.contains(a) && s.contains(b) && !s.contains(VcpuId::BOOT));
        assert_eq!(
            s.iter().map(VcpuId::index).collect::<std::vec::Vec<_>>(),
            [1, 7]
        );
        s.remove(a);
        assert_eq!(s, VcpuSet::only(b));
        assert_eq!(VcpuSet::first(3).bits(), 0b111);
        assert_eq!(VcpuSet::first(99).bits(), 0xff);
        assert_eq!(VcpuSet::first(0), VcpuSet::EMPTY);
        assert_eq!(VcpuSet::only(a).union(VcpuSet::only(b)).bits(), 0b1000_0010);
        assert_eq!(VcpuId::new(MAX_VCPUS), None);
    }
}
