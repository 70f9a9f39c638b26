//! Property tests: capacity × ratio is never exceeded, dedicated CPUs are
//! never shared, release gives back exactly what was claimed, spread keeps
//! the load difference minimal, pack fills a host before opening another,
//! and server-group rules are never broken.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use scheduler::{
    CpuPolicy, CpuSet, GroupPolicy, HostSpec, HostStatus, Placement, PlacementError,
    PlacementRequest, Policy, Scheduler, SchedulerConfig, uniform_cpus,
};

#[derive(Debug, Clone)]
struct HostShape {
    sockets: u32,
    cores: u32,
    threads: u32,
    memory_gib: u64,
    reserve_cpu0: bool,
    reserved_mib: u64,
    cpu_ratio: f64,
    memory_ratio: f64,
    zone: u8,
}

fn host_shape() -> impl Strategy<Value = HostShape> {
    (
        1u32..=2,
        1u32..=4,
        1u32..=2,
        2u64..=32,
        any::<bool>(),
        prop_oneof![Just(0u64), Just(512)],
        prop_oneof![Just(1.0), Just(1.5), Just(4.0)],
        prop_oneof![Just(1.0), Just(1.5)],
        0u8..2,
    )
        .prop_map(
            |(
                sockets,
                cores,
                threads,
                memory_gib,
                reserve_cpu0,
                reserved_mib,
                cpu_ratio,
                memory_ratio,
                zone,
            )| {
                HostShape {
                    sockets,
                    cores,
                    threads,
                    memory_gib,
                    reserve_cpu0,
                    reserved_mib,
                    cpu_ratio,
                    memory_ratio,
                    zone,
                }
            },
        )
}

fn build(shapes: &[HostShape]) -> Scheduler {
    let s = Scheduler::new(SchedulerConfig::default()).expect("valid config");
    for (i, shape) in shapes.iter().enumerate() {
        let reserved: CpuSet = if shape.reserve_cpu0 {
            [0].into_iter().collect()
        } else {
            CpuSet::new()
        };
        let spec = HostSpec::new(
            format!("h{i}"),
            uniform_cpus(shape.sockets, shape.cores, shape.threads),
            shape.memory_gib * 1024,
        )
        .with_reserved(reserved, shape.reserved_mib)
        .with_ratios(shape.cpu_ratio, shape.memory_ratio)
        .with_label("zone", format!("z{}", shape.zone));
        s.add_host(spec).expect("valid host");
    }
    s
}

#[derive(Debug, Clone)]
enum Op {
    Place {
        vcpus: u32,
        memory_mib: u64,
        dedicated: bool,
        group: Option<u8>,
        zone: Option<u8>,
        policy: Option<Policy>,
    },
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (
            1u32..=6,
            1u64..=16,
            prop::bool::weighted(0.3),
            prop::option::weighted(0.3, 0u8..4),
            prop::option::weighted(0.2, 0u8..2),
            prop::option::of(prop_oneof![Just(Policy::Spread), Just(Policy::Pack)]),
        )
            .prop_map(|(vcpus, half_gib, dedicated, group, zone, policy)| Op::Place {
                vcpus,
                memory_mib: half_gib * 512,
                dedicated,
                group,
                zone,
                policy,
            }),
        1 => any::<usize>().prop_map(Op::Release),
    ]
}

/// Groups 0 and 1 are anti-affinity, 2 and 3 affinity.
fn group_policy(group: u8) -> GroupPolicy {
    if group < 2 {
        GroupPolicy::AntiAffinity
    } else {
        GroupPolicy::Affinity
    }
}

fn request(id: usize, op: &Op) -> Option<PlacementRequest> {
    let Op::Place {
        vcpus,
        memory_mib,
        dedicated,
        group,
        zone,
        policy,
    } = op
    else {
        return None;
    };
    let mut req = PlacementRequest::new(format!("vm-{id}"), *vcpus, *memory_mib);
    if *dedicated {
        req = req.dedicated();
    }
    if let Some(g) = group {
        req = req.in_group(format!("g{g}"), group_policy(*g));
    }
    if let Some(z) = zone {
        req = req.with_label("zone", format!("z{z}"));
    }
    req.policy = *policy;
    Some(req)
}

fn by_id(hosts: Vec<HostStatus>) -> BTreeMap<String, HostStatus> {
    hosts.into_iter().map(|h| (h.id.clone(), h)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Capacity × ratio is never exceeded, dedicated CPUs are never shared,
    /// group rules hold, release returns exactly the claim, and a restore
    /// rebuilds the same state.
    #[test]
    fn accounting_holds_under_any_sequence(
        shapes in prop::collection::vec(host_shape(), 1..5),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let s = build(&shapes);
        let empty = s.hosts();
        let mut live: Vec<Placement> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if let Some(req) = request(i, op) {
                match s.place(&req) {
                    Ok(p) => {
                        let host = s.host(p.host()).expect("placed on a known host");
                        match req.cpu_policy {
                            CpuPolicy::Dedicated => {
                                prop_assert_eq!(p.cpus.len(), req.vcpus as usize);
                                prop_assert_eq!(&p.cpus, &p.allocation.dedicated_cpus);
                            }
                            CpuPolicy::Shared => prop_assert_eq!(&p.cpus, &host.shared_cpus),
                        }
                        prop_assert_eq!(&p.shared_pool, &host.shared_cpus);
                        live.push(p);
                    }
                    Err(PlacementError::NoValidHost { reasons }) => {
                        prop_assert_eq!(reasons.len(), shapes.len());
                        prop_assert!(reasons.iter().all(|r| !r.reasons.is_empty()));
                    }
                    Err(other) => prop_assert!(false, "unexpected error {other}"),
                }
            } else if let Op::Release(n) = op
                && !live.is_empty()
            {
                let p = live.swap_remove(n % live.len());
                prop_assert_eq!(s.release(&p.allocation.id), Some(p.allocation));
            }
            if let Err(violation) = common::check_invariants(&s) {
                prop_assert!(false, "after op {i} {op:?}: {violation}");
            }
        }

        let rebuilt = build(&shapes);
        for allocation in s.allocations() {
            let restored = rebuilt.restore(&allocation);
            prop_assert!(restored.is_ok(), "restore {allocation:?}: {restored:?}");
        }
        prop_assert_eq!(rebuilt.hosts(), s.hosts());

        for p in live {
            prop_assert_eq!(s.release(&p.allocation.id), Some(p.allocation));
        }
        prop_assert_eq!(s.hosts(), empty);
    }

    /// Spread: after every placement the gap between the most and least
    /// loaded host is at most the largest request; identical requests stay
    /// within one VM of each other.
    #[test]
    fn spread_keeps_the_load_gap_minimal(
        hosts in 2usize..7,
        sizes in prop::collection::vec((1u32..=2, 1u64..=8), 1..40),
        same in any::<bool>(),
    ) {
        // 128 vCPUs and 128 GiB per host: memory binds, vCPUs never do
        // (at most 80 vCPUs and 160 GiB are asked for in all).
        let s = common::uniform_fleet(hosts, 2, 8, 2, 128 * 1024);
        let mut largest = 0;
        for (i, (vcpus, half_gib)) in sizes.iter().enumerate() {
            let (vcpus, memory) = if same { (1, 2048) } else { (*vcpus, half_gib * 512) };
            largest = largest.max(memory);
            s.place(&PlacementRequest::new(format!("vm-{i}"), vcpus, memory).with_policy(Policy::Spread))
                .expect("the fleet has room");
            let used: Vec<u64> = s.hosts().iter().map(|h| h.memory_used_mib).collect();
            let gap = used.iter().max().unwrap_or(&0) - used.iter().min().unwrap_or(&0);
            prop_assert!(gap <= largest, "gap {gap} > {largest}: {used:?}");
            if same {
                let counts: Vec<usize> = s.hosts().iter().map(|h| h.allocations).collect();
                let spread = counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0);
                prop_assert!(spread <= 1, "{counts:?}");
            }
        }
    }

    /// Pack: a VM opens an empty host only when no used host can take it,
    /// and otherwise lands on the fullest host that fits.
    #[test]
    fn pack_fills_a_host_before_opening_another(
        hosts in 2usize..6,
        sizes in prop::collection::vec((1u32..=8, 1u64..=16), 1..60),
    ) {
        let s = common::uniform_fleet(hosts, 1, 2, 2, 16 * 1024);
        for (i, (vcpus, half_gib)) in sizes.iter().enumerate() {
            let req = PlacementRequest::new(format!("vm-{i}"), *vcpus, half_gib * 512)
                .with_policy(Policy::Pack);
            let before = by_id(s.hosts());
            let fits = |h: &HostStatus| {
                h.memory_capacity_mib - h.memory_used_mib >= req.memory_mib
                    && h.vcpu_capacity - h.vcpus_used >= u64::from(req.vcpus)
            };
            let Ok(p) = s.place(&req) else {
                prop_assert!(!before.values().any(fits));
                continue;
            };
            let chosen = &before[p.host()];
            prop_assert!(fits(chosen));
            if chosen.allocations == 0 {
                let open = before.values().find(|h| h.allocations > 0 && fits(h));
                prop_assert!(open.is_none(), "opened {} while {:?} had room", p.host(), open);
            }
            let fullest = before
                .values()
                .filter(|h| fits(h))
                .map(|h| h.memory_capacity_mib - h.memory_used_mib)
                .min();
            prop_assert_eq!(Some(chosen.memory_capacity_mib - chosen.memory_used_mib), fullest);
        }
    }

    /// Anti-affinity is never violated, whatever the order of launches and
    /// deletes, and its refusals name the member in the way.
    #[test]
    fn anti_affinity_is_never_violated(
        hosts in 1usize..5,
        ops in prop::collection::vec((0u8..3, any::<bool>(), any::<usize>()), 1..60),
    ) {
        let s = common::uniform_fleet(hosts, 1, 4, 1, 32 * 1024);
        let mut live: Vec<String> = Vec::new();
        for (i, (group, place, pick)) in ops.iter().enumerate() {
            if *place || live.is_empty() {
                let req = PlacementRequest::new(format!("vm-{i}"), 1, 512)
                    .in_group(format!("g{group}"), GroupPolicy::AntiAffinity);
                match s.place(&req) {
                    Ok(p) => live.push(p.allocation.id),
                    Err(PlacementError::NoValidHost { reasons }) => {
                        prop_assert_eq!(reasons.len(), hosts);
                        for r in &reasons {
                            let text = r.to_string();
                            prop_assert!(text.contains("anti-affinity with vm-"), "{}", text);
                        }
                    }
                    Err(other) => prop_assert!(false, "unexpected error {other}"),
                }
            } else {
                let id = live.swap_remove(pick % live.len());
                prop_assert!(s.release(&id).is_some());
            }
            if let Err(violation) = common::check_groups(&s.allocations()) {
                prop_assert!(false, "{violation}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The index's answer is the best host a brute-force scan would pick:
    /// spread takes the most free memory, then vCPUs; pack the least that
    /// fits; ties go to the lowest host id; no answer only if none fits.
    #[test]
    fn index_answer_is_the_best_fitting_host(
        shapes in prop::collection::vec(host_shape(), 1..8),
        ops in prop::collection::vec((1u32..=12, 1u64..=24, any::<bool>(), 0u8..4), 1..80),
    ) {
        let s = build(&shapes);
        let mut live = Vec::new();
        for (i, (vcpus, half_gib, pack, release)) in ops.iter().enumerate() {
            if *release == 0 && !live.is_empty() {
                let id: String = live.swap_remove(i % live.len());
                prop_assert!(s.release(&id).is_some());
                continue;
            }
            let policy = if *pack { Policy::Pack } else { Policy::Spread };
            let req = PlacementRequest::new(format!("vm-{i}"), *vcpus, half_gib * 512).with_policy(policy);
            let hosts = s.hosts();
            let free = |h: &HostStatus| (h.memory_capacity_mib - h.memory_used_mib, h.vcpu_capacity - h.vcpus_used);
            let fitting = hosts
                .iter()
                .filter(|h| free(h).0 >= req.memory_mib && free(h).1 >= u64::from(req.vcpus));
            let expected = match policy {
                Policy::Spread => fitting.min_by(|a, b| free(b).cmp(&free(a)).then(a.id.cmp(&b.id))),
                Policy::Pack => fitting.min_by(|a, b| free(a).cmp(&free(b)).then(a.id.cmp(&b.id))),
            };
            match (s.place(&req), expected) {
                (Ok(p), Some(h)) => {
                    prop_assert_eq!(p.host(), h.id.as_str());
                    live.push(p.allocation.id);
                }
                (Err(PlacementError::NoValidHost { .. }), None) => {}
                (got, want) => prop_assert!(false, "got {got:?}, expected {want:?}"),
            }
        }
    }
}
