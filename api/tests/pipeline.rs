//! The hosted pipeline end to end on real VMs: sensor VMs produce over
//! their vsock, a stream job windows the readings, a sink writes the
//! windows into a bucket, a consumer VM reads them in a group, a second
//! job version replays from offset 0, and the bill is checked against
//! what ran. Everything is recomputed here from the raw records.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::{Value, json};

const SENSORS: u64 = 3;
// 650 readings at 100 ms: the sensors run past the 60 s billing minimum,
// so the bill check compares real running time.
const READINGS: u64 = 650;
const WINDOW_MS: i64 = 10_000;
const REPLAY_WINDOW_MS: i64 = 5_000;
const GRACE_MS: i64 = 3_000;

/// Every record of a topic: (partition, offset, key, value text).
fn records(d: &Daemon, t: &str, topic: &str) -> Vec<(u32, u64, Option<String>, String)> {
    let (s, info) = d.get(&format!("/v1/topics/{topic}"), t);
    assert_eq!(s, 200, "{info}");
    let n = info["partitions"].as_array().expect("partitions").len() as u32;
    let mut out = Vec::new();
    for p in 0..n {
        let mut offset = 0;
        loop {
            let (s, r) = d.get(
                &format!(
                    "/v1/topics/{topic}/partitions/{p}/records?offset={offset}&max_records=10000"
                ),
                t,
            );
            assert_eq!(s, 200, "{r}");
            let recs = r["records"].as_array().expect("records");
            if recs.is_empty() {
                break;
            }
            for rec in recs {
                out.push((
                    p,
                    rec["offset"].as_u64().expect("offset"),
                    rec["key"].as_str().map(str::to_string),
                    rec["value"].as_str().expect("value").to_string(),
                ));
            }
            offset = r["next_offset"].as_u64().expect("next");
        }
    }
    out
}

/// The windows a tumbling event-time job closes, replayed from its rules
/// per partition in offset order: stream time is the largest `ts` seen; a
/// record whose window ended at or before stream time − grace is late; a
/// window closes when its end is at or before stream time − grace.
fn recompute(
    readings: &[(u32, u64, Option<String>, String)],
    size: i64,
) -> BTreeMap<(String, i64), (u64, f64)> {
    let mut closed = BTreeMap::new();
    let parts: BTreeSet<u32> = readings.iter().map(|r| r.0).collect();
    for p in parts {
        let mut open: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
        let mut stream_time = i64::MIN;
        for (_, _, _, v) in readings.iter().filter(|r| r.0 == p) {
            let v: Value = serde_json::from_str(v).expect("reading JSON");
            let s = v["sensor"].as_str().expect("sensor").to_string();
            let ts = v["ts"].as_i64().expect("ts");
            let temp = v["temp"].as_f64().expect("temp");
            stream_time = stream_time.max(ts);
            let wm = stream_time - GRACE_MS;
            let start = ts.div_euclid(size) * size;
            if start + size > wm {
                let e = open.entry((s, start)).or_insert((0, 0.0));
                e.0 += 1;
                e.1 += temp;
            }
            let due: Vec<_> = open.keys().filter(|k| k.1 + size <= wm).cloned().collect();
            for k in due {
                let (n, sum) = open.remove(&k).expect("open");
                closed.insert(k, (n, sum / n as f64));
            }
        }
    }
    closed
}

/// A job's output as (sensor, window start) → (count, avg).
fn windows(out: &[(u32, u64, Option<String>, String)]) -> BTreeMap<(String, i64), (u64, f64)> {
    let mut m = BTreeMap::new();
    for (_, _, _, v) in out {
        let v: Value = serde_json::from_str(v).expect("window JSON");
        let k = (
            v["key"].as_str().expect("key").to_string(),
            v["window_start"].as_i64().expect("start"),
        );
        let prev = m.insert(
            k.clone(),
            (
                v["count"].as_u64().expect("count"),
                v["avg_temp"].as_f64().expect("avg"),
            ),
        );
        assert!(prev.is_none(), "window {k:?} emitted twice");
    }
    m
}

fn assert_same(
    got: &BTreeMap<(String, i64), (u64, f64)>,
    want: &BTreeMap<(String, i64), (u64, f64)>,
    what: &str,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: the closed windows differ"
    );
    for (k, (n, avg)) in got {
        let (wn, wavg) = want[k];
        assert_eq!(*n, wn, "{what}: count of {k:?}");
        assert!(
            (avg - wavg).abs() < 1e-9,
            "{what}: avg of {k:?}: {avg} vs {wavg}"
        );
    }
}

fn console(d: &Daemon, t: &str, id: &str) -> String {
    let (_, v) = d.get(&format!("/v1/instances/{id}/console"), t);
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

fn instance_id(d: &Daemon, t: &str, name: &str) -> Value {
    let (_, v) = d.get("/v1/instances", t);
    v["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no instance {name}: {v}"))
}

#[test]
fn sensors_to_windows_to_bucket_to_consumer_to_bill() {
    let d = Daemon::start();
    let t = d.project("pipeline", None);
    let cfg = d.data_dir().join("cli.json");
    // The README's main job: the CLI runs the whole pipeline.
    let out = Command::new(env!("CARGO_BIN_EXE_minicloud"))
        .args(["--url", &d.url, "--token", &t, "pipeline"])
        .args([
            "--sensors",
            &SENSORS.to_string(),
            "--readings",
            &READINGS.to_string(),
        ])
        .args([
            "--interval-ms",
            "100",
            "--batch",
            "10",
            "--bucket",
            "pipeline-test",
        ])
        .env("MINICLOUD_CONFIG", &cfg)
        .output()
        .expect("run minicloud pipeline");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pipeline failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert!(stdout.contains("identical"), "{stdout}");

    // Every reading each sensor produced is in `readings`, exactly once.
    let readings = records(&d, &t, "readings");
    let mut seen: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for (_, _, key, v) in &readings {
        let v: Value = serde_json::from_str(v).expect("json");
        let s = v["sensor"].as_str().expect("sensor").to_string();
        assert_eq!(key.as_deref(), Some(s.as_str()), "key = sensor id");
        assert!(
            seen.entry(s)
                .or_default()
                .insert(v["seq"].as_u64().expect("seq")),
            "duplicate reading {v}"
        );
    }
    assert_eq!(seen.len() as u64, SENSORS, "{seen:?}");
    for (s, seqs) in &seen {
        assert_eq!(seqs.len() as u64, READINGS, "{s}");
        assert_eq!(seqs.iter().next_back(), Some(&(READINGS - 1)), "{s}");
    }

    // Window averages equal a recomputation from the raw readings.
    let avg = records(&d, &t, "readings-avg");
    let got = windows(&avg);
    assert!(!got.is_empty(), "no window closed");
    assert_same(&got, &recompute(&readings, WINDOW_MS), "readings-avg");

    // The bucket holds exactly the closed windows, each once.
    let (s, list) = d.get("/v1/buckets/pipeline-test/objects?max=10000", &t);
    assert_eq!(s, 200, "{list}");
    let mut lines = Vec::new();
    for o in list["objects"].as_array().expect("objects") {
        let key = o["key"].as_str().expect("key");
        assert!(key.ends_with(".ndjson"), "{key}");
        // Raw bytes: parsing a one-line object as JSON would reformat
        // its floats.
        let (s, text) = d.get_raw(&format!("/v1/buckets/pipeline-test/objects/{key}"), &t);
        assert_eq!(s, 200, "{text}");
        lines.extend(text.lines().map(str::to_string));
    }
    let mut from_bucket: Vec<String> = lines;
    let mut from_topic: Vec<String> = avg.iter().map(|r| r.3.clone()).collect();
    from_bucket.sort();
    from_topic.sort();
    let only_bucket: Vec<&String> = from_bucket
        .iter()
        .filter(|l| !from_topic.contains(l))
        .collect();
    let only_topic: Vec<&String> = from_topic
        .iter()
        .filter(|l| !from_bucket.contains(l))
        .collect();
    assert_eq!(
        from_bucket,
        from_topic,
        "bucket objects vs closed windows: {} vs {} lines; only in the bucket: {only_bucket:?}; only in the topic: {only_topic:?}; objects: {list}",
        from_bucket.len(),
        from_topic.len()
    );

    // The consumer VM read every window once through its group.
    let dash = instance_id(&d, &t, "dashboard");
    let text = console(&d, &t, dash["id"].as_str().expect("id"));
    let consumed: BTreeSet<(u32, u64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("record "))
        .filter_map(|l| {
            let (po, _) = l.split_once(' ')?;
            let (p, o) = po.split_once('@')?;
            Some((p.parse().ok()?, o.parse().ok()?))
        })
        .collect();
    let produced: BTreeSet<(u32, u64)> = avg.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(consumed, produced, "consumer VM output:\n{text}");
    let (_, g) = d.get("/v1/groups/dashboard", &t);
    assert_eq!(
        g["partitions"].as_array().map(|p| p
            .iter()
            .map(|x| x["lag"].as_u64().unwrap_or(1))
            .sum::<u64>()),
        Some(0),
        "{g}"
    );

    // The replayed job version matches its own recomputation.
    let v2 = records(&d, &t, "readings-avg-v2");
    assert_same(
        &windows(&v2),
        &recompute(&readings, REPLAY_WINDOW_MS),
        "readings-avg-v2",
    );

    // The bill: VM seconds as run (60 s minimum), stream bytes as produced.
    let bytes_in: i64 = readings
        .iter()
        .map(|(_, _, k, v)| {
            streams::ProduceRecord {
                key: k.clone().map(Into::into),
                value: Some(v.clone().into()),
                headers: Vec::new(),
                partition: None,
                timestamp: None,
            }
            .encoded_len() as i64
        })
        .sum();
    // Stream and storage usage are sampled into billing every 10 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let (_, r) = d.get("/v1/billing/usage?group_by=resource&from=2020-01-01", &t);
        let rows = r["rows"].as_array().cloned().unwrap_or_default();
        let billed = rows
            .iter()
            .find(|x| x["resource_id"] == "topic:readings" && x["meter"] == "streams.bytes_in")
            .and_then(|x| x["quantity_base"].as_i64());
        // The objects the sink wrote are billed as stored bytes over time.
        let stored = rows.iter().any(|x| {
            x["meter"] == "object.storage"
                && x["resource_id"] == "bucket:pipeline-test"
                && x["quantity_base"].as_i64().is_some_and(|q| q > 0)
        });
        if billed == Some(bytes_in) && stored {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "stream bytes billed {billed:?}, produced {bytes_in}; objects billed: {stored}: {r}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let rows = report["rows"].as_array().expect("rows");
    for name in ["sensor-1", "sensor-2", "sensor-3", "dashboard"] {
        let i = instance_id(&d, &t, name);
        let ran =
            i["stopped_at"].as_i64().expect("stopped") - i["started_at"].as_i64().expect("started");
        let billed = rows
            .iter()
            .find(|x| x["resource_id"] == i["id"] && x["meter"] == "instance.vcpu")
            .and_then(|x| x["quantity_base"].as_i64())
            .unwrap_or_else(|| panic!("{name} not billed: {report}"));
        assert!(
            (billed - ran.max(60_000)).abs() <= 1_000,
            "{name}: billed {billed} vCPU-ms, ran {ran} ms"
        );
    }
}

#[test]
fn a_sensor_killed_mid_produce_loses_only_unacknowledged_readings() {
    let d = Daemon::start();
    let t = d.project("crash", None);
    let (s, v) = d.post(
        "/v1/topics",
        &t,
        json!({"name": "readings", "partitions": 1}),
    );
    assert_eq!(s, 201, "{v}");
    let id = d.launch(
        &t,
        json!({"name": "doomed", "image": "mini", "vcpus": 1, "memory_mib": 64,
               "run": "produce readings 100000 doomed 5 5"}),
    );
    d.wait_state(&t, &id, "running");
    d.wait_console(&t, &id, "produce: acked 20..");
    let inst = instance_id(&d, &t, "doomed");
    let pid = inst["pid"].as_i64().expect("pid") as i32;
    // SAFETY: kill(2) on the VMM's pid, which the daemon reports running.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    d.wait_state(&t, &id, "failed");
    let text = console(&d, &t, &id);
    let last_acked = text
        .lines()
        .filter_map(|l| l.strip_prefix("produce: acked "))
        .filter_map(|l| l.split_once("..")?.1.split(' ').next()?.parse::<u64>().ok())
        .max()
        .expect("acked lines");
    let seqs: BTreeSet<u64> = records(&d, &t, "readings")
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.3).expect("json")["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect();
    for s in 0..=last_acked {
        assert!(
            seqs.contains(&s),
            "acknowledged reading {s} lost (last acked {last_acked})"
        );
    }
    // Nothing twice, nothing invented.
    let n = records(&d, &t, "readings").len();
    assert_eq!(n, seqs.len(), "duplicates in the topic");
    assert!(seqs.iter().all(|s| *s < 100_000));
}
