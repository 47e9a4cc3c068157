//! The IOMMU backends' pure half, behind the `IoSpace` and `IoDevice`
//! objects: SMMUv3 stream-table entries, context descriptors, command and
//! event-queue formats, and VT-d root/context entries, second-level tables
//! and fault records — the layouts and decoders, host-tested and fuzzed,
//! shared by the kernel drivers that program the hardware and the tests.
//! An IoSpace's translation tables reuse the core's `Translation` trait.
//! Nothing is here yet: device passthrough comes after the Linux guest.
#![no_std]
#![forbid(unsafe_code)]
