//! What callers ask for ([`PlacementRequest`]) and what they get back
//! ([`Placement`], [`Allocation`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cpuset::CpuSet;
use crate::weigher::Policy;

/// How a VM's vCPUs use host CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuPolicy {
    /// vCPUs float over the host's shared pool, overcommitted by the CPU
    /// allocation ratio.
    #[default]
    Shared,
    /// Each vCPU gets a host CPU of its own, taken out of the shared pool;
    /// no overcommit.
    Dedicated,
}

impl fmt::Display for CpuPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CpuPolicy::Shared => "shared",
            CpuPolicy::Dedicated => "dedicated",
        })
    }
}

/// The rule a server group imposes on its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupPolicy {
    /// All members on the same host.
    Affinity,
    /// No two members on the same host.
    AntiAffinity,
}

impl fmt::Display for GroupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GroupPolicy::Affinity => "affinity",
            GroupPolicy::AntiAffinity => "anti-affinity",
        })
    }
}

/// Membership of a server group. A group's policy is fixed by its first
/// member and lives as long as it has members.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServerGroup {
    /// Group name, unique in the deployment.
    pub name: String,
    /// Affinity or anti-affinity.
    pub policy: GroupPolicy,
}

/// A request to place one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRequest {
    /// Allocation id chosen by the caller (the VM id); unique among live
    /// allocations.
    pub id: String,
    /// Number of vCPUs, at least 1.
    pub vcpus: u32,
    /// Guest memory, MiB, at least 1.
    pub memory_mib: u64,
    /// Shared or dedicated host CPUs.
    #[serde(default)]
    pub cpu_policy: CpuPolicy,
    /// Labels the host must carry with exactly these values.
    #[serde(default)]
    pub required_labels: BTreeMap<String, String>,
    /// Server group to join, if any.
    #[serde(default)]
    pub group: Option<ServerGroup>,
    /// Weigher for this request; `None` uses the deployment's.
    #[serde(default)]
    pub policy: Option<Policy>,
}

impl PlacementRequest {
    /// A shared-CPU request without labels, group or policy override.
    pub fn new(id: impl Into<String>, vcpus: u32, memory_mib: u64) -> Self {
        Self {
            id: id.into(),
            vcpus,
            memory_mib,
            cpu_policy: CpuPolicy::Shared,
            required_labels: BTreeMap::new(),
            group: None,
            policy: None,
        }
    }

    /// Asks for dedicated host CPUs.
    #[must_use]
    pub fn dedicated(mut self) -> Self {
        self.cpu_policy = CpuPolicy::Dedicated;
        self
    }

    /// Requires the host label `key` to equal `value`.
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.required_labels.insert(key.into(), value.into());
        self
    }

    /// Joins the server group `name` with `policy`.
    #[must_use]
    pub fn in_group(mut self, name: impl Into<String>, policy: GroupPolicy) -> Self {
        self.group = Some(ServerGroup {
            name: name.into(),
            policy,
        });
        self
    }

    /// Overrides the deployment's weigher for this request.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Checks the request's own fields.
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.id.is_empty() {
            return Err(RequestError::EmptyId);
        }
        if self.vcpus == 0 {
            return Err(RequestError::NoVcpus);
        }
        if self.memory_mib == 0 {
            return Err(RequestError::NoMemory);
        }
        if self.group.as_ref().is_some_and(|g| g.name.is_empty()) {
            return Err(RequestError::EmptyGroupName);
        }
        Ok(())
    }
}

/// A request that is malformed regardless of the fleet's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RequestError {
    /// The allocation id is empty.
    #[error("allocation id is empty")]
    EmptyId,
    /// Zero vCPUs were requested.
    #[error("at least one vCPU must be requested")]
    NoVcpus,
    /// Zero memory was requested.
    #[error("at least 1 MiB of memory must be requested")]
    NoMemory,
    /// The server group name is empty.
    #[error("server group name is empty")]
    EmptyGroupName,
}

/// What a placement holds on its host; what [`crate::Scheduler::release`]
/// gives back and [`crate::Scheduler::restore`] takes in. The control plane
/// persists these and rebuilds the scheduler from them at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Allocation id (the VM id).
    pub id: String,
    /// Host the allocation is on.
    pub host: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Shared or dedicated.
    pub cpu_policy: CpuPolicy,
    /// Host CPUs held exclusively: exactly `vcpus` of them for a dedicated
    /// allocation, none for a shared one.
    pub dedicated_cpus: CpuSet,
    /// Server group membership.
    #[serde(default)]
    pub group: Option<ServerGroup>,
}

/// The answer to a successful placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// What was claimed.
    pub allocation: Allocation,
    /// Host CPUs the VM's vCPU threads must be pinned to
    /// (`sched_setaffinity`): its own CPUs when dedicated (vCPU `i` on the
    /// `i`-th CPU of the list), the host's shared pool when shared.
    pub cpus: CpuSet,
    /// The host's shared pool after this placement. A dedicated placement
    /// shrinks it: shared VMs already on the host must be re-pinned to it.
    pub shared_pool: CpuSet,
    /// NUMA nodes spanned by `cpus`.
    pub numa_nodes: Vec<u32>,
    /// The weigher that chose the host.
    pub policy: Policy,
}

impl Placement {
    /// The chosen host.
    pub fn host(&self) -> &str {
        &self.allocation.host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_fields() {
        let req = PlacementRequest::new("vm-1", 4, 8_192)
            .dedicated()
            .with_label("zone", "z1")
            .in_group("web", GroupPolicy::AntiAffinity)
            .with_policy(Policy::Pack);
        assert_eq!(req.cpu_policy, CpuPolicy::Dedicated);
        assert_eq!(req.required_labels["zone"], "z1");
        assert_eq!(
            req.group.as_ref().unwrap().policy,
            GroupPolicy::AntiAffinity
        );
        assert_eq!(req.policy, Some(Policy::Pack));
        assert_eq!(req.validate(), Ok(()));
    }

    #[test]
    fn validation_catches_empty_fields() {
        assert_eq!(
            PlacementRequest::new("", 1, 1).validate(),
            Err(RequestError::EmptyId)
        );
        assert_eq!(
            PlacementRequest::new("a", 0, 1).validate(),
            Err(RequestError::NoVcpus)
        );
        assert_eq!(
            PlacementRequest::new("a", 1, 0).validate(),
            Err(RequestError::NoMemory)
        );
        assert_eq!(
            PlacementRequest::new("a", 1, 1)
                .in_group("", GroupPolicy::Affinity)
                .validate(),
            Err(RequestError::EmptyGroupName)
        );
    }

    #[test]
    fn json_shape_is_friendly() {
        let req: PlacementRequest = serde_json::from_str(
            r#"{"id":"vm-1","vcpus":2,"memory_mib":2048,
                "group":{"name":"g","policy":"anti-affinity"}}"#,
        )
        .unwrap();
        assert_eq!(req.cpu_policy, CpuPolicy::Shared);
        assert_eq!(req.group.unwrap().policy, GroupPolicy::AntiAffinity);
    }
}
