//! The root task of the test image: with `test=NAME` on the kernel command
//! line it runs that in-QEMU scenario and powers off with its result; with
//! `bench=ipc` it runs the benchmarks (`case=` selects some). The production root task
//! (`images/roottask`) carries none of this: `cargo xtask test` and
//! `cargo xtask bench` build the kernel around this image instead.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use skyscope_abi::{BootInfo, println};

fn main(boot_info: &'static BootInfo) -> ! {
    if let Some(name) = boot_info.bootarg("test") {
        skyscope_tests::run(name, boot_info);
    }
    if boot_info.bootarg("bench") == Some("ipc") {
        let n = boot_info
            .bootarg("iterations")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        let filter = boot_info.bootarg("case").unwrap_or("");
        let status = match skyscope_tests::bench::run(boot_info, n, filter) {
            Ok(_) => 0,
            Err(e) => {
                println!("BENCH-ERROR {e}");
                1
            }
        };
        skyscope_abi::rt::exit(status);
    }
    println!(
        "test image: nothing to do (bootargs \"{}\"); give test=NAME or bench=ipc",
        boot_info.bootargs()
    );
    skyscope_abi::rt::exit(1)
}

skyscope_abi::entry!(main);
