//! Virtual-machine scenarios: the root task acts as the VMM of a tiny
//! bare-metal guest (`skyscope-guest-minimal`) running at EL1 under a
//! GuestSpace, and handles its exits with the `skyscope-vmm` library.

use crate::{
    Outcome,
    support::{Carve, Env, ROOT, ROOT_DEPTH},
};
use skyscope_abi::{
    BootInfo, bootinfo::slots, fault, invocation as inv, println, syscall::counter_now,
    vcpu::aarch64 as vreg, window::MappedWindow,
};
use skyscope_client::Syscalls;
use skyscope_guest_minimal as guest;
use skyscope_vmm::{
    arch::aarch64::{
        cpu::EntryState,
        exit::{Exit, SystemRegister, SystemRegisterAccess},
        layout,
        psci::{self, Psci},
    },
    builder::{Exits, GuestBuilder, RamMapping, VcpuThread},
    bus::{MmioBus, Target},
    channel::{ExitChannel, ExitMessage, Resume},
    devices::pl011::Pl011,
    memory::{GuestAddress, GuestMemory, GuestRange},
    vcpu::{VcpuId, call_arguments, general_register},
};

/// Where the VMM maps the guest's RAM in its own address space.
const VMM_WINDOW: u64 = 0x20_0000_0000;
/// Badge of the guest's fault-handler capability.
const GUEST_BADGE: u64 = 0x77;
/// Priority the guest runs at (the root task runs at 255).
const GUEST_PRIORITY: u8 = 200;
/// Where the guests' scratch page is (the page after the program).
const SCRATCH: GuestAddress = GuestAddress(guest::LOAD_ADDRESS + 0x1000);

/// The devices on the minimal guests' bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Device {
    Uart,
}

/// A guest the root task built and is the VMM of.
pub(crate) struct Guest {
    pub(crate) vcpu: VcpuThread,
    pub(crate) channel: ExitChannel,
    pub(crate) memory: GuestMemory<MappedWindow>,
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
    build_guest_at(env, ut, program, (budget_us, period_us), 0, VMM_WINDOW)
}

/// As [`build_guest`], entering the program with `x0` and mapping its RAM
/// at `window` in the root task (several guests need several windows).
pub(crate) fn build_guest_at(
    env: &mut Env,
    ut: u64,
    program: &[u8],
    (budget_us, period_us): (u64, u64),
    x0: u64,
    window: u64,
) -> Result<Guest, crate::Failure> {
    let ram = RamMapping {
        guest: GuestRange::new(GuestAddress(guest::LOAD_ADDRESS), guest::RAM_BYTES)
            .ok_or_else(|| fail!("guest RAM range"))?,
        vmm_address: window,
        vmm_space: slots::VSPACE,
    };
    let built = GuestBuilder::new(slots::SCHED_CONTROL)
        .priority(GUEST_PRIORITY)
        .budget(budget_us, period_us)
        .exits(Exits::NewChannel { badge: GUEST_BADGE })
        .ram(ram)
        .build(&mut Carve { env, untyped: ut }, &mut Syscalls)
        .map_err(|e| fail!("{e}"))?;
    // SAFETY: the builder has just mapped `RAM_BYTES` of fresh frames at
    // `window` in this VSpace (the kernel refuses to map over an existing
    // mapping, so no Rust object lives there), the mapping stays until the
    // scenario revokes its untyped at the end, and only this window
    // reaches it.
    let window = unsafe { MappedWindow::new(window as usize, guest::RAM_BYTES as usize) };
    let mut memory = GuestMemory::new(ram.guest.start(), window).map_err(|e| fail!("{e}"))?;
    check!(
        !program.is_empty() && program.len() <= 4096,
        "the program is {} bytes",
        program.len()
    );
    memory
        .load(GuestAddress(guest::LOAD_ADDRESS), program)
        .map_err(|e| fail!("{e}"))?;
    // Start at EL1h with interrupts masked and the MMU off, like a kernel.
    built
        .start(
            &mut Syscalls,
            VcpuId::BOOT,
            EntryState::kernel(guest::LOAD_ADDRESS, x0),
        )
        .map_err(|e| fail!("{e}"))?;
    Ok(Guest {
        vcpu: *built
            .vcpu(VcpuId::BOOT)
            .ok_or_else(|| fail!("no boot vcpu"))?,
        channel: built.channel.ok_or_else(|| fail!("no exit channel"))?,
        memory,
    })
}

/// Checks an exit came from the guest as a guest exit.
pub(crate) fn from_guest(m: &ExitMessage) -> Outcome {
    check_eq!(m.badge, GUEST_BADGE);
    check_eq!(m.label, fault::GUEST_EXIT);
    Ok(())
}

pub fn guest_hello(info: &'static BootInfo) -> Outcome {
    let mut env = Env::new(info);
    let ut = env.private_untyped(20).map_err(|e| fail!("{e}"))?;
    let g = build_guest(&mut env, ut, guest::hello(), 10_000, 10_000)?;
    let (tcb, vcpu) = (g.vcpu.tcb, g.vcpu.vcpu);
    // A register the guest never touches must survive its runs in the CPU.
    check_ok!(inv::vcpu_write_register(vcpu, vreg::TPIDR_EL1, 0x5ca1_ab1e));

    let mut bus = MmioBus::<Device, 1>::new();
    check_ok!(bus.insert(layout::UART.into(), Device::Uart));
    let mut uart = Pl011::default();
    let mut psci = Psci::new(1, g.memory.range());
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
            // PSCI through `hvc #0`, the device tree's conduit.
            Exit::Hypercall { imm: 0 } => {
                let x = call_arguments(tcb).map_err(|e| fail!("{e}"))?;
                let outcome = psci.call(VcpuId::BOOT, x);
                check_eq!(outcome.action, psci::Action::SystemOff);
                check_ok!(inv::tcb_suspend(tcb));
                break;
            }
            Exit::Hypercall { imm } if usize::from(imm) < reports.len() => {
                let x0 = general_register(tcb, 0).map_err(|e| fail!("{e}"))?;
                reports[usize::from(imm)] = Some(x0);
                Resume::SKIP
            }
            Exit::Mmio(access) => match bus.find_access(access.address, u64::from(access.size)) {
                Some(Target {
                    device: Device::Uart,
                    offset,
                }) => {
                    mmio += 1;
                    if access.write {
                        let value = match access.register {
                            Some(r) => general_register(tcb, r).map_err(|e| fail!("{e}"))?,
                            None => 0,
                        };
                        if let Some(byte) = uart.write(offset, access.store_value(value)).value
                            && printed_len < printed.len()
                        {
                            printed[printed_len] = byte;
                            printed_len += 1;
                        }
                        Resume::SKIP
                    } else {
                        let value = uart.read(offset, access.size).value;
                        Resume::skip_setting(access.register, access.load_result(value.into()))
                    }
                }
                None if access.address == GuestAddress(guest::UNMAPPED_READ) && !access.write => {
                    Resume::skip_setting(access.register, 0xdead_beef)
                }
                None => {
                    return Err(fail!(
                        "access to {:#x} at pc {:#x}",
                        access.address,
                        message.pc
                    ));
                }
            },
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
    check_eq!(
        g.memory.read_u64(GuestAddress(SCRATCH.0 + 8 * 100)),
        Ok(100)
    );
    // EL1 state went through the CPU and back.
    check_eq!(
        inv::vcpu_read_register(vcpu, vreg::TPIDR_EL1),
        Ok(0x5ca1_ab1e)
    );
    check_eq!(
        inv::vcpu_read_register(vcpu, vreg::SCTLR_EL1),
        Ok(0x30c5_0838)
    );
    check_eq!(
        inv::vcpu_read_register(vcpu, vreg::COUNT),
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
    check_eq!(general_register(g.vcpu.tcb, 0), Ok(guest::PSCI_SYSTEM_OFF));
    // 2. A write to PMCR_EL0 (performance monitors: trapped), decoded down
    // to the register and the source (`msr PMCR_EL0, xzr`).
    let not_supported = i64::from(psci::code::NOT_SUPPORTED) as u64;
    let m = next(ch.resume_and_wait(Resume::skip_setting(Some(0), not_supported)))?;
    from_guest(&m)?;
    check_eq!(
        m.exit,
        Exit::SystemRegister(SystemRegisterAccess {
            register: SystemRegister::PMCR_EL0,
            rt: 31,
            read: false,
        })
    );
    // 3. A load from guest-physical 0x4100_0000, where host RAM is: the
    // GuestSpace maps nothing there, so it is an exit, not host memory.
    let m = next(ch.resume_and_wait(Resume::SKIP))?;
    from_guest(&m)?;
    let Exit::Mmio(access) = m.exit else {
        return Err(fail!("expected a memory exit, got {:?}", m.exit));
    };
    check_eq!(access.address, GuestAddress(guest::HOST_RAM_PROBE));
    check!(!access.write, "the probe is a load");
    // 4. `hvc #1`, then the guest spins.
    let m = next(ch.resume_and_wait(Resume::skip_setting(access.register, 0)))?;
    from_guest(&m)?;
    check_eq!(m.exit, Exit::Hypercall { imm: 1 });
    check_ok!(ch.resume(Resume::SKIP));

    // The root task drops below the guest's priority and measures how much
    // of 300 ms it still gets: the guest's budget leaves it about 80%.
    let f = info.timer_frequency;
    let share = crate::guest_irq::spin_below_guests(info, 300)?;
    let spins = g.memory.read_u64(SCRATCH).map_err(|e| fail!("{e}"))?;
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
    check_ok!(inv::cnode_delete(ROOT, g.vcpu.vcpu, ROOT_DEPTH));
    let before = g.memory.read_u64(SCRATCH);
    let wait_until = counter_now() + f / 20;
    while counter_now() < wait_until {}
    check_eq!(g.memory.read_u64(SCRATCH), before);
    check_eq!(
        inv::tcb_resume(g.vcpu.tcb),
        Err(skyscope_abi::Error::IllegalOperation)
    );
    check_ok!(inv::cnode_revoke(ROOT, ut, ROOT_DEPTH));
    Ok(())
}
