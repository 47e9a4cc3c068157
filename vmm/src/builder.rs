//! Making a guest out of untyped memory: the GuestSpace, its page tables,
//! RAM frames mapped for the guest (at guest-physical addresses) and for
//! the VMM (at a VMM virtual address), one Vcpu and one thread per vCPU
//! (bound together, configured, on a scheduling context), the exit
//! channel; then starting vCPUs.
//!
//! The builder decides what to make and in which order; `skyscope-client`
//! carries it out: [`Objects`] (the process's own CSpace bookkeeping:
//! which slot, which untyped) and a [`Kernel`] that performs the
//! [`Invocation`]s — on the target the syscalls, in the host tests a model
//! that checks them.

use crate::arch::aarch64::cpu::{EntryState, mpidr};
use crate::channel::ExitChannel;
use crate::memory::{GuestAddress, GuestRange};
use crate::vcpu::{MAX_VCPUS, VcpuId};
use skyscope_abi::{
    CapRights, Error, ObjectType,
    invocation::{MAP_EXECUTE, REG_PC, REG_X0},
    vcpu::aarch64 as vreg,
};
use skyscope_client::{Invocation, Kernel, Objects, START_REGISTERS, map_creating_tables};

const PAGE: u64 = 0x1000;
const LARGE_PAGE: u64 = 0x20_0000;
/// Where the guest's exits go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exits {
    /// A new endpoint and reply object (an [`ExitChannel`]); vCPU `i`'s
    /// exits carry badge `badge + i`.
    NewChannel {
        /// Badge of vCPU 0.
        badge: u64,
    },
    /// An existing endpoint capability, used as it is (unbadged exits
    /// unless it carries a badge).
    Endpoint(u64),
}

/// The CSpace the vCPU threads get. A guest makes no syscalls (its `svc`
/// goes to its own EL1), but a thread needs a CSpace root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadCSpace {
    /// A new, empty two-slot CNode.
    Empty,
    /// An existing CNode with this many guard bits.
    Given {
        /// The CNode.
        cnode: u64,
        /// Its guard bits.
        guard_bits: u8,
    },
}

/// RAM for the guest, mapped at `guest` in the GuestSpace and at
/// `vmm_address` in the VMM's VSpace `vmm_space`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamMapping {
    /// Guest-physical range (page aligned).
    pub guest: GuestRange,
    /// The VMM's address of its first byte.
    pub vmm_address: u64,
    /// The VMM's VSpace.
    pub vmm_space: u64,
}

/// A step of building that failed, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildError {
    /// What was being done.
    pub step: &'static str,
    /// The kernel's (or allocator's) answer.
    pub error: Error,
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.step, self.error)
    }
}

fn at(step: &'static str) -> impl Fn(Error) -> BuildError {
    move |error| BuildError { step, error }
}

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct GuestBuilder {
    sched_control: u64,
    priority: u8,
    budget_us: u64,
    period_us: u64,
    vcpus: usize,
    exits: Exits,
    cspace: ThreadCSpace,
    ram: Option<RamMapping>,
}

/// One vCPU: its Vcpu object and the thread that runs as it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuThread {
    /// The thread.
    pub tcb: u64,
    /// The Vcpu bound to it.
    pub vcpu: u64,
    /// Its scheduling context.
    pub sched_context: u64,
}

/// A built guest (its vCPUs not started yet).
#[derive(Clone, Copy, Debug)]
pub struct Guest {
    /// The guest-physical address space.
    pub guest_space: u64,
    vcpus: [Option<VcpuThread>; MAX_VCPUS],
    /// The exit channel, if the builder made one.
    pub channel: Option<ExitChannel>,
    /// The RAM mapping, if the guest has RAM.
    pub ram: Option<RamMapping>,
}

impl GuestBuilder {
    /// A guest with one vCPU at priority 200 on a full budget (10 ms of
    /// every 10 ms), a new exit channel with badge 0, an empty CSpace and
    /// no RAM; `sched_control` configures its scheduling contexts.
    pub fn new(sched_control: u64) -> GuestBuilder {
        GuestBuilder {
            sched_control,
            priority: 200,
            budget_us: 10_000,
            period_us: 10_000,
            vcpus: 1,
            exits: Exits::NewChannel { badge: 0 },
            cspace: ThreadCSpace::Empty,
            ram: None,
        }
    }

    /// The vCPU threads' priority.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    /// Each vCPU's CPU time: `budget_us` per `period_us`.
    pub fn budget(mut self, budget_us: u64, period_us: u64) -> Self {
        self.budget_us = budget_us;
        self.period_us = period_us;
        self
    }

    /// Number of vCPUs (1 to [`MAX_VCPUS`]).
    pub fn vcpus(mut self, count: usize) -> Self {
        self.vcpus = count;
        self
    }

    /// Where exits go.
    pub fn exits(mut self, exits: Exits) -> Self {
        self.exits = exits;
        self
    }

    /// The vCPU threads' CSpace.
    pub fn cspace(mut self, cspace: ThreadCSpace) -> Self {
        self.cspace = cspace;
        self
    }

    /// Guest RAM and where the VMM sees it.
    pub fn ram(mut self, ram: RamMapping) -> Self {
        self.ram = Some(ram);
        self
    }

    /// Makes and connects everything; the vCPUs stay stopped until
    /// [`Guest::start`].
    pub fn build(
        &self,
        objects: &mut impl Objects,
        kernel: &mut impl Kernel,
    ) -> Result<Guest, BuildError> {
        if !(1..=MAX_VCPUS).contains(&self.vcpus) {
            return Err(BuildError {
                step: "vcpu count",
                error: Error::RangeError,
            });
        }
        let (channel, endpoint, badge) = match self.exits {
            Exits::NewChannel { badge } => {
                let endpoint = objects
                    .make(ObjectType::Endpoint, 0, 1)
                    .map_err(at("endpoint"))?;
                let reply = objects.make(ObjectType::Reply, 0, 1).map_err(at("reply"))?;
                (Some(ExitChannel { endpoint, reply }), endpoint, Some(badge))
            }
            Exits::Endpoint(endpoint) => (None, endpoint, None),
        };
        let guest_space = objects
            .make(ObjectType::GuestSpace, 0, 1)
            .map_err(at("guest space"))?;
        let (cspace, guard_bits) = match self.cspace {
            ThreadCSpace::Empty => {
                let cnode = objects.make(ObjectType::CNode, 1, 1).map_err(at("cnode"))?;
                (cnode, 63)
            }
            ThreadCSpace::Given { cnode, guard_bits } => (cnode, guard_bits),
        };
        let mut guest = Guest {
            guest_space,
            vcpus: [None; MAX_VCPUS],
            channel,
            ram: self.ram,
        };
        for i in 0..self.vcpus {
            let fault_endpoint = match badge {
                Some(b) => objects
                    .mint(endpoint, CapRights::ALL, b + i as u64)
                    .map_err(at("exit badge"))?,
                None => endpoint,
            };
            let tcb = objects.make(ObjectType::Tcb, 0, 1).map_err(at("tcb"))?;
            kernel
                .invoke(Invocation::TcbConfigure {
                    tcb,
                    fault_endpoint,
                    priority: self.priority,
                    cspace,
                    guard_bits,
                    space: guest_space,
                    // A Vcpu's thread has no IPC buffer: it never makes
                    // syscalls (its exits are faults).
                    ipc_buffer: 0,
                    ipc_frame: 0,
                })
                .map_err(at("tcb configure"))?;
            let vcpu = objects.make(ObjectType::Vcpu, 0, 1).map_err(at("vcpu"))?;
            kernel
                .invoke(Invocation::VcpuSetTcb { vcpu, tcb })
                .map_err(at("vcpu bind"))?;
            let sched_context = objects
                .make(ObjectType::SchedContext, 0, 1)
                .map_err(at("sched context"))?;
            kernel
                .invoke(Invocation::SchedControlConfigure {
                    control: self.sched_control,
                    sched_context,
                    budget_us: self.budget_us,
                    period_us: self.period_us,
                })
                .map_err(at("sched configure"))?;
            kernel
                .invoke(Invocation::SchedContextBind { sched_context, tcb })
                .map_err(at("sched bind"))?;
            guest.vcpus[i] = Some(VcpuThread {
                tcb,
                vcpu,
                sched_context,
            });
        }
        if let Some(ram) = self.ram {
            map_ram(objects, kernel, guest_space, ram, |_| Ok(()))?;
        }
        Ok(guest)
    }
}

/// One frame of guest RAM as [`map_ram`] made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamFrame {
    /// The capability mapped into the GuestSpace.
    pub guest: u64,
    /// The capability (a copy) mapped into the VMM's VSpace.
    pub view: u64,
    /// Guest-physical address of its first byte.
    pub address: GuestAddress,
    /// Its size in bytes.
    pub size: u64,
}

/// Maps fresh frames over `ram.guest` in the GuestSpace (readable,
/// writable, executable) and copies of them over the VMM's window
/// (readable, writable). 2 MiB frames where both addresses allow, 4 KiB
/// ones elsewhere. `on_frame` hears of each frame once both mappings
/// stand, in address order: a parent building a guest for a VMM process
/// hands the views over there (an error from it stops the mapping).
pub fn map_ram(
    objects: &mut impl Objects,
    kernel: &mut impl Kernel,
    guest_space: u64,
    ram: RamMapping,
    mut on_frame: impl FnMut(RamFrame) -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    let misaligned = |a: u64| !a.is_multiple_of(PAGE);
    if misaligned(ram.guest.start().raw())
        || misaligned(ram.guest.size())
        || misaligned(ram.vmm_address)
        || ram.vmm_address.checked_add(ram.guest.size()).is_none()
    {
        return Err(BuildError {
            step: "ram layout",
            error: Error::AlignmentError,
        });
    }
    let mut offset = 0;
    while offset < ram.guest.size() {
        let ipa = ram.guest.start().raw() + offset;
        let va = ram.vmm_address + offset;
        let large = ipa.is_multiple_of(LARGE_PAGE)
            && va.is_multiple_of(LARGE_PAGE)
            && ram.guest.size() - offset >= LARGE_PAGE;
        let (ty, size) = if large {
            (ObjectType::Frame2M, LARGE_PAGE)
        } else {
            (ObjectType::Frame4K, PAGE)
        };
        let frame = objects.make(ty, 0, 1).map_err(at("ram frame"))?;
        map_creating_tables(
            objects,
            kernel,
            frame,
            guest_space,
            ipa,
            CapRights::ALL,
            MAP_EXECUTE,
        )
        .map_err(at("map into the guest"))?;
        let view = objects
            .copy(frame, CapRights::ALL)
            .map_err(at("ram frame copy"))?;
        map_creating_tables(objects, kernel, view, ram.vmm_space, va, CapRights::ALL, 0)
            .map_err(at("map into the vmm"))?;
        on_frame(RamFrame {
            guest: frame,
            view,
            address: GuestAddress(ipa),
            size,
        })?;
        offset += size;
    }
    Ok(())
}

impl Guest {
    /// vCPU `vcpu`'s objects.
    pub fn vcpu(&self, vcpu: VcpuId) -> Option<&VcpuThread> {
        self.vcpus.get(vcpu.index())?.as_ref()
    }

    /// Starts `vcpu` with `entry` (see [`start_vcpu`]). Used for the boot
    /// vCPU and for PSCI CPU_ON.
    pub fn start(
        &self,
        kernel: &mut impl Kernel,
        vcpu: VcpuId,
        entry: EntryState,
    ) -> Result<(), BuildError> {
        let parts = self.vcpu(vcpu).ok_or(BuildError {
            step: "no such vcpu",
            error: Error::RangeError,
        })?;
        start_vcpu(kernel, parts.vcpu, parts.tcb, vcpu, entry)
    }
}

/// Starts vCPU `id` — Vcpu object `vcpu`, run by thread `tcb` — with
/// `entry`: its MPIDR (VMPIDR_EL2, from [`mpidr`]), PSTATE, pc and
/// `x0..x3`, then resumes the thread. For a guest this process built
/// ([`Guest::start`]) or one whose capabilities it was given (a VMM
/// process).
pub fn start_vcpu(
    kernel: &mut impl Kernel,
    vcpu: u64,
    tcb: u64,
    id: VcpuId,
    entry: EntryState,
) -> Result<(), BuildError> {
    kernel
        .invoke(Invocation::VcpuWriteRegister {
            vcpu,
            register: vreg::VMPIDR_EL2,
            value: mpidr(id),
        })
        .map_err(at("mpidr"))?;
    kernel
        .invoke(Invocation::VcpuWriteRegister {
            vcpu,
            register: vreg::PSTATE,
            value: entry.pstate,
        })
        .map_err(at("pstate"))?;
    let mut values = [0; START_REGISTERS];
    values[REG_PC] = entry.pc;
    values[REG_X0..].copy_from_slice(&entry.x);
    kernel
        .invoke(Invocation::TcbWriteRegisters { tcb, values })
        .map_err(at("registers"))?;
    kernel
        .invoke(Invocation::TcbResume { tcb })
        .map_err(at("resume"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::vec::Vec;

    /// Slots of 2 MiB frames (and of their copies) are numbered from here,
    /// so the kernel model can tell them apart by slot.
    const LARGE: u64 = 1_000_000;

    /// Allocates slots counting up and remembers what each is.
    #[derive(Default)]
    struct Slots {
        next: u64,
        made: Vec<(u64, ObjectType)>,
        copies: Vec<(u64, u64)>,
        mints: Vec<(u64, u64, u64)>,
    }

    impl Slots {
        fn fresh(&mut self, large: bool) -> u64 {
            self.next += 1;
            self.next + if large { LARGE } else { 100 }
        }
    }

    impl Objects for Slots {
        fn make(&mut self, ty: ObjectType, _: u64, count: u64) -> Result<u64, Error> {
            let first = self.fresh(ty == ObjectType::Frame2M);
            self.next += count - 1;
            for i in 0..count {
                self.made.push((first + i, ty));
            }
            Ok(first)
        }

        fn copy(&mut self, cap: u64, _: CapRights) -> Result<u64, Error> {
            let slot = self.fresh(cap >= LARGE);
            self.copies.push((slot, cap));
            Ok(slot)
        }

        fn mint(&mut self, cap: u64, _: CapRights, badge: u64) -> Result<u64, Error> {
            let slot = self.fresh(false);
            self.mints.push((slot, cap, badge));
            Ok(slot)
        }
    }

    /// A kernel model for 39-bit spaces: a frame maps only under an L2
    /// table (per 1 GiB) and, for a 4 KiB frame, an L3 table (per 2 MiB);
    /// `PageTable::Map` installs the first missing one; mapping over a
    /// mapping is refused. It records every invocation.
    #[derive(Default)]
    struct Model {
        l2: BTreeSet<(u64, u64)>,
        l3: BTreeSet<(u64, u64)>,
        mapped: BTreeSet<(u64, u64)>,
        log: Vec<Invocation>,
    }

    impl Kernel for Model {
        fn invoke(&mut self, i: Invocation) -> Result<(), Error> {
            self.log.push(i);
            match i {
                Invocation::FrameMap {
                    frame,
                    space,
                    address,
                    ..
                } => {
                    if !self.l2.contains(&(space, address >> 30))
                        || (frame < LARGE && !self.l3.contains(&(space, address >> 21)))
                    {
                        return Err(Error::FailedLookup);
                    }
                    if !self.mapped.insert((space, address)) {
                        return Err(Error::DeleteFirst);
                    }
                    Ok(())
                }
                Invocation::PageTableMap { space, address, .. } => {
                    if self.l2.insert((space, address >> 30))
                        || self.l3.insert((space, address >> 21))
                    {
                        Ok(())
                    } else {
                        Err(Error::DeleteFirst)
                    }
                }
                _ => Ok(()),
            }
        }
    }

    const VMM_SPACE: u64 = 3;

    fn ram(start: u64, size: u64, vmm: u64) -> RamMapping {
        RamMapping {
            guest: GuestRange::new(GuestAddress(start), size).unwrap(),
            vmm_address: vmm,
            vmm_space: VMM_SPACE,
        }
    }

    #[test]
    fn a_minimal_guest_like_vm_guest_hello() {
        let builder = GuestBuilder::new(9)
            .priority(200)
            .budget(2_000, 10_000)
            .exits(Exits::NewChannel { badge: 0x77 })
            .ram(ram(0x4000_0000, 0x2000, 0x20_0000_0000));
        let mut slots = Slots::default();
        let mut model = Model::default();
        let guest = builder.build(&mut slots, &mut model).unwrap();
        let v0 = *guest.vcpu(VcpuId::BOOT).unwrap();
        assert_eq!(guest.vcpu(VcpuId::new(1).unwrap()), None);
        let channel = guest.channel.unwrap();
        // The thread's exits carry the badge, on the channel's endpoint.
        let handler = slots.mints[0].0;
        assert_eq!(slots.mints, [(handler, channel.endpoint, 0x77)]);
        assert!(
            model.log.contains(&Invocation::TcbConfigure {
                tcb: v0.tcb,
                fault_endpoint: handler,
                priority: 200,
                cspace: slots
                    .made
                    .iter()
                    .find(|(_, t)| *t == ObjectType::CNode)
                    .unwrap()
                    .0,
                guard_bits: 63,
                space: guest.guest_space,
                ipc_buffer: 0,
                ipc_frame: 0,
            })
        );
        assert!(model.log.contains(&Invocation::VcpuSetTcb {
            vcpu: v0.vcpu,
            tcb: v0.tcb
        }));
        assert!(model.log.contains(&Invocation::SchedControlConfigure {
            control: 9,
            sched_context: v0.sched_context,
            budget_us: 2_000,
            period_us: 10_000
        }));
        // Two 4 KiB pages, each in both spaces; guest mappings executable,
        // the VMM's not.
        assert_eq!(
            model.mapped,
            [
                (guest.guest_space, 0x4000_0000),
                (guest.guest_space, 0x4000_1000),
                (VMM_SPACE, 0x20_0000_0000),
                (VMM_SPACE, 0x20_0000_1000)
            ]
            .into()
        );
        for i in &model.log {
            if let Invocation::FrameMap {
                space, attributes, ..
            } = *i
            {
                assert_eq!(space == guest.guest_space, attributes == MAP_EXECUTE);
            }
        }
        // Page tables: an L2 and an L3 in each space, made on demand.
        assert_eq!((model.l2.len(), model.l3.len()), (2, 2));
        // Nothing runs yet.
        assert!(
            !model
                .log
                .iter()
                .any(|i| matches!(i, Invocation::TcbResume { .. }))
        );
        // Starting: MPIDR, PSTATE, registers, resume, in that order.
        let before = model.log.len();
        guest
            .start(&mut model, VcpuId::BOOT, EntryState::kernel(0x4000_0000, 0))
            .unwrap();
        let mut values = [0; START_REGISTERS];
        values[REG_PC] = 0x4000_0000;
        assert_eq!(
            model.log[before..],
            [
                Invocation::VcpuWriteRegister {
                    vcpu: v0.vcpu,
                    register: vreg::VMPIDR_EL2,
                    value: 0x8000_0000
                },
                Invocation::VcpuWriteRegister {
                    vcpu: v0.vcpu,
                    register: vreg::PSTATE,
                    value: 0x3c5
                },
                Invocation::TcbWriteRegisters {
                    tcb: v0.tcb,
                    values
                },
                Invocation::TcbResume { tcb: v0.tcb },
            ]
        );
        let no_such = guest.start(
            &mut model,
            VcpuId::new(1).unwrap(),
            EntryState::kernel(0, 0),
        );
        assert!(no_such.is_err());
    }

    #[test]
    fn large_ram_uses_2mib_frames_and_existing_endpoints() {
        let builder = GuestBuilder::new(9)
            .vcpus(2)
            .exits(Exits::Endpoint(55))
            .cspace(ThreadCSpace::Given {
                cnode: 44,
                guard_bits: 56,
            })
            .ram(ram(0x4000_0000, 0x40_1000, 0x20_0000_0000));
        let mut slots = Slots::default();
        let mut model = Model::default();
        let guest = builder.build(&mut slots, &mut model).unwrap();
        assert!(guest.channel.is_none());
        assert!(slots.mints.is_empty());
        let count = |ty| slots.made.iter().filter(|(_, t)| *t == ty).count();
        assert_eq!(
            (count(ObjectType::Frame2M), count(ObjectType::Frame4K)),
            (2, 1)
        );
        assert_eq!(model.mapped.len(), 6);
        // 2 MiB frames need no L3 table; the trailing 4 KiB page does.
        assert_eq!((model.l2.len(), model.l3.len()), (2, 2));
        // Both vCPUs: own thread and Vcpu, the given CSpace and endpoint.
        for i in 0..2 {
            let v = guest.vcpu(VcpuId::new(i).unwrap()).unwrap();
            assert!(model.log.contains(&Invocation::TcbConfigure {
                tcb: v.tcb,
                fault_endpoint: 55,
                priority: 200,
                cspace: 44,
                guard_bits: 56,
                space: guest.guest_space,
                ipc_buffer: 0,
                ipc_frame: 0,
            }));
            assert!(model.log.contains(&Invocation::VcpuSetTcb {
                vcpu: v.vcpu,
                tcb: v.tcb
            }));
        }
    }

    #[test]
    fn ram_frames_are_reported_in_address_order() {
        let mut slots = Slots::default();
        let mut model = Model::default();
        let mut seen = Vec::new();
        map_ram(
            &mut slots,
            &mut model,
            7,
            ram(0x4000_0000, 0x20_2000, 0x20_0000_0000),
            |f| {
                seen.push(f);
                Ok(())
            },
        )
        .unwrap();
        let layout: Vec<_> = seen.iter().map(|f| (f.address.raw(), f.size)).collect();
        assert_eq!(
            layout,
            [
                (0x4000_0000, 0x20_0000),
                (0x4020_0000, 0x1000),
                (0x4020_1000, 0x1000)
            ]
        );
        // Each view is the copy of its guest frame, mapped for the VMM.
        for f in &seen {
            assert!(slots.copies.contains(&(f.view, f.guest)));
            assert!(model.mapped.contains(&(7, f.address.raw())));
        }
        // An error from the caller stops the mapping there.
        let mut model = Model::default();
        let refused = BuildError {
            step: "hand over",
            error: Error::NotEnoughMemory,
        };
        let e = map_ram(
            &mut slots,
            &mut model,
            7,
            ram(0x4000_0000, 0x3000, 0x20_0000_0000),
            |_| Err(refused),
        );
        assert_eq!(e, Err(refused));
        assert_eq!(model.mapped.len(), 2, "one frame, in both spaces");
    }

    #[test]
    fn bad_requests_fail_cleanly() {
        let mut slots = Slots::default();
        let mut model = Model::default();
        let e = GuestBuilder::new(1).vcpus(0).build(&mut slots, &mut model);
        assert_eq!(e.err().map(|e| e.step), Some("vcpu count"));
        let e = GuestBuilder::new(1)
            .ram(ram(0x4000_0000, 0x1000, 0x20_0000_0800))
            .build(&mut slots, &mut model);
        assert_eq!(e.err().map(|e| e.error), Some(Error::AlignmentError));
        // Mapping over something already mapped is the kernel's refusal,
        // reported with its step.
        model.l2.insert((VMM_SPACE, 0x20_0000_0000 >> 30));
        model.l3.insert((VMM_SPACE, 0x20_0000_0000 >> 21));
        model.mapped.insert((VMM_SPACE, 0x20_0000_0000));
        let e = GuestBuilder::new(1)
            .ram(ram(0x4000_0000, 0x1000, 0x20_0000_0000))
            .build(&mut slots, &mut model);
        assert_eq!(
            e.err(),
            Some(BuildError {
                step: "map into the vmm",
                error: Error::DeleteFirst
            })
        );
    }
}
