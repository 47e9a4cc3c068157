//! Guest interrupt scenarios: virtual interrupts the VMM injects through
//! the kernel's list registers, the guest's two EL1 timers forwarded by
//! the kernel, `wfi` that costs no CPU, and budgets shared with native
//! threads. The guests are the bare-metal `interrupts` and `ticker`
//! programs of `skyscope-guest-minimal`; the root task is their VMM.

use crate::{
    Outcome,
    support::{Env, ROOT, ROOT_DEPTH},
    vm::{Guest, build_guest_at, from_guest},
};
use skyscope_abi::{
    BootInfo, CapRights, Error,
    bootinfo::slots,
    invocation as inv, println,
    syscall::counter_now,
    vcpu::{
        aarch64::{self as vreg, timer_irq, timer_ppi},
        irq::{GROUP1, HIGH, LEVEL},
    },
};
use skyscope_guest_minimal::{self as guest, ticker};
use skyscope_vmm::{
    arch::aarch64::exit::Exit,
    channel::{ExitMessage, Resume},
    memory::GuestAddress,
    vcpu::general_register,
};

/// Windows in the root task for the guests' RAM (one per guest alive at
/// once).
const WINDOWS: [u64; 2] = [0x21_0000_0000, 0x22_0000_0000];
/// The guests' scratch page.
const SCRATCH: u64 = guest::LOAD_ADDRESS + 0x1000;
/// Priority the guests run at (see `vm.rs`); the root task runs at 255.
const BELOW_GUESTS: u8 = 100;

/// The exit `m` must be `hvc #imm`.
fn expect_hypercall(m: &ExitMessage, imm: u16) -> Outcome {
    from_guest(m)?;
    if m.exit == (Exit::Hypercall { imm: 9 }) {
        return Err(fail!(
            "the guest took an exception (hvc #9) at pc {:#x}",
            m.pc
        ));
    }
    check_eq!(m.exit, Exit::Hypercall { imm });
    Ok(())
}

/// One IRQ the guest reported (`hvc #2`): INTID and running priority.
fn report(g: &Guest) -> Result<(u64, u64), crate::Failure> {
    let x0 = general_register(g.vcpu.tcb, 0).map_err(|e| fail!("{e}"))?;
    let x1 = general_register(g.vcpu.tcb, 1).map_err(|e| fail!("{e}"))?;
    Ok((x0, x1))
}

/// Lets lower-priority threads (the guests) run for `ms` milliseconds
/// while the root task spins below them; returns the share of the CPU
/// the root task still got, in per mille. Meant for scenarios on QEMU's
/// instruction-count clock, where a microsecond is a thousand
/// instructions: one turn of this loop takes far less, so any longer gap
/// between two counter reads is time someone else had the CPU.
pub(crate) fn spin_below_guests(info: &BootInfo, ms: u64) -> Result<u64, crate::Failure> {
    let f = info.timer_frequency;
    check_ok!(inv::tcb_set_priority(slots::TCB, BELOW_GUESTS));
    let start = counter_now();
    let (mut last, mut ran) = (start, 0);
    while last - start < f * ms / 1000 {
        let now = counter_now();
        if now - last < f / 1_000_000 {
            ran += now - last;
        }
        last = now;
    }
    check_ok!(inv::tcb_set_priority(slots::TCB, 255));
    Ok(ran * 1000 / (last - start))
}

/// Priorities the guest's 5 implemented priority bits keep apart.
fn distinct_priority(i: usize) -> u8 {
    (i as u8) << 3
}

pub fn vgic_inject(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(20).map_err(|e| fail!("{e}"))?;
    let g = build_guest_at(
        &mut env,
        ut,
        guest::interrupts(),
        (10_000, 10_000),
        0,
        WINDOWS[0],
    )?;
    let vcpu = g.vcpu.vcpu;
    let ch = g.channel;
    let m = ch.wait().map_err(|e| fail!("{e}"))?;
    expect_hypercall(&m, 1)?;

    // Bad requests are refused.
    check_eq!(
        inv::vcpu_set_irq(vcpu, 1020, 0, HIGH),
        Err(Error::InvalidArgument)
    );
    check_eq!(
        inv::vcpu_set_irq(vcpu, 40, 0, 1 << 5),
        Err(Error::InvalidArgument)
    );
    let read_only = env.copy(vcpu, CapRights::READ).map_err(|e| fail!("{e}"))?;
    check_eq!(
        inv::vcpu_set_irq(read_only, 40, 0, HIGH),
        Err(Error::InsufficientRights)
    );

    // 1. More edges than any CPU has list registers (at most 16), with
    // distinct priorities, injected in a scrambled order while the guest
    // waits in its exit: it must take every one once, most urgent first,
    // each at the priority it was injected with.
    const COUNT: usize = 20;
    for k in 0..COUNT {
        let i = (k * 7) % COUNT;
        check_ok!(inv::vcpu_set_irq(
            vcpu,
            100 + i as u32,
            distinct_priority(COUNT - 1 - i),
            HIGH | GROUP1
        ));
    }
    let mut taken = [(0u64, 0u64); COUNT];
    let mut m = ch.resume_and_wait(Resume::SKIP).map_err(|e| fail!("{e}"))?;
    for (n, slot) in taken.iter_mut().enumerate() {
        if n > 0 {
            m = ch.resume_and_wait(Resume::SKIP).map_err(|e| fail!("{e}"))?;
        }
        expect_hypercall(&m, 2)?;
        *slot = report(&g)?;
    }
    for (n, &(intid, priority)) in taken.iter().enumerate() {
        // Most urgent first: INTID 119 (priority 0) down to 100.
        check_eq!(intid, 100 + (COUNT - 1 - n) as u64);
        check_eq!(priority, u64::from(distinct_priority(n)));
    }
    println!("  {COUNT} edges injected in scrambled order: taken once each, in priority order");

    // The guest is in its handler of the last one, before its EOI.
    // 2. A level line held high is taken again after each EOI (the kernel
    // resamples it); once it drops, it is not. A less urgent edge shows
    // what comes next.
    let next = |m: Result<ExitMessage, Error>| -> Result<(u64, u64), crate::Failure> {
        let m = m.map_err(|e| fail!("{e}"))?;
        expect_hypercall(&m, 2)?;
        report(&g)
    };
    check_ok!(inv::vcpu_set_irq(vcpu, 40, 0x50, LEVEL | HIGH | GROUP1));
    check_eq!(next(ch.resume_and_wait(Resume::SKIP))?, (40, 0x50));
    check_eq!(next(ch.resume_and_wait(Resume::SKIP))?, (40, 0x50));
    check_ok!(inv::vcpu_set_irq(vcpu, 40, 0x50, LEVEL | GROUP1));
    check_ok!(inv::vcpu_set_irq(vcpu, 41, 0xf0, HIGH | GROUP1));
    check_eq!(next(ch.resume_and_wait(Resume::SKIP))?, (41, 0xf0));
    // 3. A level line that rises and drops before the guest takes it is
    // withdrawn: the next edge is what the guest sees.
    check_ok!(inv::vcpu_set_irq(vcpu, 42, 0x10, LEVEL | HIGH | GROUP1));
    check_ok!(inv::vcpu_set_irq(vcpu, 42, 0x10, LEVEL | GROUP1));
    check_ok!(inv::vcpu_set_irq(vcpu, 43, 0xe0, HIGH | GROUP1));
    check_eq!(next(ch.resume_and_wait(Resume::SKIP))?, (43, 0xe0));
    println!(
        "  level line resampled at EOI (taken twice while high, not after it dropped); a withdrawn level interrupt never arrived"
    );

    // 4. With nothing pending the guest's `wfi` stops its thread: the root
    // task, spinning below it, keeps the CPU; an injection wakes it.
    check_ok!(ch.resume(Resume::SKIP));
    let share = spin_below_guests(info, 50)?;
    check!(share >= 950, "the idle guest left only {share} per mille");
    check_ok!(inv::vcpu_set_irq(vcpu, 44, 0x30, HIGH | GROUP1));
    check_eq!(next(ch.wait())?, (44, 0x30));
    println!(
        "  guest idle in wfi left {}.{}% of the CPU; an injected interrupt woke it",
        share / 10,
        share % 10
    );
    check_ok!(inv::tcb_suspend(g.vcpu.tcb));
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}

/// Sets up the VMM's side of the guest's timer PPI (what its
/// redistributor model tells the kernel when the guest enables it):
/// enabled, Group 1, priority 0xa0.
fn enable_timer_ppi(vcpu: u64, physical: bool) -> Outcome {
    let register = if physical {
        vreg::PTIMER_IRQ
    } else {
        vreg::VTIMER_IRQ
    };
    check_ok!(inv::vcpu_write_register(
        vcpu,
        register,
        timer_irq::ENABLED | timer_irq::GROUP1 | (0xa0 << timer_irq::PRIORITY_SHIFT)
    ));
    Ok(())
}

/// The ticker guest on one of its timers, beside a spinning guest at the
/// same priority (so the ticker's Vcpu is switched out while it waits and
/// the kernel timer has to watch its timer).
fn timer_interrupt(info: &'static BootInfo, physical: bool) -> Outcome {
    const TICKS: u64 = 3;
    let mut env = Env::new(info);
    let ut = env.private_untyped(21).map_err(|e| fail!("{e}"))?;
    let mode = if physical { ticker::PHYSICAL } else { 0 };
    let mut g = build_guest_at(
        &mut env,
        ut,
        guest::ticker(),
        (10_000, 10_000),
        mode,
        WINDOWS[0],
    )?;
    let interval = info.timer_frequency / 500; // 2 ms
    let scratch = |offset| GuestAddress(SCRATCH + offset);
    check_ok!(g.memory.write_u64(scratch(ticker::INTERVAL), interval));
    check_ok!(g.memory.write_u64(scratch(ticker::WANTED), TICKS));
    enable_timer_ppi(g.vcpu.vcpu, physical)?;
    if !physical {
        // The guest's virtual count runs half a machine lifetime behind:
        // a kernel that ignored CNTVOFF_EL2 would fire far too early.
        check_ok!(inv::vcpu_write_register(
            g.vcpu.vcpu,
            vreg::CNTVOFF_EL2,
            counter_now() / 2
        ));
    }
    let spinner = build_guest_at(
        &mut env,
        ut,
        guest::spinner(),
        (5_000, 10_000),
        0,
        WINDOWS[1],
    )?;
    let ch = g.channel;
    let m = ch.wait().map_err(|e| fail!("{e}"))?;
    expect_hypercall(&m, 1)?;
    let ppi = u64::from(if physical {
        timer_ppi::PHYSICAL
    } else {
        timer_ppi::VIRTUAL
    });
    let mut lateness = [0i64; TICKS as usize];
    for (n, late) in lateness.iter_mut().enumerate() {
        let m = ch.resume_and_wait(Resume::SKIP).map_err(|e| fail!("{e}"))?;
        expect_hypercall(&m, 2)?;
        check_eq!(report(&g)?, (ppi, 0xa0));
        *late = general_register(g.vcpu.tcb, 2).map_err(|e| fail!("{e}"))? as i64;
        check_eq!(general_register(g.vcpu.tcb, 4), Ok(n as u64 + 1));
        check!(*late >= 0, "tick {n} fired {} counts early", -*late);
    }
    // After the last tick the guest turns its timer off: no more ticks.
    check_ok!(ch.resume(Resume::SKIP));
    spin_below_guests(info, 30)?;
    check_eq!(g.memory.read_u64(scratch(ticker::COUNT)), Ok(TICKS));
    let spins = spinner
        .memory
        .read_u64(GuestAddress(SCRATCH))
        .map_err(|e| fail!("{e}"))?;
    check!(spins > 0, "the spinning guest never ran");
    let us = |counts: i64| counts * 1_000_000 / info.timer_frequency as i64;
    println!(
        "  {} timer: {TICKS} ticks as INTID {ppi} at priority 0xa0, {} / {} / {} us after their compare values, beside a spinning guest ({spins} spins)",
        if physical { "physical" } else { "virtual" },
        us(lateness[0]),
        us(lateness[1]),
        us(lateness[2])
    );
    check_ok!(inv::tcb_suspend(g.vcpu.tcb));
    check_ok!(inv::tcb_suspend(spinner.vcpu.tcb));
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}

pub fn virtual_timer_interrupt(info: &'static BootInfo) -> Outcome {
    timer_interrupt(info, false)
}

pub fn physical_timer_interrupt(info: &'static BootInfo) -> Outcome {
    timer_interrupt(info, true)
}

pub fn idle_guest_yields_cpu(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(20).map_err(|e| fail!("{e}"))?;
    // A guest that only waits for its 100 Hz timer, quietly (no exits):
    // its ticks come from the kernel while its VMM is busy elsewhere.
    let mut g = build_guest_at(
        &mut env,
        ut,
        guest::ticker(),
        (10_000, 10_000),
        ticker::QUIET,
        WINDOWS[0],
    )?;
    let scratch = |offset| GuestAddress(SCRATCH + offset);
    check_ok!(
        g.memory
            .write_u64(scratch(ticker::INTERVAL), info.timer_frequency / 100)
    );
    check_ok!(g.memory.write_u64(scratch(ticker::WANTED), 0));
    enable_timer_ppi(g.vcpu.vcpu, false)?;
    const MS: u64 = 500;
    let share = spin_below_guests(info, MS)?;
    let ticks = g
        .memory
        .read_u64(scratch(ticker::COUNT))
        .map_err(|e| fail!("{e}"))?;
    println!(
        "  an idle guest ticking at 100 Hz took {ticks} ticks in {MS} ms; the native spinner below it kept {}.{}% of the CPU",
        share / 10,
        share % 10
    );
    check!(share >= 950, "the spinner kept only {share} per mille");
    check!(
        ticks >= MS / 10 / 2,
        "the guest took only {ticks} ticks in {MS} ms"
    );
    check_ok!(inv::tcb_suspend(g.vcpu.tcb));
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}

pub fn budget_shared_with_native(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(20).map_err(|e| fail!("{e}"))?;
    // A guest that never stops computing, above the native thread, on
    // 5 ms of every 10 ms.
    let g = build_guest_at(
        &mut env,
        ut,
        guest::spinner(),
        (5_000, 10_000),
        0,
        WINDOWS[0],
    )?;
    let share = spin_below_guests(info, 300)?;
    let spins = g
        .memory
        .read_u64(GuestAddress(SCRATCH))
        .map_err(|e| fail!("{e}"))?;
    println!(
        "  a spinning guest on a 50% budget ran {spins} iterations; the native thread below it kept {}.{}% of the CPU",
        share / 10,
        share % 10
    );
    check!(spins > 0, "the guest never ran");
    check!(
        (400..=600).contains(&share),
        "the native thread kept {share} per mille; the guest's budget should leave ~500"
    );
    check_ok!(inv::tcb_suspend(g.vcpu.tcb));
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}

pub fn cpu_features_sanitised(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(20).map_err(|e| fail!("{e}"))?;
    let g = build_guest_at(
        &mut env,
        ut,
        guest::features(),
        (10_000, 10_000),
        0,
        WINDOWS[0],
    )?;
    let ch = g.channel;
    let x = |n| general_register(g.vcpu.tcb, n).map_err(|e| fail!("{e}"));
    let field = |v: u64, shift: u32| (v >> shift) & 0xf;
    let m = ch.wait().map_err(|e| fail!("{e}"))?;
    expect_hypercall(&m, 1)?;
    let (pfr0, pfr1, dfr0, zfr0) = (x(0)?, x(1)?, x(2)?, x(3)?);
    // State the kernel does not switch is hidden (Arm ARM D23.2: field
    // positions of ID_AA64PFR0_EL1, ID_AA64PFR1_EL1, ID_AA64DFR0_EL1).
    check_eq!(field(pfr0, 32), 0); // SVE
    check_eq!(field(pfr0, 28), 0); // RAS
    check_eq!(field(pfr0, 40), 0); // MPAM
    check_eq!(field(pfr0, 44), 0); // AMU
    check_eq!((field(pfr0, 8), field(pfr0, 12)), (0, 0)); // no EL2, EL3
    check_eq!((field(pfr0, 0), field(pfr0, 4)), (1, 1)); // AArch64 only
    check_eq!(field(pfr0, 24), 1); // the GIC system-register interface
    check_eq!(field(pfr1, 8), 0); // MTE
    check_eq!(field(pfr1, 24), 0); // SME
    check_eq!(field(dfr0, 8), 0); // PMU
    check_eq!(zfr0, 0);
    let m = ch.resume_and_wait(Resume::SKIP).map_err(|e| fail!("{e}"))?;
    expect_hypercall(&m, 2)?;
    let (mmfr0, mmfr1, smfr0, mmfr3) = (x(0)?, x(1)?, x(2)?, x(3)?);
    check!(
        field(mmfr0, 0) <= 1,
        "PARange {:#x} promises more than the 39-bit guest-physical space",
        field(mmfr0, 0)
    );
    check_eq!(field(mmfr1, 8), 0); // VH
    check_eq!(field(mmfr1, 16), 0); // LORegions
    check_eq!((smfr0, mmfr3), (0, 0));
    let m = ch.resume_and_wait(Resume::SKIP).map_err(|e| fail!("{e}"))?;
    expect_hypercall(&m, 3)?;
    let (midr, mpidr) = (x(0)?, x(1)?);
    // The guest's MPIDR is its Vcpu's (affinity 0), not the host CPU's.
    check_eq!(mpidr & 0xff_00ff_ffff, 0);
    println!(
        "  guest sees PFR0 {pfr0:#018x} PFR1 {pfr1:#x} DFR0 {dfr0:#x} MMFR0 {mmfr0:#x} MMFR1 {mmfr1:#x}, MIDR {midr:#x}: no SVE, SME, MTE, PMU, RAS, AMU, MPAM, EL2, LORegions"
    );
    check_ok!(inv::tcb_suspend(g.vcpu.tcb));
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}
