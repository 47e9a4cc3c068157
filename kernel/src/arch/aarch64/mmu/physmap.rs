//! The physmap: all RAM mapped in the kernel's upper range at
//! `pa + KERNEL_VIRT_OFFSET`, the only way the kernel reaches memory by
//! physical address, checked against RAM in every build.

use core::sync::atomic::{AtomicU64, Ordering};
use skyscope_core::PhysAddr;

/// Base of the TTBR1 range for a 39-bit VA space; physical address `p` is
/// mapped at `p + KERNEL_VIRT_OFFSET`.
pub const KERNEL_VIRT_OFFSET: u64 = 0xFFFF_FF80_0000_0000;
/// Virtual address bits per range.
pub const VA_BITS: u32 = 39;
/// First address above the user range.
pub const USER_VA_END: u64 = 1 << VA_BITS;

/// The RAM the physmap maps, `[start, start + len)`, set once at boot.
static RAM_START: AtomicU64 = AtomicU64::new(0);
static RAM_LEN: AtomicU64 = AtomicU64::new(0);

/// Records where RAM is; from then on [`phys_to_virt`] accepts only it.
pub fn set_ram_bounds(ram: &skyscope_core::memory::FreeRegions) {
    let start = ram.iter().map(|r| r.start.0).min().unwrap_or(0);
    let end = ram.iter().map(|r| r.end.0).max().unwrap_or(0);
    assert!(end <= 1 << VA_BITS, "RAM beyond the physmap's reach");
    RAM_START.store(start, Ordering::Relaxed);
    RAM_LEN.store(end.saturating_sub(start), Ordering::Relaxed);
}

#[cold]
#[inline(never)]
fn outside_ram(pa: PhysAddr) -> ! {
    panic!("kernel access to {pa} outside RAM");
}

/// The physmap address of RAM at `pa`: translation tables and user
/// memory the kernel reads or writes on a thread's behalf.
///
/// Checked in every build: an address outside RAM (a device frame, or one
/// above the physmap's 2^39 reach, which would wrap onto other memory)
/// stops the kernel here instead of becoming an access to MMIO or to an
/// alias of some other page. The core's `RamRange` makes that unreachable
/// from user input; this is the check behind it.
#[inline(always)]
pub fn phys_to_virt(pa: PhysAddr) -> u64 {
    let offset = pa.0.wrapping_sub(RAM_START.load(Ordering::Relaxed));
    if offset >= RAM_LEN.load(Ordering::Relaxed) {
        outside_ram(pa);
    }
    pa.0 | KERNEL_VIRT_OFFSET
}

/// The physmap address of a kernel object the core names by a
/// capability. Capabilities to objects only ever point at memory retype
/// (or boot) made into that object, carved from RAM (device untyped only
/// becomes frames, which the kernel never reads as objects), so this is
/// RAM by construction, and the invariant check verifies the capabilities
/// behind it. This is the IPC fastpath's hot path (a dozen object accesses
/// per one-way IPC), so it is checked against RAM only in the `dev`
/// kernel the test suite runs (`machine::object`); byte ranges, tables
/// and copies always go through [`phys_to_virt`].
#[inline(always)]
pub fn object_virt(pa: PhysAddr) -> u64 {
    pa.0 | KERNEL_VIRT_OFFSET
}

/// The physmap address of a boot-time structure (the device tree) or of
/// the registers of a device the kernel drives, which the kernel map
/// maps at the same place. Below 2^39, so it never wraps.
pub fn device_virt(pa: PhysAddr) -> u64 {
    assert!(pa.0 < 1 << VA_BITS, "device at {pa} beyond the physmap");
    pa.0 | KERNEL_VIRT_OFFSET
}

/// Copies `bytes` into RAM at `pa` through the physmap.
pub fn copy_to_phys(pa: PhysAddr, bytes: &[u8]) {
    let dst = phys_to_virt(pa) as *mut u8;
    // SAFETY: callers pass RAM frames the kernel owns (freshly allocated,
    // or a user frame found through a page-table walk), all of which the
    // physmap maps; no Rust reference to that memory exists meanwhile.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
}

/// Copies RAM at `pa` into `out` through the physmap.
pub fn copy_from_phys(pa: PhysAddr, out: &mut [u8]) {
    let src = phys_to_virt(pa) as *const u8;
    // SAFETY: as for `copy_to_phys`; `out` is kernel memory, disjoint.
    unsafe { core::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
}

/// Zeroes `len` bytes of RAM at `pa` through the physmap: whole blocks
/// with `dc zva` (Arm ARM C6.2.83, the block size from DCZID_EL0, D23.2.40)
/// — one instruction per 64 bytes on most cores instead of eight stores,
/// which matters for the megabytes a guest's RAM is made of — and the
/// unaligned ends with ordinary stores.
pub fn zero_phys(pa: PhysAddr, len: u64) {
    let dst = phys_to_virt(pa);
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    let prohibited = dczid & (1 << 4) != 0;
    let block = 4u64 << (dczid & 0xf);
    let start = dst.next_multiple_of(block);
    let end = (dst + len) & !(block - 1);
    if prohibited || start >= end {
        // SAFETY: as for `copy_to_phys`.
        unsafe { core::ptr::write_bytes(dst as *mut u8, 0, len as usize) };
        return;
    }
    // SAFETY: as for `copy_to_phys`; the three ranges make up
    // `[dst, dst + len)`, and `dc zva` zeroes exactly the aligned block at
    // its address, all of it inside `[start, end)`, in the physmap's
    // normal memory (where DC ZVA is permitted).
    unsafe {
        core::ptr::write_bytes(dst as *mut u8, 0, (start - dst) as usize);
        let mut at = start;
        while at < end {
            core::arch::asm!("dc zva, {}", in(reg) at, options(nostack));
            at += block;
        }
        core::ptr::write_bytes(end as *mut u8, 0, (dst + len - end) as usize);
    }
}
