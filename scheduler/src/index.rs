//! The capacity index: hosts kept in ordered sets by what they have free,
//! so the best host for a request is found in `O(log n)`.
//!
//! Two `BTreeSet`s hold one key per host:
//!
//! - spread: `(Reverse(free memory), Reverse(free vCPUs), host id)`, whose
//!   first element is the least allocated host;
//! - pack: `(free memory, free vCPUs, host id)`, in which a range seek to
//!   `(requested memory, 0, "")` lands on the most allocated host that has
//!   enough memory (best fit), skipping every fuller host at once.
//!
//! Both orders are exactly the weighers' ranking ([`crate::weigher`]), so
//! walking a set from its start (spread) or from the seek point (pack)
//! visits hosts best first, and the first host that passes the filters is
//! the answer. A claim or a release moves one host: one removal and one
//! insertion per set, `O(log n)` each.
//!
//! In the common case (no labels, no server group, hosts not starved of
//! vCPUs while having memory) the first host visited passes, so a placement
//! costs `O(log n)`. Walks are longer only when hosts that rank well fail
//! another filter: a label that few hosts carry, anti-affinity members, or
//! a CPU-bound host with memory to spare. The walk stops as soon as free
//! memory drops below the request, and a request nobody can take falls
//! back to a full scan that explains every host.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use crate::weigher::{Free, Policy};

type SpreadKey = (Reverse<u64>, Reverse<u64>, Arc<str>);
type PackKey = (u64, u64, Arc<str>);

/// Hosts ordered by free capacity, once per policy.
#[derive(Debug, Clone)]
pub(crate) struct CapacityIndex {
    spread: BTreeSet<SpreadKey>,
    pack: BTreeSet<PackKey>,
    /// The smallest host id, `""`, for range seeks.
    lowest: Arc<str>,
}

impl Default for CapacityIndex {
    fn default() -> Self {
        Self {
            spread: BTreeSet::new(),
            pack: BTreeSet::new(),
            lowest: Arc::from(""),
        }
    }
}

impl CapacityIndex {
    /// Adds `host` with its free resources.
    pub(crate) fn insert(&mut self, host: &Arc<str>, free: Free) {
        self.spread.insert((
            Reverse(free.memory_mib),
            Reverse(free.vcpus),
            Arc::clone(host),
        ));
        self.pack
            .insert((free.memory_mib, free.vcpus, Arc::clone(host)));
    }

    /// Removes `host`, which must have been inserted with `free`.
    pub(crate) fn remove(&mut self, host: &Arc<str>, free: Free) {
        let removed_spread = self.spread.remove(&(
            Reverse(free.memory_mib),
            Reverse(free.vcpus),
            Arc::clone(host),
        ));
        let removed_pack = self
            .pack
            .remove(&(free.memory_mib, free.vcpus, Arc::clone(host)));
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

    /// Visits hosts with at least `min_memory_mib` free, best first for
    /// `policy`, and returns the first one `accept` takes.
    pub(crate) fn find(
        &self,
        policy: Policy,
        min_memory_mib: u64,
        mut accept: impl FnMut(&Arc<str>, Free) -> bool,
    ) -> Option<Arc<str>> {
        match policy {
            Policy::Spread => self
                .spread
                .iter()
                .take_while(|(memory, _, _)| memory.0 >= min_memory_mib)
                .find(|(memory, vcpus, host)| {
                    accept(
                        host,
                        Free {
                            memory_mib: memory.0,
                            vcpus: vcpus.0,
                        },
                    )
                })
                .map(|(_, _, host)| Arc::clone(host)),
            Policy::Pack => {
                let start = (min_memory_mib, 0, Arc::clone(&self.lowest));
                self.pack
                    .range((Bound::Included(start), Bound::Unbounded))
                    .find(|(memory_mib, vcpus, host)| {
                        accept(
                            host,
                            Free {
                                memory_mib: *memory_mib,
                                vcpus: *vcpus,
                            },
                        )
                    })
                    .map(|(_, _, host)| Arc::clone(host))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(memory_mib: u64, vcpus: u64) -> Free {
        Free { memory_mib, vcpus }
    }

    fn index() -> CapacityIndex {
        let mut index = CapacityIndex::default();
        index.insert(&Arc::from("a"), free(100, 8));
        index.insert(&Arc::from("b"), free(300, 2));
        index.insert(&Arc::from("c"), free(200, 8));
        index.insert(&Arc::from("d"), free(200, 8));
        index
    }

    #[test]
    fn spread_visits_most_free_first() {
        let index = index();
        let mut seen = Vec::new();
        let found = index.find(Policy::Spread, 150, |host, _| {
            seen.push(host.to_string());
            false
        });
        assert_eq!(found, None);
        assert_eq!(seen, ["b", "c", "d"]);
    }

    #[test]
    fn pack_seeks_to_the_tightest_fit() {
        let index = index();
        let mut seen = Vec::new();
        index.find(Policy::Pack, 150, |host, _| {
            seen.push(host.to_string());
            false
        });
        assert_eq!(seen, ["c", "d", "b"]);
        let found = index.find(Policy::Pack, 150, |_, f| f.vcpus >= 4);
        assert_eq!(found.as_deref(), Some("c"));
    }

    #[test]
    fn remove_then_insert_moves_a_host() {
        let mut index = index();
        let c: Arc<str> = Arc::from("c");
        index.remove(&c, free(200, 8));
        index.insert(&c, free(50, 8));
        assert_eq!(index.len(), 4);
        let found = index.find(Policy::Pack, 0, |_, _| true);
        assert_eq!(found.as_deref(), Some("c"));
    }
}
