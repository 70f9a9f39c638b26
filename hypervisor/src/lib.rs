//! `minicloud-vmm`: a KVM micro-VMM on the rust-vmm crates, one process per
//! VM, in the manner of Firecracker.
//!
//! Map of the crate:
//! - [`config`]: the VM description (JSON file or flags) and its checks.
//! - [`vmm`]: builds a VM (memory, kernel, boot structures, devices,
//!   vCPUs) and runs it; [`vcpu`] is the per-vCPU run loop.
//! - [`arch`]: x86-64 boot: memory map and e820, GDT, page tables, zero
//!   page and PVH start info, MP table, CPUID, registers.
//! - [`devices`]: the serial console (vm-superio 16550A), the i8042 (reset
//!   line and Ctrl-Alt-Del) and exit port, and virtio-mmio with virtio-blk,
//!   virtio-vsock (host side on Unix sockets) and virtio-net (on a tap).
//! - [`exit`]: how a VM ended and the process status that says so.
//! - [`probe`]: whether this host's KVM is hardware-assisted or PVM.
//! - [`control`]: pause/resume, orderly shutdown, kill and metrics of a
//!   running VM, without any transport; [`api`] serves it as HTTP/1.1 on a
//!   Unix socket (`--api-sock`, described in `api.openapi.yaml`).
//! - [`metrics`]: per-vCPU and per-device counters.
//! - [`rate_limiter`]: token buckets for device bandwidth and operations.
//! - [`seccomp`]: the per-thread system-call filters.
#![deny(missing_docs)]

pub mod api;
pub mod arch;
pub mod config;
pub mod control;
pub mod devices;
pub mod exit;
pub mod metrics;
pub mod probe;
pub mod rate_limiter;
pub mod seccomp;
pub mod vcpu;
pub mod vmm;
