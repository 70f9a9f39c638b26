//! Counters the VMM keeps while a VM runs, and their JSON form for
//! `GET /metrics`.
//!
//! Every counter is a relaxed atomic bumped on the thread that does the
//! work (a vCPU thread, a device's event thread); readers take a snapshot
//! without stopping anyone, so a snapshot is consistent per counter, not
//! across counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Why a vCPU left `KVM_RUN`, counted per reason.
#[derive(Debug, Default)]
pub struct VcpuMetrics {
    /// Port-I/O reads (`in`).
    pub io_in: AtomicU64,
    /// Port-I/O writes (`out`).
    pub io_out: AtomicU64,
    /// MMIO reads.
    pub mmio_read: AtomicU64,
    /// MMIO writes.
    pub mmio_write: AtomicU64,
    /// `KVM_RUN` returned EINTR/EAGAIN or `KVM_EXIT_INTR`: a signal (pause,
    /// shutdown) kicked the vCPU out.
    pub interrupted: AtomicU64,
    /// System events (poweroff, reset, crash).
    pub system_event: AtomicU64,
    /// Anything else (HLT without an in-kernel irqchip, shutdown, errors).
    pub other: AtomicU64,
    /// Nanoseconds spent inside `KVM_RUN`.
    pub run_ns: AtomicU64,
}

/// One vCPU's counters as `GET /metrics` shows them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VcpuSnapshot {
    /// vCPU index.
    pub id: u32,
    /// Nanoseconds spent inside `KVM_RUN`.
    pub run_ns: u64,
    /// Exits by reason.
    pub exits: ExitCounts,
}

/// Exits by reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExitCounts {
    /// Port-I/O reads.
    pub io_in: u64,
    /// Port-I/O writes.
    pub io_out: u64,
    /// MMIO reads.
    pub mmio_read: u64,
    /// MMIO writes.
    pub mmio_write: u64,
    /// Kicked out by a signal.
    pub interrupted: u64,
    /// System events.
    pub system_event: u64,
    /// Other exits.
    pub other: u64,
}

impl VcpuMetrics {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot for vCPU `id`.
    pub fn snapshot(&self, id: u32) -> VcpuSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        VcpuSnapshot {
            id,
            run_ns: l(&self.run_ns),
            exits: ExitCounts {
                io_in: l(&self.io_in),
                io_out: l(&self.io_out),
                mmio_read: l(&self.mmio_read),
                mmio_write: l(&self.mmio_write),
                interrupted: l(&self.interrupted),
                system_event: l(&self.system_event),
                other: l(&self.other),
            },
        }
    }
}

/// What a device did, from the guest's point of view: "read" is data the
/// guest received (a disk read, bytes a host peer sent over vsock), "write"
/// is data the guest sent.
#[derive(Debug, Default)]
pub struct DeviceMetrics {
    /// Read operations (requests or packets) completed.
    pub read_ops: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// Write operations completed.
    pub write_ops: AtomicU64,
    /// Bytes written.
    pub write_bytes: AtomicU64,
    /// Flushes (block devices).
    pub flush_ops: AtomicU64,
    /// Requests or packets that failed (malformed chain, out of range, I/O
    /// error, protocol violation).
    pub errors: AtomicU64,
    /// Times a request had to wait for its rate limiter.
    pub throttled: AtomicU64,
    /// Open connections (vsock).
    pub connections: AtomicU64,
}

impl DeviceMetrics {
    /// Counts one read of `bytes`.
    pub fn read(&self, bytes: u64) {
        self.read_ops.fetch_add(1, Ordering::Relaxed);
        self.read_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one write of `bytes`.
    pub fn write(&self, bytes: u64) {
        self.write_ops.fetch_add(1, Ordering::Relaxed);
        self.write_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot, labelled.
    pub fn snapshot(&self, id: &str, kind: &str) -> DeviceSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DeviceSnapshot {
            id: id.to_string(),
            kind: kind.to_string(),
            read_ops: l(&self.read_ops),
            read_bytes: l(&self.read_bytes),
            write_ops: l(&self.write_ops),
            write_bytes: l(&self.write_bytes),
            flush_ops: l(&self.flush_ops),
            errors: l(&self.errors),
            throttled: l(&self.throttled),
            connections: l(&self.connections),
        }
    }
}

/// One device's counters as `GET /metrics` shows them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceSnapshot {
    /// Device id (`disk<i>`, `vsock`, `net<i>`).
    pub id: String,
    /// `block`, `vsock` or `net`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Read operations.
    pub read_ops: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Write operations.
    pub write_ops: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Flushes.
    pub flush_ops: u64,
    /// Errors.
    pub errors: u64,
    /// Rate-limiter waits.
    pub throttled: u64,
    /// Open connections (vsock; 0 for others).
    pub connections: u64,
}

/// A device registered for `GET /metrics`.
#[derive(Clone)]
pub struct DeviceEntry {
    /// Id shown in the metrics.
    pub id: String,
    /// Type shown in the metrics.
    pub kind: &'static str,
    /// Its counters.
    pub metrics: Arc<DeviceMetrics>,
}

/// This process's resident set size in bytes (from /proc/self/statm).
pub fn process_rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_carry_the_counts() {
        let v = VcpuMetrics::default();
        VcpuMetrics::bump(&v.io_out);
        VcpuMetrics::bump(&v.io_out);
        v.run_ns.fetch_add(5, Ordering::Relaxed);
        let s = v.snapshot(3);
        assert_eq!((s.id, s.run_ns, s.exits.io_out), (3, 5, 2));
        let d = DeviceMetrics::default();
        d.read(512);
        d.write(1024);
        d.error();
        let s = d.snapshot("disk0", "block");
        assert_eq!(
            (s.read_ops, s.read_bytes, s.write_bytes, s.errors),
            (1, 512, 1024, 1)
        );
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["type"], "block");
    }

    #[test]
    fn rss_is_plausible() {
        let rss = process_rss_bytes();
        assert!(rss > 1 << 20 && rss < 1 << 40, "{rss}");
    }
}
