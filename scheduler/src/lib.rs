//! minicloud scheduler: places VMs on host capacity, explains every
//! refusal, and says which host CPUs each placed VM is pinned to.
//!
//! The crate is a library with no I/O of its own, apart from reading the
//! local host's shape from `/sys` and `/proc` ([`discover_local_host`]).
//! The control plane owns a [`Scheduler`], persists the [`Allocation`]s it
//! hands out and restores them at start.
//!
//! # Modules
//!
//! | module | holds |
//! | --- | --- |
//! | `cpuset` | [`CpuSet`] and the Linux CPU-list format (`"0-3,8"`), shared with the VMM's pinning |
//! | `host` | [`HostSpec`] (declared shape), [`HostStatus`] (snapshot), capacity accounting |
//! | `request` | [`PlacementRequest`], [`Placement`], [`Allocation`], CPU and group policies |
//! | `filter` | the filters and their [`RejectionReason`]s |
//! | `weigher` | [`Policy`] (spread, pack) and the deterministic ranking |
//! | `index` | hosts ordered by the weighers' ranking, weighed by free CPUs: `O(log n)` placement |
//! | `maxtree` | the augmented treap under the index (ordered set with subtree maxima) |
//! | `pinning` | choice of dedicated host CPUs (whole cores, one NUMA node) |
//! | `group` | server-group membership per host |
//! | `placement` | [`Scheduler`]: atomic place, release, restore; errors |
//! | `config` | [`SchedulerConfig`], [`FleetConfig`] from TOML or JSON |
//! | `discover` | the local host from `/sys` and `/proc` |
//!
//! # Model
//!
//! A host has CPUs with their core, package and NUMA node; memory; labels;
//! CPUs and memory reserved for the host OS; and overcommit ratios (CPU 4.0
//! and memory 1.0 by default). Shared VMs draw vCPUs from the host's
//! *shared pool* (non-reserved CPUs not dedicated to a VM) times the CPU
//! ratio; dedicated VMs take whole host CPUs out of that pool, without
//! overcommit. Every VM draws memory from `(memory − reserved) × ratio`.
//!
//! A placement runs the filters (capacity, labels, server group, dedicated
//! cores), then ranks the hosts that pass with the request's [`Policy`]
//! (spread: least allocated first; pack: most allocated first; ties go to
//! the lowest host id) and claims the best one, all under one lock. When no
//! host passes, [`PlacementError::NoValidHost`] explains every host.

mod config;
mod cpuset;
mod discover;
mod filter;
mod group;
mod host;
mod index;
mod maxtree;
mod pinning;
mod placement;
mod request;
mod weigher;

pub use config::{ConfigError, FleetConfig, HostConfig, SchedulerConfig, TopologyConfig};
pub use cpuset::{CpuListError, CpuSet, MAX_CPU_ID};
pub use discover::{DiscoverError, discover_host, discover_local_host};
pub use filter::{HostRejection, RejectionReason};
pub use host::{HostCpu, HostError, HostSpec, HostStatus, uniform_cpus};
pub use placement::{
    DISPLAYED_REJECTIONS, FleetError, PlacementError, RestoreError, Scheduler, summarize,
};
pub use request::{
    Allocation, CpuPolicy, GroupPolicy, Placement, PlacementRequest, RequestError, ServerGroup,
};
pub use weigher::{Policy, UnknownPolicy};
