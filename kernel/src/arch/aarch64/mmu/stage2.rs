//! Stage-2 translation of guest spaces: the leaf format (from `el2`), the
//! cache maintenance guest RAM needs without FEAT_S2FWB, and TLB
//! maintenance by VMID.

use super::physmap::phys_to_virt;
use skyscope_core::{PhysAddr, machine::Access};

/// Leaf descriptor bits of a guest mapping.
pub(super) fn leaf_bits(access: Access) -> u64 {
    skyscope_el2::stage2::leaf_bits(access, crate::arch::vcpu::forced_write_back()).bits()
}

/// Cleans and invalidates `[pa, pa + size)` of RAM to the point of
/// coherency (`dc civac` per line, line size from CTR_EL0.DminLine).
pub(super) fn clean_to_coherency(pa: PhysAddr, size: u64) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let start = phys_to_virt(pa);
    let mut va = start;
    while va < start + size {
        // SAFETY: cache maintenance of RAM the physmap maps (checked by
        // `phys_to_virt`); it changes no data.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) va, options(nostack)) };
        va += line;
    }
    // SAFETY: a barrier only.
    unsafe { core::arch::asm!("dsb sy", options(nostack)) };
}
