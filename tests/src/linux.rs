//! Scenarios with a stock Debian Linux kernel under a VMM process
//! (`guest::linux_*`): the harness hands the kernel Image and the busybox
//! initramfs over as boot modules (`cargo xtask payload` fetches them),
//! the root task starts the guest as it does for `guest=linux`
//! (`skyscope_launcher::linux`), and the harness types at the guest's
//! shell through the serial console once the init marker appears. Each
//! scenario passes when the guest powers itself off through PSCI and every
//! console pattern of its catalog entry matched.

use crate::{Failure, Outcome, support::Env, vmm_process::check_cspace};
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
/// powered off. Returns the run and the scenario's slots past the
/// launch's.
fn boot(info: &'static BootInfo, vcpus: usize) -> Result<(linux::Run, Env), Failure> {
    let config = GuestConfig {
        vcpus,
        memory: DEFAULT_GUEST_MEM,
        epoch: 0,
        cmdline: CMDLINE,
    };
    let mut env = Env::new(info);
    let first = env.slot();
    let (run, resets) =
        linux::run_until_off(info, &config, first).map_err(|e| fail!("linux: {e}"))?;
    if !linux::tell(&run.ended) {
        return Err(Failure);
    }
    if resets > 0 {
        println!("  the guest was built again {resets} time(s) after a reset");
    }
    println!("  the Linux guest powered itself off through PSCI");
    env.slots(run.next_slot - first);
    Ok((run, env))
}

pub fn linux_boots(info: &'static BootInfo) -> Outcome {
    let (run, mut env) = boot(info, 1)?;
    // The VMM held that guest's capabilities, the console with READ and
    // the input notification, and nothing else.
    let ut = env
        .private_untyped(16)
        .map_err(|e| fail!("untyped for the check: {e}"))?;
    check_cspace(&mut env, ut, &run.vmm)
}

pub fn linux_smp(info: &'static BootInfo) -> Outcome {
    boot(info, 2).map(drop)
}

pub fn linux_reset(info: &'static BootInfo) -> Outcome {
    boot(info, 1).map(drop)
}

/// `devmem` at 0x0a00_0000, where QEMU's `virt` would have virtio-mmio and
/// this machine has nothing: SIGBUS (status 128 + 7) for both accesses.
pub fn linux_bus_error(info: &'static BootInfo) -> Outcome {
    boot(info, 1).map(drop)
}

pub fn console_input(info: &'static BootInfo) -> Outcome {
    boot(info, 1).map(drop)
}
