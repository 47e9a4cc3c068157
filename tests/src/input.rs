//! Console input: what the harness types reaches the root task through
//! `ConsoleRead`, in order, at most 32 bytes a read; the kernel signals
//! the listening notification; reading needs READ on the console
//! capability; input that arrives with no listener (none yet, or one
//! deleted) is kept and the kernel carries on; input that finds the
//! kernel's ring full is dropped (the newest, not what waits unread).

use crate::{
    Outcome,
    support::{Env, ROOT, ROOT_DEPTH},
    typed::{
        AFTER_DELETION, BEFORE_LISTENING, DELETED_MARKER, FLOOD, LISTENING_MARKER,
        NO_LISTENER_MARKER, NOT_READING_MARKER, WHILE_LISTENING,
    },
};
use skyscope_abi::{
    BootInfo, CapRights, Error, ObjectType,
    bootinfo::slots,
    invocation as inv,
    ipc::wait,
    println,
    syscall::{self, CONSOLE_READ_MAX, console_notify, console_read, counter_now, yield_now},
};

/// Reads (without waiting for a signal) until `expected.len()` bytes came
/// or 10 s passed; checks they are exactly `expected`.
fn poll_for(info: &BootInfo, expected: &str) -> Outcome {
    let mut got = [0u8; 128];
    let mut n = 0;
    let deadline = counter_now() + 10 * info.timer_frequency;
    while n < expected.len() && counter_now() < deadline {
        let mut chunk = [0u8; CONSOLE_READ_MAX];
        let k = console_read(slots::CONSOLE, &mut chunk)
            .map_err(|e| fail!("ConsoleRead failed: {e:?}"))?;
        check!(n + k <= got.len(), "more input than was typed");
        got[n..n + k].copy_from_slice(&chunk[..k]);
        n += k;
        if k == 0 {
            yield_now();
        }
    }
    check!(
        &got[..n] == expected.as_bytes(),
        "read {:?}, typed {expected:?}",
        core::str::from_utf8(&got[..n])
    );
    Ok(())
}

pub fn console_input(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    // Rights: a console capability without READ reads nothing and sets no
    // listener; a listener must be a notification with WRITE.
    let write_only = env
        .copy(slots::CONSOLE, CapRights::WRITE)
        .map_err(|e| fail!("copy of the console capability: {e:?}"))?;
    let mut buffer = [0u8; CONSOLE_READ_MAX];
    check_eq!(
        console_read(write_only, &mut buffer),
        Err(Error::InsufficientRights)
    );
    check_eq!(
        console_notify(write_only, 0),
        Err(Error::InsufficientRights)
    );
    check_eq!(console_read(slots::TCB, &mut buffer), Err(Error::WrongType));
    check_eq!(
        console_notify(slots::CONSOLE, slots::TCB),
        Err(Error::WrongType)
    );
    // The UART's line (SPI 1, INTID 33 on QEMU `virt`) is the kernel's:
    // IRQ control will not hand it out; its neighbour it does.
    let slot = env.slot();
    check_eq!(
        inv::irq_control_get(slots::IRQ_CONTROL, 33, ROOT, slot, ROOT_DEPTH),
        Err(Error::InvalidArgument)
    );
    check_eq!(
        inv::irq_control_get(slots::IRQ_CONTROL, 34, ROOT, slot, ROOT_DEPTH),
        Ok(())
    );
    check_ok!(inv::cnode_delete(ROOT, slot, ROOT_DEPTH));
    // Nothing typed yet: a read returns nothing at once.
    check_eq!(console_read(slots::CONSOLE, &mut buffer), Ok(0));

    // No listener: what is typed waits in the kernel.
    check_eq!(console_notify(slots::CONSOLE, 0), Ok(()));
    println!("{NO_LISTENER_MARKER}");
    poll_for(info, BEFORE_LISTENING)?;
    println!("  read what was typed with no listener");

    // A listener: the kernel signals it; the reader wakes and drains.
    let untyped = env
        .ram_untyped(16)
        .ok_or_else(|| fail!("no untyped for a notification"))?;
    let notification = env
        .retype(untyped, ObjectType::Notification, 0, 1)
        .map_err(|e| fail!("notification: {e:?}"))?;
    let read_only = env
        .copy(notification, CapRights::READ)
        .map_err(|e| fail!("copy: {e:?}"))?;
    check_eq!(
        console_notify(slots::CONSOLE, read_only),
        Err(Error::InsufficientRights)
    );
    check_eq!(console_notify(slots::CONSOLE, notification), Ok(()));
    println!("{LISTENING_MARKER}");
    let mut got = [0u8; 128];
    let (mut n, mut reads, mut wakeups) = (0usize, 0usize, 0usize);
    while n < WHILE_LISTENING.len() {
        wait(notification).map_err(|e| fail!("wait: {e:?}"))?;
        wakeups += 1;
        loop {
            let k = console_read(slots::CONSOLE, &mut buffer)
                .map_err(|e| fail!("ConsoleRead: {e:?}"))?;
            if k == 0 {
                break;
            }
            check!(k <= CONSOLE_READ_MAX, "a read returned {k} bytes");
            check!(n + k <= WHILE_LISTENING.len(), "more input than was typed");
            got[n..n + k].copy_from_slice(&buffer[..k]);
            n += k;
            reads += 1;
        }
    }
    check!(
        &got[..n] == WHILE_LISTENING.as_bytes(),
        "read {:?}, typed {WHILE_LISTENING:?}",
        core::str::from_utf8(&got[..n])
    );
    check!(
        reads >= WHILE_LISTENING.len().div_ceil(CONSOLE_READ_MAX),
        "{n} bytes in {reads} reads"
    );
    println!(
        "  {n} bytes typed while listening arrived in order in {reads} reads after {wakeups} wake-up{}",
        if wakeups == 1 { "" } else { "s" }
    );

    // The listener goes away with its notification; input still arrives.
    inv::cnode_delete(ROOT, read_only, ROOT_DEPTH).map_err(|e| fail!("delete: {e:?}"))?;
    inv::cnode_delete(ROOT, notification, ROOT_DEPTH).map_err(|e| fail!("delete: {e:?}"))?;
    println!("{DELETED_MARKER}");
    poll_for(info, AFTER_DELETION)?;
    println!("  read what was typed after the listener was deleted");

    // Not reading while 5000 bytes are typed: the kernel keeps the first
    // 4096 (its ring) and drops the rest, reporting it once. Three
    // seconds is far more than QEMU needs to deliver them.
    println!("{NOT_READING_MARKER}");
    // Until the ring is full (the harness types more than it holds), or
    // 30 s on a slow host; nothing is read meanwhile.
    let until = counter_now() + 30 * info.timer_frequency;
    while counter_now() < until
        && syscall::console_waiting(slots::CONSOLE).map_err(|e| fail!("{e:?}"))? < RING
    {
        syscall::wait_for_interrupt();
    }
    // Whatever is still being typed after that is dropped; let it end.
    let settle = counter_now() + info.timer_frequency / 2;
    while counter_now() < settle {
        syscall::wait_for_interrupt();
    }
    let mut n = 0usize;
    loop {
        let k =
            console_read(slots::CONSOLE, &mut buffer).map_err(|e| fail!("ConsoleRead: {e:?}"))?;
        if k == 0 {
            break;
        }
        check!(
            n + k <= RING && buffer[..k] == FLOOD.as_bytes()[n..n + k],
            "bytes {n}..{} differ from what was typed first",
            n + k
        );
        n += k;
    }
    check_eq!(n, RING);
    println!(
        "  {n} of {} bytes typed without reading were kept, in order",
        FLOOD.len()
    );
    Ok(())
}

/// The kernel's input ring (`console::INPUT_CAPACITY`).
const RING: usize = 4096;
