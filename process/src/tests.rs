//! Host tests of the process builder against a kernel model that checks
//! what the real kernel would refuse (mapping a capability twice, mapping
//! without tables) and records what was mapped, written and invoked.

extern crate std;

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// One `PT_LOAD` of a hand-made image: address, flags, file bytes, size in
/// memory.
struct Seg<'a>(u64, u32, &'a [u8], u64);

/// A minimal ELF64 little-endian AArch64 executable: header, program
/// headers, then each segment's bytes.
fn elf(entry: u64, segments: &[Seg<'_>]) -> Vec<u8> {
    let phoff = 64u64;
    let mut data_at = phoff + 56 * segments.len() as u64;
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF");
    out.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out.extend_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&entry.to_le_bytes());
    out.extend_from_slice(&phoff.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    out.extend_from_slice(&0u32.to_le_bytes());
    for half in [64u16, 56, segments.len() as u16, 64, 0, 0] {
        out.extend_from_slice(&half.to_le_bytes());
    }
    for Seg(vaddr, flags, bytes, mem) in segments {
        out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        out.extend_from_slice(&flags.to_le_bytes());
        for word in [data_at, *vaddr, *vaddr, bytes.len() as u64, *mem, PAGE] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        data_at += bytes.len() as u64;
    }
    for Seg(_, _, bytes, _) in segments {
        out.extend_from_slice(bytes);
    }
    out
}

/// Slots counting up; remembers each object's type and size.
#[derive(Default)]
struct Slots {
    next: u64,
    made: BTreeMap<u64, (ObjectType, u64)>,
}

impl Objects for Slots {
    fn make(&mut self, ty: ObjectType, size_bits: u64, count: u64) -> Result<u64, Error> {
        let first = self.next + 100;
        for i in 0..count {
            self.made.insert(first + i, (ty, size_bits));
        }
        self.next += count;
        Ok(first)
    }

    // The builder makes objects only; a copy or mint is a fresh slot
    // whose object the model does not track.
    fn copy(&mut self, _: u64, _: CapRights) -> Result<u64, Error> {
        self.next += 1;
        Ok(self.next + 99)
    }

    fn mint(&mut self, cap: u64, rights: CapRights, _: u64) -> Result<u64, Error> {
        self.copy(cap, rights)
    }
}

/// A kernel model for 39-bit spaces of 4 KiB pages: a frame maps only
/// under an L2 table (per 1 GiB) and an L3 table (per 2 MiB); a frame
/// capability maps once; a page maps once.
#[derive(Default)]
struct Model {
    l2: BTreeSet<(u64, u64)>,
    l3: BTreeSet<(u64, u64)>,
    /// (space, address) -> (frame, rights, attributes)
    mapped: BTreeMap<(u64, u64), (u64, CapRights, u64)>,
    frames_in_use: BTreeSet<u64>,
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
                rights,
                attributes,
            } => {
                if !self.l2.contains(&(space, address >> 30))
                    || !self.l3.contains(&(space, address >> 21))
                {
                    return Err(Error::FailedLookup);
                }
                if rights.contains(CapRights::WRITE) && attributes & MAP_EXECUTE != 0 {
                    return Err(Error::InvalidArgument);
                }
                if self.mapped.contains_key(&(space, address)) || !self.frames_in_use.insert(frame)
                {
                    return Err(Error::DeleteFirst);
                }
                self.mapped
                    .insert((space, address), (frame, rights, attributes));
                Ok(())
            }
            Invocation::PageTableMap { space, address, .. } => {
                if self.l2.insert((space, address >> 30)) || self.l3.insert((space, address >> 21))
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

/// Frame contents as written; refuses frames already mapped, as a writer
/// mapping them in the parent would.
#[derive(Default)]
struct Pages {
    contents: BTreeMap<u64, [u8; PAGE as usize]>,
    mapped: BTreeSet<u64>,
}

impl FrameWriter for Pages {
    fn write(&mut self, frame: u64, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        if self.mapped.contains(&frame) {
            return Err(Error::DeleteFirst);
        }
        let page = self.contents.entry(frame).or_insert([0; PAGE as usize]);
        let start = offset as usize;
        page.get_mut(start..start + bytes.len())
            .ok_or(Error::RangeError)?
            .copy_from_slice(bytes);
        Ok(())
    }
}

const PARENT: CSpaceRoot = CSpaceRoot {
    cnode: 2,
    depth: 64,
};

/// Text (2 pages, R-X), rodata (R), data with bss (RW, 3 pages).
fn image() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let text: Vec<u8> = (0..0x1800u32).map(|i| (i % 251) as u8).collect();
    let rodata = b"read only".to_vec();
    let data = std::vec![0x5a; 0x10];
    (text, rodata, data)
}

fn built() -> (Process, Slots, Model, Pages, Vec<u8>) {
    let (text, rodata, data) = image();
    let bytes = elf(
        0x40_0010,
        &[
            Seg(0x40_0000, PF_R | PF_X, &text, 0x1800),
            Seg(0x40_2000, PF_R, &rodata, rodata.len() as u64),
            Seg(0x40_3ff0, PF_R | PF_W, &data, 0x2000),
        ],
    );
    let (mut slots, mut model, mut pages) = (Slots::default(), Model::default(), Pages::default());
    let process = ProcessBuilder::new(&bytes, PARENT, 5)
        .cnode_radix(6)
        .priority(150)
        .budget(2_000, 10_000)
        .stack_pages(4)
        .fault_endpoint(77)
        .build(&mut slots, &mut model, &mut pages)
        .unwrap();
    (process, slots, model, pages, bytes)
}

#[test]
fn segments_are_loaded_with_their_rights_only() {
    let (p, slots, model, pages, _) = built();
    let (text, rodata, data) = image();
    let at = |a: u64| model.mapped.get(&(p.vspace, a)).copied();
    let rx = (CapRights::READ, MAP_EXECUTE);
    let r = (CapRights::READ, 0);
    let rw = (read_write(), 0);
    for (address, rights) in [
        (0x40_0000, rx),
        (0x40_1000, rx),
        (0x40_2000, r),
        (0x40_3000, rw),
        (0x40_4000, rw),
        (0x40_5000, rw),
    ] {
        let (frame, got, attributes) = at(address).unwrap();
        assert_eq!((got, attributes), rights, "at {address:#x}");
        assert_eq!(slots.made[&frame].0, ObjectType::Frame4K);
    }
    assert_eq!(at(0x40_6000), None);
    assert_eq!(
        (p.image_start, p.image_end, p.entry),
        (0x40_0000, 0x40_6000, 0x40_0010)
    );
    // Contents: the file's bytes where the segment puts them, zero after.
    let content = |a: u64| pages.contents.get(&at(a).unwrap().0).copied();
    assert_eq!(&content(0x40_0000).unwrap()[..], &text[..0x1000]);
    let second = content(0x40_1000).unwrap();
    assert_eq!(&second[..0x800], &text[0x1000..]);
    assert!(second[0x800..].iter().all(|&b| b == 0));
    assert_eq!(&content(0x40_2000).unwrap()[..9], &rodata[..]);
    let d = content(0x40_3000).unwrap();
    assert_eq!(&d[0xff0..], &data[..]);
    assert!(d[..0xff0].iter().all(|&b| b == 0));
    // Pages holding only bss are not written at all: fresh frames are zero.
    assert!(content(0x40_4000).is_none() && content(0x40_5000).is_none());
    // Nothing the process maps is both writable and executable.
    assert!(model.mapped.values().all(|(_, rights, attributes)| {
        !(rights.contains(CapRights::WRITE) && attributes & MAP_EXECUTE != 0)
    }));
}

#[test]
fn stack_guard_ipc_buffer_thread_and_budget() {
    let (p, slots, model, _, _) = built();
    let mapped = |a: u64| model.mapped.get(&(p.vspace, a)).copied();
    assert_eq!(p.stack_bottom, STACK_TOP - 4 * PAGE);
    for page in 0..4 {
        let (_, rights, attributes) = mapped(p.stack_bottom + page * PAGE).unwrap();
        assert_eq!((rights, attributes), (read_write(), 0));
    }
    assert_eq!(mapped(p.guard_page()), None);
    assert_eq!(mapped(STACK_TOP), None);
    let (ipc_frame, rights, _) = mapped(IPC_BUFFER_ADDRESS).unwrap();
    assert_eq!(rights, read_write());
    // The start page waits for its record.
    assert_eq!(mapped(START_PAGE_ADDRESS), None);
    assert_eq!(slots.made[&p.cnode], (ObjectType::CNode, 6));
    assert_eq!(slots.made[&p.vspace].0, ObjectType::VSpace);
    assert!(model.log.contains(&Invocation::TcbConfigure {
        tcb: p.tcb,
        fault_endpoint: 77,
        priority: 150,
        cspace: p.cnode,
        guard_bits: 58,
        space: p.vspace,
        ipc_buffer: IPC_BUFFER_ADDRESS,
        ipc_frame,
    }));
    assert!(model.log.contains(&Invocation::SchedControlConfigure {
        control: 5,
        sched_context: p.sched_context,
        budget_us: 2_000,
        period_us: 10_000
    }));
    assert!(model.log.contains(&Invocation::SchedContextBind {
        sched_context: p.sched_context,
        tcb: p.tcb
    }));
    assert!(
        !model
            .log
            .iter()
            .any(|i| matches!(i, Invocation::TcbResume { .. }))
    );
}

#[test]
fn starting_writes_and_maps_the_record_then_resumes() {
    let (p, mut slots, mut model, mut pages, _) = built();
    let before = model.log.len();
    p.start(&mut slots, &mut model, &mut pages, b"record")
        .unwrap();
    assert_eq!(&pages.contents[&p.start_frame][..6], b"record");
    assert_eq!(
        model.mapped[&(p.vspace, START_PAGE_ADDRESS)],
        (p.start_frame, CapRights::READ, 0)
    );
    let tail = &model.log[model.log.len() - 2..];
    assert_eq!(
        tail,
        [
            Invocation::TcbWriteRegisters {
                tcb: p.tcb,
                values: [0x40_0010, STACK_TOP, 0, START_PAGE_ADDRESS, 0, 0, 0]
            },
            Invocation::TcbResume { tcb: p.tcb }
        ]
    );
    assert!(model.log.len() > before + 2);
    let big = [0u8; PAGE as usize + 1];
    assert_eq!(
        p.start(&mut slots, &mut model, &mut pages, &big),
        Err(ProcessError::Layout("start record larger than a page"))
    );
}

#[test]
fn capabilities_go_only_where_asked() {
    let (p, mut slots, mut model, _, _) = built();
    p.give(&mut model, 3, 40, Give::Mint(CapRights::WRITE, 9))
        .unwrap();
    assert_eq!(
        model.log.last(),
        Some(&Invocation::Give {
            cnode: p.cnode,
            index: 3,
            depth: 6,
            parent: PARENT,
            source: 40,
            how: Give::Mint(CapRights::WRITE, 9)
        })
    );
    // Slot 0 stays empty; slots past the CNode do not exist.
    assert!(p.give(&mut model, 0, 40, Give::Move).is_err());
    assert!(p.give(&mut model, 64, 40, Give::Move).is_err());
    // Extra mappings: data only, below the reserved area.
    p.map(&mut slots, &mut model, 900, 0x20_0000_0000, read_write())
        .unwrap();
    assert_eq!(
        model.mapped[&(p.vspace, 0x20_0000_0000)],
        (900, read_write(), 0)
    );
    for refused in [
        p.guard_page(),
        p.stack_bottom,
        START_PAGE_ADDRESS,
        0x20_0000_0800,
        !0xfff,
    ] {
        assert!(
            matches!(
                p.map(&mut slots, &mut model, 901, refused, CapRights::READ),
                Err(ProcessError::Layout(_))
            ),
            "{refused:#x}"
        );
    }
    // Over the image: the kernel's refusal, with the step named.
    assert_eq!(
        p.map(&mut slots, &mut model, 902, 0x40_0000, CapRights::READ),
        Err(ProcessError::Kernel {
            step: "map frame",
            error: Error::DeleteFirst
        })
    );
}

#[test]
fn bad_images_and_layouts_are_refused() {
    let build = |bytes: &[u8], radix: u8, stack: u64| {
        ProcessBuilder::new(bytes, PARENT, 5)
            .cnode_radix(radix)
            .stack_pages(stack)
            .build(
                &mut Slots::default(),
                &mut Model::default(),
                &mut Pages::default(),
            )
            .err()
    };
    let code = [0u8; 16];
    let good = elf(0x40_0000, &[Seg(0x40_0000, PF_R | PF_X, &code, 16)]);
    assert_eq!(build(&good, 8, 16), None);
    assert_eq!(
        build(&good[..40], 8, 16),
        Some(ProcessError::Image(ElfError::Malformed))
    );
    let wx = elf(0x40_0000, &[Seg(0x40_0000, PF_R | PF_W | PF_X, &code, 16)]);
    assert_eq!(
        build(&wx, 8, 16),
        Some(ProcessError::Image(ElfError::WritableAndExecutable))
    );
    // An image reaching into the start page, stack or guard page.
    let high = elf(
        RESERVED_START - 0x10,
        &[Seg(RESERVED_START - 0x10, PF_R | PF_X, &code, 16)],
    );
    assert_eq!(
        build(&high, 8, 16),
        Some(ProcessError::Image(ElfError::BadAddress))
    );
    assert_eq!(
        build(&good, 0, 16),
        Some(ProcessError::Layout("cnode radix"))
    );
    assert_eq!(
        build(&good, 17, 16),
        Some(ProcessError::Layout("cnode radix"))
    );
    assert_eq!(
        build(&good, 8, 0),
        Some(ProcessError::Layout("stack pages"))
    );
    assert_eq!(
        build(&good, 8, MAX_STACK_PAGES + 1),
        Some(ProcessError::Layout("stack pages"))
    );
}
