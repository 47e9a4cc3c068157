//! Fuzz target: a guest chooses which instruction traps, so the kernel's
//! trap classification (skyscope-el2) and the VMM's exit decoding
//! (skyscope-vmm) must take any syndrome and address without panicking,
//! and agree on what they accept: an MMIO access only from a memory exit
//! with a valid instruction syndrome, at the address the kernel reported.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyscope_abi::fault;
use skyscope_el2::exit::{GuestTrap, classify};
use skyscope_vmm::arch::aarch64::exit::Exit;

fuzz_target!(|input: [u64; 4]| {
    let [esr, far, hpfar, raw] = input;
    let trap = classify(esr, far, hpfar);
    let (kind, address) = match trap {
        GuestTrap::Hypercall { imm } => (fault::EXIT_HYPERCALL, u64::from(imm)),
        GuestTrap::MonitorCall { imm } => (fault::EXIT_MONITOR_CALL, u64::from(imm)),
        GuestTrap::SystemRegister => (fault::EXIT_SYSTEM_REGISTER, 0),
        GuestTrap::Memory { ipa } => (fault::EXIT_MEMORY, ipa),
        GuestTrap::Other => (fault::EXIT_OTHER, 0),
        GuestTrap::WaitForInterrupt | GuestTrap::Yield => return,
    };
    match Exit::decode([0, esr, address, kind]) {
        Exit::Mmio(access) => {
            assert_eq!(kind, fault::EXIT_MEMORY);
            assert_eq!(access.address.raw(), address);
            assert!(matches!(access.size, 1 | 2 | 4 | 8));
            assert!(access.register.is_none_or(|r| r < 31));
            let value = access.load_result(raw);
            if !access.sixty_four {
                assert_eq!(value >> 32, 0);
            }
        }
        Exit::Hypercall { imm } => assert_eq!(u64::from(imm), address),
        _ => {}
    }
});
