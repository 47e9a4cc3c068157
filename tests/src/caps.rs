//! Capability scenarios: retype and start a process, revoke, rights,
//! malformed invocations, reuse of untyped memory.

use crate::{
    Outcome,
    support::{Env, ROOT, ROOT_DEPTH, is_empty, read},
};
use skyscope_abi::{
    BootInfo, CapRights, Error, Label, ObjectType,
    bootinfo::slots,
    invocation::{self as inv, MAP_EXECUTE, REG_PC, REG_SP, REG_X0},
    println,
    syscall::{counter_now, yield_now},
};

const PAGE: u64 = 4096;

/// Where the child process and the root task see the shared page.
const CHILD_SHARED: u64 = 0x50_0000;
const CHILD_IPC_BUFFER: u64 = 0x50_1000;
const ROOT_SHARED: u64 = 0x5f_0000;
const CHILD_STACK_TOP: u64 = 0x7f_fff0_0000;
const CHILD_STACK_PAGES: u64 = 4;
const MAGIC: u64 = 0x5ca1_ab1e;
/// Slot of the child's CSpace holding its copy of the console capability.
const CHILD_CONSOLE: u64 = 1;

/// The child process's code: it runs in its own address space, in which
/// the root task mapped (read-only) the pages of its own image, a stack and
/// one page it shares with the root task. It touches no globals.
extern "C" fn child_main(shared: *mut u64, magic: u64) -> ! {
    let ipc_buffer: u64;
    // SAFETY: reading TPIDRRO_EL0 has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, tpidrro_el0", out(reg) ipc_buffer, options(nomem, nostack))
    };
    // SAFETY: `shared` is the page the root task mapped here read-write.
    unsafe {
        shared.add(1).write_volatile(ipc_buffer);
        shared.write_volatile(magic);
    }
    let _ = skyscope_abi::syscall::console_write(
        CHILD_CONSOLE,
        b"  child process: running in its own address space\n",
    );
    loop {
        skyscope_abi::syscall::wait_for_interrupt();
    }
}

pub fn retype_and_start_process(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env
        .private_untyped(21)
        .map_err(|e| fail!("private untyped: {e}"))?;
    let tcb = env
        .retype(ut, ObjectType::Tcb, 0, 1)
        .map_err(|e| fail!("TCB: {e}"))?;
    let vspace = env
        .retype(ut, ObjectType::VSpace, 0, 1)
        .map_err(|e| fail!("VSpace: {e}"))?;
    let cnode = env
        .retype(ut, ObjectType::CNode, 4, 1)
        .map_err(|e| fail!("CNode: {e}"))?;
    let tables = env
        .retype(ut, ObjectType::PageTable, 0, 4)
        .map_err(|e| fail!("page tables: {e}"))?;
    let frames = env
        .retype(ut, ObjectType::Frame4K, 0, CHILD_STACK_PAGES + 2)
        .map_err(|e| fail!("frames: {e}"))?;
    let (shared, ipc) = (frames + CHILD_STACK_PAGES, frames + CHILD_STACK_PAGES + 1);

    // Page tables for the image/shared region and for the stack region.
    for (i, va) in [
        (0, CHILD_SHARED),
        (1, CHILD_SHARED),
        (2, CHILD_STACK_TOP - PAGE),
        (3, CHILD_STACK_TOP - PAGE),
    ] {
        check_ok!(inv::page_table_map(tables + i, vspace, va));
    }
    // The root task's own image pages, mapped read-only and executable.
    let image_pages = (info.image_end - info.image_start) / PAGE;
    check!(
        info.image_frames.len() >= image_pages,
        "boot info lists too few image frames"
    );
    for i in 0..image_pages {
        let copy = env
            .copy(info.image_frames.start + i, CapRights::READ)
            .map_err(|e| fail!("copy: {e}"))?;
        check_ok!(inv::frame_map(
            copy,
            vspace,
            info.image_start + i * PAGE,
            CapRights::READ,
            MAP_EXECUTE
        ));
    }
    for i in 0..CHILD_STACK_PAGES {
        let va = CHILD_STACK_TOP - (CHILD_STACK_PAGES - i) * PAGE;
        check_ok!(inv::frame_map(frames + i, vspace, va, CapRights::ALL, 0));
    }
    check_ok!(inv::frame_map(
        shared,
        vspace,
        CHILD_SHARED,
        CapRights::ALL,
        0
    ));
    check_ok!(inv::frame_map(
        ipc,
        vspace,
        CHILD_IPC_BUFFER,
        CapRights::ALL,
        0
    ));
    // The root task maps a copy of the shared page in its own space.
    let shared_copy = env
        .copy(shared, CapRights::ALL)
        .map_err(|e| fail!("copy: {e}"))?;
    check_ok!(inv::frame_map(
        shared_copy,
        slots::VSPACE,
        ROOT_SHARED,
        CapRights::ALL,
        0
    ));
    check_eq!(read(ROOT_SHARED), 0); // fresh frames are zeroed

    // The child may print: a copy of the console capability in its CSpace.
    check_ok!(inv::cnode_copy(
        cnode,
        CHILD_CONSOLE,
        4,
        ROOT,
        slots::CONSOLE,
        ROOT_DEPTH,
        CapRights::WRITE
    ));
    check_ok!(inv::tcb_configure(
        tcb,
        0,
        255,
        cnode,
        60,
        vspace,
        CHILD_IPC_BUFFER,
        ipc
    ));
    let mut regs = [0u64; REG_X0 + 2];
    regs[REG_PC] = child_main as *const () as u64;
    regs[REG_SP] = CHILD_STACK_TOP;
    regs[REG_X0] = CHILD_SHARED;
    regs[REG_X0 + 1] = MAGIC;
    check_ok!(inv::tcb_write_registers(tcb, &regs));
    let back =
        inv::tcb_read_registers(tcb, REG_X0 + 2).map_err(|e| fail!("read registers: {e}"))?;
    check_eq!(&back.words[..REG_X0 + 2], &regs[..]);
    crate::support::give_sched_context(&mut env, ut, tcb, 10_000, 10_000)
        .map_err(|e| fail!("SC: {e}"))?;
    check_ok!(inv::tcb_resume(tcb));

    // Equal priority: yielding lets the child run.
    let deadline = counter_now() + 2 * info.timer_frequency;
    while read(ROOT_SHARED) != MAGIC {
        check!(
            counter_now() < deadline,
            "the child never wrote the shared page"
        );
        yield_now();
    }
    check_eq!(read(ROOT_SHARED + 8), CHILD_IPC_BUFFER);
    println!("  child process ran and wrote the shared page; its IPC buffer pointer was set");

    // Tear down: revoking the private untyped removes every object and mapping.
    check_ok!(inv::tcb_suspend(tcb));
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    check!(
        is_empty(tcb) && is_empty(vspace) && is_empty(shared),
        "objects survived the revoke"
    );
    // The root's mapping of the shared page went with it: mapping another
    // frame at the same address now succeeds.
    let frame = env
        .retype(ut, ObjectType::Frame4K, 0, 1)
        .map_err(|e| fail!("frame: {e}"))?;
    check_ok!(inv::frame_map(
        frame,
        slots::VSPACE,
        ROOT_SHARED,
        CapRights::ALL,
        0
    ));
    check_eq!(read(ROOT_SHARED), 0);
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}

pub fn revoke_removes_derived(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(16).map_err(|e| fail!("{e}"))?;
    let frame = env
        .retype(ut, ObjectType::Frame4K, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let a = env.copy(frame, CapRights::ALL).map_err(|e| fail!("{e}"))?;
    let b = env.copy(a, CapRights::READ).map_err(|e| fail!("{e}"))?;
    let c = env.mint(b, CapRights::READ, 0).map_err(|e| fail!("{e}"))?;
    let address = inv::frame_get_address(frame).map_err(|e| fail!("{e}"))?;
    for s in [a, b, c] {
        check_eq!(inv::frame_get_address(s), Ok(address));
    }
    // A mapped copy is unmapped by the revoke.
    check_ok!(inv::frame_map(
        c,
        slots::VSPACE,
        ROOT_SHARED,
        CapRights::READ,
        0
    ));
    check_ok!(inv::cnode_revoke(ROOT, frame, ROOT_DEPTH));
    for s in [a, b, c] {
        check!(is_empty(s), "slot {s} survived the revoke");
    }
    check_eq!(inv::frame_get_address(frame), Ok(address));
    check_ok!(inv::frame_map(
        frame,
        slots::VSPACE,
        ROOT_SHARED,
        CapRights::READ,
        0
    ));
    check_ok!(inv::frame_unmap(frame));

    // Badges: revoking one badged capability leaves other badges alone.
    let ep = env
        .retype(ut, ObjectType::Endpoint, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let one = env.mint(ep, CapRights::ALL, 1).map_err(|e| fail!("{e}"))?;
    let two = env.mint(ep, CapRights::ALL, 2).map_err(|e| fail!("{e}"))?;
    let one_copy = env.copy(one, CapRights::ALL).map_err(|e| fail!("{e}"))?;
    check_ok!(inv::cnode_revoke(ROOT, one, ROOT_DEPTH));
    check!(is_empty(one_copy), "copy of badge 1 survived");
    check!(
        !is_empty(one) && !is_empty(two),
        "revoke removed the wrong capabilities"
    );

    // Revoking the untyped removes everything made from it, transitively.
    let tcbs = env
        .retype(ut, ObjectType::Tcb, 0, 3)
        .map_err(|e| fail!("{e}"))?;
    let tcb_copy = env.copy(tcbs, CapRights::READ).map_err(|e| fail!("{e}"))?;
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    for s in [frame, ep, one, two, tcbs, tcbs + 1, tcbs + 2, tcb_copy] {
        check!(is_empty(s), "slot {s} survived revoking the untyped");
    }
    check!(!is_empty(ut), "the revoked capability itself is kept");
    Ok(())
}

const ROOT_SHARED_ALT: u64 = 0x5e_0000;

pub fn rights_cannot_grow(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(16).map_err(|e| fail!("{e}"))?;
    let tcb = env
        .retype(ut, ObjectType::Tcb, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let read_only = env.copy(tcb, CapRights::READ).map_err(|e| fail!("{e}"))?;
    let widened = env
        .copy(read_only, CapRights::ALL)
        .map_err(|e| fail!("{e}"))?;
    let minted = env
        .mint(widened, CapRights::ALL, 0)
        .map_err(|e| fail!("{e}"))?;
    for s in [read_only, widened, minted] {
        check_eq!(inv::tcb_resume(s), Err(Error::InsufficientRights));
        check_eq!(inv::tcb_set_priority(s, 1), Err(Error::InsufficientRights));
        check!(
            inv::tcb_read_registers(s, 1).is_ok(),
            "reading registers needs only READ"
        );
    }
    // A CNode capability without WRITE cannot change the CNode.
    let cnode = env.copy(ROOT, CapRights::READ).map_err(|e| fail!("{e}"))?;
    let spare = env.slot();
    check_eq!(
        inv::cnode_copy(
            cnode,
            spare,
            ROOT_DEPTH,
            ROOT,
            tcb,
            ROOT_DEPTH,
            CapRights::ALL
        ),
        Err(Error::InsufficientRights)
    );
    // A read-only VSpace capability cannot map; a read-only frame maps
    // read-only whatever the request says, and its copies stay read-only.
    let vspace = env
        .copy(slots::VSPACE, CapRights::READ)
        .map_err(|e| fail!("{e}"))?;
    let frame = env
        .retype(ut, ObjectType::Frame4K, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    check_eq!(
        inv::frame_map(frame, vspace, ROOT_SHARED_ALT, CapRights::ALL, 0),
        Err(Error::InsufficientRights)
    );
    let no_rights = env
        .copy(frame, CapRights::empty())
        .map_err(|e| fail!("{e}"))?;
    check_eq!(
        inv::frame_map(
            no_rights,
            slots::VSPACE,
            ROOT_SHARED_ALT,
            CapRights::READ,
            0
        ),
        Err(Error::InsufficientRights)
    );
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    check_ok!(inv::cnode_delete(ROOT, cnode, ROOT_DEPTH));
    check_ok!(inv::cnode_delete(ROOT, vspace, ROOT_DEPTH));
    let _ = Label::CNodeCopy;
    Ok(())
}

pub fn untyped_reuse_after_revoke(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(20).map_err(|e| fail!("{e}"))?;
    let first = env.slots(256);
    let mut addresses = [0u64; 4];
    for round in 0..20 {
        // Fill the whole megabyte with frames: 256 of them, then no more.
        check_ok!(inv::untyped_retype(
            ut,
            ObjectType::Frame4K,
            0,
            ROOT,
            0,
            0,
            first,
            256
        ));
        let spare = env.slot();
        check_eq!(
            inv::untyped_retype(ut, ObjectType::Frame4K, 0, ROOT, 0, 0, spare, 1),
            Err(Error::NotEnoughMemory)
        );
        for (i, a) in addresses.iter_mut().enumerate() {
            let got = inv::frame_get_address(first + 85 * i as u64).map_err(|e| fail!("{e}"))?;
            if round == 0 {
                *a = got;
            }
            check!(
                got == *a,
                "round {round}: frame {i} at {got:#x}, first round had {:#x}",
                *a
            );
        }
        check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
        check!(
            is_empty(first) && is_empty(first + 255),
            "frames survived the revoke"
        );
    }
    println!("  20 rounds of filling and revoking 1 MiB of untyped memory");
    Ok(())
}

/// One call of [`bad_invocations_return_errors`]: what it is, what it
/// returned, what it must return.
type Case = (&'static str, Result<(), Error>, Result<(), Error>);

pub fn bad_invocations_return_errors(info: &'static BootInfo) -> Outcome {
    use Error::*;
    let mut env = Env::new(info);
    let ut = env.private_untyped(16).map_err(|e| fail!("{e}"))?;
    let tcb = env
        .retype(ut, ObjectType::Tcb, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let ep = env
        .retype(ut, ObjectType::Endpoint, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let badged = env.mint(ep, CapRights::ALL, 9).map_err(|e| fail!("{e}"))?;
    let frame = env
        .retype(ut, ObjectType::Frame4K, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let table = env
        .retype(ut, ObjectType::PageTable, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let vspace = env
        .retype(ut, ObjectType::VSpace, 0, 1)
        .map_err(|e| fail!("{e}"))?;
    let receive_only = env.copy(ep, CapRights::READ).map_err(|e| fail!("{e}"))?;
    let empty = env.slot();
    let spare = env.slot();
    let d = ROOT_DEPTH;
    let retype = |ty: u64, size: u64, offset: u64, count: u64| {
        inv::invoke(
            ut,
            Label::UntypedRetype,
            &[ty, size, 0, 0, offset, count],
            &[ROOT],
        )
        .map(drop)
    };
    let cases: [Case; 33] = [
        (
            "invoke an empty slot",
            inv::tcb_resume(empty),
            Err(InvalidCapability),
        ),
        (
            "address outside the CSpace",
            inv::tcb_resume(1 << 40),
            Err(FailedLookup),
        ),
        (
            "unknown label",
            inv::invoke(ut, Label::FrameMap, &[], &[]).map(drop),
            Err(IllegalOperation),
        ),
        (
            "retype: unknown object type",
            retype(99, 0, spare, 1),
            Err(InvalidArgument),
        ),
        (
            "retype: CNode of radix 0",
            retype(ObjectType::CNode as u64, 0, spare, 1),
            Err(RangeError),
        ),
        (
            "retype: untyped of 100 bits",
            retype(ObjectType::Untyped as u64, 100, spare, 1),
            Err(RangeError),
        ),
        (
            "retype: zero objects",
            retype(ObjectType::Endpoint as u64, 0, spare, 0),
            Err(RangeError),
        ),
        (
            "retype: 1000 objects",
            retype(ObjectType::Endpoint as u64, 0, spare, 1000),
            Err(RangeError),
        ),
        (
            "retype: occupied slot",
            retype(ObjectType::Endpoint as u64, 0, tcb, 1),
            Err(DeleteFirst),
        ),
        (
            "retype: past the CNode end",
            retype(ObjectType::Endpoint as u64, 0, 4095, 2),
            Err(RangeError),
        ),
        (
            "retype: larger than the untyped",
            retype(ObjectType::Untyped as u64, 20, spare, 1),
            Err(NotEnoughMemory),
        ),
        (
            "retype: no destination CNode",
            inv::invoke(ut, Label::UntypedRetype, &[2, 0, 0, 0, spare, 1], &[]).map(drop),
            Err(TruncatedMessage),
        ),
        (
            "retype: destination is not a CNode",
            inv::untyped_retype(ut, ObjectType::Endpoint, 0, tcb, 0, 0, 0, 1),
            Err(WrongType),
        ),
        (
            "retype on a TCB",
            inv::untyped_retype(tcb, ObjectType::Endpoint, 0, ROOT, 0, 0, spare, 1),
            Err(IllegalOperation),
        ),
        (
            "copy from an empty slot",
            inv::cnode_copy(ROOT, spare, d, ROOT, empty, d, CapRights::ALL),
            Err(FailedLookup),
        ),
        (
            "copy into an occupied slot",
            inv::cnode_copy(ROOT, tcb, d, ROOT, ep, d, CapRights::ALL),
            Err(DeleteFirst),
        ),
        (
            "copy with depth 0",
            inv::cnode_copy(ROOT, spare, 0, ROOT, ep, d, CapRights::ALL),
            Err(RangeError),
        ),
        (
            "copy with depth 65",
            inv::cnode_copy(ROOT, spare, 65, ROOT, ep, d, CapRights::ALL),
            Err(RangeError),
        ),
        (
            "copy with a short depth",
            inv::cnode_copy(ROOT, spare, 12, ROOT, ep, d, CapRights::ALL),
            Err(FailedLookup),
        ),
        (
            "copy an untyped",
            inv::cnode_copy(ROOT, spare, d, ROOT, ut, d, CapRights::ALL),
            Err(IllegalOperation),
        ),
        (
            "re-badge a badged endpoint",
            inv::cnode_mint(ROOT, spare, d, ROOT, badged, d, CapRights::ALL, 3),
            Err(IllegalOperation),
        ),
        (
            "CNode op on a TCB",
            inv::cnode_delete(tcb, spare, d),
            Err(IllegalOperation),
        ),
        (
            "configure with a frame as CSpace",
            inv::tcb_configure(tcb, 0, 1, frame, 0, vspace, 0, 0),
            Err(WrongType),
        ),
        (
            "configure without a fault endpoint (must work)",
            inv::tcb_configure(tcb, 0, 1, ROOT, 52, vspace, 0, 0),
            Ok(()),
        ),
        (
            "configure with a frame as fault endpoint",
            inv::tcb_configure(tcb, frame, 1, ROOT, 52, vspace, 0, 0),
            Err(WrongType),
        ),
        (
            "read 0 registers",
            inv::tcb_read_registers(tcb, 0).map(drop),
            Err(RangeError),
        ),
        (
            "write registers, truncated",
            inv::invoke(tcb, Label::TcbWriteRegisters, &[5, 1, 2], &[]).map(drop),
            Err(TruncatedMessage),
        ),
        (
            "read the caller's own registers",
            inv::tcb_read_registers(slots::TCB, 1).map(drop),
            Err(IllegalOperation),
        ),
        (
            "priority 300",
            inv::invoke(tcb, Label::TcbSetPriority, &[300], &[]).map(drop),
            Err(RangeError),
        ),
        (
            "map at a misaligned address",
            inv::frame_map(frame, vspace, 0x1234, CapRights::ALL, 0),
            Err(AlignmentError),
        ),
        (
            "map without page tables",
            inv::frame_map(frame, vspace, 0x40_0000, CapRights::ALL, 0),
            Err(FailedLookup),
        ),
        (
            "map writable and executable",
            inv::frame_map(frame, vspace, 0x40_0000, CapRights::ALL, MAP_EXECUTE),
            Err(InvalidArgument),
        ),
        (
            "map into a TCB",
            inv::frame_map(frame, tcb, 0x40_0000, CapRights::ALL, 0),
            Err(WrongType),
        ),
    ];
    let more: [Case; 8] = [
        (
            "map a page table (must work)",
            inv::page_table_map(table, vspace, 0),
            Ok(()),
        ),
        (
            "page table mapped twice",
            inv::page_table_map(table, vspace, 0),
            Err(IllegalOperation),
        ),
        (
            "IRQ the kernel keeps",
            inv::irq_control_get(slots::IRQ_CONTROL, 26, ROOT, spare, d),
            Err(InvalidArgument),
        ),
        (
            "IRQ out of range",
            inv::irq_control_get(slots::IRQ_CONTROL, 5000, ROOT, spare, d),
            Err(RangeError),
        ),
        (
            "IRQ handler for line 40 (must work)",
            inv::irq_control_get(slots::IRQ_CONTROL, 40, ROOT, spare, d),
            Ok(()),
        ),
        (
            "IRQ handler twice",
            inv::irq_control_get(slots::IRQ_CONTROL, 40, ROOT, empty, d),
            Err(RevokeFirst),
        ),
        (
            "copy IRQ control",
            inv::cnode_copy(ROOT, empty, d, ROOT, slots::IRQ_CONTROL, d, CapRights::ALL),
            Err(IllegalOperation),
        ),
        (
            "call through a receive-only endpoint",
            inv::invoke(receive_only, Label::TcbResume, &[], &[]).map(drop),
            Err(InsufficientRights),
        ),
    ];
    let mut failures = 0;
    for (what, got, want) in cases.iter().chain(more.iter()) {
        if got != want {
            println!("  {what}: got {got:?}, expected {want:?}");
            failures += 1;
        }
    }
    let all = cases.len() + more.len();
    let malformed = cases
        .iter()
        .chain(more.iter())
        .filter(|(_, _, want)| want.is_err())
        .count();
    println!(
        "  {malformed} malformed invocations, each with its exact error code; {} calls preparing them succeeded",
        all - malformed
    );
    check!(
        failures == 0,
        "{failures} invocations returned the wrong result"
    );
    // The kernel is still fine: clean up and make something new.
    check_ok!(inv::cnode_delete(ROOT, spare, d));
    check_ok!(inv::cnode_revoke(ROOT, ut, d));
    check!(
        env.retype(ut, ObjectType::Tcb, 0, 1).is_ok(),
        "retype after the bad invocations failed"
    );
    Ok(())
}
