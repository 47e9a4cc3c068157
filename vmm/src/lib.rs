//! The unprivileged user-space VMM, as parts.
//!
//! A guest's VMM is an ordinary native process holding capabilities to the
//! guest's vCPU threads, GuestSpace and memory. The kernel reports every
//! guest exit to it as a [`skyscope_abi::fault::GUEST_EXIT`] message on an
//! endpoint; the VMM emulates what the guest touched and replies, which
//! resumes the guest. The parts, shaped like Firecracker's and rust-vmm's:
//!
//! - [`channel`]: the exit channel — receive an exit ([`channel::ExitMessage`]),
//!   answer it ([`channel::Resume`]);
//! - [`builder`]: makes a guest from untyped memory (GuestSpace, page
//!   tables, RAM frames mapped for the guest and the VMM, Vcpus, the vCPU
//!   thread, its budget) and starts it;
//! - [`memory`]: guest RAM as the VMM sees it, addressed by
//!   [`memory::GuestAddress`], with loading of code;
//! - [`bus`]: which device answers at which guest-physical address;
//! - [`devices`]: device models (PL011 UART, PL031 RTC, GICv3), each a
//!   state machine without syscalls whose outputs (interrupt line levels,
//!   vCPUs to notify) the glue turns into kernel calls;
//! - [`vcpu`]: naming vCPUs and sets of them;
//! - [`arch`]: what is architecture-specific (arm64: exit decoding, PSCI,
//!   memory map, device tree, Linux Image loading);
//! - [`process`]: the VMM as a process of its own — the start record and
//!   capability slots its parent gives it, the reports it sends back, and
//!   the board (UART, PSCI, defaults) the VMM program runs a guest on.
//!
//! A parent builds a guest with [`builder`] and hands it to a VMM
//! process ([`process`]); the VMM program's `main` wires the rest together:
//! load the images into guest [`memory`], start the boot vCPU, then loop
//! on the [`channel`], dispatching each exit to the bus, PSCI (and later
//! the GIC) and turning their actions into syscalls. Only the exit
//! channel's receive and reply, the builder's `Syscalls` backend and the
//! vCPU register reads in [`vcpu`] make syscalls (and they exist only on
//! arm64 targets); everything else is plain code the host tests exercise.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(feature = "alloc", test))]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod arch;
pub mod builder;
pub mod bus;
pub mod channel;
pub mod devices;
pub mod memory;
pub mod process;
pub mod vcpu;
