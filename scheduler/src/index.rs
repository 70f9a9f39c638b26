//! The capacity index: hosts ordered by the weighers' ranking, weighed by
//! free CPUs, so the best host for a request is found in `O(log n)`.
//!
//! Two augmented treaps ([`crate::maxtree`]) hold one key per host:
//!
//! - spread: `(Reverse(free memory), Reverse(free vCPUs), host id)`: the
//!   first host is the least allocated;
//! - pack: `(free memory, free vCPUs, host id)`: a seek to
//!   `(requested memory, 0, "")` lands on the most allocated host with
//!   enough memory (best fit), skipping every fuller host at once.
//!
//! Both orders are exactly the weighers' ranking ([`crate::weigher`]). Each
//! host is weighed by its free shared vCPUs and its free dedicated CPUs,
//! and every subtree keeps the maximum of each, so a walk skips whole
//! subtrees of hosts that lack the CPUs. The first host such a walk shows
//! is therefore the best host with enough memory, vCPUs and dedicated
//! CPUs: for a shared request without labels or server group that is the
//! answer, found in `O(log n)` whichever resource binds. A claim or a
//! release moves one host: one removal and one insertion per treap,
//! `O(log n)` each.
//!
//! Requests with labels, a server group or dedicated CPUs take the same
//! walk but check each host it shows against the full filters, so their
//! cost also grows with the number of well-ranked hosts those filters
//! reject (hosts outside a rare label, anti-affinity members). A request
//! that no host can take falls back to a full scan that explains every
//! host.

use std::cmp::Reverse;
use std::sync::Arc;

use crate::maxtree::{MaxTree, Visit};
use crate::weigher::Policy;

type SpreadKey = (Reverse<u64>, Reverse<u64>, Arc<str>);
type PackKey = (u64, u64, Arc<str>);

/// What a host has free, as the index sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Room {
    /// Memory, MiB.
    pub(crate) memory_mib: u64,
    /// Shared vCPUs.
    pub(crate) vcpus: u64,
    /// Host CPUs free for dedicated use (the shared pool's size).
    pub(crate) pool_cpus: u64,
}

/// Hosts ordered by free capacity, once per policy.
#[derive(Debug, Clone)]
pub(crate) struct CapacityIndex {
    spread: MaxTree<SpreadKey>,
    pack: MaxTree<PackKey>,
    /// The smallest host id, `""`, for range seeks.
    lowest: Arc<str>,
}

impl Default for CapacityIndex {
    fn default() -> Self {
        Self {
            spread: MaxTree::default(),
            pack: MaxTree::default(),
            lowest: Arc::from(""),
        }
    }
}

impl CapacityIndex {
    /// Adds `host` with its free resources.
    pub(crate) fn insert(&mut self, host: &Arc<str>, room: Room) {
        let weight = [room.vcpus, room.pool_cpus];
        self.spread.insert(
            (
                Reverse(room.memory_mib),
                Reverse(room.vcpus),
                Arc::clone(host),
            ),
            weight,
        );
        self.pack
            .insert((room.memory_mib, room.vcpus, Arc::clone(host)), weight);
    }

    /// Removes `host`, which must have been inserted with `room`.
    pub(crate) fn remove(&mut self, host: &Arc<str>, room: Room) {
        let removed_spread = self.spread.remove(&(
            Reverse(room.memory_mib),
            Reverse(room.vcpus),
            Arc::clone(host),
        ));
        let removed_pack = self
            .pack
            .remove(&(room.memory_mib, room.vcpus, Arc::clone(host)));
        debug_assert!(
            removed_spread && removed_pack,
            "index out of sync for {host}"
        );
    }

    /// Number of hosts indexed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pack.len()
    }

    /// Shows `accept` the hosts with at least `need` free, best first for
    /// `policy`, and returns the first one it takes.
    pub(crate) fn find(
        &self,
        policy: Policy,
        need: Room,
        mut accept: impl FnMut(&Arc<str>) -> bool,
    ) -> Option<Arc<str>> {
        let min = [need.vcpus, need.pool_cpus];
        let pick = |host: &Arc<str>| {
            if accept(host) {
                Visit::Take
            } else {
                Visit::Next
            }
        };
        match policy {
            Policy::Spread => {
                let mut pick = pick;
                self.spread
                    .walk(None, min, |(memory, _, host)| {
                        // Memory only decreases from here on.
                        if memory.0 < need.memory_mib {
                            Visit::Stop
                        } else {
                            pick(host)
                        }
                    })
                    .map(|(_, _, host)| Arc::clone(host))
            }
            Policy::Pack => {
                let mut pick = pick;
                let start = (need.memory_mib, 0, Arc::clone(&self.lowest));
                self.pack
                    .walk(Some(&start), min, |(_, _, host)| pick(host))
                    .map(|(_, _, host)| Arc::clone(host))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(memory_mib: u64, vcpus: u64) -> Room {
        Room {
            memory_mib,
            vcpus,
            pool_cpus: vcpus / 4,
        }
    }

    fn need(memory_mib: u64, vcpus: u64) -> Room {
        Room {
            memory_mib,
            vcpus,
            pool_cpus: 0,
        }
    }

    fn index() -> CapacityIndex {
        let mut index = CapacityIndex::default();
        index.insert(&Arc::from("a"), room(100, 8));
        index.insert(&Arc::from("b"), room(300, 2));
        index.insert(&Arc::from("c"), room(200, 8));
        index.insert(&Arc::from("d"), room(200, 8));
        index
    }

    fn visits(index: &CapacityIndex, policy: Policy, need: Room) -> Vec<String> {
        let mut seen = Vec::new();
        index.find(policy, need, |host| {
            seen.push(host.to_string());
            false
        });
        seen
    }

    #[test]
    fn spread_visits_most_free_first() {
        let index = index();
        assert_eq!(
            visits(&index, Policy::Spread, need(150, 0)),
            ["b", "c", "d"]
        );
        // Hosts without the vCPUs are never shown.
        assert_eq!(visits(&index, Policy::Spread, need(150, 4)), ["c", "d"]);
    }

    #[test]
    fn pack_seeks_to_the_tightest_fit() {
        let index = index();
        assert_eq!(visits(&index, Policy::Pack, need(150, 0)), ["c", "d", "b"]);
        assert_eq!(visits(&index, Policy::Pack, need(50, 4)), ["a", "c", "d"]);
        let found = index.find(Policy::Pack, need(150, 4), |_| true);
        assert_eq!(found.as_deref(), Some("c"));
        let dedicated = Room {
            memory_mib: 0,
            vcpus: 0,
            pool_cpus: 2,
        };
        assert_eq!(visits(&index, Policy::Pack, dedicated), ["a", "c", "d"]);
    }

    #[test]
    fn remove_then_insert_moves_a_host() {
        let mut index = index();
        let c: Arc<str> = Arc::from("c");
        index.remove(&c, room(200, 8));
        index.insert(&c, room(50, 8));
        assert_eq!(index.len(), 4);
        let found = index.find(Policy::Pack, need(0, 0), |_| true);
        assert_eq!(found.as_deref(), Some("c"));
    }
}
