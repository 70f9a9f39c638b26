//! End-to-end behaviour through the public API, as the control plane uses
//! it.

mod common;

use scheduler::{
    Allocation, CpuSet, FleetConfig, GroupPolicy, HostSpec, PlacementError, PlacementRequest,
    Policy, RestoreError, Scheduler, SchedulerConfig, discover_local_host, uniform_cpus,
};

const FLEET: &str = r#"
[scheduler]
policy = "spread"
reserved_host_memory_mib = 1024

[[hosts]]
id = "host-a"
memory_mib = 17408
labels = { zone = "z1", rack = "r1" }
topology = { sockets = 1, cores_per_socket = 4, threads_per_core = 2 }
reserved_cpus = "0,4"

[[hosts]]
id = "host-b"
memory_mib = 17408
labels = { zone = "z2", rack = "r1" }
topology = { sockets = 2, cores_per_socket = 2, threads_per_core = 2 }

[[hosts]]
id = "host-c"
memory_mib = 9216
labels = { zone = "z2", rack = "r2" }
cpu_allocation_ratio = 1.0
topology = { sockets = 1, cores_per_socket = 2, threads_per_core = 1 }
"#;

fn fleet() -> Scheduler {
    let config = FleetConfig::from_toml_str(FLEET).expect("fleet parses");
    Scheduler::from_fleet(&config).expect("fleet is valid")
}

fn no_valid_host(err: PlacementError) -> Vec<String> {
    match err {
        PlacementError::NoValidHost { reasons } => {
            reasons.iter().map(ToString::to_string).collect()
        }
        other => panic!("expected NoValidHost, got {other}"),
    }
}

#[test]
fn fleet_file_declares_capacity_after_reservation_and_ratio() {
    let hosts = fleet().hosts();
    let summary: Vec<(&str, u64, u64, String)> = hosts
        .iter()
        .map(|h| {
            (
                h.id.as_str(),
                h.vcpu_capacity,
                h.memory_capacity_mib,
                h.shared_cpus.to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("host-a", 24, 16_384, "1-3,5-7".to_owned()),
            ("host-b", 32, 16_384, "0-7".to_owned()),
            ("host-c", 2, 8_192, "0-1".to_owned()),
        ]
    );
}

#[test]
fn labels_steer_and_explain() {
    let s = fleet();
    let p = s
        .place(&PlacementRequest::new("vm-1", 2, 1024).with_label("zone", "z2"))
        .expect("zone z2 has room");
    assert_eq!(p.host(), "host-b");
    let err = s
        .place(&PlacementRequest::new("vm-2", 4, 1024).with_label("zone", "z3"))
        .unwrap_err();
    assert_eq!(
        no_valid_host(err),
        [
            "host-a: label zone=z3 required, host has zone=z1",
            "host-b: label zone=z3 required, host has zone=z2",
            "host-c: 2 vCPUs free < 4 requested; label zone=z3 required, host has zone=z2",
        ]
    );
}

#[test]
fn anti_affinity_refusal_names_the_member() {
    let s = fleet();
    for i in 0..3 {
        s.place(
            &PlacementRequest::new(format!("vm-{i}"), 1, 512)
                .in_group("web", GroupPolicy::AntiAffinity),
        )
        .expect("one per host");
    }
    let hosts: Vec<String> = s.allocations().into_iter().map(|a| a.host).collect();
    assert_eq!(hosts.len(), 3);
    let err = s
        .place(&PlacementRequest::new("vm-x", 1, 512).in_group("web", GroupPolicy::AntiAffinity))
        .unwrap_err();
    let lines = no_valid_host(err.clone());
    assert_eq!(lines.len(), 3);
    for line in &lines {
        assert!(line.contains(": anti-affinity with vm-"), "{line}");
    }
    let text = err.to_string();
    assert!(
        text.starts_with("no valid host among 3 hosts (anti_affinity: 3)"),
        "{text}"
    );
    // The API returns the same explanation as JSON.
    let json = serde_json::to_value(&err).expect("serializable");
    assert_eq!(json["reasons"][1]["host"], "host-b");
    assert_eq!(json["reasons"][1]["reasons"][0]["kind"], "anti_affinity");
}

#[test]
fn affinity_follows_the_first_member_and_says_where() {
    let s = fleet();
    let first = s
        .place(&PlacementRequest::new("db-0", 2, 4096).in_group("db", GroupPolicy::Affinity))
        .expect("room");
    // Spread: host-a and host-b have as much memory, host-b more vCPUs.
    assert_eq!(first.host(), "host-b");
    for i in 1..4 {
        let p = s
            .place(
                &PlacementRequest::new(format!("db-{i}"), 2, 4096)
                    .in_group("db", GroupPolicy::Affinity),
            )
            .expect("room on host-b");
        assert_eq!(p.host(), "host-b");
    }
    let err = s
        .place(&PlacementRequest::new("db-4", 2, 4096).in_group("db", GroupPolicy::Affinity))
        .unwrap_err();
    assert_eq!(
        no_valid_host(err),
        [
            "host-a: affinity group db is on host-b",
            "host-b: 0 MiB free < 4096 MiB requested",
            "host-c: affinity group db is on host-b",
        ]
    );
}

#[test]
fn dedicated_cpus_leave_the_shared_pool() {
    let s = common::scheduler();
    s.add_host(
        HostSpec::new("h", uniform_cpus(1, 4, 2), 32 * 1024)
            .with_reserved(CpuSet::parse("0").expect("list"), 0),
    )
    .expect("valid host");
    let shared = s
        .place(&PlacementRequest::new("s-1", 2, 1024))
        .expect("room");
    assert_eq!(shared.cpus.to_string(), "1-7");

    let dedicated = s
        .place(&PlacementRequest::new("d-1", 2, 1024).dedicated())
        .expect("room");
    // Whole core 1 (threads 1 and 5): core 0's thread 4 shares its core
    // with the host's CPU 0, so it is kept for odd-sized requests.
    assert_eq!(dedicated.cpus.to_string(), "1,5");
    assert_eq!(dedicated.numa_nodes, [0]);
    assert_eq!(dedicated.shared_pool.to_string(), "2-4,6-7");
    assert_eq!(s.shared_pool("h").expect("host").to_string(), "2-4,6-7");

    let later = s
        .place(&PlacementRequest::new("s-2", 1, 1024))
        .expect("room");
    assert_eq!(later.cpus, dedicated.shared_pool);

    let back = s.release("d-1").expect("live");
    assert_eq!(back, dedicated.allocation);
    assert_eq!(s.shared_pool("h").expect("host").to_string(), "1-7");
    common::check_invariants(&s).expect("invariants hold");
}

#[test]
fn dedicated_refusal_explains_the_shared_pool() {
    let s = common::scheduler();
    s.add_host(HostSpec::new("h", uniform_cpus(1, 2, 1), 8 * 1024))
        .expect("valid");
    // 2 CPUs × 4.0 = 8 vCPUs; 5 in use do not fit on the 1 CPU left after
    // dedicating one.
    s.place(&PlacementRequest::new("s", 5, 512)).expect("room");
    let err = s
        .place(&PlacementRequest::new("d", 1, 512).dedicated())
        .unwrap_err();
    assert_eq!(
        no_valid_host(err),
        ["h: dedicating 1 host CPUs would leave 4 shared vCPUs < 5 in use"]
    );
    let err = s
        .place(&PlacementRequest::new("d", 3, 512).dedicated())
        .unwrap_err();
    assert_eq!(
        no_valid_host(err),
        ["h: 2 host CPUs free for dedicated use < 3 requested"]
    );
}

#[test]
fn deployment_policy_and_per_request_override() {
    let packing = Scheduler::new(SchedulerConfig {
        policy: Policy::Pack,
        reserved_host_memory_mib: 0,
        ..SchedulerConfig::default()
    })
    .expect("valid");
    for id in ["a", "b"] {
        packing
            .add_host(HostSpec::new(id, uniform_cpus(1, 4, 1), 8192))
            .expect("valid");
    }
    let hosts: Vec<String> = (0..3)
        .map(|i| {
            packing
                .place(&PlacementRequest::new(format!("p{i}"), 1, 1024))
                .expect("room")
                .allocation
                .host
        })
        .collect();
    assert_eq!(hosts, ["a", "a", "a"]);
    let spread = packing
        .place(&PlacementRequest::new("s", 1, 1024).with_policy(Policy::Spread))
        .expect("room");
    assert_eq!(spread.host(), "b");
    assert_eq!(spread.policy, Policy::Spread);
}

#[test]
fn restart_rebuilds_the_same_state_from_persisted_allocations() {
    let s = fleet();
    s.place(&PlacementRequest::new("d", 2, 1024).dedicated())
        .expect("room");
    s.place(&PlacementRequest::new("w1", 1, 512).in_group("w", GroupPolicy::AntiAffinity))
        .expect("room");
    s.place(&PlacementRequest::new("w2", 1, 512).in_group("w", GroupPolicy::AntiAffinity))
        .expect("room");
    s.place(&PlacementRequest::new("x", 3, 2048)).expect("room");

    // What the control plane keeps in its database.
    let stored = serde_json::to_string(&s.allocations()).expect("serializable");

    let restarted = fleet();
    let loaded: Vec<Allocation> = serde_json::from_str(&stored).expect("parses");
    for allocation in &loaded {
        restarted.restore(allocation).expect("restores");
    }
    assert_eq!(restarted.hosts(), s.hosts());
    assert_eq!(restarted.allocations(), s.allocations());
    assert!(matches!(
        restarted.restore(&loaded[0]),
        Err(RestoreError::DuplicateAllocation(_))
    ));
    // The anti-affinity group came back too.
    let err = restarted
        .place(
            &PlacementRequest::new("w3", 1, 512)
                .in_group("w", GroupPolicy::AntiAffinity)
                .with_label("rack", "r1"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("anti-affinity with w"), "{err}");
}

#[test]
fn same_state_same_answers() {
    let run = || {
        let s = fleet();
        (0..20)
            .filter_map(|i| {
                let req =
                    PlacementRequest::new(format!("vm-{i}"), 1 + i % 3, 512 * u64::from(1 + i % 4));
                let req = if i % 4 == 0 { req.dedicated() } else { req };
                s.place(&req).ok()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn the_local_host_can_be_discovered_and_used() {
    let spec = discover_local_host("local").expect("Linux /sys and /proc");
    let cpus = spec.cpus.len();
    let s = common::scheduler();
    s.add_host(spec).expect("discovered host is valid");
    let p = s
        .place(&PlacementRequest::new("vm", 1, 64).dedicated())
        .expect("a 1-CPU VM fits any machine");
    assert_eq!(p.cpus.len(), 1);
    assert_eq!(s.host("local").expect("host").shared_cpus.len(), cpus - 1);
}
