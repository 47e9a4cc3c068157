//! Placeholder: the arm64 EL2 backend for the `Vcpu` and `GuestSpace` objects (stage-2 tables, vGICv3 list registers, virtual timer) will live here.
#![no_std]
#![forbid(unsafe_code)]
