//! `minicloud-vmm`: a KVM micro-VMM on the rust-vmm crates, one process per
//! VM, in the manner of Firecracker.
//!
//! Map of the crate:
//! - [`config`]: the VM description (JSON file or flags) and its checks.
//! - [`vmm`]: builds a VM (memory, kernel, boot structures, devices,
//!   vCPUs) and runs it; [`vcpu`] is the per-vCPU run loop.
//! - [`arch`]: x86-64 boot: memory map and e820, GDT, page tables, zero
//!   page and PVH start info, MP table, CPUID, registers.
//! - [`devices`]: the serial console (vm-superio 16550A), the i8042 reset
//!   line and exit port, and virtio-mmio with virtio-blk.
//! - [`exit`]: how a VM ended and the process status that says so.
//! - [`probe`]: whether this host's KVM is hardware-assisted or PVM.
#![deny(missing_docs)]

pub mod arch;
pub mod config;
pub mod devices;
pub mod exit;
pub mod probe;
pub mod vcpu;
pub mod vmm;
