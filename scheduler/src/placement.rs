//! The [`Scheduler`]: atomic filter, weigh and claim; release; restore.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, FleetConfig, SchedulerConfig};
use crate::cpuset::CpuSet;
use crate::filter::{self, HostRejection};
use crate::group::GroupState;
use crate::host::{HostError, HostSpec, HostState, HostStatus};
use crate::index::CapacityIndex;
use crate::index::Room;
use crate::pinning::choose_dedicated;
use crate::request::{
    Allocation, CpuPolicy, GroupPolicy, Placement, PlacementRequest, RequestError,
};
use crate::weigher::{self, Free, Policy};

/// How many host rejections [`PlacementError`]'s `Display` lists before
/// summarising the rest; the error itself keeps all of them.
pub const DISPLAYED_REJECTIONS: usize = 20;

/// Why a request was not placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum PlacementError {
    /// The request is malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] RequestError),
    /// An allocation with this id already exists.
    #[error("allocation {0} already exists")]
    DuplicateAllocation(String),
    /// The request names a live server group with the other policy.
    #[error("server group {group} is {existing}, request asks for {requested}")]
    GroupPolicyConflict {
        /// Group name.
        group: String,
        /// The group's policy.
        existing: GroupPolicy,
        /// The policy in the request.
        requested: GroupPolicy,
    },
    /// No host passes the filters; one entry per host, in host id order.
    #[error("{}", NoValidHostDisplay(reasons))]
    NoValidHost {
        /// Why each host was rejected.
        reasons: Vec<HostRejection>,
    },
}

/// Counts hosts per rejection kind ([`crate::RejectionReason::kind`]); a
/// host rejected for several reasons counts once for each.
pub fn summarize(rejections: &[HostRejection]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for rejection in rejections {
        for reason in &rejection.reasons {
            *counts.entry(reason.kind()).or_insert(0) += 1;
        }
    }
    counts
}

struct NoValidHostDisplay<'a>(&'a [HostRejection]);

impl fmt::Display for NoValidHostDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rejections = self.0;
        if rejections.is_empty() {
            return f.write_str("no valid host: no hosts are registered");
        }
        write!(f, "no valid host among {} hosts (", rejections.len())?;
        for (i, (kind, count)) in summarize(rejections).into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{kind}: {count}")?;
        }
        f.write_str(")")?;
        for rejection in rejections.iter().take(DISPLAYED_REJECTIONS) {
            write!(f, "\n{rejection}")?;
        }
        if rejections.len() > DISPLAYED_REJECTIONS {
            write!(
                f,
                "\n... and {} more hosts",
                rejections.len() - DISPLAYED_REJECTIONS
            )?;
        }
        Ok(())
    }
}

/// Why a known allocation could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum RestoreError {
    /// The allocation's fields are malformed.
    #[error("invalid allocation: {0}")]
    Invalid(#[from] RequestError),
    /// An allocation with this id already exists.
    #[error("allocation {0} already exists")]
    DuplicateAllocation(String),
    /// The allocation's host is not registered.
    #[error("allocation {id}: host {host} is unknown")]
    UnknownHost {
        /// Allocation id.
        id: String,
        /// Host id.
        host: String,
    },
    /// A dedicated allocation must list one CPU per vCPU; a shared one none.
    #[error("allocation {id}: {cpu_policy} with {vcpus} vCPUs lists {listed} dedicated CPUs")]
    DedicatedCpuCount {
        /// Allocation id.
        id: String,
        /// Shared or dedicated.
        cpu_policy: CpuPolicy,
        /// vCPUs of the allocation.
        vcpus: u32,
        /// CPUs listed.
        listed: usize,
    },
    /// Some listed dedicated CPUs are not free in the host's shared pool
    /// (reserved, already dedicated, or not on the host).
    #[error("allocation {id}: host CPUs {cpus} are not free on {host}")]
    CpusUnavailable {
        /// Allocation id.
        id: String,
        /// Host id.
        host: String,
        /// The CPUs that are not free.
        cpus: CpuSet,
    },
    /// The allocation names a live server group with the other policy.
    #[error("server group {group} is {existing}, allocation has {requested}")]
    GroupPolicyConflict {
        /// Group name.
        group: String,
        /// The group's policy.
        existing: GroupPolicy,
        /// The policy in the allocation.
        requested: GroupPolicy,
    },
    /// The host's filters refuse the allocation.
    #[error("allocation {id} does not fit: {rejection}")]
    DoesNotFit {
        /// Allocation id.
        id: String,
        /// Why the host refuses it.
        rejection: HostRejection,
    },
}

/// Why a fleet could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A declared host is invalid.
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Everything the scheduler knows, behind one lock.
#[derive(Debug, Default)]
struct State {
    config: SchedulerConfig,
    hosts: HashMap<Arc<str>, HostState>,
    index: CapacityIndex,
    allocations: HashMap<String, Allocation>,
    groups: HashMap<String, GroupState>,
}

fn room_of(host: &HostState) -> Room {
    Room {
        memory_mib: host.free_memory_mib(),
        vcpus: host.free_vcpus(),
        pool_cpus: host.shared_pool.len() as u64,
    }
}

fn free_of(host: &HostState) -> Free {
    Free {
        memory_mib: host.free_memory_mib(),
        vcpus: host.free_vcpus(),
    }
}

/// A thread-safe VM scheduler over a fleet of hosts.
///
/// Every operation takes one internal lock for its whole duration, so a
/// placement's filter, weigh and claim are atomic: concurrent callers can
/// never book the same capacity twice. The scheduler does no I/O; the
/// control plane persists [`Allocation`]s and feeds them back with
/// [`Scheduler::restore`] at start.
///
/// ```
/// use scheduler::{HostSpec, PlacementRequest, Scheduler, SchedulerConfig, uniform_cpus};
///
/// let scheduler = Scheduler::new(SchedulerConfig::default()).unwrap();
/// scheduler
///     .add_host(HostSpec::new("host-a", uniform_cpus(1, 4, 2), 16_384))
///     .unwrap();
/// let placed = scheduler
///     .place(&PlacementRequest::new("vm-1", 2, 2_048).dedicated())
///     .unwrap();
/// assert_eq!(placed.host(), "host-a");
/// assert_eq!(placed.cpus.to_string(), "0,4");
/// let released = scheduler.release("vm-1").unwrap();
/// assert_eq!(released, placed.allocation);
/// ```
#[derive(Debug, Default)]
pub struct Scheduler {
    state: Mutex<State>,
}

impl Scheduler {
    /// An empty scheduler with `config`.
    pub fn new(config: SchedulerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            state: Mutex::new(State {
                config,
                ..State::default()
            }),
        })
    }

    /// A scheduler with the fleet's settings and declared hosts.
    pub fn from_fleet(fleet: &FleetConfig) -> Result<Self, FleetError> {
        let scheduler = Self::new(fleet.scheduler.clone())?;
        for spec in fleet.host_specs()? {
            scheduler.add_host(spec)?;
        }
        Ok(scheduler)
    }

    /// Locks the state. A panic while holding the lock cannot leave it
    /// half-updated in a way later calls depend on, so poisoning is
    /// ignored rather than turned into a panic of every later caller.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The deployment settings.
    pub fn config(&self) -> SchedulerConfig {
        self.lock().config.clone()
    }

    /// Registers an empty host.
    pub fn add_host(&self, spec: HostSpec) -> Result<(), HostError> {
        let mut state = self.lock();
        if state.hosts.contains_key(spec.id.as_str()) {
            return Err(HostError::Duplicate(spec.id));
        }
        let host = HostState::new(spec, &state.config)?;
        let name = Arc::clone(&host.name);
        state.index.insert(&name, room_of(&host));
        state.hosts.insert(name, host);
        Ok(())
    }

    /// Unregisters a host that carries no allocation; returns its last
    /// snapshot.
    pub fn remove_host(&self, id: &str) -> Result<HostStatus, HostError> {
        let mut state = self.lock();
        let host = state
            .hosts
            .get(id)
            .ok_or_else(|| HostError::Unknown(id.to_owned()))?;
        if host.allocations > 0 {
            return Err(HostError::Busy {
                host: id.to_owned(),
                allocations: host.allocations,
            });
        }
        let name = Arc::clone(&host.name);
        let room = room_of(host);
        state.index.remove(&name, room);
        let status = state.hosts.remove(id).map(|host| host.status());
        status.ok_or_else(|| HostError::Unknown(id.to_owned()))
    }

    /// Snapshots of every host, by host id.
    pub fn hosts(&self) -> Vec<HostStatus> {
        let state = self.lock();
        let mut hosts: Vec<HostStatus> = state.hosts.values().map(HostState::status).collect();
        hosts.sort_by(|a, b| a.id.cmp(&b.id));
        hosts
    }

    /// Snapshot of one host.
    pub fn host(&self, id: &str) -> Option<HostStatus> {
        self.lock().hosts.get(id).map(HostState::status)
    }

    /// Number of registered hosts.
    pub fn host_count(&self) -> usize {
        self.lock().hosts.len()
    }

    /// The shared pool of `host`: where its shared VMs must be pinned.
    pub fn shared_pool(&self, host: &str) -> Option<CpuSet> {
        self.lock()
            .hosts
            .get(host)
            .map(|host| host.shared_pool.clone())
    }

    /// Every live allocation, by id.
    pub fn allocations(&self) -> Vec<Allocation> {
        let state = self.lock();
        let mut allocations: Vec<Allocation> = state.allocations.values().cloned().collect();
        allocations.sort_by(|a, b| a.id.cmp(&b.id));
        allocations
    }

    /// One live allocation.
    pub fn allocation(&self, id: &str) -> Option<Allocation> {
        self.lock().allocations.get(id).cloned()
    }

    /// Number of live allocations.
    pub fn allocation_count(&self) -> usize {
        self.lock().allocations.len()
    }

    /// Filters, weighs and claims in one atomic step.
    ///
    /// On success the capacity is held under `request.id` until
    /// [`Scheduler::release`]. When no host passes the filters the error
    /// explains, host by host, why each was rejected.
    pub fn place(&self, request: &PlacementRequest) -> Result<Placement, PlacementError> {
        request.validate()?;
        let mut state = self.lock();
        let state = &mut *state;
        if state.allocations.contains_key(&request.id) {
            return Err(PlacementError::DuplicateAllocation(request.id.clone()));
        }
        let group = match &request.group {
            Some(wanted) => match state.groups.get(&wanted.name) {
                Some(existing) if existing.policy != wanted.policy => {
                    return Err(PlacementError::GroupPolicyConflict {
                        group: wanted.name.clone(),
                        existing: existing.policy,
                        requested: wanted.policy,
                    });
                }
                existing => existing,
            },
            None => None,
        };
        let policy = request.policy.unwrap_or(state.config.policy);
        let hosts = &state.hosts;
        let accept_host = |name: &Arc<str>| {
            hosts
                .get(name)
                .is_some_and(|h| filter::passes(h, request, group))
        };

        let need = match request.cpu_policy {
            CpuPolicy::Shared => Room {
                memory_mib: request.memory_mib,
                vcpus: u64::from(request.vcpus),
                pool_cpus: 0,
            },
            CpuPolicy::Dedicated => Room {
                memory_mib: request.memory_mib,
                vcpus: 0,
                pool_cpus: u64::from(request.vcpus),
            },
        };
        let chosen = if let Some(home) = group.and_then(GroupState::affinity_host) {
            // Affinity with live members: only their host can take it.
            accept_host(home).then(|| Arc::clone(home))
        } else if request.required_labels.is_empty()
            && group.is_none()
            && request.cpu_policy == CpuPolicy::Shared
        {
            // Common case: the index's walk already guarantees memory and
            // vCPUs, which is all the filters check, so its first host wins.
            state.index.find(policy, need, |_| true)
        } else {
            state.index.find(policy, need, accept_host)
        };

        let chosen = match chosen {
            Some(host) => host,
            None => explain_or_rescue(state, request, group, policy)?,
        };
        claim(state, &chosen, request, None, policy).map_err(|rejection| {
            PlacementError::NoValidHost {
                reasons: vec![rejection],
            }
        })
    }

    /// Gives back exactly what `id` claimed; `None` if it is unknown.
    pub fn release(&self, id: &str) -> Option<Allocation> {
        let mut state = self.lock();
        let state = &mut *state;
        let allocation = state.allocations.remove(id)?;
        if let Some(host) = state.hosts.get_mut(allocation.host.as_str()) {
            state.index.remove(&host.name, room_of(host));
            host.memory_used_mib -= allocation.memory_mib;
            match allocation.cpu_policy {
                CpuPolicy::Shared => host.vcpus_used -= u64::from(allocation.vcpus),
                CpuPolicy::Dedicated => {
                    for cpu in &allocation.dedicated_cpus {
                        host.dedicated.remove(cpu);
                        host.shared_pool.insert(cpu);
                    }
                }
            }
            host.allocations -= 1;
            state.index.insert(&host.name, room_of(host));
        }
        if let Some(group) = &allocation.group
            && let Some(members) = state.groups.get_mut(&group.name)
        {
            members.remove(&allocation.host, &allocation.id);
            if members.is_empty() {
                state.groups.remove(&group.name);
            }
        }
        Some(allocation)
    }

    /// Re-inserts an allocation known from before (the control plane's
    /// store), on its host and with its dedicated CPUs, after checking that
    /// it still fits. Returns the placement it amounts to, whose `cpus` the
    /// VM should be pinned to.
    pub fn restore(&self, allocation: &Allocation) -> Result<Placement, RestoreError> {
        let request = PlacementRequest {
            id: allocation.id.clone(),
            vcpus: allocation.vcpus,
            memory_mib: allocation.memory_mib,
            cpu_policy: allocation.cpu_policy,
            required_labels: BTreeMap::new(),
            group: allocation.group.clone(),
            policy: None,
        };
        request.validate()?;
        let mut state = self.lock();
        let state = &mut *state;
        if state.allocations.contains_key(&allocation.id) {
            return Err(RestoreError::DuplicateAllocation(allocation.id.clone()));
        }
        let Some(host) = state.hosts.get(allocation.host.as_str()) else {
            return Err(RestoreError::UnknownHost {
                id: allocation.id.clone(),
                host: allocation.host.clone(),
            });
        };
        let listed = allocation.dedicated_cpus.len();
        let expected = match allocation.cpu_policy {
            CpuPolicy::Shared => 0,
            CpuPolicy::Dedicated => allocation.vcpus as usize,
        };
        if listed != expected {
            return Err(RestoreError::DedicatedCpuCount {
                id: allocation.id.clone(),
                cpu_policy: allocation.cpu_policy,
                vcpus: allocation.vcpus,
                listed,
            });
        }
        let taken = allocation.dedicated_cpus.difference(&host.shared_pool);
        if !taken.is_empty() {
            return Err(RestoreError::CpusUnavailable {
                id: allocation.id.clone(),
                host: allocation.host.clone(),
                cpus: taken,
            });
        }
        let group = match &allocation.group {
            Some(wanted) => match state.groups.get(&wanted.name) {
                Some(existing) if existing.policy != wanted.policy => {
                    return Err(RestoreError::GroupPolicyConflict {
                        group: wanted.name.clone(),
                        existing: existing.policy,
                        requested: wanted.policy,
                    });
                }
                existing => existing,
            },
            None => None,
        };
        let reasons = filter::explain(host, &request, group);
        if !reasons.is_empty() {
            return Err(RestoreError::DoesNotFit {
                id: allocation.id.clone(),
                rejection: HostRejection {
                    host: allocation.host.clone(),
                    reasons,
                },
            });
        }
        let name = Arc::clone(&host.name);
        let policy = state.config.policy;
        claim(
            state,
            &name,
            &request,
            Some(allocation.dedicated_cpus.clone()),
            policy,
        )
        .map_err(|rejection| RestoreError::DoesNotFit {
            id: allocation.id.clone(),
            rejection,
        })
    }
}

/// The index found no host: scan every host to explain why. Should the
/// scan find a host that passes after all, it is used (best by `policy`),
/// so the explanation can never contradict the answer.
fn explain_or_rescue(
    state: &State,
    request: &PlacementRequest,
    group: Option<&GroupState>,
    policy: Policy,
) -> Result<Arc<str>, PlacementError> {
    let mut names: Vec<&Arc<str>> = state.hosts.keys().collect();
    names.sort();
    let mut reasons = Vec::new();
    let mut rescue: Option<&HostState> = None;
    for name in names {
        let Some(host) = state.hosts.get(name) else {
            continue;
        };
        let host_reasons = filter::explain(host, request, group);
        if host_reasons.is_empty() {
            debug_assert!(false, "index missed host {name} for {}", request.id);
            let better = rescue.is_none_or(|best| {
                weigher::compare(
                    policy,
                    (free_of(host), &host.name),
                    (free_of(best), &best.name),
                )
                .is_lt()
            });
            if better {
                rescue = Some(host);
            }
        } else {
            reasons.push(HostRejection {
                host: name.to_string(),
                reasons: host_reasons,
            });
        }
    }
    match rescue {
        Some(host) => Ok(Arc::clone(&host.name)),
        None => Err(PlacementError::NoValidHost { reasons }),
    }
}

/// Books `request` on `host_name`, which has passed the filters; picks
/// dedicated CPUs unless `cpus` fixes them.
fn claim(
    state: &mut State,
    host_name: &Arc<str>,
    request: &PlacementRequest,
    cpus: Option<CpuSet>,
    policy: Policy,
) -> Result<Placement, HostRejection> {
    let Some(host) = state.hosts.get_mut(host_name) else {
        return Err(HostRejection {
            host: host_name.to_string(),
            reasons: Vec::new(),
        });
    };
    let dedicated_cpus = match request.cpu_policy {
        CpuPolicy::Shared => CpuSet::new(),
        CpuPolicy::Dedicated => {
            match cpus.or_else(|| choose_dedicated(host, request.vcpus as usize)) {
                Some(cpus) => cpus,
                None => {
                    return Err(HostRejection {
                        host: host_name.to_string(),
                        reasons: vec![filter::RejectionReason::InsufficientDedicatedCpus {
                            free: host.shared_pool.len() as u64,
                            requested: request.vcpus,
                        }],
                    });
                }
            }
        }
    };

    state.index.remove(host_name, room_of(host));
    host.memory_used_mib += request.memory_mib;
    match request.cpu_policy {
        CpuPolicy::Shared => host.vcpus_used += u64::from(request.vcpus),
        CpuPolicy::Dedicated => {
            for cpu in &dedicated_cpus {
                host.shared_pool.remove(cpu);
                host.dedicated.insert(cpu);
            }
        }
    }
    host.allocations += 1;
    state.index.insert(host_name, room_of(host));

    let allocation = Allocation {
        id: request.id.clone(),
        host: host_name.to_string(),
        vcpus: request.vcpus,
        memory_mib: request.memory_mib,
        cpu_policy: request.cpu_policy,
        dedicated_cpus,
        group: request.group.clone(),
    };
    let cpus = match request.cpu_policy {
        CpuPolicy::Shared => host.shared_pool.clone(),
        CpuPolicy::Dedicated => allocation.dedicated_cpus.clone(),
    };
    let placement = Placement {
        numa_nodes: host.nodes_of(&cpus).into_iter().collect(),
        cpus,
        shared_pool: host.shared_pool.clone(),
        policy,
        allocation: allocation.clone(),
    };
    if let Some(group) = &request.group {
        state
            .groups
            .entry(group.name.clone())
            .or_insert_with(|| GroupState::new(group.policy))
            .add(host_name, &request.id);
    }
    state.allocations.insert(request.id.clone(), allocation);
    Ok(placement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::uniform_cpus;

    fn scheduler(hosts: &[(&str, u64)]) -> Scheduler {
        let s = Scheduler::new(SchedulerConfig {
            reserved_host_memory_mib: 0,
            ..SchedulerConfig::default()
        })
        .unwrap();
        for (id, memory) in hosts {
            s.add_host(HostSpec::new(*id, uniform_cpus(1, 2, 1), *memory))
                .unwrap();
        }
        s
    }

    #[test]
    fn spread_and_pack_choose_opposite_hosts() {
        let s = scheduler(&[("a", 4_096), ("b", 8_192)]);
        let spread = s.place(&PlacementRequest::new("x", 1, 1_024)).unwrap();
        assert_eq!(spread.host(), "b");
        let pack = s
            .place(&PlacementRequest::new("y", 1, 1_024).with_policy(Policy::Pack))
            .unwrap();
        assert_eq!(pack.host(), "a");
        assert_eq!(pack.policy, Policy::Pack);
    }

    #[test]
    fn ties_break_on_host_id() {
        let s = scheduler(&[("c", 4_096), ("a", 4_096), ("b", 4_096)]);
        for policy in Policy::ALL {
            let p = s
                .place(&PlacementRequest::new(policy.as_str(), 1, 1).with_policy(policy))
                .unwrap();
            s.release(policy.as_str());
            assert_eq!(p.host(), "a");
        }
    }

    #[test]
    fn refusal_lists_every_host() {
        let s = scheduler(&[("host-a", 4_096), ("host-b", 4_096)]);
        s.place(&PlacementRequest::new("big-1", 6, 1_024)).unwrap();
        s.place(&PlacementRequest::new("big-2", 6, 1_024)).unwrap();
        let err = s.place(&PlacementRequest::new("x", 4, 1_024)).unwrap_err();
        let PlacementError::NoValidHost { reasons } = &err else {
            panic!("{err}");
        };
        assert_eq!(reasons.len(), 2);
        let text = err.to_string();
        assert!(
            text.contains("host-a: 2 vCPUs free < 4 requested"),
            "{text}"
        );
        assert!(text.starts_with("no valid host among 2 hosts"), "{text}");
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(json["error"], "no_valid_host");
        assert_eq!(
            json["reasons"][0]["reasons"][0]["kind"],
            "insufficient_vcpus"
        );
    }

    #[test]
    fn display_is_bounded() {
        let rejections: Vec<HostRejection> = (0..1_000)
            .map(|i| HostRejection {
                host: format!("h{i:04}"),
                reasons: vec![filter::RejectionReason::InsufficientMemory {
                    free_mib: 0,
                    requested_mib: 1,
                }],
            })
            .collect();
        let text = PlacementError::NoValidHost {
            reasons: rejections,
        }
        .to_string();
        assert_eq!(text.lines().count(), DISPLAYED_REJECTIONS + 2);
        assert!(text.contains("insufficient_memory: 1000"));
        assert!(text.ends_with("... and 980 more hosts"));
    }

    #[test]
    fn empty_fleet_says_so() {
        let s = scheduler(&[]);
        let err = s.place(&PlacementRequest::new("x", 1, 1)).unwrap_err();
        assert_eq!(err.to_string(), "no valid host: no hosts are registered");
    }

    #[test]
    fn duplicate_ids_and_bad_requests_are_refused() {
        let s = scheduler(&[("a", 4_096)]);
        s.place(&PlacementRequest::new("x", 1, 1)).unwrap();
        assert_eq!(
            s.place(&PlacementRequest::new("x", 1, 1)),
            Err(PlacementError::DuplicateAllocation("x".into()))
        );
        assert_eq!(
            s.place(&PlacementRequest::new("y", 0, 1)),
            Err(PlacementError::InvalidRequest(RequestError::NoVcpus))
        );
    }

    #[test]
    fn group_policy_is_fixed_by_live_members() {
        let s = scheduler(&[("a", 4_096), ("b", 4_096)]);
        s.place(&PlacementRequest::new("x", 1, 1).in_group("g", GroupPolicy::Affinity))
            .unwrap();
        let conflict = s
            .place(&PlacementRequest::new("y", 1, 1).in_group("g", GroupPolicy::AntiAffinity))
            .unwrap_err();
        assert!(matches!(
            conflict,
            PlacementError::GroupPolicyConflict { .. }
        ));
        s.release("x");
        // The group died with its last member.
        s.place(&PlacementRequest::new("y", 1, 1).in_group("g", GroupPolicy::AntiAffinity))
            .unwrap();
    }

    #[test]
    fn remove_host_refuses_busy_hosts() {
        let s = scheduler(&[("a", 4_096)]);
        s.place(&PlacementRequest::new("x", 1, 1)).unwrap();
        assert!(matches!(s.remove_host("a"), Err(HostError::Busy { .. })));
        s.release("x");
        assert_eq!(s.remove_host("a").unwrap().id, "a");
        assert!(matches!(s.remove_host("a"), Err(HostError::Unknown(_))));
        assert_eq!(s.host_count(), 0);
    }

    #[test]
    fn restore_checks_what_it_is_given() {
        let s = scheduler(&[("a", 4_096)]);
        let placed = s
            .place(&PlacementRequest::new("x", 1, 1_024).dedicated())
            .unwrap();
        let mut other = placed.allocation.clone();
        other.id = "y".into();
        assert!(matches!(
            s.restore(&other),
            Err(RestoreError::CpusUnavailable { .. })
        ));
        let released = s.release("x").unwrap();
        let restored = s.restore(&released).unwrap();
        assert_eq!(restored.allocation, placed.allocation);
        assert_eq!(restored.cpus, placed.cpus);
        let mut ghost = released.clone();
        ghost.id = "z".into();
        ghost.host = "nowhere".into();
        assert!(matches!(
            s.restore(&ghost),
            Err(RestoreError::UnknownHost { .. })
        ));
        let mut miscounted = released;
        miscounted.id = "w".into();
        miscounted.vcpus = 2;
        assert!(matches!(
            s.restore(&miscounted),
            Err(RestoreError::DedicatedCpuCount { .. })
        ));
    }
}
