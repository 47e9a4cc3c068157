//! Fuzz target: capability-address resolution through guarded, nested
//! CNodes never panics, and a slot it returns lies inside a live CNode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyscope_abi::{CapRights, Label, ObjectType, invocation::guard_word};
use skyscope_core::{
    cspace,
    slot::SlotStore,
    testing::{World, layout},
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let mut world = World::new();
    // CNodes of radix 1..=4 in root slots 10.., each minted with a guard
    // taken from the input into slot 20.., and linked into each other.
    let count = usize::from(data[0] % 6) + 1;
    for i in 0..count as u64 {
        let radix = u64::from(data[(i as usize + 1) % data.len()] % 4) + 1;
        if world
            .retype(layout::UNTYPED_SLOT, ObjectType::CNode, radix, 10 + i, 1)
            .is_err()
        {
            return;
        }
        let g = data[(i as usize + 2) % data.len()];
        let guard = guard_word(u64::from(g >> 4), g & 0x7);
        let _ = world.mint(10 + i, 20 + i, CapRights::ALL, guard);
    }
    for (i, pair) in data.chunks(2).skip(1).take(8).enumerate() {
        // Copy guarded CNode capabilities into slot 0 of other CNodes.
        let (from, into) = (
            u64::from(pair[0]) % count as u64,
            u64::from(pair.get(1).copied().unwrap_or(0)) % count as u64,
        );
        let _ = world.cnode(Label::CNodeCopy, &[(10 + into) << 4, 10, 20 + from, 6, 0xf]);
        let _ = i;
    }
    for chunk in data.chunks(9) {
        if chunk.len() < 9 {
            break;
        }
        let cptr = u64::from_le_bytes(chunk[..8].try_into().unwrap());
        let depth = u32::from(chunk[8] % 70);
        let root = world
            .kernel
            .machine
            .slot(World::slot(20 + u64::from(chunk[8]) % count as u64))
            .cap;
        for result in [
            cspace::lookup_slot(&world.kernel.machine, &root, cptr, depth),
            cspace::lookup_cap_slot(&world.kernel.machine, &root, cptr),
        ] {
            if let Ok(slot) = result {
                // Must be a real slot: reading it must not panic.
                let _ = world.kernel.machine.slot(slot).cap;
            }
        }
    }
});
