//! minicloud-vmm library.
