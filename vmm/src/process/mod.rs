//! A VMM as a native process of its own: the contract between the VMM
//! program (`images/vmm`) and the parent that starts it (the root task),
//! and the board the program presents to its guest.
//!
//! The parent builds the guest (GuestSpace, Vcpus and their threads, RAM
//! frames mapped for the guest and into the VMM's address space) and the
//! VMM process, puts exactly the capabilities that one guest needs in the
//! fixed [`slots`] of the VMM's own CNode, and maps a read-only start page
//! holding a [`VmmStart`] record: the guest RAM, the images to load
//! (handed over as frames, never compiled into the VMM), the vCPU count,
//! the VMM's name on the console. The VMM holds no untyped memory, no
//! CNode, VSpace, TCB or scheduling context of its own, and no power,
//! debug, IRQ or audit capability: it cannot make objects, reach another
//! guest or stop the machine. It runs its guest on a [`Board`] and tells
//! the parent how the guest ended with a [`Report`] on its supervisor
//! endpoint; if the VMM itself faults, the parent hears of it through the
//! fault endpoint it gave the VMM's thread.

pub mod board;
#[cfg(any(feature = "alloc", test))]
pub mod linux;
pub mod machine;
pub mod report;
pub mod start;

pub use board::{Board, Registers, Step};
pub use machine::{Machine, Vm};
pub use report::{Failure, Report, Stats};
pub use start::{Module, Plan, StartError, VmmStart};

/// Fixed slots of a VMM process's CNode. Its CSpace root has a guard that
/// takes every address bit but the radix, so a capability address is a
/// slot index, as in the root task.
pub mod slots {
    use crate::vcpu::MAX_VCPUS;

    /// Always empty.
    pub const NULL: u64 = 0;
    /// The exit endpoint, READ only (receive): the fault handler of every
    /// vCPU thread is a badged copy of it ([`super::VmmStart::exit_badge`]).
    pub const EXIT_ENDPOINT: u64 = 1;
    /// The reply object exits are received with (and answered through).
    pub const EXIT_REPLY: u64 = 2;
    /// A console capability with WRITE only: where the guest's UART output
    /// and the VMM's own lines go.
    pub const CONSOLE: u64 = 3;
    /// An endpoint to the parent, WRITE only, badged: where [`Report`]s
    /// go.
    ///
    /// [`Report`]: super::Report
    pub const SUPERVISOR: u64 = 4;
    /// The guest's GuestSpace: with the RAM frames, lets the VMM change
    /// the guest's memory map.
    pub const GUEST_SPACE: u64 = 5;
    /// With [`super::start::flags::CONSOLE_INPUT`]: a notification bound
    /// to the VMM's thread (so that its receive on the exit endpoint also
    /// returns when it is signalled), which the VMM registers with
    /// `console_notify` to hear of console input.
    pub const CONSOLE_INPUT: u64 = 6;
    /// Slot of vCPU 0's Vcpu object.
    const FIRST_VCPU: u64 = 8;

    /// vCPU `i`'s Vcpu object (READ and WRITE: its EL1 registers).
    pub const fn vcpu(i: usize) -> u64 {
        FIRST_VCPU + 2 * i as u64
    }

    /// The thread that runs as vCPU `i` (its registers, resume, suspend).
    pub const fn vcpu_thread(i: usize) -> u64 {
        FIRST_VCPU + 2 * i as u64 + 1
    }

    /// First slot after the fixed ones: the RAM and module frame ranges
    /// the start record names lie from here.
    pub const FIRST_VARIABLE: u64 = FIRST_VCPU + 2 * MAX_VCPUS as u64;

    /// Whether `slot` is one of the fixed slots a VMM with `vcpus` vCPUs
    /// gets.
    pub const fn is_fixed(slot: u64, vcpus: usize) -> bool {
        (slot >= EXIT_ENDPOINT && slot <= CONSOLE_INPUT)
            || (slot >= FIRST_VCPU && slot < FIRST_VCPU + 2 * vcpus as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::slots::*;
    use crate::vcpu::MAX_VCPUS;

    #[test]
    fn fixed_slots_are_distinct_and_below_the_variable_ones() {
        let mut all = std::vec![
            EXIT_ENDPOINT,
            EXIT_REPLY,
            CONSOLE,
            SUPERVISOR,
            GUEST_SPACE,
            CONSOLE_INPUT,
        ];
        for i in 0..MAX_VCPUS {
            all.extend([vcpu(i), vcpu_thread(i)]);
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        assert!(all.iter().all(|&s| s != NULL && s < FIRST_VARIABLE));
        assert!(all.iter().all(|&s| is_fixed(s, MAX_VCPUS)));
        assert!(is_fixed(vcpu_thread(0), 1) && !is_fixed(vcpu(1), 1));
        assert!(!is_fixed(NULL, 8) && !is_fixed(7, 8) && !is_fixed(FIRST_VARIABLE, 8));
    }
}
