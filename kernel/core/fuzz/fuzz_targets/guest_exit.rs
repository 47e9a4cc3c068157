//! Fuzz target: a guest chooses which instruction traps, so the kernel's
//! trap classification (skyscope-el2) and the VMM's exit decoding
//! (skyscope-vmm) must take any syndrome and address without panicking,
//! and agree on what they accept: an MMIO access only from a memory exit
//! with a valid instruction syndrome, at the address the kernel reported.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyscope_abi::fault::ExitKind;
use skyscope_el2::trap::{Trap, classify_guest};
use skyscope_vmm::arch::aarch64::exit::Exit;

fuzz_target!(|input: [u64; 5]| {
    let [esr, far, hpfar, elr, raw] = input;
    // What the kernel sends the VMM is the exit el2 classifies, as words.
    let Trap::GuestExit(exit) = classify_guest(esr, far, hpfar, elr) else {
        return; // wfi / wfe: the kernel handles those itself
    };
    match Exit::decode(exit.words()) {
        Exit::Mmio(access) => {
            assert_eq!(exit.kind, ExitKind::Memory);
            assert_eq!(access.address.raw(), exit.address);
            assert!(matches!(access.size, 1 | 2 | 4 | 8));
            assert!(access.register.is_none_or(|r| r < 31));
            let value = access.load_result(raw);
            if !access.sixty_four {
                assert_eq!(value >> 32, 0);
            }
        }
        Exit::Hypercall { imm } => {
            assert_eq!(exit.kind, ExitKind::Hypercall);
            assert_eq!(u64::from(imm), exit.address);
        }
        _ => {}
    }
});
