//! Choosing the exact host CPUs of a dedicated VM.
//!
//! Preferences, in order:
//!
//! 1. one NUMA node: among the nodes with enough free CPUs, the one with
//!    the fewest (best fit, keeping roomier nodes for larger VMs), lowest
//!    node id on a tie; only when no node suffices are CPUs taken from the
//!    nodes with the most free CPUs first;
//! 2. within a node, whole cores (every sibling thread free) taken
//!    together while the request still needs a whole core;
//! 3. then leftover threads of cores already partly taken, by a dedicated
//!    VM or by the host OS's reserved CPUs, so that whole cores stay whole;
//! 4. then, only if needed, threads of a whole core.
//!
//! Cores are visited in `(node, package, core)` order and threads in id
//! order, so the same state always gives the same CPUs.

use std::collections::BTreeMap;

use crate::cpuset::CpuSet;
use crate::host::{Core, HostState};

/// A core's threads that are still in the shared pool.
struct FreeCore<'a> {
    free: Vec<u32>,
    core: &'a Core,
}

impl FreeCore<'_> {
    /// Every hardware thread free: no guest and no host OS thread on it.
    fn whole(&self) -> bool {
        self.free.len() == self.core.hardware_threads
    }
}

/// Picks `count` CPUs from `host`'s shared pool, or `None` if the pool is
/// smaller than `count`.
pub(crate) fn choose_dedicated(host: &HostState, count: usize) -> Option<CpuSet> {
    if count > host.shared_pool.len() {
        return None;
    }
    let mut nodes: BTreeMap<u32, Vec<FreeCore<'_>>> = BTreeMap::new();
    for core in &host.cores {
        let free: Vec<u32> = core
            .threads
            .iter()
            .copied()
            .filter(|cpu| host.shared_pool.contains(*cpu))
            .collect();
        if !free.is_empty() {
            nodes
                .entry(core.node)
                .or_default()
                .push(FreeCore { free, core });
        }
    }
    let free_in = |cores: &[FreeCore<'_>]| cores.iter().map(|c| c.free.len()).sum::<usize>();

    let single = nodes
        .iter()
        .map(|(node, cores)| (free_in(cores), *node))
        .filter(|(free, _)| *free >= count)
        .min();
    let mut chosen = Vec::with_capacity(count);
    if let Some((_, node)) = single {
        if let Some(cores) = nodes.get(&node) {
            take_from_node(cores, count, &mut chosen);
        }
    } else {
        let mut order: Vec<(usize, u32)> = nodes
            .iter()
            .map(|(node, cores)| (free_in(cores), *node))
            .collect();
        // Most free first, lowest node id on a tie.
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (free, node) in order {
            let need = count - chosen.len();
            if need == 0 {
                break;
            }
            if let Some(cores) = nodes.get(&node) {
                take_from_node(cores, need.min(free), &mut chosen);
            }
        }
    }
    (chosen.len() == count).then(|| chosen.into_iter().collect())
}

/// Appends `need` CPUs of one node to `chosen`, by the preferences above.
fn take_from_node(cores: &[FreeCore<'_>], need: usize, chosen: &mut Vec<u32>) {
    let mut need = need;
    let mut used = vec![false; cores.len()];
    // Whole cores while a whole core is still needed.
    for (i, core) in cores.iter().enumerate() {
        if core.whole() && core.free.len() <= need {
            chosen.extend_from_slice(&core.free);
            need -= core.free.len();
            used[i] = true;
        }
    }
    // Leftovers of partly dedicated cores, then broken whole cores.
    for pass_whole in [false, true] {
        for (i, core) in cores.iter().enumerate() {
            if need == 0 {
                return;
            }
            if used[i] || core.whole() != pass_whole {
                continue;
            }
            let take = need.min(core.free.len());
            chosen.extend_from_slice(&core.free[..take]);
            need -= take;
            used[i] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SchedulerConfig;
    use crate::host::{HostSpec, uniform_cpus};

    /// 2 sockets × 4 cores × 2 threads: node 0 holds CPUs 0-3 and 8-11.
    fn host() -> HostState {
        let spec =
            HostSpec::new("h", uniform_cpus(2, 4, 2), 65_536).with_reserved(CpuSet::new(), 0);
        HostState::new(spec, &SchedulerConfig::default()).unwrap()
    }

    fn dedicate(host: &mut HostState, cpus: &CpuSet) {
        for cpu in cpus {
            host.shared_pool.remove(cpu);
            host.dedicated.insert(cpu);
        }
    }

    #[test]
    fn takes_sibling_threads_together() {
        let h = host();
        assert_eq!(choose_dedicated(&h, 2).unwrap().to_string(), "0,8");
        assert_eq!(choose_dedicated(&h, 4).unwrap().to_string(), "0-1,8-9");
    }

    #[test]
    fn odd_counts_break_one_core_last() {
        let h = host();
        assert_eq!(choose_dedicated(&h, 3).unwrap().to_string(), "0-1,8");
    }

    #[test]
    fn prefers_leftover_siblings_over_breaking_a_core() {
        let mut h = host();
        let first = choose_dedicated(&h, 1).unwrap();
        assert_eq!(first.to_string(), "0");
        dedicate(&mut h, &first);
        // CPU 8 is CPU 0's sibling: take it rather than break core 1.
        assert_eq!(choose_dedicated(&h, 1).unwrap().to_string(), "8");
    }

    #[test]
    fn threads_beside_reserved_cpus_count_as_leftovers() {
        let spec = HostSpec::new("h", uniform_cpus(1, 4, 2), 65_536)
            .with_reserved(CpuSet::parse("0").unwrap(), 0);
        let h = HostState::new(spec, &SchedulerConfig::default()).unwrap();
        assert_eq!(choose_dedicated(&h, 2).unwrap().to_string(), "1,5");
        assert_eq!(choose_dedicated(&h, 1).unwrap().to_string(), "4");
        assert_eq!(choose_dedicated(&h, 3).unwrap().to_string(), "1,4-5");
    }

    #[test]
    fn stays_within_one_numa_node_when_possible() {
        let mut h = host();
        let a = choose_dedicated(&h, 6).unwrap();
        assert_eq!(h.nodes_of(&a).len(), 1);
        dedicate(&mut h, &a);
        // Node 0 has 2 CPUs left, node 1 has 8: a 4-CPU VM goes to node 1.
        let b = choose_dedicated(&h, 4).unwrap();
        assert_eq!(h.nodes_of(&b).into_iter().collect::<Vec<_>>(), [1]);
        // A 2-CPU VM fits node 0's leftovers (best fit).
        let c = choose_dedicated(&h, 2).unwrap();
        assert_eq!(h.nodes_of(&c).into_iter().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn spans_nodes_only_when_it_must() {
        let h = host();
        let all = choose_dedicated(&h, 12).unwrap();
        assert_eq!(all.len(), 12);
        assert_eq!(h.nodes_of(&all).len(), 2);
        assert_eq!(choose_dedicated(&h, 17), None);
        assert_eq!(choose_dedicated(&h, 16).unwrap().len(), 16);
    }
}
