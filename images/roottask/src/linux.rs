//! `guest=linux` on the kernel command line: the Linux guest the boot
//! modules carry runs under a VMM process (`skyscope_launcher::linux`; the
//! options are `skyscope_launcher::config`'s). The guest is the only one:
//! when it powers off the system ends with status 0; when it resets, the
//! root task deletes the guest and its VMM and builds both again from the
//! same (untouched) boot modules; a VMM failure or fault ends the system
//! with a non-zero status after saying why.

use skyscope_abi::{BootInfo, println, rt::exit};
use skyscope_launcher::{config::GuestConfig, linux};

/// Runs the guest and powers the machine off.
pub fn run(info: &'static BootInfo) -> ! {
    let config = match GuestConfig::parse(info.bootargs()) {
        Ok(c) => c,
        Err(e) => {
            println!("linux: {e}");
            exit(1)
        }
    };
    match linux::run_until_off(info, &config, info.empty.start) {
        Ok((run, _)) => exit(if linux::tell(&run.ended) { 0 } else { 1 }),
        Err(e) => {
            println!("linux: {e}");
            exit(1)
        }
    }
}
