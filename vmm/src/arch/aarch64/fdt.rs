//! The device tree the VMM hands a Linux guest: memory, CPUs, PSCI, the
//! GICv3, the architected timer, the PL011 UART and its clock, the PL031
//! RTC, and `/chosen` (command line, console, initrd).
//!
//! Written with rust-vmm's `vm-fdt`. Node and property conventions follow
//! the Devicetree Specification (v0.4: §3.4 `/memory`, §3.6 `/chosen`,
//! §3.7-3.8 `/cpus`) and Linux's bindings
//! (Documentation/devicetree/bindings/): `arm/psci.yaml`,
//! `interrupt-controller/arm,gic-v3.yaml`, `timer/arm,arch_timer.yaml`,
//! `serial/arm,pl011.yaml`, `rtc/arm,pl031.yaml`,
//! `clock/fixed-clock.yaml`. Addresses come from [`super::layout`].

use super::cpu::packed_affinity;
use super::layout::{self, Layout, irq};
use crate::memory::GuestRange;
use crate::vcpu::VcpuId;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vm_fdt::FdtWriter;

/// Phandle of the interrupt controller.
const GIC_PHANDLE: u32 = 1;
/// Phandle of the UART's and RTC's bus clock.
const CLOCK_PHANDLE: u32 = 2;
/// The fixed clock's rate: 24 MHz, what QEMU's `virt` gives its PL011.
const APB_CLOCK_HZ: u32 = 24_000_000;

/// First cell of a GIC interrupt specifier: SPI or PPI
/// (`arm,gic-v3.yaml`).
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// Third cell: level-sensitive, active high (IRQ_TYPE_LEVEL_HIGH). GICv3
/// PPIs carry no CPU mask.
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;

/// What goes into the tree beyond the machine's layout.
#[derive(Clone, Copy, Debug)]
pub struct DeviceTreeConfig<'a> {
    /// RAM and vCPUs.
    pub layout: Layout,
    /// The kernel command line (`/chosen/bootargs`).
    pub bootargs: &'a str,
    /// Where the initrd was loaded, if any.
    pub initrd: Option<GuestRange>,
}

/// Why no tree was produced.
#[derive(Debug)]
pub enum DeviceTreeError {
    /// The writer refused (a malformed name or string).
    Writer(vm_fdt::Error),
    /// The blob exceeds the 2 MiB the kernel accepts (booting.rst §2).
    TooLarge,
}

impl From<vm_fdt::Error> for DeviceTreeError {
    fn from(e: vm_fdt::Error) -> Self {
        DeviceTreeError::Writer(e)
    }
}

/// The node path of the UART, for `stdout-path`.
fn uart_node() -> String {
    format!("pl011@{:x}", layout::UART.start().raw())
}

/// Builds the flattened device tree blob.
pub fn build(config: &DeviceTreeConfig<'_>) -> Result<Vec<u8>, DeviceTreeError> {
    let layout = config.layout;
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_string("model", "Skyscope VMM (arm64, QEMU virt layout)")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", config.bootargs)?;
    fdt.property_string("stdout-path", &format!("/{}", uart_node()))?;
    if let Some(initrd) = config.initrd {
        fdt.property_u64("linux,initrd-start", initrd.start().raw())?;
        fdt.property_u64("linux,initrd-end", initrd.end().raw())?;
    }
    fdt.end_node(chosen)?;

    let ram = layout.ram();
    let memory = fdt.begin_node(&format!("memory@{:x}", ram.start().raw()))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[ram.start().raw(), ram.size()])?;
    fdt.end_node(memory)?;

    // CPUs are named by MPIDR affinity (Aff2.Aff1.Aff0 fit one cell: no
    // Aff3 is ever used), started through PSCI.
    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for vcpu in (0..layout.vcpus()).filter_map(VcpuId::new) {
        let id = packed_affinity(vcpu);
        let cpu = fdt.begin_node(&format!("cpu@{id:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,armv8")?;
        fdt.property_u32("reg", id)?;
        fdt.property_string("enable-method", "psci")?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    // The VMM answers PSCI 1.1 through `hvc` (super::psci); "arm,psci-0.2"
    // too, for kernels older than the 1.0 binding.
    let psci = fdt.begin_node("psci")?;
    fdt.property_string_list(
        "compatible",
        alloc::vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
    )?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    let gicr = layout.gicr();
    let gic = fdt.begin_node(&format!("intc@{:x}", layout::GICD.start().raw()))?;
    fdt.property_string("compatible", "arm,gic-v3")?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    // One redistributor region holding every vCPU's redistributor.
    fdt.property_u32("#redistributor-regions", 1)?;
    fdt.property_array_u64(
        "reg",
        &[
            layout::GICD.start().raw(),
            layout::GICD.size(),
            gicr.start().raw(),
            gicr.size(),
        ],
    )?;
    fdt.property_array_u32(
        "interrupts",
        &[GIC_PPI, irq::MAINTENANCE_PPI, IRQ_TYPE_LEVEL_HIGH],
    )?;
    fdt.property_phandle(GIC_PHANDLE)?;
    fdt.end_node(gic)?;

    // The architected timer's four PPIs, in the binding's order: secure
    // physical, non-secure physical, virtual, hypervisor physical.
    // `always-on`: the timer never loses state, since the only idle state
    // offered is CPU_SUSPEND as standby (no power-down), so Linux needs no
    // broadcast timer.
    let timer = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    let mut ppis = Vec::new();
    for ppi in [
        irq::SECURE_TIMER_PPI,
        irq::PHYSICAL_TIMER_PPI,
        irq::VIRTUAL_TIMER_PPI,
        irq::HYP_TIMER_PPI,
    ] {
        ppis.extend([GIC_PPI, ppi, IRQ_TYPE_LEVEL_HIGH]);
    }
    fdt.property_array_u32("interrupts", &ppis)?;
    fdt.property_null("always-on")?;
    fdt.end_node(timer)?;

    let clock = fdt.begin_node("apb-pclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", APB_CLOCK_HZ)?;
    fdt.property_string("clock-output-names", "clk24mhz")?;
    fdt.property_phandle(CLOCK_PHANDLE)?;
    fdt.end_node(clock)?;

    // PrimeCell devices: the AMBA bus matches them by their ID registers
    // after enabling "apb_pclk".
    let uart = fdt.begin_node(&uart_node())?;
    fdt.property_string_list(
        "compatible",
        alloc::vec!["arm,pl011".into(), "arm,primecell".into()],
    )?;
    fdt.property_array_u64("reg", &[layout::UART.start().raw(), layout::UART.size()])?;
    fdt.property_array_u32("interrupts", &[GIC_SPI, irq::UART_SPI, IRQ_TYPE_LEVEL_HIGH])?;
    fdt.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
    fdt.property_string_list(
        "clock-names",
        alloc::vec!["uartclk".into(), "apb_pclk".into()],
    )?;
    fdt.end_node(uart)?;

    let rtc = fdt.begin_node(&format!("pl031@{:x}", layout::RTC.start().raw()))?;
    fdt.property_string_list(
        "compatible",
        alloc::vec!["arm,pl031".into(), "arm,primecell".into()],
    )?;
    fdt.property_array_u64("reg", &[layout::RTC.start().raw(), layout::RTC.size()])?;
    fdt.property_array_u32("interrupts", &[GIC_SPI, irq::RTC_SPI, IRQ_TYPE_LEVEL_HIGH])?;
    fdt.property_u32("clocks", CLOCK_PHANDLE)?;
    fdt.property_string("clock-names", "apb_pclk")?;
    fdt.end_node(rtc)?;

    fdt.end_node(root)?;
    let blob = fdt.finish()?;
    if blob.len() as u64 > super::image::DTB_MAX {
        return Err(DeviceTreeError::TooLarge);
    }
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestAddress;

    fn u32_cells(bytes: &[u8]) -> std::vec::Vec<u32> {
        bytes
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn u64_cells(bytes: &[u8]) -> std::vec::Vec<u64> {
        bytes
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn strings(bytes: &[u8]) -> std::vec::Vec<&str> {
        bytes
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| core::str::from_utf8(s).unwrap())
            .collect()
    }

    fn blob(vcpus: usize, initrd: Option<GuestRange>) -> std::vec::Vec<u8> {
        let layout = Layout::new(layout::RAM_BASE, 512 << 20, vcpus).unwrap();
        build(&DeviceTreeConfig {
            layout,
            bootargs: "console=ttyAMA0 earlycon root=/dev/vda",
            initrd,
        })
        .unwrap()
    }

    #[test]
    fn the_tree_reads_back() {
        let initrd = GuestRange::new(GuestAddress(0x5f00_0000), 0x12_3456);
        let blob = blob(4, initrd);
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let prop = |node: &str, name: &str| {
            fdt.find_node(node)
                .unwrap_or_else(|| panic!("no {node}"))
                .property(name)
                .unwrap_or_else(|| panic!("no {node}:{name}"))
                .value
        };

        // /memory: 512 MiB at 0x4000_0000.
        let regions: std::vec::Vec<_> = fdt.memory().regions().collect();
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].starting_address as u64, 0x4000_0000);
        assert_eq!(regions[0].size, Some(512 << 20));

        // /chosen.
        let chosen = fdt.chosen();
        assert_eq!(
            chosen.bootargs(),
            Some("console=ttyAMA0 earlycon root=/dev/vda")
        );
        assert_eq!(strings(prop("/chosen", "stdout-path")), ["/pl011@9000000"]);
        assert_eq!(
            u64_cells(prop("/chosen", "linux,initrd-start")),
            [0x5f00_0000]
        );
        assert_eq!(
            u64_cells(prop("/chosen", "linux,initrd-end")),
            [0x5f12_3456]
        );

        // /cpus: four, by MPIDR, PSCI.
        let ids: std::vec::Vec<usize> = fdt.cpus().map(|c| c.ids().first()).collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        assert_eq!(strings(prop("/cpus/cpu@2", "enable-method")), ["psci"]);
        assert_eq!(u32_cells(prop("/cpus", "#address-cells")), [1]);

        // /psci.
        assert_eq!(
            strings(prop("/psci", "compatible")),
            ["arm,psci-1.0", "arm,psci-0.2"]
        );
        assert_eq!(strings(prop("/psci", "method")), ["hvc"]);

        // The GIC: distributor and one region of four redistributors.
        assert_eq!(strings(prop("/intc@8000000", "compatible")), ["arm,gic-v3"]);
        assert_eq!(
            u64_cells(prop("/intc@8000000", "reg")),
            [0x0800_0000, 0x1_0000, 0x080a_0000, 4 * 0x2_0000]
        );
        assert_eq!(
            u32_cells(prop("/intc@8000000", "#redistributor-regions")),
            [1]
        );
        assert_eq!(u32_cells(prop("/intc@8000000", "#interrupt-cells")), [3]);
        assert_eq!(u32_cells(prop("/intc@8000000", "interrupts")), [1, 9, 4]);
        assert!(
            fdt.find_node("/intc@8000000")
                .unwrap()
                .property("interrupt-controller")
                .is_some()
        );
        let gic_phandle = u32_cells(prop("/intc@8000000", "phandle"))[0];
        assert_eq!(u32_cells(prop("/", "interrupt-parent")), [gic_phandle]);

        // The timer: secure, non-secure, virtual, hypervisor PPIs.
        assert_eq!(strings(prop("/timer", "compatible")), ["arm,armv8-timer"]);
        assert_eq!(
            u32_cells(prop("/timer", "interrupts")),
            [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]
        );
        assert!(
            fdt.find_node("/timer")
                .unwrap()
                .property("always-on")
                .is_some()
        );

        // The UART and RTC: PrimeCells with SPIs 1 and 2 and the clock.
        let clock = u32_cells(prop("/apb-pclk", "phandle"))[0];
        assert_eq!(
            u32_cells(prop("/apb-pclk", "clock-frequency")),
            [24_000_000]
        );
        assert_eq!(
            strings(prop("/pl011@9000000", "compatible")),
            ["arm,pl011", "arm,primecell"]
        );
        assert_eq!(
            u64_cells(prop("/pl011@9000000", "reg")),
            [0x0900_0000, 0x1000]
        );
        assert_eq!(u32_cells(prop("/pl011@9000000", "interrupts")), [0, 1, 4]);
        assert_eq!(u32_cells(prop("/pl011@9000000", "clocks")), [clock, clock]);
        assert_eq!(
            strings(prop("/pl011@9000000", "clock-names")),
            ["uartclk", "apb_pclk"]
        );
        assert_eq!(
            strings(prop("/pl031@9010000", "compatible")),
            ["arm,pl031", "arm,primecell"]
        );
        assert_eq!(u32_cells(prop("/pl031@9010000", "interrupts")), [0, 2, 4]);
        assert_eq!(u32_cells(prop("/pl031@9010000", "clocks")), [clock]);
    }

    #[test]
    fn without_initrd_chosen_names_none() {
        let blob = blob(1, None);
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        assert!(chosen.property("linux,initrd-start").is_none());
        assert_eq!(fdt.cpus().count(), 1);
        assert!(blob.len() < 4096);
    }
}
