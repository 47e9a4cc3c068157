//! Scenarios with a stock Debian Linux kernel under a VMM process
//! (`guest::linux_*`): the harness hands the kernel Image and the busybox
//! initramfs over as boot modules (`cargo xtask payload` fetches them),
//! the root task starts the guest as it does for `guest=linux`
//! (`skyscope_launcher::linux`), and the harness types at the guest's
//! shell through the serial console once the init marker appears. Each
//! scenario passes when the guest powers itself off through PSCI and every
//! console pattern of its catalog entry matched.

use crate::{Failure, Outcome};
use skyscope_abi::{BootInfo, println};
use skyscope_launcher::{
    config::{DEFAULT_GUEST_MEM, GuestConfig},
    linux,
};

/// The guest's command line: the PL011 as its console; a panic powers it
/// off (PSCI SYSTEM_RESET is reported, and fails the scenario) instead of
/// hanging.
const CMDLINE: &str = "console=ttyAMA0 panic=-1";

/// Runs the Linux guest with `vcpus` vCPUs until it ends; passes if it
/// powered off.
fn boot(info: &'static BootInfo, vcpus: usize) -> Outcome {
    let config = GuestConfig {
        vcpus,
        memory: DEFAULT_GUEST_MEM,
        epoch: 0,
        cmdline: CMDLINE,
    };
    let ended = linux::run(info, &config).map_err(|e| fail!("linux: {e}"))?;
    if !linux::tell(&ended) {
        return Err(Failure);
    }
    println!("  the Linux guest powered itself off through PSCI");
    Ok(())
}

pub fn linux_boots(info: &'static BootInfo) -> Outcome {
    boot(info, 1)
}

pub fn linux_smp(info: &'static BootInfo) -> Outcome {
    boot(info, 2)
}

pub fn console_input(info: &'static BootInfo) -> Outcome {
    boot(info, 1)
}
