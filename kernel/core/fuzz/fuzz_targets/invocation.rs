//! Fuzz target: arbitrary invocations (any capability slot, label,
//! argument words and extra capabilities) against a small live system on
//! the host machine model. The kernel must answer every one (the model
//! panics on any use-after-free, double finalisation or bad access) and
//! the invariants must hold after each.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyscope_abi::{Label, ObjectType};
use skyscope_core::{
    Invocation,
    slot::SlotStore,
    testing::{World, layout},
};

fn word(bytes: &mut &[u8]) -> Option<u64> {
    let (&tag, rest) = bytes.split_first()?;
    *bytes = rest;
    // Small values and slot numbers are far likelier to mean something.
    Some(match tag % 4 {
        0 => u64::from(tag >> 2),
        1 => u64::from(tag >> 2) % 64,
        2 => {
            let n = bytes.len().min(8);
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&bytes[..n]);
            *bytes = &bytes[n..];
            u64::from_le_bytes(b)
        }
        _ => Label::ALL[usize::from(tag >> 2) % Label::ALL.len()] as u64,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut world = World::new();
    // Something to work with: a CNode, a TCB, an endpoint, frames, a VSpace.
    for (ty, size, slot) in [
        (ObjectType::CNode, 2, 10),
        (ObjectType::Tcb, 0, 11),
        (ObjectType::Endpoint, 0, 12),
        (ObjectType::Frame4K, 0, 13),
        (ObjectType::VSpace, 0, 14),
        (ObjectType::PageTable, 0, 15),
        (ObjectType::Untyped, 12, 16),
    ] {
        world
            .retype(layout::UNTYPED_SLOT, ty, size, slot, 1)
            .expect("setup");
    }
    let mut bytes = data;
    while let (Some(slot), Some(label), Some(count)) =
        (word(&mut bytes), word(&mut bytes), word(&mut bytes))
    {
        let args: Vec<u64> = (0..count % 8).map_while(|_| word(&mut bytes)).collect();
        let extra: Vec<_> = (0..(count >> 3) % 4)
            .map_while(|_| word(&mut bytes))
            .map(|s| {
                let s = World::slot(s % 64);
                (world.kernel.machine.slot(s).cap, s)
            })
            .collect();
        let target = if slot & 64 != 0 {
            World::root_anchor()
        } else {
            World::slot(slot % 64)
        };
        let _ = world.kernel.invoke(
            target,
            &Invocation {
                label,
                args: &args,
                extra_caps: &extra,
            },
        );
        if let Err(e) = world.kernel.check_invariants(&[World::root_cap()]) {
            panic!("invariant violated: {e}");
        }
    }
});
