//! Placeholder: the SMMUv3 and VT-d drivers behind the `IoSpace` and `IoDevice` objects will live here.
#![no_std]
#![forbid(unsafe_code)]
