//! Virtual-machine scenarios: the root task acts as the VMM of a tiny
//! bare-metal guest (`skyscope-guest-minimal`) running at EL1 under a
//! GuestSpace, and handles its exits with the `skyscope-vmm` library.

use crate::{
    Outcome,
    support::{Env, ROOT, ROOT_DEPTH, give_sched_context, map_into},
};
use skyscope_abi::{
    BootInfo, CapRights, ObjectType,
    bootinfo::slots,
    fault,
    invocation::{self as inv, MAP_EXECUTE, REG_PC, REG_X0},
    println,
    syscall::counter_now,
    vcpu::aarch64 as vreg,
};
use skyscope_guest_minimal as guest;
use skyscope_vmm::{
    exit::{Exit, Resume},
    pl011::{self, Pl011},
    psci,
    vcpu::{ExitChannel, ExitMessage, guest_register},
};

/// Where the VMM maps the guest's RAM in its own address space.
const VMM_WINDOW: u64 = 0x20_0000_0000;
/// Badge of the guest's fault-handler capability.
const GUEST_BADGE: u64 = 0x77;
/// Priority the guest runs at (the root task runs at 255).
const GUEST_PRIORITY: u8 = 200;

/// A guest the root task built and is the VMM of.
struct Guest {
    tcb: u64,
    vcpu: u64,
    channel: ExitChannel,
    /// The VMM's mapping of the guest's scratch page.
    scratch: u64,
}

/// Builds a guest running `program` at guest-physical `guest::LOAD_ADDRESS`
/// with `guest::RAM_BYTES` of RAM, on a scheduling context of `budget_us`
/// per `period_us`, and starts it.
fn build_guest(
    env: &mut Env,
    ut: u64,
    program: &[u8],
    budget_us: u64,
    period_us: u64,
) -> Result<Guest, crate::Failure> {
    let e = |what: &str, err: skyscope_abi::Error| fail!("{what}: {err}");
    let endpoint = env
        .retype(ut, ObjectType::Endpoint, 0, 1)
        .map_err(|x| e("endpoint", x))?;
    let reply = env
        .retype(ut, ObjectType::Reply, 0, 1)
        .map_err(|x| e("reply", x))?;
    let handler = env
        .mint(endpoint, CapRights::ALL, GUEST_BADGE)
        .map_err(|x| e("mint", x))?;
    let guest_space = env
        .retype(ut, ObjectType::GuestSpace, 0, 1)
        .map_err(|x| e("guest space", x))?;
    let vcpu = env
        .retype(ut, ObjectType::Vcpu, 0, 1)
        .map_err(|x| e("vcpu", x))?;
    let tcb = env
        .retype(ut, ObjectType::Tcb, 0, 1)
        .map_err(|x| e("tcb", x))?;
    // The guest cannot make syscalls (its `svc` goes to its own EL1), but
    // a thread needs a CSpace: give it an empty one.
    let cspace = env
        .retype(ut, ObjectType::CNode, 1, 1)
        .map_err(|x| e("cnode", x))?;
    check_ok!(inv::tcb_configure(
        tcb,
        handler,
        GUEST_PRIORITY,
        cspace,
        63,
        guest_space,
        0,
        0
    ));

    // Guest RAM: frames mapped read-write-execute into the GuestSpace, and
    // read-write into the VMM's own space to load the program.
    let pages = guest::RAM_BYTES / 4096;
    for i in 0..pages {
        let frame = env
            .retype(ut, ObjectType::Frame4K, 0, 1)
            .map_err(|x| e("frame", x))?;
        map_into(
            env,
            ut,
            guest_space,
            frame,
            guest::LOAD_ADDRESS + i * 4096,
            CapRights::ALL,
            MAP_EXECUTE,
        )
        .map_err(|x| e("map into guest", x))?;
        let view = env.copy(frame, CapRights::ALL).map_err(|x| e("copy", x))?;
        map_into(
            env,
            ut,
            slots::VSPACE,
            view,
            VMM_WINDOW + i * 4096,
            CapRights::ALL,
            0,
        )
        .map_err(|x| e("map into vmm", x))?;
    }
    check!(
        !program.is_empty() && program.len() <= 4096,
        "the program is {} bytes",
        program.len()
    );
    load(VMM_WINDOW, program);

    check_ok!(inv::vcpu_set_tcb(vcpu, tcb));
    // Start at EL1h with interrupts masked and the MMU off, like a kernel.
    check_ok!(inv::vcpu_write_register(
        vcpu,
        vreg::PSTATE,
        vreg::mode::EL1H | vreg::PSTATE_DAIF
    ));
    let mut regs = [0u64; REG_X0 + 1];
    regs[REG_PC] = guest::LOAD_ADDRESS;
    check_ok!(inv::tcb_write_registers(tcb, &regs));
    give_sched_context(env, ut, tcb, budget_us, period_us).map_err(|x| e("sched", x))?;
    check_ok!(inv::tcb_resume(tcb));
    Ok(Guest {
        tcb,
        vcpu,
        channel: ExitChannel { endpoint, reply },
        scratch: VMM_WINDOW + 4096,
    })
}

/// Copies `program` to `address` and makes it visible to instruction
/// fetches (clean to the point of coherency, invalidate the I-cache).
fn load(address: u64, program: &[u8]) {
    for (i, b) in program.iter().enumerate() {
        // SAFETY: `address` is the start of a page the VMM just mapped
        // read-write for itself; the program fits in it.
        unsafe { ((address + i as u64) as *mut u8).write_volatile(*b) };
    }
    for line in (address..address + program.len() as u64).step_by(64) {
        // SAFETY: cache maintenance by address on memory this thread maps
        // (EL0 may do it: SCTLR_EL2.UCI is set).
        unsafe { core::arch::asm!("dc civac, {}", in(reg) line, options(nostack)) };
    }
    // SAFETY: as above, then barriers only.
    unsafe {
        core::arch::asm!("dsb ish", options(nostack));
        for line in (address..address + program.len() as u64).step_by(64) {
            core::arch::asm!("ic ivau, {}", in(reg) line, options(nostack));
        }
        core::arch::asm!("dsb ish", "isb", options(nostack));
    }
}

/// Checks an exit came from the guest as a guest exit.
fn from_guest(m: &ExitMessage) -> Outcome {
    check_eq!(m.badge, GUEST_BADGE);
    check_eq!(m.label, fault::GUEST_EXIT);
    Ok(())
}

pub fn guest_hello(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(20).map_err(|e| fail!("{e}"))?;
    let g = build_guest(&mut env, ut, guest::hello(), 10_000, 10_000)?;
    // A register the guest never touches must survive its runs in the CPU.
    check_ok!(inv::vcpu_write_register(
        g.vcpu,
        vreg::TPIDR_EL1,
        0x5ca1_ab1e
    ));

    let mut uart = Pl011::default();
    let mut printed = [0u8; 64];
    let mut printed_len = 0;
    let mut reports = [None::<u64>; 5];
    let mut exits = 0u32;
    let mut mmio = 0u32;
    let mut message = g.channel.wait().map_err(|e| fail!("wait: {e}"))?;
    loop {
        exits += 1;
        check!(exits < 1000, "the guest keeps exiting");
        from_guest(&message)?;
        let resume = match message.exit {
            Exit::Hypercall { imm: 0 } => {
                let x0 = guest_register(g.tcb, 0).map_err(|e| fail!("{e}"))?;
                check_eq!(psci::Call::decode(x0), psci::Call::SystemOff);
                check_ok!(inv::tcb_suspend(g.tcb));
                break;
            }
            Exit::Hypercall { imm } if usize::from(imm) < reports.len() => {
                let x0 = guest_register(g.tcb, 0).map_err(|e| fail!("{e}"))?;
                reports[usize::from(imm)] = Some(x0);
                Resume::SKIP
            }
            Exit::Mmio(access)
                if (guest::UART..guest::UART + pl011::WINDOW).contains(&access.address) =>
            {
                mmio += 1;
                let offset = access.address - guest::UART;
                if access.write {
                    let value = match access.register {
                        Some(r) => guest_register(g.tcb, r).map_err(|e| fail!("{e}"))?,
                        None => 0,
                    };
                    if let Some(line) = uart.write(offset, value) {
                        let n = line.len().min(printed.len() - printed_len);
                        printed[printed_len..printed_len + n].copy_from_slice(&line[..n]);
                        printed_len += n;
                    }
                    Resume::SKIP
                } else {
                    Resume::skip_setting(access.register, access.load_result(uart.read(offset)))
                }
            }
            Exit::Mmio(access) if access.address == guest::UNMAPPED_READ && !access.write => {
                Resume::skip_setting(access.register, 0xdead_beef)
            }
            other => return Err(fail!("unexpected exit {other:?} at pc {:#x}", message.pc)),
        };
        message = g
            .channel
            .resume_and_wait(resume)
            .map_err(|e| fail!("resume: {e}"))?;
    }
    let text = core::str::from_utf8(&printed[..printed_len]).unwrap_or("(not UTF-8)");
    println!(
        "  guest printed through the emulated PL011: {}",
        text.trim_end()
    );
    check_eq!(text, guest::GREETING);
    check_eq!(reports[1], Some(1 << 2)); // CurrentEL: EL1
    check_eq!(reports[2], Some(0x11)); // PL011 PeriphID0, emulated
    check_eq!(reports[3], Some(guest::SCRATCH_SUM));
    check_eq!(reports[4], Some(0xdead_beef));
    // The guest's memory is the VMM's frames.
    check_eq!(crate::support::read(g.scratch + 8 * 100), 100);
    // EL1 state went through the CPU and back.
    check_eq!(
        inv::vcpu_read_register(g.vcpu, vreg::TPIDR_EL1),
        Ok(0x5ca1_ab1e)
    );
    check_eq!(
        inv::vcpu_read_register(g.vcpu, vreg::SCTLR_EL1),
        Ok(0x30c5_0838)
    );
    check_eq!(
        inv::vcpu_read_register(g.vcpu, vreg::COUNT),
        Err(skyscope_abi::Error::InvalidArgument)
    );
    println!(
        "  guest ran at EL1, {exits} exits ({mmio} MMIO to the UART, 4 hypercalls, 1 unmapped read), powered off through PSCI"
    );
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}

pub fn guest_contained(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(20).map_err(|e| fail!("{e}"))?;
    // 2 ms of every 10 ms: the guest may spin, not monopolise the CPU.
    let g = build_guest(&mut env, ut, guest::hostile(), 2_000, 10_000)?;
    let ch = g.channel;
    let next = |m: Result<ExitMessage, skyscope_abi::Error>| m.map_err(|e| fail!("{e}"));

    // 1. `smc` with PSCI SYSTEM_OFF: trapped, never reaches the firmware.
    let m = next(ch.wait())?;
    from_guest(&m)?;
    check_eq!(m.exit, Exit::MonitorCall { imm: 0 });
    check_eq!(guest_register(g.tcb, 0), Ok(guest::PSCI_SYSTEM_OFF));
    // 2. A write to PMCR_EL0 (performance monitors: trapped).
    let m = next(ch.resume_and_wait(Resume::skip_setting(Some(0), psci::NOT_SUPPORTED)))?;
    from_guest(&m)?;
    check!(
        matches!(m.exit, Exit::SystemRegister { .. }),
        "expected a system-register exit, got {:?}",
        m.exit
    );
    // 3. A load from guest-physical 0x4100_0000, where host RAM is: the
    // GuestSpace maps nothing there, so it is an exit, not host memory.
    let m = next(ch.resume_and_wait(Resume::SKIP))?;
    from_guest(&m)?;
    let Exit::Mmio(access) = m.exit else {
        return Err(fail!("expected a memory exit, got {:?}", m.exit));
    };
    check_eq!(access.address, guest::HOST_RAM_PROBE);
    check!(!access.write, "the probe is a load");
    // 4. `hvc #1`, then the guest spins.
    let m = next(ch.resume_and_wait(Resume::skip_setting(access.register, 0)))?;
    from_guest(&m)?;
    check_eq!(m.exit, Exit::Hypercall { imm: 1 });
    check_ok!(ch.resume(Resume::SKIP));

    // The root task drops below the guest's priority and measures how much
    // of 300 ms it still gets: the guest's budget leaves it about 80%.
    let f = info.timer_frequency;
    check_ok!(inv::tcb_set_priority(slots::TCB, 100));
    let start = counter_now();
    let (mut last, mut ran) = (start, 0);
    while last - start < f * 300 / 1000 {
        let now = counter_now();
        if now - last < f / 1000 {
            ran += now - last;
        }
        last = now;
    }
    check_ok!(inv::tcb_set_priority(slots::TCB, 255));
    let share = ran * 1000 / (last - start);
    let spins = crate::support::read(g.scratch);
    println!(
        "  guest exits: smc, PMCR_EL0 write, host-RAM probe, hvc; then it spun {spins} times on a 2 ms / 10 ms budget while the VMM kept {}.{}% of the CPU",
        share / 10,
        share % 10
    );
    check!(spins > 0, "the guest never ran");
    check!(
        (650..=900).contains(&share),
        "the VMM kept {share} per mille; the guest's budget should leave ~800"
    );
    // Deleting its Vcpu stops the guest thread for good.
    check_ok!(inv::cnode_delete(ROOT, g.vcpu, ROOT_DEPTH));
    let before = crate::support::read(g.scratch);
    let wait_until = counter_now() + f / 20;
    while counter_now() < wait_until {}
    check_eq!(crate::support::read(g.scratch), before);
    check_eq!(
        inv::tcb_resume(g.tcb),
        Err(skyscope_abi::Error::IllegalOperation)
    );
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}
