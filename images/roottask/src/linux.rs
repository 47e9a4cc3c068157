//! `guest=linux` on the kernel command line: the Linux guest the boot
//! modules carry runs under a VMM process (`skyscope_launcher::linux`; the
//! options are `skyscope_launcher::config`'s). The guest is the only one:
//! when it powers off the system ends with status 0; when it resets, the
//! root task deletes the guest and its VMM and builds both again from the
//! same (untouched) boot modules; a VMM failure or fault ends the system
//! with a non-zero status after saying why.

use skyscope_abi::{BootInfo, println, rt::exit};
use skyscope_launcher::{
    config::GuestConfig,
    linux::{self, Ended},
};
use skyscope_vmm::process::Report;

/// Resets in a row after which the root task gives up (a guest that resets
/// at once, forever, would otherwise keep the machine busy).
const MAX_RESETS: u32 = 16;

/// Runs the guest and powers the machine off.
pub fn run(info: &'static BootInfo) -> ! {
    let config = match GuestConfig::parse(info.bootargs()) {
        Ok(c) => c,
        Err(e) => {
            println!("linux: {e}");
            exit(1)
        }
    };
    for boot in 0..=MAX_RESETS {
        let run = match linux::run(info, &config, info.empty.start) {
            Ok(run) => run,
            Err(e) => {
                println!("linux: {e}");
                exit(1)
            }
        };
        let powered_off = linux::tell(&run.ended);
        if !matches!(run.ended, Ended::Report(Report::Reset(_))) || boot == MAX_RESETS {
            exit(if powered_off { 0 } else { 1 })
        }
        if let Err(e) = linux::reclaim(info) {
            println!("linux: {e}");
            exit(1)
        }
        println!("linux: building the guest again from the boot modules");
    }
    exit(1)
}
