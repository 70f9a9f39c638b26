//! Billing end to end: VMs that really ran, billed to the second from the
//! control plane's own records, through a daemon crash.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::{Value, json};

fn rows<'a>(report: &'a Value, resource: &str, meter: &str) -> Vec<&'a Value> {
    report["rows"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter(|x| x["resource_id"] == resource && x["meter"] == meter)
                .collect()
        })
        .unwrap_or_default()
}

fn billed_vcpu_ms(d: &Daemon, token: &str, id: &str) -> i64 {
    let (s, report) = d.get("/v1/billing/usage?group_by=resource&from=2020-01-01", token);
    assert_eq!(s, 200, "{report}");
    let r = rows(&report, id, "instance.vcpu");
    assert_eq!(r.len(), 1, "one row per resource and meter: {report}");
    r[0]["quantity_base"].as_i64().expect("quantity")
}

#[test]
fn a_short_run_is_billed_the_sixty_second_minimum() {
    let d = Daemon::start();
    let t = d.project("billed", None);
    let id = d.launch(
        &t,
        json!({"name": "blip", "image": "mini", "vcpus": 2, "memory_mib": 64, "run": "echo x"}),
    );
    d.wait_state(&t, &id, "stopped");
    assert_eq!(
        billed_vcpu_ms(&d, &t, &id),
        2 * 60_000,
        "2 vCPUs × 60 s minimum"
    );
    let (_, report) = d.get("/v1/billing/usage?group_by=resource&from=2020-01-01", &t);
    let mem = rows(&report, &id, "instance.memory")[0]["quantity_base"]
        .as_i64()
        .expect("mem");
    assert_eq!(mem, 64 * 60_000, "64 MiB × 60 s");
    // CSV, invoices, and another tenant sees none of it.
    let (s, csv) = d.call(
        "GET",
        "/v1/billing/usage?group_by=resource&from=2020-01-01&format=csv",
        &t,
        None,
    );
    assert_eq!(s, 200);
    let csv = csv.as_str().unwrap_or_default().to_string();
    assert!(csv.lines().count() >= 3 && csv.contains(&id), "{csv}");
    let (s, inv) = d.get("/v1/billing/invoices", &t);
    assert_eq!(s, 200, "{inv}");
    let cur = &inv["current"];
    let sum: i64 = cur["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| micros(&l["amount"]))
        .sum();
    assert_eq!(
        sum,
        micros(&cur["total"]),
        "total is the sum of the lines: {cur}"
    );
    assert!(micros(&cur["total"]) > 0);
    let other = d.project("other", None);
    let (_, theirs) = d.get(
        "/v1/billing/usage?group_by=resource&from=2020-01-01",
        &other,
    );
    assert!(rows(&theirs, &id, "instance.vcpu").is_empty(), "{theirs}");
}

fn micros(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or("0");
    let neg = s.starts_with('-');
    let s = s.trim_start_matches('-');
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<6}");
    let m = int.parse::<i64>().unwrap_or(0) * 1_000_000 + frac[..6].parse::<i64>().unwrap_or(0);
    if neg { -m } else { m }
}

/// A VM runs about 75 s; the daemon is killed -9 in the middle and
/// restarted; the bill equals the real running time to the second, once.
#[test]
fn a_long_run_through_a_daemon_crash_is_billed_its_real_seconds_once() {
    let mut d = Daemon::start();
    let t = d.admin_token.clone();
    let id = d.launch(
        &t,
        json!({"name": "long", "image": "mini", "vcpus": 1, "memory_mib": 64}),
    );
    let running = d.wait_state(&t, &id, "running");
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(35));
    d.kill9();
    std::thread::sleep(Duration::from_secs(10));
    d.spawn();
    assert_eq!(d.wait_state(&t, &id, "running")["pid"], running["pid"]);
    while started.elapsed() < Duration::from_secs(75) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (s, _) = d.post(&format!("/v1/instances/{id}/stop"), &t, json!(null));
    assert_eq!(s, 202);
    let stopped = d.wait_state(&t, &id, "stopped");
    let real_ms = stopped["stopped_at"].as_i64().expect("end")
        - running["started_at"].as_i64().expect("start");
    assert!(real_ms >= 75_000, "ran {real_ms} ms");
    let billed = billed_vcpu_ms(&d, &t, &id);
    let expected = (real_ms + 999) / 1000 * 1000; // per second, rounded up once
    assert!(
        (billed - expected).abs() <= 1000,
        "billed {billed} ms for {real_ms} ms of running"
    );
}

/// Paused time is billed as the price book says: memory as
/// `instance.paused_memory`, vCPUs not at all.
#[test]
fn paused_time_is_billed_as_paused_memory() {
    let d = Daemon::start();
    let t = d.admin_token.clone();
    let id = d.launch(
        &t,
        json!({"name": "nap", "image": "mini", "vcpus": 1, "memory_mib": 64}),
    );
    d.wait_state(&t, &id, "running");
    let (s, v) = d.post(&format!("/v1/instances/{id}/pause"), &t, json!(null));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "paused");
    let paused_at = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let (s, v) = d.post(&format!("/v1/instances/{id}/resume"), &t, json!(null));
    let paused_ms = paused_at.elapsed().as_millis() as i64;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "running");
    let (s, v) = d.post(&format!("/v1/instances/{id}/resume"), &t, json!(null));
    assert_eq!(s, 409, "resuming a running instance: {v}");
    let (s, _) = d.post(&format!("/v1/instances/{id}/stop"), &t, json!(null));
    assert_eq!(s, 202);
    d.wait_state(&t, &id, "stopped");
    let (_, report) = d.get("/v1/billing/usage?group_by=resource&from=2020-01-01", &t);
    let pm = rows(&report, &id, "instance.paused_memory");
    assert_eq!(pm.len(), 1, "{report}");
    let mib_ms = pm[0]["quantity_base"].as_i64().expect("q");
    let measured = mib_ms / 64;
    assert!(
        (measured - paused_ms).abs() < 1000,
        "paused {paused_ms} ms, billed {measured} ms"
    );
}

/// Bytes produced to and consumed from a topic show up on the bill.
#[test]
fn stream_bytes_are_billed() {
    let d = Daemon::start();
    let t = d.project("streamer", None);
    let (s, v) = d.post(
        "/v1/topics",
        &t,
        json!({"name": "readings", "partitions": 2}),
    );
    assert_eq!(s, 201, "{v}");
    let records: Vec<Value> = (0..100)
        .map(|i| json!({"key": format!("k{i}"), "value": {"n": i, "pad": "x".repeat(100)}}))
        .collect();
    let (s, v) = d.post(
        "/v1/topics/readings/records",
        &t,
        json!({"records": records}),
    );
    assert!(s == 200 || s == 201, "{v}");
    // The sampler runs every 10 s.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (_, report) = d.get("/v1/billing/usage?group_by=meter&from=2020-01-01", &t);
        let bytes_in = report["rows"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["meter"] == "streams.bytes_in"))
            .and_then(|x| x["quantity_base"].as_i64())
            .unwrap_or(0);
        let partitions = report["rows"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["meter"] == "streams.partition"));
        if bytes_in >= 100 * 100 && partitions {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stream usage never billed: {report}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Provisioned volume and snapshot storage is billed for the time it exists.
#[test]
fn volumes_are_billed_while_provisioned() {
    let d = Daemon::start();
    let t = d.project("disks", None);
    let (s, v) = d.post("/v1/volumes", &t, json!({"name": "vol", "size_mib": 64}));
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    let created = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let (s, _) = d.call("DELETE", "/v1/volumes/vol", &t, None);
    assert_eq!(s, 204);
    let lived = created.elapsed().as_millis() as i64;
    let (_, report) = d.get("/v1/billing/usage?group_by=resource&from=2020-01-01", &t);
    let r = rows(&report, &id, "volume.storage");
    assert_eq!(r.len(), 1, "{report}");
    let mib_ms = r[0]["quantity_base"].as_i64().expect("q");
    assert!(
        (mib_ms / 64 - lived).abs() < 500,
        "billed {} ms for {lived} ms",
        mib_ms / 64
    );
}
