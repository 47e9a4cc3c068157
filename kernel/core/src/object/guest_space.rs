//! GuestSpaces: guest-physical address spaces (arm64 stage 2, x86_64 EPT).
//!
//! A GuestSpace is what a Vcpu's thread translates guest-physical
//! addresses through. It is built exactly like a VSpace: user space
//! retypes page tables and frames and maps them with `PageTable::Map` and
//! `Frame::Map` naming the GuestSpace; the machine writes the entries in
//! the second-stage format. Its identifier (from the pool VSpaces use for
//! ASIDs) is its VMID. Differences from a VSpace: mappings may be writable
//! and executable at once (the guest kernel's own tables enforce its
//! policy), and an access to an address with no mapping is not a fault of
//! the thread but a guest exit its VMM handles (typically MMIO to
//! emulate). Identifier allocation and mapping checks live in `vspace`.
