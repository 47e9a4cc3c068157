//! A global cell for kernel state on a single CPU with a non-reentrant kernel.

use core::cell::UnsafeCell;

/// Holds state that only the (single, non-reentrant) kernel touches.
pub struct KernelCell<T>(UnsafeCell<T>);

// SAFETY: the kernel runs on one CPU with interrupts masked except while it
// waits for an interrupt holding no borrow (see `KernelCell::get`), so no
// two contexts access the contents at once.
unsafe impl<T> Sync for KernelCell<T> {}

impl<T> KernelCell<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> KernelCell<T> {
        KernelCell(UnsafeCell::new(value))
    }

    /// Borrows the contents mutably.
    ///
    /// # Safety
    /// No other reference to the contents may be live: callers borrow only
    /// for one kernel entry (or one idle-loop interrupt) and never hold the
    /// borrow across `wait_for_interrupt` or a return to user space.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut T {
        // SAFETY: exclusivity is guaranteed by the caller.
        unsafe { &mut *self.0.get() }
    }
}

/// `r` with its address hidden from the optimiser, so that the code keeps
/// it in one register and reaches each field at an offset from it, instead
/// of materialising a static's address afresh (`adrp` and all) for every
/// field it touches: the IPC fastpath reads and writes about a dozen of
/// the kernel state's.
#[inline(always)]
pub fn in_register<T>(r: &mut T) -> &mut T {
    let mut p: *mut T = r;
    // SAFETY: the instruction-less template returns `p` unchanged; it
    // touches no memory, stack or flags (`nomem` is right although `p` is
    // a pointer: the template does not dereference it).
    #[allow(clippy::pointers_in_nomem_asm_block)]
    unsafe {
        core::arch::asm!("/* {0} */", inout(reg) p, options(pure, nomem, nostack, preserves_flags));
    }
    // SAFETY: `p` is `r`, whose exclusive borrow this one replaces.
    unsafe { &mut *p }
}
