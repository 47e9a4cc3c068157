//! Loading a Linux guest for a VMM process: the Image, the initramfs and
//! the device tree copied into guest RAM by the arm64 boot protocol
//! ([`crate::arch::aarch64::image`]), from read-only module frames the
//! parent mapped after the RAM in the VMM's window.
//!
//! Nothing is loaded in place: the modules stay as the boot loader left
//! them and every byte the guest sees is a copy in its own RAM, so a guest
//! that crashed or reset can be built again from the same modules. Every
//! copy is cleaned to the point of coherency (the guest starts with its
//! MMU and caches off, booting.rst §4) and made visible to instruction
//! fetches.

use super::start::{CMDLINE_MAX, Module};
use crate::arch::aarch64::{
    fdt::{self, DeviceTreeConfig},
    image::{self, BootPlan, HEADER_SIZE, ImageError, ImageHeader},
    layout::Layout,
};
use crate::memory::{GuestAddress, GuestMemory, GuestRam, MemoryError, OutOfBounds};

/// The images part of a VMM's window: read-only bytes by offset from its
/// start.
pub trait Images {
    /// Copies `buf.len()` bytes at `offset` into `buf`.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfBounds>;
}

#[cfg(target_arch = "aarch64")]
impl Images for skyscope_abi::window::MappedWindow {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        let offset = usize::try_from(offset).map_err(|_| OutOfBounds)?;
        skyscope_abi::window::MappedWindow::read(self, offset, buf).map_err(|_| OutOfBounds)
    }
}

/// Why a Linux guest could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// A module lies outside the images window.
    Window,
    /// The Image or the layout was refused.
    Image(ImageError),
    /// A copy into guest RAM failed.
    Memory(MemoryError),
    /// The command line is not UTF-8 (or too long).
    Cmdline,
    /// The device tree could not be written.
    DeviceTree(fdt::DeviceTreeError),
}

impl LoadError {
    /// A number for reports (`Failure::Load`'s detail): 4 and up, after
    /// the program loader's 0..3.
    pub fn code(&self) -> u64 {
        match self {
            LoadError::Window => 4,
            LoadError::Image(_) => 5,
            LoadError::Memory(_) => 6,
            LoadError::Cmdline => 7,
            LoadError::DeviceTree(_) => 8,
        }
    }
}

/// Where a module starts in the images window (the window after the RAM).
fn images_offset(module: &Module, ram_size: u64) -> Result<u64, LoadError> {
    module
        .window_offset
        .checked_sub(ram_size)
        .ok_or(LoadError::Window)
}

/// Copies `module` to guest-physical `to` through a bounded buffer (an
/// Image is far larger than the VMM's stack).
fn copy_module<R: GuestRam>(
    memory: &mut GuestMemory<R>,
    images: &impl Images,
    ram_size: u64,
    module: &Module,
    to: GuestAddress,
) -> Result<(), LoadError> {
    let from = images_offset(module, ram_size)?;
    let mut chunk = [0u8; 4096];
    let mut done = 0;
    while done < module.size {
        let n = (module.size - done).min(chunk.len() as u64) as usize;
        images
            .read(from + done, &mut chunk[..n])
            .map_err(|_| LoadError::Window)?;
        let at = to.checked_add(done).ok_or(LoadError::Window)?;
        memory.load(at, &chunk[..n]).map_err(LoadError::Memory)?;
        done += n as u64;
    }
    Ok(())
}

/// Loads `kernel` (and `initramfs`, with the command line in `cmdline`)
/// into `memory` for a machine of `layout`, writes the device tree, and
/// returns where everything went and how the boot vCPU starts. The RAM is
/// the first `ram_size` bytes of the VMM's window; module offsets count
/// from the window's start.
pub fn load<R: GuestRam>(
    memory: &mut GuestMemory<R>,
    images: &impl Images,
    layout: Layout,
    kernel: &Module,
    initramfs: Option<&Module>,
    cmdline: Option<&Module>,
) -> Result<BootPlan, LoadError> {
    let ram_size = layout.ram().size();
    let mut header = [0u8; HEADER_SIZE];
    let n = (kernel.size as usize).min(HEADER_SIZE);
    images
        .read(images_offset(kernel, ram_size)?, &mut header[..n])
        .map_err(|_| LoadError::Window)?;
    let parsed = ImageHeader::parse_prefix(&header[..n], kernel.size).map_err(LoadError::Image)?;
    // The device tree gets a 2 MiB block of its own, so its size bound is
    // all the placement needs (booting.rst: at most 2 MiB).
    let plan = image::plan(
        &parsed,
        layout.ram(),
        image::DTB_MAX,
        initramfs.map_or(0, |m| m.size),
    )
    .map_err(LoadError::Image)?;
    copy_module(memory, images, ram_size, kernel, plan.kernel)?;
    if let (Some(module), Some(range)) = (initramfs, plan.initrd) {
        copy_module(memory, images, ram_size, module, range.start())?;
    }
    let mut text = [0u8; CMDLINE_MAX as usize];
    let bootargs = match cmdline {
        Some(m) if m.size <= CMDLINE_MAX => {
            let bytes = &mut text[..m.size as usize];
            images
                .read(images_offset(m, ram_size)?, bytes)
                .map_err(|_| LoadError::Window)?;
            // A NUL ends the command line early, as in a C string.
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            core::str::from_utf8(&bytes[..end]).map_err(|_| LoadError::Cmdline)?
        }
        Some(_) => return Err(LoadError::Cmdline),
        None => "",
    };
    let blob = fdt::build(&DeviceTreeConfig {
        layout,
        bootargs,
        initrd: plan.initrd,
    })
    .map_err(LoadError::DeviceTree)?;
    memory.load(plan.dtb, &blob).map_err(LoadError::Memory)?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::layout::RAM_BASE;
    use crate::memory::test_ram::VecRam;
    use crate::process::start::module_kind;
    use skyscope_abi::bootinfo::SlotRange;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;
    /// A small machine: 64 MiB of RAM, two vCPUs.
    const RAM: u64 = 64 * MIB;

    struct Window(Vec<u8>);

    impl Images for Window {
        fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
            let start = usize::try_from(offset).map_err(|_| OutOfBounds)?;
            let end = start.checked_add(buf.len()).ok_or(OutOfBounds)?;
            buf.copy_from_slice(self.0.get(start..end).ok_or(OutOfBounds)?);
            Ok(())
        }
    }

    /// An Image of `len` bytes (a recognisable pattern after the header)
    /// claiming `image_size` bytes of RAM.
    fn kernel_image(len: usize, image_size: u64) -> Vec<u8> {
        let mut image: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        image[..64].fill(0);
        image[16..24].copy_from_slice(&image_size.to_le_bytes());
        image[24..32].copy_from_slice(&0xau64.to_le_bytes());
        image[56..60].copy_from_slice(&image::MAGIC.to_le_bytes());
        image
    }

    /// The images window holding `parts` one after another (page
    /// aligned), and their modules.
    fn window(parts: &[(u64, &[u8])]) -> (Window, Vec<Module>) {
        let mut bytes = Vec::new();
        let mut modules = Vec::new();
        for &(kind, part) in parts {
            modules.push(Module {
                kind,
                guest_address: 0,
                window_offset: RAM + bytes.len() as u64,
                size: part.len() as u64,
                frames: SlotRange::default(),
            });
            bytes.extend_from_slice(part);
            bytes.resize(bytes.len().next_multiple_of(4096), 0);
        }
        (Window(bytes), modules)
    }

    fn memory() -> GuestMemory<VecRam> {
        GuestMemory::new(RAM_BASE, VecRam::new(RAM as usize)).unwrap()
    }

    fn read(memory: &GuestMemory<VecRam>, at: GuestAddress, len: usize) -> Vec<u8> {
        let mut out = std::vec![0; len];
        memory.read(at, &mut out).unwrap();
        out
    }

    #[test]
    fn image_initramfs_and_tree_land_where_the_plan_says() {
        let kernel = kernel_image(3 * MIB as usize + 123, 5 * MIB);
        let initramfs: Vec<u8> = (0..300_000).map(|i| (i * 7 % 256) as u8).collect();
        let cmdline = b"console=ttyAMA0 rdinit=/init";
        let (images, modules) = window(&[
            (module_kind::LINUX, &kernel),
            (module_kind::INITRAMFS, &initramfs),
            (module_kind::CMDLINE, cmdline),
        ]);
        let layout = Layout::new(RAM_BASE, RAM, 2).unwrap();
        let mut memory = memory();
        let plan = load(
            &mut memory,
            &images,
            layout,
            &modules[0],
            Some(&modules[1]),
            Some(&modules[2]),
        )
        .unwrap();
        // The Image at the start of RAM (text_offset 0), byte for byte,
        // made executable.
        assert_eq!(plan.kernel, RAM_BASE);
        assert_eq!(read(&memory, plan.kernel, kernel.len()), kernel);
        assert!(memory.ram().executable.iter().any(|&(o, _)| o == 0));
        // The initramfs below the DTB's block, byte for byte.
        let initrd = plan.initrd.unwrap();
        assert_eq!(initrd.size(), initramfs.len() as u64);
        assert_eq!(read(&memory, initrd.start(), initramfs.len()), initramfs);
        // The DTB in the last 2 MiB block, read back with an independent
        // parser: the command line, the initrd and both CPUs.
        assert_eq!(plan.dtb, GuestAddress(RAM_BASE.raw() + RAM - 2 * MIB));
        assert_eq!(plan.entry.x, [plan.dtb.raw(), 0, 0, 0]);
        assert_eq!(plan.entry.pc, plan.kernel.raw());
        let blob = read(&memory, plan.dtb, 0x1000);
        let tree = ::fdt::Fdt::new(&blob).unwrap();
        assert_eq!(
            tree.chosen().bootargs(),
            Some("console=ttyAMA0 rdinit=/init")
        );
        let start = tree
            .find_node("/chosen")
            .and_then(|n| n.property("linux,initrd-start"))
            .and_then(|p| p.as_usize())
            .unwrap();
        assert_eq!(start as u64, initrd.start().raw());
        assert_eq!(tree.cpus().count(), 2);
        // The window was only read.
        assert_eq!(&images.0[..64], &kernel[..64]);
    }

    #[test]
    fn bad_modules_are_refused_not_loaded() {
        let kernel = kernel_image(8192, MIB);
        let layout = Layout::new(RAM_BASE, RAM, 1).unwrap();
        // Not an Image.
        let junk = [0x55u8; 4096];
        let (images, modules) = window(&[(module_kind::LINUX, &junk)]);
        let e = load(&mut memory(), &images, layout, &modules[0], None, None).unwrap_err();
        assert!(matches!(e, LoadError::Image(ImageError::BadMagic)), "{e:?}");
        assert_eq!(e.code(), 5);
        // A command line that is not UTF-8.
        let (images, modules) = window(&[
            (module_kind::LINUX, &kernel),
            (module_kind::CMDLINE, &[0xff, 0xfe]),
        ]);
        let e = load(
            &mut memory(),
            &images,
            layout,
            &modules[0],
            None,
            Some(&modules[1]),
        )
        .unwrap_err();
        assert!(matches!(e, LoadError::Cmdline), "{e:?}");
        // A module running past the window.
        let (images, mut modules) = window(&[(module_kind::LINUX, &kernel)]);
        modules[0].size += 4096;
        let e = load(&mut memory(), &images, layout, &modules[0], None, None).unwrap_err();
        assert!(matches!(e, LoadError::Window), "{e:?}");
        // An initramfs too large for the RAM left.
        let big = std::vec![0u8; 63 * MIB as usize];
        let (images, modules) = window(&[
            (module_kind::LINUX, &kernel),
            (module_kind::INITRAMFS, &big),
        ]);
        let e = load(
            &mut memory(),
            &images,
            layout,
            &modules[0],
            Some(&modules[1]),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, LoadError::Image(ImageError::NoRoom)), "{e:?}");
    }
}
