//! PSCI 1.1, the firmware interface guests use to start, stop and power
//! off CPUs, as a state machine over the guest's vCPUs (Arm DEN0022D,
//! "Arm Power State Coordination Interface"; function IDs and calling
//! conventions from its function table and from the SMC Calling
//! Convention, DEN0028).
//!
//! The VMM plays the firmware: a guest's `hvc #0` (the `method = "hvc"` of
//! the device tree) or trapped `smc #0` arrives as an exit, the glue passes
//! `x0..x3` to [`Psci::call`], writes the returned value to `x0`, and turns
//! the returned [`Action`] into syscalls (start a vCPU, stop one, power the
//! guest off). Nothing here makes a syscall.

use crate::memory::{GuestAddress, GuestRange};
use crate::vcpu::{MAX_VCPUS, VcpuId};

use super::cpu::{AFFINITY_MASK, vcpu_with_affinity};

/// Function IDs (DEN0022D chapter 5, "PSCI Functions", function ID table;
/// SMCCC: bit 31 fast call, bit 30 the SMC64 convention, owner 4 = standard
/// secure service).
pub mod function {
    /// `PSCI_VERSION`.
    pub const VERSION: u32 = 0x8400_0000;
    /// `CPU_SUSPEND` (SMC32; `| SMC64` for the SMC64 form).
    pub const CPU_SUSPEND: u32 = 0x8400_0001;
    /// `CPU_OFF`.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// `CPU_ON` (SMC32; `| SMC64` for the SMC64 form).
    pub const CPU_ON: u32 = 0x8400_0003;
    /// `AFFINITY_INFO` (SMC32; `| SMC64` for the SMC64 form).
    pub const AFFINITY_INFO: u32 = 0x8400_0004;
    /// `MIGRATE` (SMC32; `| SMC64` for the SMC64 form).
    pub const MIGRATE: u32 = 0x8400_0005;
    /// `MIGRATE_INFO_TYPE`.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// `MIGRATE_INFO_UP_CPU` (SMC32; `| SMC64` for the SMC64 form).
    pub const MIGRATE_INFO_UP_CPU: u32 = 0x8400_0007;
    /// `SYSTEM_OFF`.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// `SYSTEM_RESET`.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// `PSCI_FEATURES`.
    pub const FEATURES: u32 = 0x8400_000a;
    /// The SMC64 bit (SMCCC function ID bit 30).
    pub const SMC64: u32 = 0x4000_0000;
}

/// Return codes (DEN0022D table "Return error codes"), as the 32-bit
/// signed values callers read from `w0`.
pub mod code {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// The function is not implemented.
    pub const NOT_SUPPORTED: i32 = -1;
    /// An argument is invalid (e.g. no CPU has the target MPIDR).
    pub const INVALID_PARAMETERS: i32 = -2;
    /// The call is not allowed.
    pub const DENIED: i32 = -3;
    /// CPU_ON: the target is already on.
    pub const ALREADY_ON: i32 = -4;
    /// CPU_ON: a CPU_ON for the target is still in progress.
    pub const ON_PENDING: i32 = -5;
    /// The implementation failed.
    pub const INTERNAL_FAILURE: i32 = -6;
    /// The entry point is not a valid address.
    pub const INVALID_ADDRESS: i32 = -9;
}

/// `PSCI_VERSION`'s answer: 1.1 (major in bits 31:16, minor in 15:0).
pub const VERSION_1_1: u32 = 0x0001_0001;
/// `MIGRATE_INFO_TYPE`'s answer: 2, "a Trusted OS is not present or does
/// not require migration" — there is no Trusted OS behind this firmware.
pub const MIGRATE_NOT_REQUIRED: u32 = 2;

/// `AFFINITY_INFO` answers (DEN0022D, AFFINITY_INFO return values).
mod affinity_state {
    pub const ON: i32 = 0;
    pub const OFF: i32 = 1;
    pub const ON_PENDING: i32 = 2;
}

/// A vCPU's power state as the firmware tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Not running; CPU_ON may start it.
    Off,
    /// CPU_ON accepted; the VMM has not reported it running yet.
    OnPending,
    /// Running.
    On,
}

/// What the VMM must do for a call, beyond setting `x0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Start `vcpu` at `entry` with `x0 = context_id` (registers from
    /// [`super::cpu::EntryState::kernel`], MMU off), then report it with
    /// [`Psci::vcpu_started`].
    StartVcpu {
        /// The vCPU to start.
        vcpu: VcpuId,
        /// Its first instruction.
        entry: GuestAddress,
        /// Its `x0`.
        context_id: u64,
    },
    /// Stop the calling vCPU for good (until a CPU_ON): CPU_OFF does not
    /// return.
    StopVcpu(VcpuId),
    /// Let the calling vCPU wait for an interrupt, then resume it with the
    /// returned value (CPU_SUSPEND, treated as a standby state).
    WaitForInterrupt(VcpuId),
    /// The guest asked to be powered off.
    SystemOff,
    /// The guest asked to be reset.
    SystemReset,
}

/// The result of one PSCI call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The value for the caller's `x0` (sign-extended), or `None` when the
    /// call does not return to the caller (successful CPU_OFF, SYSTEM_OFF,
    /// SYSTEM_RESET).
    pub x0: Option<u64>,
    /// What the VMM must do.
    pub action: Action,
}

impl Outcome {
    fn returns(value: i32) -> Outcome {
        Outcome {
            x0: Some(i64::from(value) as u64),
            action: Action::None,
        }
    }
}

/// The PSCI firmware of one guest.
#[derive(Clone, Debug)]
pub struct Psci {
    states: [PowerState; MAX_VCPUS],
    count: usize,
    ram: GuestRange,
}

impl Psci {
    /// Firmware for `count` vCPUs (at most [`MAX_VCPUS`]) of which vCPU 0
    /// runs; CPU_ON entry points must lie in `ram`.
    pub fn new(count: usize, ram: GuestRange) -> Psci {
        let mut states = [PowerState::Off; MAX_VCPUS];
        states[0] = PowerState::On;
        Psci {
            states,
            count: count.clamp(1, MAX_VCPUS),
            ram,
        }
    }

    /// The power state of `vcpu`.
    pub fn state(&self, vcpu: VcpuId) -> PowerState {
        self.states[vcpu.index()]
    }

    /// The VMM started `vcpu` after a [`Action::StartVcpu`].
    pub fn vcpu_started(&mut self, vcpu: VcpuId) {
        if self.states[vcpu.index()] == PowerState::OnPending {
            self.states[vcpu.index()] = PowerState::On;
        }
    }

    /// Handles a call from vCPU `caller` with its `x0..x3`.
    pub fn call(&mut self, caller: VcpuId, x: [u64; 4]) -> Outcome {
        // SMCCC: the function ID is w0; an SMC32 function takes its
        // arguments from w1..w3, the upper halves being ignored.
        let id = x[0] as u32;
        let smc64 = id & function::SMC64 != 0;
        let arg = |i: usize| if smc64 { x[i] } else { x[i] & 0xffff_ffff };
        let base = id & !function::SMC64;
        use function::*;
        match (base, smc64) {
            (VERSION, false) => Outcome::returns(VERSION_1_1 as i32),
            (CPU_SUSPEND, _) => Outcome {
                // Every power state is treated as standby: the vCPU waits
                // for an interrupt and the call returns SUCCESS, which
                // DEN0022 allows for a power-down request too (the caller
                // must cope with the state being abandoned).
                x0: Some(0),
                action: Action::WaitForInterrupt(caller),
            },
            (CPU_OFF, false) => self.cpu_off(caller),
            (CPU_ON, _) => self.cpu_on(arg(1), arg(2), arg(3)),
            (AFFINITY_INFO, _) => Outcome::returns(self.affinity_info(arg(1), arg(2))),
            (MIGRATE_INFO_TYPE, false) => Outcome::returns(MIGRATE_NOT_REQUIRED as i32),
            (SYSTEM_OFF, false) => Outcome {
                x0: None,
                action: Action::SystemOff,
            },
            (SYSTEM_RESET, false) => Outcome {
                x0: None,
                action: Action::SystemReset,
            },
            (FEATURES, false) => Outcome::returns(Self::features(arg(1) as u32)),
            // MIGRATE, MIGRATE_INFO_UP_CPU (optional once MIGRATE_INFO_TYPE
            // says 2), the optional 1.0+ functions, and SMC64 forms the
            // specification does not define.
            _ => Outcome::returns(code::NOT_SUPPORTED),
        }
    }

    /// PSCI_FEATURES for function `id`: 0 if implemented (CPU_SUSPEND's
    /// feature flags are 0 too: the original power_state format, no
    /// OS-initiated mode), else NOT_SUPPORTED.
    fn features(id: u32) -> i32 {
        use function::*;
        let smc64 = id & SMC64 != 0;
        let implemented = match id & !SMC64 {
            CPU_SUSPEND | CPU_ON | AFFINITY_INFO => true,
            VERSION | CPU_OFF | MIGRATE_INFO_TYPE | SYSTEM_OFF | SYSTEM_RESET | FEATURES => !smc64,
            _ => false,
        };
        if implemented {
            code::SUCCESS
        } else {
            code::NOT_SUPPORTED
        }
    }

    /// The vCPU a `target_cpu`/`target_affinity` argument names: only the
    /// affinity fields may be set (bits 31:24 and 63:40 must be zero;
    /// SMC32 arguments cannot carry Aff3).
    fn target(&self, mpidr: u64) -> Option<VcpuId> {
        if mpidr & !AFFINITY_MASK != 0 {
            return None;
        }
        vcpu_with_affinity(mpidr, self.count)
    }

    fn cpu_on(&mut self, target: u64, entry: u64, context_id: u64) -> Outcome {
        let Some(vcpu) = self.target(target) else {
            return Outcome::returns(code::INVALID_PARAMETERS);
        };
        match self.states[vcpu.index()] {
            PowerState::On => return Outcome::returns(code::ALREADY_ON),
            PowerState::OnPending => return Outcome::returns(code::ON_PENDING),
            PowerState::Off => {}
        }
        // An AArch64 entry point is a 4-byte aligned address in RAM: any
        // other would fault at once in the new vCPU.
        let entry = GuestAddress(entry);
        if !entry.is_aligned(4) || !self.ram.contains(entry) {
            return Outcome::returns(code::INVALID_ADDRESS);
        }
        self.states[vcpu.index()] = PowerState::OnPending;
        Outcome {
            x0: Some(0),
            action: Action::StartVcpu {
                vcpu,
                entry,
                context_id,
            },
        }
    }

    fn cpu_off(&mut self, caller: VcpuId) -> Outcome {
        self.states[caller.index()] = PowerState::Off;
        Outcome {
            x0: None,
            action: Action::StopVcpu(caller),
        }
    }

    /// AFFINITY_INFO for affinity level 0 (support for higher levels is
    /// optional from PSCI 1.0 on; they answer INVALID_PARAMETERS).
    fn affinity_info(&self, target: u64, lowest_level: u64) -> i32 {
        if lowest_level != 0 {
            return code::INVALID_PARAMETERS;
        }
        match self.target(target).map(|v| self.states[v.index()]) {
            None => code::INVALID_PARAMETERS,
            Some(PowerState::On) => affinity_state::ON,
            Some(PowerState::Off) => affinity_state::OFF,
            Some(PowerState::OnPending) => affinity_state::ON_PENDING,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::function::*;
    use super::*;
    use crate::arch::aarch64::cpu::mpidr;

    /// The MPIDR affinity fields Linux passes (its `cpu_logical_map`).
    fn affinity(vcpu: VcpuId) -> u64 {
        mpidr(vcpu) & AFFINITY_MASK
    }
    use proptest::prelude::*;

    const RAM: GuestRange = match GuestRange::new(GuestAddress(0x4000_0000), 0x2000_0000) {
        Some(r) => r,
        None => panic!(),
    };

    fn v(i: usize) -> VcpuId {
        VcpuId::new(i).unwrap()
    }

    fn ret(code: i32) -> Option<u64> {
        Some(i64::from(code) as u64)
    }

    #[test]
    fn version_features_and_migration() {
        let mut psci = Psci::new(2, RAM);
        let call = |p: &mut Psci, x0: u32, x1: u64| p.call(v(0), [u64::from(x0), x1, 0, 0]);
        assert_eq!(call(&mut psci, VERSION, 0).x0, Some(0x1_0001));
        assert_eq!(
            call(&mut psci, FEATURES, u64::from(CPU_ON | SMC64)).x0,
            Some(0)
        );
        assert_eq!(call(&mut psci, FEATURES, u64::from(CPU_OFF)).x0, Some(0));
        assert_eq!(call(&mut psci, FEATURES, u64::from(FEATURES)).x0, Some(0));
        assert_eq!(
            call(&mut psci, FEATURES, u64::from(CPU_OFF | SMC64)).x0,
            ret(code::NOT_SUPPORTED)
        );
        // SMCCC_VERSION is not a PSCI function: Linux then assumes SMCCC 1.0.
        assert_eq!(
            call(&mut psci, FEATURES, 0x8000_0000).x0,
            ret(code::NOT_SUPPORTED)
        );
        assert_eq!(call(&mut psci, MIGRATE_INFO_TYPE, 0).x0, Some(2));
        assert_eq!(call(&mut psci, MIGRATE, 0).x0, ret(code::NOT_SUPPORTED));
        assert_eq!(call(&mut psci, 0x8400_0012, 0).x0, ret(code::NOT_SUPPORTED));
        assert_eq!(
            call(&mut psci, VERSION | SMC64, 0).x0,
            ret(code::NOT_SUPPORTED)
        );
        // The upper half of x0 is not part of the function ID.
        assert_eq!(
            psci.call(v(0), [0xffff_ffff_8400_0000, 0, 0, 0]).x0,
            Some(0x1_0001)
        );
    }

    #[test]
    fn cpu_on_follows_den0022() {
        let mut psci = Psci::new(3, RAM);
        let on = |p: &mut Psci, target: u64, entry: u64| {
            p.call(v(0), [u64::from(CPU_ON | SMC64), target, entry, 0xc0ffee])
        };
        let target = affinity(v(1));
        assert_eq!(
            on(&mut psci, target, 0x4008_0000),
            Outcome {
                x0: Some(0),
                action: Action::StartVcpu {
                    vcpu: v(1),
                    entry: GuestAddress(0x4008_0000),
                    context_id: 0xc0ffee
                }
            }
        );
        assert_eq!(psci.state(v(1)), PowerState::OnPending);
        assert_eq!(on(&mut psci, target, 0x4008_0000).x0, ret(code::ON_PENDING));
        psci.vcpu_started(v(1));
        assert_eq!(on(&mut psci, target, 0x4008_0000).x0, ret(code::ALREADY_ON));
        assert_eq!(
            on(&mut psci, affinity(v(0)), 0x4008_0000).x0,
            ret(code::ALREADY_ON)
        );
        // No such CPU, stray bits (even MPIDR's RES1 bit 31), entry outside
        // RAM or misaligned.
        assert_eq!(
            on(&mut psci, mpidr(v(2)), 0x4008_0000).x0,
            ret(code::INVALID_PARAMETERS)
        );
        assert_eq!(
            on(&mut psci, affinity(v(3)), 0x4008_0000).x0,
            ret(code::INVALID_PARAMETERS)
        );
        assert_eq!(
            on(&mut psci, 2 | 1 << 24, 0x4008_0000).x0,
            ret(code::INVALID_PARAMETERS)
        );
        assert_eq!(on(&mut psci, 2, 0x1000).x0, ret(code::INVALID_ADDRESS));
        assert_eq!(on(&mut psci, 2, 0x4008_0002).x0, ret(code::INVALID_ADDRESS));
        assert_eq!(
            psci.state(v(2)),
            PowerState::Off,
            "refused calls change nothing"
        );
        // SMC32 CPU_ON: the upper halves of the arguments are ignored.
        let r = psci.call(
            v(0),
            [
                u64::from(CPU_ON),
                0xdead_0000_0000_0002,
                0xffff_ffff_4000_0000,
                7,
            ],
        );
        assert_eq!(
            r.action,
            Action::StartVcpu {
                vcpu: v(2),
                entry: GuestAddress(0x4000_0000),
                context_id: 7
            }
        );
    }

    #[test]
    fn cpu_off_and_affinity_info() {
        let mut psci = Psci::new(2, RAM);
        let info = |p: &mut Psci, target: u64, level: u64| {
            p.call(v(0), [u64::from(AFFINITY_INFO | SMC64), target, level, 0])
                .x0
        };
        assert_eq!(info(&mut psci, affinity(v(1)), 0), Some(1)); // OFF
        assert_eq!(info(&mut psci, affinity(v(0)), 0), Some(0)); // ON
        assert_eq!(
            info(&mut psci, affinity(v(0)), 1),
            ret(code::INVALID_PARAMETERS)
        );
        assert_eq!(info(&mut psci, 0x55, 0), ret(code::INVALID_PARAMETERS));
        psci.call(v(0), [u64::from(CPU_ON), affinity(v(1)), 0x4000_0000, 0]);
        assert_eq!(info(&mut psci, affinity(v(1)), 0), Some(2)); // ON_PENDING
        psci.vcpu_started(v(1));
        let off = psci.call(v(1), [u64::from(CPU_OFF), 0, 0, 0]);
        assert_eq!(
            off,
            Outcome {
                x0: None,
                action: Action::StopVcpu(v(1))
            }
        );
        assert_eq!(info(&mut psci, affinity(v(1)), 0), Some(1));
        // Once off, it can be started again.
        let again = psci.call(v(0), [u64::from(CPU_ON), affinity(v(1)), 0x4000_0000, 0]);
        assert_eq!(again.x0, Some(0));
    }

    #[test]
    fn power_and_suspend() {
        let mut psci = Psci::new(1, RAM);
        let off = psci.call(v(0), [u64::from(SYSTEM_OFF), 0, 0, 0]);
        assert_eq!((off.x0, off.action), (None, Action::SystemOff));
        let reset = psci.call(v(0), [u64::from(SYSTEM_RESET), 0, 0, 0]);
        assert_eq!(reset.action, Action::SystemReset);
        let suspend = psci.call(
            v(0),
            [u64::from(CPU_SUSPEND | SMC64), 0x1_0000, 0x4000_0000, 0],
        );
        assert_eq!(suspend.x0, Some(0));
        assert_eq!(suspend.action, Action::WaitForInterrupt(v(0)));
    }

    proptest! {
        /// Any call from any vCPU: no panic, at most one vCPU leaves Off
        /// per call and only with a StartVcpu for it, and only the caller
        /// is ever stopped.
        #[test]
        fn any_call_is_answered(calls in proptest::collection::vec((0usize..4, any::<[u64; 4]>(), 0u32..0x20, any::<bool>()), 1..64)) {
            let mut psci = Psci::new(4, RAM);
            for (caller, mut x, function, smc64) in calls {
                x[0] = u64::from(0x8400_0000 | function | if smc64 { SMC64 } else { 0 });
                let before: std::vec::Vec<_> = (0..4).map(|i| psci.state(v(i))).collect();
                let out = psci.call(v(caller), x);
                let width = if smc64 { u64::MAX } else { 0xffff_ffff };
                for (i, &b) in before.iter().enumerate() {
                    if b == PowerState::Off && psci.state(v(i)) != PowerState::Off {
                        let start = Action::StartVcpu {
                            vcpu: v(i),
                            entry: GuestAddress(x[2] & width),
                            context_id: x[3] & width,
                        };
                        prop_assert_eq!(out.action, start);
                    }
                }
                if let Action::StopVcpu(who) = out.action {
                    prop_assert_eq!(who, v(caller));
                }
                if out.x0.is_none() {
                    prop_assert!(matches!(out.action, Action::StopVcpu(_) | Action::SystemOff | Action::SystemReset));
                }
                if let Action::StartVcpu { vcpu, .. } = out.action {
                    psci.vcpu_started(vcpu);
                }
            }
        }
    }
}
