//! Deployment settings ([`SchedulerConfig`]) and fleet declarations
//! ([`FleetConfig`]) read from TOML or JSON text.
//!
//! A fleet file declares hosts that are not discovered from the local
//! system: tests and benchmarks model fleets with it, and per-host agents
//! will join the same way. Parsing works on strings; reading the file is
//! the caller's business.
//!
//! ```toml
//! [scheduler]
//! policy = "pack"
//! cpu_allocation_ratio = 4.0
//! memory_allocation_ratio = 1.0
//! reserved_host_cpus = "0"
//! reserved_host_memory_mib = 4096
//!
//! [[hosts]]
//! id = "host-a"
//! memory_mib = 262144
//! labels = { zone = "z1", rack = "r1" }
//! topology = { sockets = 2, cores_per_socket = 16, threads_per_core = 2 }
//!
//! [[hosts]]
//! id = "host-b"
//! memory_mib = 8192
//! reserved_cpus = ""
//! cpu_allocation_ratio = 2.0
//! cpus = [
//!   { id = 0, core = 0, package = 0, node = 0 },
//!   { id = 1, core = 0, package = 0, node = 0 },
//! ]
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cpuset::{CpuSet, MAX_CPU_ID};
use crate::host::{HostCpu, HostSpec, uniform_cpus};
use crate::weigher::Policy;

/// Deployment-wide scheduling settings; hosts may override the ratios and
/// reservations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Weigher used when a request names none.
    pub policy: Policy,
    /// vCPUs per shared-pool host CPU (OpenStack's default is 4.0).
    pub cpu_allocation_ratio: f64,
    /// Memory overcommit ratio (OpenStack's default is 1.0).
    pub memory_allocation_ratio: f64,
    /// Host CPUs kept for the host OS on every host (empty by default).
    pub reserved_host_cpus: CpuSet,
    /// Memory kept for the host OS on every host, MiB (512 by default, as
    /// OpenStack's `reserved_host_memory_mb`).
    pub reserved_host_memory_mib: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            policy: Policy::Spread,
            cpu_allocation_ratio: 4.0,
            memory_allocation_ratio: 1.0,
            reserved_host_cpus: CpuSet::new(),
            reserved_host_memory_mib: 512,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML text did not parse or did not match the schema.
    #[error("invalid TOML fleet configuration: {0}")]
    Toml(#[from] toml::de::Error),
    /// The JSON text did not parse or did not match the schema.
    #[error("invalid JSON fleet configuration: {0}")]
    Json(#[from] serde_json::Error),
    /// A default allocation ratio is not a finite positive number.
    #[error("{resource} allocation ratio {ratio} is not a finite positive number")]
    InvalidRatio {
        /// `"cpu"` or `"memory"`.
        resource: &'static str,
        /// The rejected ratio.
        ratio: f64,
    },
    /// A host gave both or neither of `topology` and `cpus`.
    #[error("host {0}: declare exactly one of `topology` or `cpus`")]
    Topology(String),
    /// A topology with more CPUs than Linux can number.
    #[error("host {host}: topology has {cpus} CPUs, more than {max}")]
    TooManyCpus {
        /// The host id.
        host: String,
        /// CPUs the topology would have.
        cpus: u64,
        /// The most accepted ([`crate::MAX_CPU_ID`] + 1).
        max: u64,
    },
}

impl SchedulerConfig {
    /// Checks the deployment-wide ratios.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (resource, ratio) in [
            ("cpu", self.cpu_allocation_ratio),
            ("memory", self.memory_allocation_ratio),
        ] {
            if !(ratio.is_finite() && ratio > 0.0) {
                return Err(ConfigError::InvalidRatio { resource, ratio });
            }
        }
        Ok(())
    }
}

/// A regular topology: `sockets` NUMA nodes of identical cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyConfig {
    /// Packages, one NUMA node each.
    pub sockets: u32,
    /// Cores in each package.
    pub cores_per_socket: u32,
    /// Hardware threads per core.
    pub threads_per_core: u32,
}

/// One declared host, as written in a fleet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Unique host id.
    pub id: String,
    /// Physical memory, MiB.
    pub memory_mib: u64,
    /// Labels (`zone`, `rack`, anything).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A regular topology; give this or `cpus`.
    #[serde(default)]
    pub topology: Option<TopologyConfig>,
    /// An explicit CPU list; give this or `topology`.
    #[serde(default)]
    pub cpus: Option<Vec<HostCpu>>,
    /// CPUs kept for the host OS, as a CPU list (`"0-1"`).
    #[serde(default)]
    pub reserved_cpus: Option<CpuSet>,
    /// Memory kept for the host OS, MiB.
    #[serde(default)]
    pub reserved_memory_mib: Option<u64>,
    /// CPU overcommit ratio of this host.
    #[serde(default)]
    pub cpu_allocation_ratio: Option<f64>,
    /// Memory overcommit ratio of this host.
    #[serde(default)]
    pub memory_allocation_ratio: Option<f64>,
}

impl HostConfig {
    /// Turns the declaration into a [`HostSpec`].
    pub fn to_spec(&self) -> Result<HostSpec, ConfigError> {
        let cpus = match (&self.topology, &self.cpus) {
            (Some(t), None) => {
                let cpus = u64::from(t.sockets)
                    * u64::from(t.cores_per_socket)
                    * u64::from(t.threads_per_core);
                let max = u64::from(MAX_CPU_ID) + 1;
                if cpus > max {
                    return Err(ConfigError::TooManyCpus {
                        host: self.id.clone(),
                        cpus,
                        max,
                    });
                }
                uniform_cpus(t.sockets, t.cores_per_socket, t.threads_per_core)
            }
            (None, Some(cpus)) => cpus.clone(),
            _ => return Err(ConfigError::Topology(self.id.clone())),
        };
        Ok(HostSpec {
            id: self.id.clone(),
            labels: self.labels.clone(),
            cpus,
            memory_mib: self.memory_mib,
            reserved_cpus: self.reserved_cpus.clone(),
            reserved_memory_mib: self.reserved_memory_mib,
            cpu_allocation_ratio: self.cpu_allocation_ratio,
            memory_allocation_ratio: self.memory_allocation_ratio,
        })
    }
}

/// Deployment settings plus declared hosts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// Deployment-wide settings.
    pub scheduler: SchedulerConfig,
    /// Declared hosts.
    pub hosts: Vec<HostConfig>,
}

impl FleetConfig {
    /// Parses a fleet from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let fleet: Self = toml::from_str(text)?;
        fleet.scheduler.validate()?;
        Ok(fleet)
    }

    /// Parses a fleet from JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let fleet: Self = serde_json::from_str(text)?;
        fleet.scheduler.validate()?;
        Ok(fleet)
    }

    /// The declared hosts as [`HostSpec`]s.
    pub fn host_specs(&self) -> Result<Vec<HostSpec>, ConfigError> {
        self.hosts.iter().map(HostConfig::to_spec).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[scheduler]
policy = "pack"
cpu_allocation_ratio = 4.0
memory_allocation_ratio = 1.0
reserved_host_cpus = "0"
reserved_host_memory_mib = 4096

[[hosts]]
id = "host-a"
memory_mib = 262144
labels = { zone = "z1", rack = "r1" }
topology = { sockets = 2, cores_per_socket = 16, threads_per_core = 2 }

[[hosts]]
id = "host-b"
memory_mib = 8192
reserved_cpus = ""
cpu_allocation_ratio = 2.0
cpus = [
  { id = 0, core = 0, package = 0, node = 0 },
  { id = 1, core = 0, package = 0, node = 0 },
]
"#;

    #[test]
    fn parses_the_documented_example() {
        let fleet = FleetConfig::from_toml_str(EXAMPLE).unwrap();
        assert_eq!(fleet.scheduler.policy, Policy::Pack);
        assert_eq!(fleet.scheduler.reserved_host_cpus.to_string(), "0");
        let specs = fleet.host_specs().unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].cpus.len(), 64);
        assert_eq!(specs[0].labels["zone"], "z1");
        assert_eq!(specs[1].reserved_cpus, Some(CpuSet::new()));
        assert_eq!(specs[1].cpu_allocation_ratio, Some(2.0));
    }

    #[test]
    fn json_round_trips() {
        let fleet = FleetConfig::from_toml_str(EXAMPLE).unwrap();
        let json = serde_json::to_string(&fleet).unwrap();
        assert_eq!(FleetConfig::from_json_str(&json).unwrap(), fleet);
    }

    #[test]
    fn defaults_follow_openstack() {
        let fleet = FleetConfig::from_toml_str("").unwrap();
        assert_eq!(fleet.scheduler, SchedulerConfig::default());
        assert_eq!(fleet.scheduler.cpu_allocation_ratio, 4.0);
        assert_eq!(fleet.scheduler.memory_allocation_ratio, 1.0);
        assert_eq!(fleet.scheduler.policy, Policy::Spread);
    }

    #[test]
    fn refuses_bad_input() {
        assert!(matches!(
            FleetConfig::from_toml_str("[scheduler]\ncpu_allocation_ratio = 0.0\n"),
            Err(ConfigError::InvalidRatio {
                resource: "cpu",
                ..
            })
        ));
        assert!(matches!(
            FleetConfig::from_toml_str("[scheduler]\nbogus = 1\n"),
            Err(ConfigError::Toml(_))
        ));
        assert!(matches!(
            FleetConfig::from_json_str("{"),
            Err(ConfigError::Json(_))
        ));
        let neither =
            FleetConfig::from_toml_str("[[hosts]]\nid = \"x\"\nmemory_mib = 1\n").unwrap();
        assert!(matches!(neither.host_specs(), Err(ConfigError::Topology(id)) if id == "x"));
        let huge = "[[hosts]]\nid = \"x\"\nmemory_mib = 1\n\
                    topology = { sockets = 4096, cores_per_socket = 4096, threads_per_core = 2 }\n";
        let huge = FleetConfig::from_toml_str(huge).unwrap();
        assert!(matches!(
            huge.host_specs(),
            Err(ConfigError::TooManyCpus {
                cpus: 33_554_432,
                ..
            })
        ));
        let bad_list = "[[hosts]]\nid = \"x\"\nmemory_mib = 1\nreserved_cpus = \"3-1\"\n";
        assert!(FleetConfig::from_toml_str(bad_list).is_err());
    }
}
