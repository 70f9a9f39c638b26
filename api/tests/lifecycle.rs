//! The VM lifecycle end to end through HTTP, on real mini-guest VMs.

mod common;

use common::Daemon;
use serde_json::json;

#[test]
fn launch_runs_shows_the_boot_line_and_stops() {
    let d = Daemon::start();
    let t = d.admin_token.clone();
    let id = d.launch(
        &t,
        json!({"name": "web-1", "image": "mini", "vcpus": 2, "memory_mib": 128}),
    );
    let inst = d.wait_state(&t, &id, "running");
    assert!(inst["pid"].as_i64().is_some(), "{inst}");
    assert_eq!(inst["host"], "local");
    let console = d.wait_console(&t, &id, "cpus=2 memory_mib=128");
    assert!(console.starts_with("minicloud-mini v0.1.0"), "{console}");
    // Metrics come from the VMM's own control API.
    let (s, m) = d.get(&format!("/v1/instances/{id}/metrics"), &t);
    assert_eq!(s, 200, "{m}");
    assert!(m["rss_kib"].as_u64().unwrap_or(0) > 0, "{m}");
    assert!(m["vmm"].is_object(), "VMM metrics missing: {m}");
    // The same instance by name.
    let (s, by_name) = d.get("/v1/instances/web-1", &t);
    assert_eq!(s, 200);
    assert_eq!(by_name["id"], id.as_str());
    let (s, op) = d.post(&format!("/v1/instances/{id}/stop"), &t, json!(null));
    assert_eq!(s, 202, "{op}");
    let stopped = d.wait_state(&t, &id, "stopped");
    assert!(stopped["pid"].is_null());
    // The stop operation finished.
    let (s, op) = d.get(
        &format!("/v1/operations/{}?wait=10", op["id"].as_str().expect("op")),
        &t,
    );
    assert_eq!(s, 200);
    assert_eq!(op["status"], "succeeded", "{op}");
    // Start again, then delete.
    let (s, _) = d.post(&format!("/v1/instances/{id}/start"), &t, json!(null));
    assert_eq!(s, 202);
    d.wait_state(&t, &id, "running");
    let (s, _) = d.call("DELETE", &format!("/v1/instances/{id}"), &t, None);
    assert_eq!(s, 204);
    let (s, _) = d.get(&format!("/v1/instances/{id}"), &t);
    assert_eq!(s, 404);
    // Capacity came back.
    let (_, host) = d.get("/v1/host", &t);
    assert_eq!(host["scheduler"]["vcpus_used"], 0, "{host}");
}

#[test]
fn run_workloads_finish_and_record_their_exit() {
    let d = Daemon::start();
    let t = d.admin_token.clone();
    let ok = d.launch(
        &t,
        json!({"name": "job", "image": "mini", "vcpus": 1, "memory_mib": 64,
        "run": "echo result-42; info"}),
    );
    let bad = d.launch(
        &t,
        json!({"name": "crash", "image": "mini", "vcpus": 1, "memory_mib": 64,
        "run": "panic out of coffee"}),
    );
    let done = d.wait_state(&t, &ok, "stopped");
    assert_eq!(done["exit_status"], 0, "{done}");
    assert_eq!(done["state_reason"], "guest powered off");
    let console = d.wait_console(&t, &ok, "minicloud.run: done");
    assert!(console.contains("result-42"), "{console}");
    let failed = d.wait_state(&t, &bad, "failed");
    assert_eq!(failed["exit_status"], 3, "{failed}");
    assert!(
        failed["state_reason"]
            .as_str()
            .unwrap_or("")
            .contains("out of coffee"),
        "{failed}"
    );
}

#[test]
fn killing_a_vmm_marks_the_instance_failed_with_the_reason() {
    let d = Daemon::start();
    let t = d.admin_token.clone();
    let id = d.launch(
        &t,
        json!({"name": "victim", "image": "mini", "vcpus": 1, "memory_mib": 64}),
    );
    let inst = d.wait_state(&t, &id, "running");
    let pid = inst["pid"].as_i64().expect("pid") as i32;
    // SAFETY: kill(2) on the VMM pid the API reported.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let failed = d.wait_state(&t, &id, "failed");
    let reason = failed["state_reason"].as_str().unwrap_or("");
    assert!(reason.contains("killed by signal 9"), "{failed}");
}

#[test]
fn reboot_comes_back_running() {
    let d = Daemon::start();
    let t = d.admin_token.clone();
    let id = d.launch(
        &t,
        json!({"name": "rb", "image": "mini", "vcpus": 1, "memory_mib": 64}),
    );
    let first = d.wait_state(&t, &id, "running");
    let (s, op) = d.post(
        &format!("/v1/instances/{id}/reboot?timeout=2"),
        &t,
        json!(null),
    );
    assert_eq!(s, 202, "{op}");
    let (s, op) = d.get(
        &format!("/v1/operations/{}?wait=60", op["id"].as_str().expect("op")),
        &t,
    );
    assert_eq!(s, 200);
    assert_eq!(op["status"], "succeeded", "{op}");
    let again = d.wait_state(&t, &id, "running");
    assert_ne!(first["pid"], again["pid"], "a new VMM process");
}

#[test]
fn daemon_kill9_leaves_vms_running_and_a_restart_reattaches() {
    let mut d = Daemon::start();
    let t = d.admin_token.clone();
    let a = d.launch(
        &t,
        json!({"name": "a", "image": "mini", "vcpus": 1, "memory_mib": 64}),
    );
    let b = d.launch(
        &t,
        json!({"name": "b", "image": "mini", "vcpus": 1, "memory_mib": 64}),
    );
    let pa = d.wait_state(&t, &a, "running")["pid"].clone();
    let pb = d.wait_state(&t, &b, "running")["pid"].clone();
    let console_a = d.wait_console(&t, &a, "mini# ");
    d.kill9();
    // Both VMMs survived the daemon.
    for p in [&pa, &pb] {
        let pid = p.as_i64().expect("pid");
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "VMM {pid} died with the daemon"
        );
    }
    d.spawn();
    let ia = d.wait_state(&t, &a, "running");
    let ib = d.wait_state(&t, &b, "running");
    assert_eq!(ia["pid"], pa);
    assert_eq!(ib["pid"], pb);
    let again = d.wait_console(&t, &a, "mini# ");
    assert!(again.starts_with(&console_a[..20]), "console log intact");
    // Still controllable: stop one, and kill the other's VMM behind the
    // daemon's back (the reattached supervisor notices).
    let (s, _) = d.post(&format!("/v1/instances/{a}/stop"), &t, json!(null));
    assert_eq!(s, 202);
    d.wait_state(&t, &a, "stopped");
    // SAFETY: kill(2) on the VMM pid the API reported.
    unsafe { libc::kill(pb.as_i64().expect("pid") as i32, libc::SIGKILL) };
    let fb = d.wait_state(&t, &b, "failed");
    assert!(
        fb["state_reason"].as_str().unwrap_or("").contains("ended"),
        "{fb}"
    );
}

#[test]
fn a_vmm_that_died_while_the_daemon_was_down_is_settled_at_restart() {
    let mut d = Daemon::start();
    let t = d.admin_token.clone();
    let id = d.launch(
        &t,
        json!({"name": "job", "image": "mini", "vcpus": 1, "memory_mib": 64, "run": "cpu-burn 2"}),
    );
    d.wait_state(&t, &id, "running");
    d.kill9();
    // The guest finishes its run and powers off while no daemon watches.
    std::thread::sleep(std::time::Duration::from_secs(4));
    d.spawn();
    let inst = d.wait_state(&t, &id, "stopped");
    assert_eq!(inst["exit_status"], 0, "{inst}");
    // Its end time is the VMM's own, not the restart's.
    let ran = inst["stopped_at"].as_i64().expect("stopped")
        - inst["started_at"].as_i64().expect("started");
    assert!((1500..3900).contains(&ran), "ran {ran} ms: {inst}");
}

/// Data integrity end to end: a guest writes a pattern on a volume, the VM
/// stops, a snapshot is restored to a new volume, another VM verifies it.
#[test]
fn a_pattern_survives_snapshot_and_restore_into_another_vm() {
    let d = Daemon::start();
    let t = d.admin_token.clone();
    let (s, v) = d.post("/v1/volumes", &t, json!({"name": "data", "size_mib": 16}));
    assert_eq!(s, 201, "{v}");
    let writer = d.launch(
        &t,
        json!({"name": "writer", "image": "mini", "vcpus": 1, "memory_mib": 64,
        "volumes": ["data"], "run": "blk-write 0 8 64 4242"}),
    );
    let done = d.wait_state(&t, &writer, "stopped");
    assert_eq!(done["exit_status"], 0, "{done}");
    assert!(
        d.wait_console(&t, &writer, "blk-write: ok disk=0 sectors=64")
            .contains("disk0:")
    );
    // Attached to one instance at a time.
    let (s, v) = d.post("/v1/instances", &t, json!({"name": "thief", "image": "mini", "vcpus": 1, "memory_mib": 64, "volumes": ["data"]}));
    assert_eq!(s, 409, "{v}");
    let (s, _) = d.call("DELETE", &format!("/v1/instances/{writer}"), &t, None);
    assert_eq!(s, 204);
    let (s, snap) = d.post("/v1/volumes/data/snapshots", &t, json!({"name": "snap1"}));
    assert_eq!(s, 201, "{snap}");
    let (s, v) = d.post(
        "/v1/volumes",
        &t,
        json!({"name": "restored", "size_mib": 16, "snapshot": "snap1"}),
    );
    assert_eq!(s, 201, "{v}");
    let reader = d.launch(
        &t,
        json!({"name": "reader", "image": "mini", "vcpus": 1, "memory_mib": 64,
        "volumes": ["restored"], "run": "blk-verify 0 8 64 4242; blk-verify 0 8 64 1"}),
    );
    d.wait_state(&t, &reader, "stopped");
    let console = d.wait_console(&t, &reader, "minicloud.run: done");
    assert!(
        console.contains("blk-verify: ok disk=0 sectors=64"),
        "{console}"
    );
    assert!(
        console.contains("blk-verify: FAIL disk=0"),
        "a wrong seed must fail: {console}"
    );
}
