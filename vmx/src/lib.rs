//! Placeholder: the x86_64 VT-x backend for the `Vcpu` and `GuestSpace` objects (VMCS, exit decoding, EPT) will live here.
#![no_std]
#![forbid(unsafe_code)]
