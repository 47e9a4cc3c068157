//! Ending the machine: PSCI SYSTEM_OFF, or semihosting exit with a status.
//!
//! PSCI (Arm DEN 0022, 5.10) powers off but cannot report a status, so
//! test runs ask (with `exit=semihosting` on the command line) for the Arm
//! semihosting SYS_EXIT call (Arm semihosting spec, 6.5.2), which QEMU
//! started with `-semihosting` turns into its own exit status.

use super::platform::PsciConduit;

/// PSCI SYSTEM_OFF function ID (SMC32 convention).
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
/// Semihosting SYS_EXIT operation number.
const SYS_EXIT: u64 = 0x18;
/// ADP_Stopped_ApplicationExit: the reason code whose subcode is the status.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;

/// How the kernel ends the machine.
#[derive(Clone, Copy, Debug)]
pub struct PowerControl {
    /// PSCI conduit, if firmware provides PSCI.
    pub psci: Option<PsciConduit>,
    /// Use semihosting to report the exit status (test runs).
    pub semihosting: bool,
}

impl PowerControl {
    /// Stops the machine, reporting `status` (0 = success) where possible.
    pub fn shutdown(&self, status: u64) -> ! {
        if self.semihosting {
            let block = [ADP_STOPPED_APPLICATION_EXIT, status];
            // SAFETY: `hlt #0xf000` is the AArch64 semihosting trap; QEMU
            // reads the two-word block and exits. The block outlives the call.
            unsafe {
                core::arch::asm!(
                    "hlt #0xf000",
                    in("x0") SYS_EXIT,
                    in("x1") block.as_ptr(),
                    options(nostack),
                );
            }
        }
        match self.psci {
            // SAFETY: SYSTEM_OFF does not return when firmware implements it.
            Some(PsciConduit::Smc) => unsafe {
                core::arch::asm!("smc #0", in("x0") PSCI_SYSTEM_OFF, options(nostack))
            },
            // SAFETY: as above, through the hypervisor call conduit.
            Some(PsciConduit::Hvc) => unsafe {
                core::arch::asm!("hvc #0", in("x0") PSCI_SYSTEM_OFF, options(nostack))
            },
            None => {}
        }
        halt()
    }
}

/// The machine's power control, recorded at boot for the panic handler
/// (which must not touch the borrowed kernel state): bit 0 = semihosting,
/// bits 1-2 = PSCI conduit (0 none, 1 smc, 2 hvc).
static GLOBAL: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

impl PowerControl {
    /// Records `self` for [`PowerControl::global`].
    pub fn make_global(self) {
        let conduit = match self.psci {
            None => 0,
            Some(PsciConduit::Smc) => 1,
            Some(PsciConduit::Hvc) => 2,
        };
        GLOBAL.store(
            u8::from(self.semihosting) | conduit << 1,
            core::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The power control recorded at boot (PSCI off, no semihosting before).
    pub fn global() -> PowerControl {
        let v = GLOBAL.load(core::sync::atomic::Ordering::Relaxed);
        let psci = match v >> 1 {
            1 => Some(PsciConduit::Smc),
            2 => Some(PsciConduit::Hvc),
            _ => None,
        };
        PowerControl {
            psci,
            semihosting: v & 1 != 0,
        }
    }
}

/// Stops this CPU for good.
pub fn halt() -> ! {
    loop {
        // SAFETY: masking interrupts and waiting has no memory effects.
        unsafe { core::arch::asm!("msr daifset, #0xf", "wfi", options(nomem, nostack)) };
    }
}
