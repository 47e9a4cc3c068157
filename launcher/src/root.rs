//! The root task's side of a launch: object allocation from its boot
//! untyped memory into its own CNode, and filling frames through a scratch
//! mapping in its own address space.

use skyscope_abi::{
    BootInfo, CapRights, Error, ObjectType,
    bootinfo::{MAX_BOOT_UNTYPED, ROOT_CNODE_RADIX, slots},
    invocation as inv,
    window::MappedWindow,
};

/// Depth of a slot argument in the root CNode: its capability has a guard
/// making every address a plain 64-bit slot index.
const ROOT_DEPTH: u64 = 64;

/// Objects from the root task's RAM untypeds, in fresh slots of its CNode:
/// each request is carved from the first untyped with room (first fit),
/// so a guest's RAM may span several.
pub struct RootObjects {
    next_slot: u64,
    untypeds: [u64; MAX_BOOT_UNTYPED],
    count: usize,
}

impl RootObjects {
    /// Uses the boot info's empty slots from `first_slot` on and its RAM
    /// untypeds, largest first.
    pub fn new(info: &BootInfo, first_slot: u64) -> RootObjects {
        let mut untypeds = [0; MAX_BOOT_UNTYPED];
        let mut sizes = [0u8; MAX_BOOT_UNTYPED];
        let mut count = 0;
        for (i, region) in info.untyped_regions().iter().enumerate() {
            if region.is_device == 0 && count < MAX_BOOT_UNTYPED {
                untypeds[count] = info.untyped.start + i as u64;
                sizes[count] = region.size_bits;
                count += 1;
            }
        }
        // Largest first: big frames find room before small ones split it.
        for i in 1..count {
            let mut j = i;
            while j > 0 && sizes[j - 1] < sizes[j] {
                sizes.swap(j - 1, j);
                untypeds.swap(j - 1, j);
                j -= 1;
            }
        }
        RootObjects {
            next_slot: first_slot.max(info.empty.start),
            untypeds,
            count,
        }
    }

    /// `n` fresh consecutive slots.
    fn slots(&mut self, n: u64) -> Result<u64, Error> {
        let first = self.next_slot;
        let end = first.checked_add(n).ok_or(Error::RangeError)?;
        if end > 1 << ROOT_CNODE_RADIX {
            return Err(Error::NotEnoughMemory);
        }
        self.next_slot = end;
        Ok(first)
    }

    /// The first slot not handed out yet.
    pub fn next_slot(&self) -> u64 {
        self.next_slot
    }

    /// The untyped capabilities objects come from (for revoking all at
    /// once).
    pub fn untypeds(&self) -> &[u64] {
        &self.untypeds[..self.count]
    }
}

impl skyscope_client::Objects for RootObjects {
    fn make(&mut self, ty: ObjectType, size_bits: u64, count: u64) -> Result<u64, Error> {
        let first = self.slots(count)?;
        for &untyped in &self.untypeds[..self.count] {
            match inv::untyped_retype(untyped, ty, size_bits, slots::CNODE, 0, 0, first, count) {
                Err(Error::NotEnoughMemory) => continue,
                other => return other.map(|()| first),
            }
        }
        Err(Error::NotEnoughMemory)
    }

    fn copy(&mut self, cap: u64, rights: CapRights) -> Result<u64, Error> {
        let slot = self.slots(1)?;
        inv::cnode_copy(
            slots::CNODE,
            slot,
            ROOT_DEPTH,
            slots::CNODE,
            cap,
            ROOT_DEPTH,
            rights,
        )?;
        Ok(slot)
    }

    fn mint(&mut self, cap: u64, rights: CapRights, badge: u64) -> Result<u64, Error> {
        let slot = self.slots(1)?;
        inv::cnode_mint(
            slots::CNODE,
            slot,
            ROOT_DEPTH,
            slots::CNODE,
            cap,
            ROOT_DEPTH,
            rights,
            badge,
        )?;
        Ok(slot)
    }
}

/// Where [`ScratchWriter`] maps the frame it fills, in the root task's
/// address space (away from its image, stack and the areas scenarios use).
const SCRATCH_PAGE: u64 = 0x30_0000_0000;

/// Fills frames for the process builder through a scratch mapping in the
/// root task's address space: map, copy, make visible to instruction
/// fetches (the builder writes code), unmap.
pub struct ScratchWriter(());

impl ScratchWriter {
    /// Makes the page tables over the scratch page from `objects` (they
    /// stay, like the root task's own).
    pub fn new(objects: &mut impl skyscope_client::Objects) -> Result<ScratchWriter, Error> {
        let frame = objects.make(ObjectType::Frame4K, 0, 1)?;
        skyscope_client::map_creating_tables(
            objects,
            &mut skyscope_client::Syscalls,
            frame,
            slots::VSPACE,
            SCRATCH_PAGE,
            CapRights::ALL,
            0,
        )?;
        inv::frame_unmap(frame)?;
        Ok(ScratchWriter(()))
    }
}

impl skyscope_process::FrameWriter for ScratchWriter {
    fn write(&mut self, frame: u64, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        let offset = usize::try_from(offset).map_err(|_| Error::RangeError)?;
        inv::frame_map(
            frame,
            slots::VSPACE,
            SCRATCH_PAGE,
            CapRights::READ | CapRights::WRITE,
            0,
        )?;
        let written = {
            // SAFETY: the frame was just mapped read-write at the scratch
            // page, whose tables `new` made and where nothing else is ever
            // mapped or allocated; the window ends with this block, before
            // the frame is unmapped below.
            #[allow(unsafe_code)]
            let mut window = unsafe { MappedWindow::new(SCRATCH_PAGE as usize, 4096) };
            window
                .write(offset, bytes)
                .and_then(|()| window.make_executable(offset, bytes.len()))
        };
        inv::frame_unmap(frame)?;
        written
    }
}
