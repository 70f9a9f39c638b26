//! Helpers shared by the integration tests: fleets and an independent
//! check of the scheduler's accounting.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::collections::{BTreeMap, BTreeSet};

use scheduler::{
    Allocation, CpuPolicy, CpuSet, GroupPolicy, HostSpec, HostStatus, Scheduler, SchedulerConfig,
    uniform_cpus,
};

/// A scheduler with no memory reserved by default, so sizes are round.
pub fn scheduler() -> Scheduler {
    Scheduler::new(SchedulerConfig {
        reserved_host_memory_mib: 0,
        ..SchedulerConfig::default()
    })
    .expect("default config is valid")
}

/// `count` identical hosts `h00`, `h01`, ...
pub fn uniform_fleet(
    count: usize,
    sockets: u32,
    cores: u32,
    threads: u32,
    memory: u64,
) -> Scheduler {
    let s = scheduler();
    for i in 0..count {
        s.add_host(HostSpec::new(
            format!("h{i:02}"),
            uniform_cpus(sockets, cores, threads),
            memory,
        ))
        .expect("valid host");
    }
    s
}

fn floor(amount: u64, ratio: f64) -> u64 {
    (amount as f64 * ratio).floor() as u64
}

/// Recomputes every host's use from the live allocations and checks it
/// against the scheduler's snapshot and against capacity × ratio. Returns
/// a description of the first violation.
pub fn check_invariants(s: &Scheduler) -> Result<(), String> {
    let hosts: BTreeMap<String, HostStatus> =
        s.hosts().into_iter().map(|h| (h.id.clone(), h)).collect();
    let allocations = s.allocations();
    let mut by_host: BTreeMap<&str, Vec<&Allocation>> = BTreeMap::new();
    for a in &allocations {
        if !hosts.contains_key(&a.host) {
            return Err(format!("{} is on unknown host {}", a.id, a.host));
        }
        by_host.entry(a.host.as_str()).or_default().push(a);
    }
    for (id, h) in &hosts {
        let mine = by_host.get(id.as_str()).cloned().unwrap_or_default();
        let all: CpuSet = h.cpus.iter().map(|c| c.id).collect();
        let usable = all.difference(&h.reserved_cpus);

        let memory: u64 = mine.iter().map(|a| a.memory_mib).sum();
        let shared: u64 = mine
            .iter()
            .filter(|a| a.cpu_policy == CpuPolicy::Shared)
            .map(|a| u64::from(a.vcpus))
            .sum();
        let mut dedicated = BTreeSet::new();
        for a in mine.iter().filter(|a| a.cpu_policy == CpuPolicy::Dedicated) {
            if a.dedicated_cpus.len() != a.vcpus as usize {
                return Err(format!(
                    "{} has {} CPUs for {} vCPUs",
                    a.id,
                    a.dedicated_cpus.len(),
                    a.vcpus
                ));
            }
            for cpu in &a.dedicated_cpus {
                if !usable.contains(cpu) {
                    return Err(format!("{}: CPU {cpu} is reserved or absent on {id}", a.id));
                }
                if !dedicated.insert(cpu) {
                    return Err(format!("{id}: dedicated CPU {cpu} is shared"));
                }
            }
        }
        for a in mine.iter().filter(|a| a.cpu_policy == CpuPolicy::Shared) {
            if !a.dedicated_cpus.is_empty() {
                return Err(format!("shared {} holds CPUs", a.id));
            }
        }
        let dedicated: CpuSet = dedicated.into_iter().collect();
        let memory_capacity = floor(
            h.memory_mib - h.reserved_memory_mib,
            h.memory_allocation_ratio,
        );
        let vcpu_capacity = floor(
            usable.len() as u64 - dedicated.len() as u64,
            h.cpu_allocation_ratio,
        );

        let checks = [
            (h.memory_used_mib == memory, "memory accounting"),
            (h.memory_capacity_mib == memory_capacity, "memory capacity"),
            (
                memory <= memory_capacity,
                "memory capacity × ratio exceeded",
            ),
            (h.vcpus_used == shared, "vCPU accounting"),
            (h.vcpu_capacity == vcpu_capacity, "vCPU capacity"),
            (shared <= vcpu_capacity, "vCPU capacity × ratio exceeded"),
            (h.dedicated_cpus == dedicated, "dedicated CPU accounting"),
            (
                h.shared_cpus == usable.difference(&dedicated),
                "shared pool",
            ),
            (h.allocations == mine.len(), "allocation count"),
        ];
        if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(format!("{id}: {what}: {h:?} vs {} allocations", mine.len()));
        }
    }
    check_groups(&allocations)
}

/// Affinity groups sit on one host; anti-affinity groups never share one.
pub fn check_groups(allocations: &[Allocation]) -> Result<(), String> {
    let mut groups: BTreeMap<&str, (GroupPolicy, Vec<&str>)> = BTreeMap::new();
    for a in allocations {
        if let Some(g) = &a.group {
            let entry = groups
                .entry(g.name.as_str())
                .or_insert((g.policy, Vec::new()));
            if entry.0 != g.policy {
                return Err(format!("group {} mixes policies", g.name));
            }
            entry.1.push(a.host.as_str());
        }
    }
    for (name, (policy, hosts)) in groups {
        let distinct: BTreeSet<&str> = hosts.iter().copied().collect();
        match policy {
            GroupPolicy::Affinity if distinct.len() > 1 => {
                return Err(format!("affinity group {name} spans {distinct:?}"));
            }
            GroupPolicy::AntiAffinity if distinct.len() != hosts.len() => {
                return Err(format!(
                    "anti-affinity group {name} doubles up on {hosts:?}"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
