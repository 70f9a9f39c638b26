//! Filters: whether a host can take a request, and if not, why.
//!
//! Filters run in this order, and each one that fails adds a
//! [`RejectionReason`]:
//!
//! 1. capacity after reservation and ratio (memory for every VM, shared
//!    vCPUs for shared VMs);
//! 2. required labels;
//! 3. server-group rules (affinity, anti-affinity);
//! 4. dedicated-core availability: enough free host CPUs, and the shared
//!    pool that remains still holds the shared vCPUs already placed.
//!
//! The placement path asks only for the first failure of each host it
//! looks at; the explanation of a refused request asks for all of them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::group::GroupState;
use crate::host::HostState;
use crate::request::{CpuPolicy, GroupPolicy, PlacementRequest};

/// Why one host cannot take a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RejectionReason {
    /// Not enough shared vCPUs left after reservation and ratio.
    InsufficientVcpus {
        /// Shared vCPUs free on the host.
        free: u64,
        /// vCPUs requested.
        requested: u32,
    },
    /// Not enough memory left after reservation and ratio.
    InsufficientMemory {
        /// Memory free on the host, MiB.
        free_mib: u64,
        /// Memory requested, MiB.
        requested_mib: u64,
    },
    /// A required label is missing or has another value.
    LabelMismatch {
        /// Label key.
        key: String,
        /// Required value.
        required: String,
        /// The host's value, if it has the label.
        actual: Option<String>,
    },
    /// The request's affinity group lives on another host.
    Affinity {
        /// Group name.
        group: String,
        /// Host the group's members are on.
        group_host: String,
    },
    /// A member of the request's anti-affinity group is on this host.
    AntiAffinity {
        /// Group name.
        group: String,
        /// One member already on the host.
        member: String,
    },
    /// Not enough host CPUs left for a dedicated VM.
    InsufficientDedicatedCpus {
        /// Host CPUs free for dedicated use (the shared pool's size).
        free: u64,
        /// Dedicated CPUs requested.
        requested: u32,
    },
    /// Taking the CPUs out of the shared pool would overcommit the shared
    /// VMs already placed beyond the CPU ratio.
    SharedPoolTooSmall {
        /// Dedicated CPUs requested.
        requested: u32,
        /// Shared vCPU capacity that would remain.
        remaining_vcpus: u64,
        /// Shared vCPUs in use.
        used_vcpus: u64,
    },
}

impl RejectionReason {
    /// A short stable name for the reason's kind, used to summarise
    /// rejections across many hosts.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InsufficientVcpus { .. } => "insufficient_vcpus",
            Self::InsufficientMemory { .. } => "insufficient_memory",
            Self::LabelMismatch { .. } => "label_mismatch",
            Self::Affinity { .. } => "affinity",
            Self::AntiAffinity { .. } => "anti_affinity",
            Self::InsufficientDedicatedCpus { .. } => "insufficient_dedicated_cpus",
            Self::SharedPoolTooSmall { .. } => "shared_pool_too_small",
        }
    }
}

impl fmt::Display for RejectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InsufficientVcpus { free, requested } => {
                write!(f, "{free} vCPUs free < {requested} requested")
            }
            Self::InsufficientMemory {
                free_mib,
                requested_mib,
            } => write!(f, "{free_mib} MiB free < {requested_mib} MiB requested"),
            Self::LabelMismatch {
                key,
                required,
                actual: Some(actual),
            } => write!(
                f,
                "label {key}={required} required, host has {key}={actual}"
            ),
            Self::LabelMismatch {
                key,
                required,
                actual: None,
            } => write!(
                f,
                "label {key}={required} required, host has no {key} label"
            ),
            Self::Affinity { group, group_host } => {
                write!(f, "affinity group {group} is on {group_host}")
            }
            Self::AntiAffinity { group, member } => {
                write!(f, "anti-affinity with {member} (group {group})")
            }
            Self::InsufficientDedicatedCpus { free, requested } => write!(
                f,
                "{free} host CPUs free for dedicated use < {requested} requested"
            ),
            Self::SharedPoolTooSmall {
                requested,
                remaining_vcpus,
                used_vcpus,
            } => write!(
                f,
                "dedicating {requested} host CPUs would leave {remaining_vcpus} shared vCPUs \
                 < {used_vcpus} in use"
            ),
        }
    }
}

/// Every reason one host was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRejection {
    /// Host id.
    pub host: String,
    /// Failed filters, in filter order; never empty.
    pub reasons: Vec<RejectionReason>,
}

impl fmt::Display for HostRejection {
    /// `host-a: 2 vCPUs free < 4 requested; label zone=z1 required, ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.host)?;
        for (i, reason) in self.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{reason}")?;
        }
        Ok(())
    }
}

/// Runs the filters of `host` for `request`, handing each failure to
/// `emit`; stops as soon as `emit` returns `false`.
pub(crate) fn evaluate(
    host: &HostState,
    request: &PlacementRequest,
    group: Option<&GroupState>,
    mut emit: impl FnMut(RejectionReason) -> bool,
) {
    macro_rules! reject {
        ($reason:expr) => {
            if !emit($reason) {
                return;
            }
        };
    }

    // 1. Capacity after reservation and ratio.
    let free_mib = host.free_memory_mib();
    if request.memory_mib > free_mib {
        reject!(RejectionReason::InsufficientMemory {
            free_mib,
            requested_mib: request.memory_mib,
        });
    }
    if request.cpu_policy == CpuPolicy::Shared {
        let free = host.free_vcpus();
        if u64::from(request.vcpus) > free {
            reject!(RejectionReason::InsufficientVcpus {
                free,
                requested: request.vcpus,
            });
        }
    }

    // 2. Labels.
    for (key, required) in &request.required_labels {
        let actual = host.labels.get(key);
        if actual != Some(required) {
            reject!(RejectionReason::LabelMismatch {
                key: key.clone(),
                required: required.clone(),
                actual: actual.cloned(),
            });
        }
    }

    // 3. Server-group rules.
    if let (Some(state), Some(wanted)) = (group, &request.group) {
        match state.policy {
            GroupPolicy::AntiAffinity => {
                if let Some(member) = state.member_on(&host.name) {
                    reject!(RejectionReason::AntiAffinity {
                        group: wanted.name.clone(),
                        member: member.to_owned(),
                    });
                }
            }
            GroupPolicy::Affinity => {
                if let Some(group_host) = state.affinity_host()
                    && **group_host != *host.name
                {
                    reject!(RejectionReason::Affinity {
                        group: wanted.name.clone(),
                        group_host: group_host.to_string(),
                    });
                }
            }
        }
    }

    // 4. Dedicated-core availability.
    if request.cpu_policy == CpuPolicy::Dedicated {
        let wanted = request.vcpus as usize;
        let free = host.shared_pool.len();
        if wanted > free {
            reject!(RejectionReason::InsufficientDedicatedCpus {
                free: free as u64,
                requested: request.vcpus,
            });
        } else {
            let remaining_vcpus = host.vcpu_capacity_after(wanted);
            if host.vcpus_used > remaining_vcpus {
                reject!(RejectionReason::SharedPoolTooSmall {
                    requested: request.vcpus,
                    remaining_vcpus,
                    used_vcpus: host.vcpus_used,
                });
            }
        }
    }
}

/// Whether `host` passes every filter for `request`.
pub(crate) fn passes(
    host: &HostState,
    request: &PlacementRequest,
    group: Option<&GroupState>,
) -> bool {
    let mut ok = true;
    evaluate(host, request, group, |_| {
        ok = false;
        false
    });
    ok
}

/// Every reason `host` fails `request`; empty when it passes.
pub(crate) fn explain(
    host: &HostState,
    request: &PlacementRequest,
    group: Option<&GroupState>,
) -> Vec<RejectionReason> {
    let mut reasons = Vec::new();
    evaluate(host, request, group, |reason| {
        reasons.push(reason);
        true
    });
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SchedulerConfig;
    use crate::cpuset::CpuSet;
    use crate::host::{HostSpec, uniform_cpus};

    fn host(id: &str) -> HostState {
        let spec = HostSpec::new(id, uniform_cpus(1, 2, 1), 4_096)
            .with_reserved(CpuSet::new(), 0)
            .with_label("zone", "z1");
        HostState::new(spec, &SchedulerConfig::default()).unwrap()
    }

    #[test]
    fn capacity_reasons_read_like_the_issue() {
        let mut h = host("host-a");
        h.vcpus_used = 6;
        let reasons = explain(&h, &PlacementRequest::new("vm", 4, 8_192), None);
        let text: Vec<String> = reasons.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "4096 MiB free < 8192 MiB requested",
                "2 vCPUs free < 4 requested"
            ]
        );
        let rejection = HostRejection {
            host: "host-a".into(),
            reasons: reasons[1..].to_vec(),
        };
        assert_eq!(rejection.to_string(), "host-a: 2 vCPUs free < 4 requested");
    }

    #[test]
    fn labels_must_match_exactly() {
        let h = host("h");
        let ok = PlacementRequest::new("vm", 1, 1).with_label("zone", "z1");
        assert!(passes(&h, &ok, None));
        let other = PlacementRequest::new("vm", 1, 1)
            .with_label("zone", "z2")
            .with_label("rack", "r1");
        let text: Vec<String> = explain(&h, &other, None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "label rack=r1 required, host has no rack label",
                "label zone=z2 required, host has zone=z1"
            ]
        );
    }

    #[test]
    fn dedicated_needs_free_cpus_and_room_for_shared_vcpus() {
        let mut h = host("h");
        let req = PlacementRequest::new("vm", 2, 1).dedicated();
        assert!(passes(&h, &req, None));
        // 2 CPUs × 4.0 = 8 vCPUs; one shared vCPU in use leaves no room to
        // dedicate both CPUs.
        h.vcpus_used = 1;
        assert_eq!(
            explain(&h, &req, None),
            [RejectionReason::SharedPoolTooSmall {
                requested: 2,
                remaining_vcpus: 0,
                used_vcpus: 1
            }]
        );
        let three = PlacementRequest::new("vm", 3, 1).dedicated();
        assert_eq!(
            explain(&h, &three, None)[0].to_string(),
            "2 host CPUs free for dedicated use < 3 requested"
        );
    }

    #[test]
    fn passes_agrees_with_explain() {
        let h = host("h");
        for req in [
            PlacementRequest::new("a", 1, 1),
            PlacementRequest::new("b", 9, 1),
            PlacementRequest::new("c", 1, 9_999),
            PlacementRequest::new("d", 2, 1).dedicated(),
            PlacementRequest::new("e", 1, 1).with_label("zone", "x"),
        ] {
            assert_eq!(passes(&h, &req, None), explain(&h, &req, None).is_empty());
        }
    }
}
