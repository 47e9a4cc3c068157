//! The x86_64 VT-x backend's pure half, as `skyscope-el2` is for arm64: it
//! will hold everything about VMX that can be decided without touching the
//! hardware — VMCS field encodings and access rules, exit reasons and
//! exit-qualification decoding, VM-entry/exit controls derived from the
//! capability MSRs, EPT entry formats — host-tested and fuzzed, shared by
//! the kernel's `arch::x86_64` (which does the VMREAD/VMWRITE and VMLAUNCH)
//! and an x86 VMM. Nothing is here yet: the x86_64 port has not started.
#![no_std]
#![forbid(unsafe_code)]
