//! Threads, address spaces and interrupts through their invocations.

use crate::{
    PhysAddr,
    cap::{Cap, Mapping},
    machine::prelude::*,
    object::tcb::{self, ThreadState},
    slot::SlotStore,
    testing::{World, layout},
};
use skyscope_abi::{
    CapRights, Error, Label, ObjectType,
    invocation::{MAP_EXECUTE, REG_PC, REG_SP},
};

const UT: u64 = layout::UNTYPED_SLOT;
const R: u64 = 0xf; // read | write | grant | grant-reply

/// A TCB in slot 10, a VSpace in 11, a CNode in 12, configured.
fn thread_world() -> World {
    let mut w = World::new();
    w.retype(UT, ObjectType::Tcb, 0, 10, 1).unwrap();
    w.retype(UT, ObjectType::VSpace, 0, 11, 1).unwrap();
    w.retype(UT, ObjectType::CNode, 4, 12, 1).unwrap();
    w.invoke_slot(
        World::slot(10),
        Label::TcbConfigure,
        &[0, 100, 0, 0],
        &[World::slot(12), World::slot(11)],
    )
    .unwrap();
    w.give_sched_context(10, 30, 1000, 1000);
    w
}

#[test]
fn configure_copies_cspace_and_vspace_into_the_tcb() {
    let w = thread_world();
    let Cap::Tcb { ptr, .. } = w.cap(10) else {
        panic!()
    };
    let m = &w.kernel.machine;
    assert!(
        m.slot(tcb::slot_ref(ptr, tcb::slots::CSPACE))
            .cap
            .same_object(&w.cap(12))
    );
    assert!(
        m.slot(tcb::slot_ref(ptr, tcb::slots::VSPACE))
            .cap
            .same_object(&w.cap(11))
    );
    assert_eq!(m.tcb(ptr).priority, 100);
}

#[test]
fn resume_suspend_and_the_ready_queue() {
    let mut w = thread_world();
    let Cap::Tcb { ptr, .. } = w.cap(10) else {
        panic!()
    };
    w.invoke_slot(
        World::slot(10),
        Label::TcbWriteRegisters,
        &[2, 0x40_0000, 0x7f_0000],
        &[],
    )
    .unwrap();
    w.invoke_slot(World::slot(10), Label::TcbResume, &[], &[])
        .unwrap();
    assert_eq!(w.kernel.machine.tcb(ptr).state, ThreadState::Runnable);
    assert_eq!(w.kernel.schedule(), Some(ptr));
    // The current thread cannot read its own registers through a cap.
    assert_eq!(
        w.invoke_slot(World::slot(10), Label::TcbReadRegisters, &[2], &[]),
        Err(Error::IllegalOperation)
    );
    w.invoke_slot(World::slot(10), Label::TcbSuspend, &[], &[])
        .unwrap();
    assert_eq!(w.kernel.current, None);
    assert_eq!(w.kernel.schedule(), None);
    let regs = w
        .invoke_slot(World::slot(10), Label::TcbReadRegisters, &[2], &[])
        .unwrap();
    assert_eq!(regs.words(), &[0x40_0000, 0x7f_0000]);
    assert_eq!((REG_PC, REG_SP), (0, 1));
}

#[test]
fn tcb_rights_gate_operations() {
    let mut w = thread_world();
    w.copy(10, 20, CapRights::READ).unwrap();
    assert_eq!(
        w.invoke_slot(World::slot(20), Label::TcbResume, &[], &[]),
        Err(Error::InsufficientRights)
    );
    assert!(
        w.invoke_slot(World::slot(20), Label::TcbReadRegisters, &[1], &[])
            .is_ok()
    );
    assert_eq!(
        w.invoke_slot(World::slot(20), Label::TcbReadRegisters, &[0], &[]),
        Err(Error::RangeError)
    );
    assert_eq!(
        w.invoke_slot(World::slot(20), Label::TcbReadRegisters, &[99], &[]),
        Err(Error::RangeError)
    );
}

#[test]
fn deleting_a_running_threads_last_cap_stops_it() {
    let mut w = thread_world();
    w.invoke_slot(World::slot(10), Label::TcbResume, &[], &[])
        .unwrap();
    w.delete(10).unwrap();
    assert_eq!(w.kernel.schedule(), None);
    assert_eq!(w.kernel.machine.destroyed.get(&ObjectType::Tcb), Some(&1));
    // Its CSpace and VSpace survive: we still hold caps to them.
    assert!(matches!(w.cap(12), Cap::CNode { .. }));
}

#[test]
fn priorities_order_the_ready_queue() {
    let mut w = World::new();
    w.retype(UT, ObjectType::VSpace, 0, 9, 1).unwrap();
    w.retype(UT, ObjectType::CNode, 2, 8, 1).unwrap();
    w.retype(UT, ObjectType::Tcb, 0, 10, 3).unwrap();
    for (slot, prio) in [(10, 5), (11, 200), (12, 5)] {
        w.invoke_slot(
            World::slot(slot),
            Label::TcbConfigure,
            &[0, prio, 0, 0],
            &[World::slot(8), World::slot(9)],
        )
        .unwrap();
        w.give_sched_context(slot, slot + 20, 1000, 1000);
        w.invoke_slot(World::slot(slot), Label::TcbResume, &[], &[])
            .unwrap();
    }
    let ptr = |w: &World, s| match w.cap(s) {
        Cap::Tcb { ptr, .. } => ptr,
        _ => panic!(),
    };
    assert_eq!(w.kernel.schedule(), Some(ptr(&w, 11)));
    w.invoke_slot(World::slot(11), Label::TcbSuspend, &[], &[])
        .unwrap();
    // Equal priorities take turns in FIFO (resume) order.
    assert_eq!(w.kernel.schedule(), Some(ptr(&w, 10)));
    w.kernel.rotate_current();
    assert_eq!(w.kernel.schedule(), Some(ptr(&w, 12)));
    w.kernel.rotate_current();
    assert_eq!(w.kernel.schedule(), Some(ptr(&w, 10)));
}

/// VSpace in 11, frame in 13, page tables in 14 and 15.
fn vspace_world() -> World {
    let mut w = World::new();
    w.retype(UT, ObjectType::VSpace, 0, 11, 1).unwrap();
    w.retype(UT, ObjectType::Frame4K, 0, 13, 1).unwrap();
    w.retype(UT, ObjectType::PageTable, 0, 14, 2).unwrap();
    w
}

fn map(w: &mut World, frame: u64, vaddr: u64, rights: CapRights, attrs: u64) -> Result<(), Error> {
    w.invoke_slot(
        World::slot(frame),
        Label::FrameMap,
        &[vaddr, u64::from(rights.bits()), attrs],
        &[World::slot(11)],
    )
    .map(drop)
}

#[test]
fn frames_need_page_tables_and_unmap_with_their_caps() {
    let mut w = vspace_world();
    let va = 0x40_0000;
    assert_eq!(
        map(&mut w, 13, va, CapRights::ALL, 0),
        Err(Error::FailedLookup)
    );
    for pt in [14, 15] {
        w.invoke_slot(
            World::slot(pt),
            Label::PageTableMap,
            &[va],
            &[World::slot(11)],
        )
        .unwrap();
    }
    assert_eq!(
        w.invoke_slot(
            World::slot(14),
            Label::PageTableMap,
            &[va],
            &[World::slot(11)]
        ),
        Err(Error::IllegalOperation),
        "already mapped"
    );
    map(&mut w, 13, va, CapRights::ALL, 0).unwrap();
    let Cap::VSpace {
        ptr: vspace, asid, ..
    } = w.cap(11)
    else {
        panic!()
    };
    let Cap::Frame { base, mapping, .. } = w.cap(13) else {
        panic!()
    };
    assert_eq!(mapping, Mapping::new(asid, va));
    assert_eq!(
        w.kernel.machine.translate(vspace, va + 8),
        Some(PhysAddr(base.0 + 8))
    );
    // One mapping per cap: map a copy to map twice.
    assert_eq!(
        map(&mut w, 13, va + 0x1000, CapRights::ALL, 0),
        Err(Error::IllegalOperation)
    );
    w.copy(13, 16, CapRights::READ).unwrap();
    map(&mut w, 16, va + 0x1000, CapRights::ALL, 0).unwrap();
    assert_eq!(w.kernel.machine.frame_mappings(), 2);
    // Deleting a capability removes its mapping; revoking the untyped
    // removes everything.
    w.delete(16).unwrap();
    assert_eq!(w.kernel.machine.frame_mappings(), 1);
    w.revoke(UT).unwrap();
    assert_eq!(w.kernel.machine.frame_mappings(), 0);
    assert_eq!(w.kernel.free_asids(), 4095);
}

#[test]
fn map_checks_rights_alignment_and_wx() {
    let mut w = vspace_world();
    for pt in [14, 15] {
        w.invoke_slot(
            World::slot(pt),
            Label::PageTableMap,
            &[0x40_0000],
            &[World::slot(11)],
        )
        .unwrap();
    }
    assert_eq!(
        map(&mut w, 13, 0x40_0010, CapRights::ALL, 0),
        Err(Error::AlignmentError)
    );
    assert_eq!(
        map(&mut w, 13, 0x40_0000, CapRights::ALL, MAP_EXECUTE),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        map(&mut w, 13, 1 << 40, CapRights::READ, 0),
        Err(Error::InvalidArgument)
    );
    w.copy(11, 17, CapRights::READ).unwrap();
    assert_eq!(
        w.invoke_slot(
            World::slot(13),
            Label::FrameMap,
            &[0x40_0000, R, 0],
            &[World::slot(17)]
        ),
        Err(Error::InsufficientRights),
        "read-only VSpace cap"
    );
    assert_eq!(
        w.invoke_slot(
            World::slot(13),
            Label::FrameMap,
            &[0x40_0000, R, 0],
            &[World::slot(14)]
        ),
        Err(Error::WrongType)
    );
    map(&mut w, 13, 0x40_0000, CapRights::READ, MAP_EXECUTE).unwrap();
    let addr = w
        .invoke_slot(World::slot(13), Label::FrameGetAddress, &[], &[])
        .unwrap();
    assert_eq!(addr.words().len(), 1);
}

#[test]
fn deleting_a_vspace_invalidates_mappings_into_it() {
    let mut w = vspace_world();
    for pt in [14, 15] {
        w.invoke_slot(
            World::slot(pt),
            Label::PageTableMap,
            &[0x40_0000],
            &[World::slot(11)],
        )
        .unwrap();
    }
    map(&mut w, 13, 0x40_0000, CapRights::ALL, 0).unwrap();
    w.delete(11).unwrap();
    assert_eq!(w.kernel.machine.frame_mappings(), 0);
    // The frame cap still records its mapping, but unmapping is harmless.
    w.invoke_slot(World::slot(13), Label::FrameUnmap, &[], &[])
        .unwrap();
    w.invoke_slot(World::slot(14), Label::PageTableUnmap, &[], &[])
        .unwrap();
}

#[test]
fn one_handler_per_irq() {
    let mut w = World::new();
    let control = crate::cap::Cap::IrqControl;
    w.kernel
        .install_original(crate::cap::SlotRef::NONE, World::slot(40), control);
    let get = |w: &mut World, irq: u64, dst: u64| {
        w.invoke_slot(
            World::slot(40),
            Label::IrqControlGet,
            &[irq, dst, 6],
            &[World::root_anchor()],
        )
    };
    assert_eq!(
        get(&mut w, 27, 41),
        Err(Error::InvalidArgument),
        "kernel-reserved PPI"
    );
    assert_eq!(get(&mut w, 5000, 41), Err(Error::RangeError));
    get(&mut w, 40, 41).unwrap();
    assert_eq!(get(&mut w, 40, 42), Err(Error::RevokeFirst));
    w.invoke_slot(World::slot(41), Label::IrqHandlerAck, &[], &[])
        .unwrap();
    assert!(w.kernel.machine.irqs_enabled.contains(&40));
    w.delete(41).unwrap();
    assert!(!w.kernel.machine.irqs_enabled.contains(&40));
    get(&mut w, 40, 42).unwrap();
    // Revoking IRQ control takes the handler away.
    w.revoke(40).unwrap();
    assert!(w.cap(42).is_null());
    assert_eq!(w.copy(40, 43, CapRights::ALL), Err(Error::IllegalOperation));
}
