//! Placeholder: the unprivileged user-space VMM (device tree, PL011, GIC distributor, PSCI, virtio) will live here.
#![no_std]
#![forbid(unsafe_code)]
