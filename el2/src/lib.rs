//! Everything pure about arm64 traps and virtualization, host-tested and
//! fuzzed, shared by the kernel and the VMM: how exception syndromes
//! decode ([`esr`]), what a trap from EL0 or from a guest asks of the
//! kernel ([`trap`]: the one decode of every native and guest exception),
//! what the kernel writes into the EL2 control registers ([`config`]:
//! HCR_EL2, VTCR_EL2, MDCR_EL2) and stage-2 descriptors ([`stage2`]), and
//! which PSTATE a guest may resume with ([`pstate`]), the CPU features a
//! guest sees ([`idregs`]), its virtual interrupts ([`vgic`]) and its timers
//! while it is switched out ([`timer`]). The kernel's
//! `arch::aarch64` does the register moves; the VMM decodes its exit
//! messages with the same [`esr`] types.
#![no_std]
#![forbid(unsafe_code)]

pub mod config;
pub mod esr;
pub mod idregs;
pub mod pstate;
pub mod stage2;
pub mod timer;
pub mod trap;
pub mod vgic;
