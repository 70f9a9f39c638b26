//! Hosts: their declared shape ([`HostSpec`]), their live accounting
//! (`HostState`, internal) and the snapshot handed out ([`HostStatus`]).
//!
//! Capacity follows the OpenStack model. Host CPUs listed as reserved, and
//! reserved memory, belong to the host OS. The remaining CPUs form the
//! host's *usable* set; CPUs claimed by `dedicated` VMs leave it for good
//! (until released) and the rest is the *shared pool*. Shared VMs may use
//! `shared pool × cpu_allocation_ratio` vCPUs in total, and all VMs together
//! `(memory − reserved) × memory_allocation_ratio` MiB.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::SchedulerConfig;
use crate::cpuset::CpuSet;

/// One logical CPU of a host, with its place in the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostCpu {
    /// Logical CPU id, as Linux numbers it (`/sys/devices/system/cpu/cpuN`).
    pub id: u32,
    /// Core id within the package; CPUs sharing `(package, core)` are
    /// hyper-thread siblings.
    pub core: u32,
    /// Physical package (socket) id.
    pub package: u32,
    /// NUMA node id.
    pub node: u32,
}

/// Builds the CPU list of a regular machine: `sockets` packages, each one a
/// NUMA node of `cores_per_socket` cores with `threads_per_core` threads.
///
/// CPUs are numbered as Linux does on common x86 servers: first thread 0 of
/// every core of every socket, then thread 1 of every core, and so on, so
/// that CPU `n` and CPU `n + sockets × cores_per_socket` are siblings.
pub fn uniform_cpus(sockets: u32, cores_per_socket: u32, threads_per_core: u32) -> Vec<HostCpu> {
    let cores_total = sockets.saturating_mul(cores_per_socket);
    let mut cpus = Vec::new();
    for thread in 0..threads_per_core {
        for package in 0..sockets {
            for core in 0..cores_per_socket {
                let id = thread
                    .saturating_mul(cores_total)
                    .saturating_add(package.saturating_mul(cores_per_socket))
                    .saturating_add(core);
                cpus.push(HostCpu {
                    id,
                    core,
                    package,
                    node: package,
                });
            }
        }
    }
    cpus
}

/// The declared shape of a host: what it has, not what is placed on it.
///
/// The optional fields override the deployment-wide defaults of
/// [`SchedulerConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSpec {
    /// Unique host id (`"host-a"`).
    pub id: String,
    /// Free-form labels matched by requests: `zone`, `rack`, anything.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Every logical CPU of the host.
    pub cpus: Vec<HostCpu>,
    /// Physical memory in MiB.
    pub memory_mib: u64,
    /// CPUs kept for the host OS; `None` uses the deployment default.
    #[serde(default)]
    pub reserved_cpus: Option<CpuSet>,
    /// Memory kept for the host OS, MiB; `None` uses the deployment default.
    #[serde(default)]
    pub reserved_memory_mib: Option<u64>,
    /// vCPUs per shared-pool CPU; `None` uses the deployment default.
    #[serde(default)]
    pub cpu_allocation_ratio: Option<f64>,
    /// Memory overcommit ratio; `None` uses the deployment default.
    #[serde(default)]
    pub memory_allocation_ratio: Option<f64>,
}

impl HostSpec {
    /// A host with the given CPUs and memory, no labels and default
    /// reservations and ratios.
    pub fn new(id: impl Into<String>, cpus: Vec<HostCpu>, memory_mib: u64) -> Self {
        Self {
            id: id.into(),
            labels: BTreeMap::new(),
            cpus,
            memory_mib,
            reserved_cpus: None,
            reserved_memory_mib: None,
            cpu_allocation_ratio: None,
            memory_allocation_ratio: None,
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the CPUs and memory reserved for the host OS.
    #[must_use]
    pub fn with_reserved(mut self, cpus: CpuSet, memory_mib: u64) -> Self {
        self.reserved_cpus = Some(cpus);
        self.reserved_memory_mib = Some(memory_mib);
        self
    }

    /// Sets the CPU and memory overcommit ratios of this host.
    #[must_use]
    pub fn with_ratios(mut self, cpu: f64, memory: f64) -> Self {
        self.cpu_allocation_ratio = Some(cpu);
        self.memory_allocation_ratio = Some(memory);
        self
    }
}

/// Why a host could not be added or removed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HostError {
    /// The host id is empty.
    #[error("host id is empty")]
    EmptyId,
    /// A host with this id is already known.
    #[error("host {0} already exists")]
    Duplicate(String),
    /// No host with this id is known.
    #[error("host {0} is unknown")]
    Unknown(String),
    /// The host still carries allocations and cannot be removed.
    #[error("host {host} still has {allocations} allocations")]
    Busy {
        /// The host id.
        host: String,
        /// How many allocations remain on it.
        allocations: usize,
    },
    /// The host declares no CPU.
    #[error("host {0} has no CPU")]
    NoCpus(String),
    /// A CPU id appears twice in the host's CPU list.
    #[error("host {host}: CPU {cpu} is listed twice")]
    DuplicateCpu {
        /// The host id.
        host: String,
        /// The repeated CPU id.
        cpu: u32,
    },
    /// A reserved CPU is not one of the host's CPUs.
    #[error("host {host}: reserved CPU {cpu} does not exist")]
    UnknownReservedCpu {
        /// The host id.
        host: String,
        /// The missing CPU id.
        cpu: u32,
    },
    /// An allocation ratio is not a finite positive number.
    #[error("host {host}: {resource} allocation ratio {ratio} is not a finite positive number")]
    InvalidRatio {
        /// The host id.
        host: String,
        /// `"cpu"` or `"memory"`.
        resource: &'static str,
        /// The rejected ratio.
        ratio: f64,
    },
    /// More memory is reserved than the host has.
    #[error("host {host}: {reserved_mib} MiB reserved exceeds {memory_mib} MiB of memory")]
    ReservationExceedsMemory {
        /// The host id.
        host: String,
        /// Reserved memory, MiB.
        reserved_mib: u64,
        /// Physical memory, MiB.
        memory_mib: u64,
    },
}

/// The usable (non-reserved) threads of one physical core.
#[derive(Debug, Clone)]
pub(crate) struct Core {
    pub(crate) node: u32,
    /// Hardware threads of the core, reserved ones included.
    pub(crate) hardware_threads: usize,
    /// The threads guests may use.
    pub(crate) threads: Vec<u32>,
}

/// A host and everything placed on it. Internal: callers see [`HostStatus`].
#[derive(Debug, Clone)]
pub(crate) struct HostState {
    pub(crate) name: Arc<str>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) cpus: Vec<HostCpu>,
    pub(crate) memory_mib: u64,
    pub(crate) reserved_cpus: CpuSet,
    pub(crate) reserved_memory_mib: u64,
    pub(crate) cpu_ratio: f64,
    pub(crate) memory_ratio: f64,
    /// Non-reserved CPUs not claimed by a dedicated VM.
    pub(crate) shared_pool: CpuSet,
    /// CPUs claimed by dedicated VMs.
    pub(crate) dedicated: CpuSet,
    /// Usable threads grouped per core, ordered by (node, package, core).
    pub(crate) cores: Vec<Core>,
    pub(crate) vcpus_used: u64,
    pub(crate) memory_capacity_mib: u64,
    pub(crate) memory_used_mib: u64,
    pub(crate) allocations: usize,
}

fn check_ratio(host: &str, resource: &'static str, ratio: f64) -> Result<f64, HostError> {
    if ratio.is_finite() && ratio > 0.0 {
        Ok(ratio)
    } else {
        Err(HostError::InvalidRatio {
            host: host.to_owned(),
            resource,
            ratio,
        })
    }
}

/// `floor(amount × ratio)`, saturating at `u64::MAX`.
pub(crate) fn scaled(amount: u64, ratio: f64) -> u64 {
    // `as` saturates for floats out of range; amounts stay far below 2^53.
    (amount as f64 * ratio).floor() as u64
}

impl HostState {
    /// Validates `spec` against `config` and builds an empty host.
    pub(crate) fn new(spec: HostSpec, config: &SchedulerConfig) -> Result<Self, HostError> {
        let id = spec.id;
        if id.is_empty() {
            return Err(HostError::EmptyId);
        }
        if spec.cpus.is_empty() {
            return Err(HostError::NoCpus(id));
        }
        let mut cpus = spec.cpus;
        cpus.sort_unstable_by_key(|cpu| cpu.id);
        if let Some(pair) = cpus.windows(2).find(|pair| pair[0].id == pair[1].id) {
            return Err(HostError::DuplicateCpu {
                host: id,
                cpu: pair[0].id,
            });
        }
        let all: CpuSet = cpus.iter().map(|cpu| cpu.id).collect();
        let reserved_cpus = spec
            .reserved_cpus
            .unwrap_or_else(|| config.reserved_host_cpus.clone());
        if let Some(cpu) = reserved_cpus.iter().find(|cpu| !all.contains(*cpu)) {
            return Err(HostError::UnknownReservedCpu { host: id, cpu });
        }
        let reserved_memory_mib = spec
            .reserved_memory_mib
            .unwrap_or(config.reserved_host_memory_mib);
        if reserved_memory_mib > spec.memory_mib {
            return Err(HostError::ReservationExceedsMemory {
                host: id,
                reserved_mib: reserved_memory_mib,
                memory_mib: spec.memory_mib,
            });
        }
        let cpu_ratio = check_ratio(
            &id,
            "cpu",
            spec.cpu_allocation_ratio
                .unwrap_or(config.cpu_allocation_ratio),
        )?;
        let memory_ratio = check_ratio(
            &id,
            "memory",
            spec.memory_allocation_ratio
                .unwrap_or(config.memory_allocation_ratio),
        )?;
        let usable_cpus = all.difference(&reserved_cpus);

        let mut by_core: BTreeMap<(u32, u32, u32), Core> = BTreeMap::new();
        for cpu in &cpus {
            let core = by_core
                .entry((cpu.node, cpu.package, cpu.core))
                .or_insert_with(|| Core {
                    node: cpu.node,
                    hardware_threads: 0,
                    threads: Vec::new(),
                });
            core.hardware_threads += 1;
            if usable_cpus.contains(cpu.id) {
                core.threads.push(cpu.id);
            }
        }
        let cores = by_core
            .into_values()
            .filter(|core| !core.threads.is_empty())
            .collect();

        Ok(Self {
            name: Arc::from(id.as_str()),
            labels: spec.labels,
            cpus,
            memory_mib: spec.memory_mib,
            memory_capacity_mib: scaled(spec.memory_mib - reserved_memory_mib, memory_ratio),
            reserved_cpus,
            reserved_memory_mib,
            cpu_ratio,
            memory_ratio,
            shared_pool: usable_cpus,
            dedicated: CpuSet::new(),
            cores,
            vcpus_used: 0,
            memory_used_mib: 0,
            allocations: 0,
        })
    }

    /// Shared vCPU capacity if `extra_dedicated` more CPUs left the pool.
    pub(crate) fn vcpu_capacity_after(&self, extra_dedicated: usize) -> u64 {
        let pool = self.shared_pool.len().saturating_sub(extra_dedicated);
        scaled(pool as u64, self.cpu_ratio)
    }

    /// Shared vCPU capacity now.
    pub(crate) fn vcpu_capacity(&self) -> u64 {
        self.vcpu_capacity_after(0)
    }

    /// Shared vCPUs still free.
    pub(crate) fn free_vcpus(&self) -> u64 {
        self.vcpu_capacity().saturating_sub(self.vcpus_used)
    }

    /// Memory still free, MiB.
    pub(crate) fn free_memory_mib(&self) -> u64 {
        self.memory_capacity_mib
            .saturating_sub(self.memory_used_mib)
    }

    /// A serializable snapshot of the host.
    pub(crate) fn status(&self) -> HostStatus {
        HostStatus {
            id: self.name.to_string(),
            labels: self.labels.clone(),
            cpus: self.cpus.clone(),
            memory_mib: self.memory_mib,
            reserved_cpus: self.reserved_cpus.clone(),
            reserved_memory_mib: self.reserved_memory_mib,
            cpu_allocation_ratio: self.cpu_ratio,
            memory_allocation_ratio: self.memory_ratio,
            shared_cpus: self.shared_pool.clone(),
            dedicated_cpus: self.dedicated.clone(),
            vcpu_capacity: self.vcpu_capacity(),
            vcpus_used: self.vcpus_used,
            memory_capacity_mib: self.memory_capacity_mib,
            memory_used_mib: self.memory_used_mib,
            allocations: self.allocations,
        }
    }

    /// NUMA nodes that hold at least one of `cpus`.
    pub(crate) fn nodes_of(&self, cpus: &CpuSet) -> BTreeSet<u32> {
        self.cpus
            .iter()
            .filter(|cpu| cpus.contains(cpu.id))
            .map(|cpu| cpu.node)
            .collect()
    }
}

/// A snapshot of one host: shape, capacity and use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Host id.
    pub id: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Every logical CPU with its topology.
    pub cpus: Vec<HostCpu>,
    /// Physical memory, MiB.
    pub memory_mib: u64,
    /// CPUs kept for the host OS.
    pub reserved_cpus: CpuSet,
    /// Memory kept for the host OS, MiB.
    pub reserved_memory_mib: u64,
    /// vCPUs per shared-pool CPU.
    pub cpu_allocation_ratio: f64,
    /// Memory overcommit ratio.
    pub memory_allocation_ratio: f64,
    /// The shared pool: non-reserved CPUs not dedicated to a VM. Shared VMs
    /// on this host are pinned to exactly these CPUs.
    pub shared_cpus: CpuSet,
    /// CPUs held by dedicated VMs.
    pub dedicated_cpus: CpuSet,
    /// Shared vCPUs the host can hold now: `shared_cpus × cpu ratio`.
    pub vcpu_capacity: u64,
    /// Shared vCPUs allocated.
    pub vcpus_used: u64,
    /// Memory the host can hold: `(memory − reserved) × memory ratio`.
    pub memory_capacity_mib: u64,
    /// Memory allocated, MiB (shared and dedicated VMs).
    pub memory_used_mib: u64,
    /// Number of allocations on the host.
    pub allocations: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SchedulerConfig {
        SchedulerConfig::default()
    }

    #[test]
    fn uniform_cpus_number_siblings_like_linux() {
        let cpus = uniform_cpus(2, 4, 2);
        assert_eq!(cpus.len(), 16);
        let cpu = |id: u32| cpus.iter().find(|c| c.id == id).copied().unwrap();
        // CPU 1 and CPU 9 are the two threads of socket 0, core 1.
        assert_eq!((cpu(1).package, cpu(1).core), (0, 1));
        assert_eq!((cpu(9).package, cpu(9).core), (0, 1));
        assert_eq!((cpu(5).package, cpu(5).core, cpu(5).node), (1, 1, 1));
    }

    #[test]
    fn capacity_applies_reservation_and_ratios() {
        let spec = HostSpec::new("h", uniform_cpus(1, 4, 2), 16_384)
            .with_reserved(CpuSet::parse("0,4").unwrap(), 1_024)
            .with_ratios(4.0, 1.5);
        let host = HostState::new(spec, &config()).unwrap();
        assert_eq!(host.shared_pool.to_string(), "1-3,5-7");
        assert_eq!(host.vcpu_capacity(), 24);
        assert_eq!(host.memory_capacity_mib, 23_040);
        // Core 0 (CPUs 0 and 4) is wholly reserved and left out.
        assert_eq!(host.cores.len(), 3);
        assert!(host.cores.iter().all(|core| core.threads.len() == 2));
        assert!(host.cores.iter().all(|core| core.hardware_threads == 2));
    }

    #[test]
    fn defaults_come_from_the_config() {
        let config = SchedulerConfig {
            cpu_allocation_ratio: 2.0,
            reserved_host_memory_mib: 2_048,
            ..SchedulerConfig::default()
        };
        let host =
            HostState::new(HostSpec::new("h", uniform_cpus(1, 2, 1), 4_096), &config).unwrap();
        assert_eq!(host.vcpu_capacity(), 4);
        assert_eq!(host.memory_capacity_mib, 2_048);
    }

    #[test]
    fn invalid_specs_are_refused() {
        let c = config();
        let base = || HostSpec::new("h", uniform_cpus(1, 2, 1), 4_096);
        assert_eq!(
            HostState::new(HostSpec::new("", uniform_cpus(1, 1, 1), 1), &c).unwrap_err(),
            HostError::EmptyId
        );
        assert!(matches!(
            HostState::new(HostSpec::new("h", vec![], 1), &c),
            Err(HostError::NoCpus(_))
        ));
        let mut dup = base();
        dup.cpus.push(dup.cpus[0]);
        assert!(matches!(
            HostState::new(dup, &c),
            Err(HostError::DuplicateCpu { cpu: 0, .. })
        ));
        let reserved = base().with_reserved(CpuSet::parse("7").unwrap(), 0);
        assert!(matches!(
            HostState::new(reserved, &c),
            Err(HostError::UnknownReservedCpu { cpu: 7, .. })
        ));
        let too_much = base().with_reserved(CpuSet::new(), 5_000);
        assert!(matches!(
            HostState::new(too_much, &c),
            Err(HostError::ReservationExceedsMemory { .. })
        ));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                HostState::new(base().with_ratios(bad, 1.0), &c),
                Err(HostError::InvalidRatio {
                    resource: "cpu",
                    ..
                })
            ));
        }
    }
}
