//! Placement throughput on one core.
//!
//! `cargo bench -p scheduler` prints one line per case:
//!
//! ```text
//! hosts=N policy=P fill=F placements_per_sec=X
//! ```
//!
//! Every host has 64 CPUs (2 sockets × 16 cores × 2 threads) and 256 GiB,
//! with 6 GiB reserved for the host OS: 256,000 MiB and 256 shared vCPUs
//! (ratio 4.0) to place on. Requests cycle through 2 vCPU/10 GiB,
//! 4 vCPU/20 GiB and 8 vCPU/30 GiB (mean 20 GiB, 8 % of a host), so
//! `fill=0.8` means 10 allocations per host: 100,000 at 10,000 hosts. The
//! fleet is filled with the case's own policy, then placements are timed in
//! batches that are released (untimed) before the next batch, so every
//! batch starts from the same fill.
//!
//! Environment: `SCHEDULER_BENCH_HOSTS` (comma-separated host counts,
//! default `100,1000,10000`), `SCHEDULER_BENCH_SECS` (timed seconds per
//! case, default 1) and `SCHEDULER_BENCH_SHAPES=cpu` for a CPU-bound
//! workload (4, 8 and 12 vCPUs with 1 GiB per 4 vCPUs: `fill=0.8` is then
//! 25.6 allocations per host). Run without `--bench` (as `cargo test --benches`
//! does), it does a short smoke run at 100 hosts instead.

use std::time::{Duration, Instant};

use scheduler::{HostSpec, PlacementRequest, Policy, Scheduler, SchedulerConfig, uniform_cpus};

const HOST_MEMORY_MIB: u64 = 256 * 1024;
const RESERVED_MIB: u64 = 6 * 1024;
const USABLE_MIB: u64 = HOST_MEMORY_MIB - RESERVED_MIB;
/// Memory-bound requests (the default workload): mean 20 GiB, 8 % of a host.
const MEMORY_SHAPES: [(u32, u64); 3] = [(2, 10 * 1024), (4, 20 * 1024), (8, 30 * 1024)];
/// CPU-bound requests (`SCHEDULER_BENCH_SHAPES=cpu`): mean 8 vCPUs, 1/32 of
/// a host's 256 shared vCPUs, and only 2 GiB.
const CPU_SHAPES: [(u32, u64); 3] = [(4, 1024), (8, 2 * 1024), (12, 3 * 1024)];

#[derive(Clone, Copy)]
struct Workload {
    shapes: &'static [(u32, u64); 3],
    /// Mean requests that fill one empty host.
    per_host: f64,
}

impl Workload {
    fn from_env() -> Self {
        match std::env::var("SCHEDULER_BENCH_SHAPES").as_deref() {
            Ok("cpu") => Self {
                shapes: &CPU_SHAPES,
                per_host: 256.0 / 8.0,
            },
            _ => Self {
                shapes: &MEMORY_SHAPES,
                per_host: USABLE_MIB as f64 / (20.0 * 1024.0),
            },
        }
    }

    fn shape(&self, i: usize) -> (u32, u64) {
        self.shapes[i % self.shapes.len()]
    }
}

fn fleet(hosts: usize, policy: Policy) -> Scheduler {
    let config = SchedulerConfig {
        policy,
        reserved_host_memory_mib: RESERVED_MIB,
        ..SchedulerConfig::default()
    };
    let scheduler = match Scheduler::new(config) {
        Ok(scheduler) => scheduler,
        Err(err) => panic!("bench config refused: {err}"),
    };
    let cpus = uniform_cpus(2, 16, 2);
    for i in 0..hosts {
        let spec = HostSpec::new(format!("host-{i:06}"), cpus.clone(), HOST_MEMORY_MIB);
        if let Err(err) = scheduler.add_host(spec) {
            panic!("bench host refused: {err}");
        }
    }
    scheduler
}

fn fill(scheduler: &Scheduler, workload: Workload, hosts: usize, fill: f64) -> usize {
    let target = (fill * hosts as f64 * workload.per_host).round() as usize;
    for i in 0..target {
        let (vcpus, memory) = workload.shape(i);
        let request = PlacementRequest::new(format!("fill-{i}"), vcpus, memory);
        if let Err(err) = scheduler.place(&request) {
            panic!("fill placement {i} of {target} failed: {err}");
        }
    }
    target
}

/// Timed placements per second, in batches released between rounds.
fn measure(scheduler: &Scheduler, workload: Workload, hosts: usize, budget: Duration) -> f64 {
    let batch_len = hosts.min(1_000);
    let batch: Vec<PlacementRequest> = (0..batch_len)
        .map(|i| {
            let (vcpus, memory) = workload.shape(i);
            PlacementRequest::new(format!("bench-{i}"), vcpus, memory)
        })
        .collect();
    let mut timed = Duration::ZERO;
    let mut placed = 0u64;
    while timed < budget {
        let start = Instant::now();
        for request in &batch {
            if let Err(err) = scheduler.place(request) {
                panic!("timed placement failed: {err}");
            }
        }
        timed += start.elapsed();
        placed += batch.len() as u64;
        for request in &batch {
            scheduler.release(&request.id);
        }
    }
    placed as f64 / timed.as_secs_f64()
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let host_counts: Vec<usize> = match std::env::var("SCHEDULER_BENCH_HOSTS") {
        Ok(list) => list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect(),
        Err(_) if full => vec![100, 1_000, 10_000],
        Err(_) => vec![100],
    };
    let secs: f64 = std::env::var("SCHEDULER_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 1.0 } else { 0.05 });
    let budget = Duration::from_secs_f64(secs);
    let workload = Workload::from_env();

    for &hosts in &host_counts {
        for fill_ratio in [0.0, 0.8] {
            for policy in Policy::ALL {
                let scheduler = fleet(hosts, policy);
                let existing = fill(&scheduler, workload, hosts, fill_ratio);
                let rate = measure(&scheduler, workload, hosts, budget);
                debug_assert_eq!(scheduler.allocation_count(), existing);
                println!(
                    "hosts={hosts} policy={policy} fill={fill_ratio:.1} placements_per_sec={rate:.0}"
                );
            }
        }
    }
}
