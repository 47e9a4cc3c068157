//! Host tests of a launch against a model kernel that records what was
//! made, given to the VMM, mapped into its address space and written to
//! its start page.

extern crate std;

use super::*;
use skyscope_client::Invocation;
use skyscope_vmm::memory::GuestAddress;
use skyscope_vmm::process::start::module_kind;
use std::collections::BTreeMap;
use std::vec::Vec;

/// A minimal AArch64 executable: one R-X page at 4 MiB.
fn program() -> Vec<u8> {
    let code = [0x1f, 0x20, 0x03, 0xd5]; // nop
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF");
    out.extend_from_slice(&[2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out.extend_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0x40_0000u64.to_le_bytes()); // entry
    out.extend_from_slice(&64u64.to_le_bytes()); // program headers
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for half in [64u16, 56, 1, 64, 0, 0] {
        out.extend_from_slice(&half.to_le_bytes());
    }
    out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    out.extend_from_slice(&5u32.to_le_bytes()); // R-X
    for word in [120u64, 0x40_0000, 0x40_0000, 4, 4, 0x1000] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&code);
    out
}

/// The parent's CSpace: fresh slots counting up, a record of every object
/// made and every copy or mint.
#[derive(Default)]
struct Parent {
    next: u64,
    made: BTreeMap<u64, ObjectType>,
    /// copy or mint slot -> (source, rights)
    derived: BTreeMap<u64, (u64, CapRights)>,
}

impl Parent {
    fn fresh(&mut self) -> u64 {
        self.next += 1;
        1000 + self.next
    }
}

impl Objects for Parent {
    fn make(&mut self, ty: ObjectType, _: u64, count: u64) -> Result<u64, Error> {
        let first = self.fresh();
        self.next += count - 1;
        for i in 0..count {
            self.made.insert(first + i, ty);
        }
        Ok(first)
    }
    fn copy(&mut self, cap: u64, rights: CapRights) -> Result<u64, Error> {
        let slot = self.fresh();
        self.derived.insert(slot, (cap, rights));
        Ok(slot)
    }
    fn mint(&mut self, cap: u64, rights: CapRights, _: u64) -> Result<u64, Error> {
        self.copy(cap, rights)
    }
}

/// The kernel's side: every mapping succeeds once per address.
#[derive(Clone, Default)]
struct Model {
    log: std::rc::Rc<core::cell::RefCell<Vec<Event>>>,
}

#[derive(Clone, Copy, Debug)]
enum Event {
    Map(u64, u64, u64, CapRights),
    Give(u64, u64, u64, Give),
    Bound(u64, u64),
}

impl Kernel for Model {
    fn bind_notification(&mut self, tcb: u64, notification: u64) -> Result<(), Error> {
        self.log.borrow_mut().push(Event::Bound(tcb, notification));
        Ok(())
    }
}

impl skyscope_client::Kernel for Model {
    fn invoke(&mut self, i: Invocation) -> Result<(), Error> {
        match i {
            Invocation::FrameMap {
                frame,
                space,
                address,
                rights,
                ..
            } => self
                .log
                .borrow_mut()
                .push(Event::Map(space, address, frame, rights)),
            Invocation::Give {
                cnode,
                index,
                source,
                how,
                ..
            } => self
                .log
                .borrow_mut()
                .push(Event::Give(cnode, index, source, how)),
            _ => {}
        }
        Ok(())
    }
}

struct Writer<'a>(&'a mut BTreeMap<u64, Vec<u8>>);

impl FrameWriter for Writer<'_> {
    fn write(&mut self, frame: u64, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        let page = self.0.entry(frame).or_insert_with(|| std::vec![0; 4096]);
        let at = offset as usize;
        page[at..at + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }
}

const SUPERVISOR: u64 = 7;
const CONSOLE: u64 = 10;

fn linux_spec<'a>(program: &'a [u8], images: &'a [Image<'a>]) -> Spec<'a> {
    Spec {
        program,
        name: "linux",
        supervisor: SUPERVISOR,
        badge: 1,
        console_cap: CONSOLE,
        console: Console::Interactive,
        sched_control: 5,
        parent: CSpaceRoot {
            cnode: 2,
            depth: 64,
        },
        vcpus: 2,
        ram: GuestRange::new(GuestAddress(0x4000_0000), 64 << 20).unwrap(),
        vmm_priority: 150,
        guest_priority: 100,
        budget: (10_000, 10_000),
        crash_after_exits: 0,
        clock: (1_700_000_000, 0, 62_500_000),
        images,
    }
}

#[test]
fn a_linux_vmm_gets_exactly_its_guest() {
    let program = program();
    let cmdline = b"console=ttyAMA0";
    let images = [
        Image {
            kind: module_kind::LINUX,
            guest_address: 0,
            source: Source::Frames {
                frames: SlotRange {
                    start: 300,
                    end: 303,
                },
                frame_bits: 21,
                size: (5 << 20) + 17,
            },
        },
        Image {
            kind: module_kind::CMDLINE,
            guest_address: 0,
            source: Source::Bytes(cmdline),
        },
    ];
    let mut parent = Parent::default();
    let mut model = Model::default();
    let mut written = BTreeMap::new();
    let vmm = launch(
        &mut parent,
        &mut model,
        &mut Writer(&mut written),
        &linux_spec(&program, &images),
    )
    .unwrap();
    let log = model.log.borrow();
    let cnode = vmm.process.cnode;
    let given: BTreeMap<u64, (u64, Give)> = log
        .iter()
        .filter_map(|e| match *e {
            Event::Give(c, slot, source, how) if c == cnode => Some((slot, (source, how))),
            _ => None,
        })
        .collect();
    let rw = CapRights::READ | CapRights::WRITE;
    let channel = vmm.guest.channel.unwrap();
    // The fixed slots.
    assert_eq!(
        given[&slots::EXIT_ENDPOINT],
        (channel.endpoint, Give::Copy(CapRights::READ))
    );
    assert_eq!(given[&slots::EXIT_REPLY], (channel.reply, Give::Move));
    assert_eq!(given[&slots::CONSOLE], (CONSOLE, Give::Copy(rw)));
    assert_eq!(
        given[&slots::SUPERVISOR],
        (SUPERVISOR, Give::Mint(CapRights::WRITE, 1))
    );
    assert_eq!(
        given[&slots::GUEST_SPACE],
        (vmm.guest.guest_space, Give::Copy(rw))
    );
    let input = vmm.input.unwrap();
    assert_eq!(parent.made[&input], ObjectType::Notification);
    assert!(
        log.iter()
            .any(|e| matches!(*e, Event::Bound(t, n) if t == vmm.process.tcb && n == input))
    );
    assert_eq!(given[&slots::CONSOLE_INPUT], (input, Give::Copy(rw)));
    for i in 0..2 {
        let v = vmm.guest.vcpu(VcpuId::new(i).unwrap()).unwrap();
        assert_eq!(given[&slots::vcpu(i)], (v.vcpu, Give::Copy(rw)));
        assert_eq!(given[&slots::vcpu_thread(i)], (v.tcb, Give::Copy(rw)));
    }
    // 32 RAM frames of 2 MiB, then 3 module frames and one command-line
    // page: nothing else.
    assert_eq!(vmm.ram_frames.len(), 32);
    assert_eq!(vmm.module_frames.len(), 4);
    assert_eq!(
        given.len() as u64,
        5 + 1 + 4 + vmm.ram_frames.len() + vmm.module_frames.len()
    );
    // The module frames are read-only copies of the boot module's, mapped
    // on 2 MiB boundaries after the RAM; the command line in a page after.
    let vmm_maps: BTreeMap<u64, (u64, CapRights)> = log
        .iter()
        .filter_map(|e| match *e {
            Event::Map(space, address, frame, rights) if space == vmm.process.vspace => {
                Some((address, (frame, rights)))
            }
            _ => None,
        })
        .collect();
    for i in 0..3 {
        let (frame, rights) = vmm_maps[&(WINDOW + (64 << 20) + (i << 21))];
        assert_eq!(rights, CapRights::READ);
        assert_eq!(parent.derived[&frame], (300 + i, CapRights::READ));
    }
    let (cmdline_frame, rights) = vmm_maps[&(WINDOW + (70 << 20))];
    assert_eq!(rights, CapRights::READ);
    assert_eq!(&written[&cmdline_frame][..cmdline.len()], cmdline);
    // RAM is mapped writable; no image frame is.
    assert!(
        vmm_maps
            .iter()
            .filter(|(a, _)| **a >= WINDOW + (64 << 20) && **a < WINDOW + (128 << 20))
            .all(|(_, (_, r))| *r == CapRights::READ)
    );
    // The start page holds a record that plans a Linux boot of those
    // modules.
    let page = &written[&vmm.process.start_frame];
    let record = <VmmStart as skyscope_abi::start::StartPage>::from_page(page).unwrap();
    let plan = record.plan().unwrap();
    assert_eq!(plan.vcpus, 2);
    assert!(plan.has(flags::CONSOLE_INPUT) && plan.has(flags::RAW_CONSOLE));
    assert_eq!(plan.clock.seconds, 1_700_000_000);
    let skyscope_vmm::process::start::Boot::Linux {
        kernel,
        initramfs,
        cmdline: Some(line),
    } = plan.boot
    else {
        panic!("{:?}", plan.boot)
    };
    assert_eq!(initramfs, None);
    assert_eq!(
        (kernel.window_offset, kernel.size),
        (64 << 20, (5 << 20) + 17)
    );
    assert_eq!(
        (line.window_offset, line.size),
        (70 << 20, cmdline.len() as u64)
    );
}

#[test]
fn bad_requests_are_refused_before_anything_is_made() {
    let program = program();
    let mut parent = Parent::default();
    let mut written = BTreeMap::new();
    let mut spec = linux_spec(&program, &[]);
    spec.vcpus = 0;
    assert_eq!(
        launch(
            &mut parent,
            &mut Model::default(),
            &mut Writer(&mut written),
            &spec
        )
        .err(),
        Some(LaunchError::Spec("vcpu count"))
    );
    spec.vcpus = 1;
    spec.program = &[];
    assert_eq!(
        launch(
            &mut parent,
            &mut Model::default(),
            &mut Writer(&mut written),
            &spec
        )
        .err(),
        Some(LaunchError::NoProgram)
    );
    assert!(parent.made.is_empty());
    // A Linux record without an Image is refused before the VMM starts.
    spec.program = &program;
    assert_eq!(
        launch(
            &mut parent,
            &mut Model::default(),
            &mut Writer(&mut written),
            &spec
        )
        .err(),
        Some(LaunchError::Spec("the start record is inconsistent"))
    );
}
