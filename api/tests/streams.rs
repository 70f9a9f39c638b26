//! Topics, consumer groups, queues and stream jobs through the REST API of
//! a real daemon (and the CLI binary).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::{Value, json};

const BATCH: &str = "application/vnd.minicloud.batch";

fn create_topic(d: &Daemon, token: &str, name: &str, partitions: u32) {
    let (s, v) = d.post(
        "/v1/topics",
        token,
        json!({ "name": name, "partitions": partitions }),
    );
    assert_eq!(s, 201, "{v}");
}

/// Reads a whole partition (JSON form) from offset 0.
fn read_all(d: &Daemon, token: &str, topic: &str, p: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let (s, v) = d.get(
            &format!("/v1/topics/{topic}/partitions/{p}/records?offset={off}&max_records=700"),
            token,
        );
        assert_eq!(s, 200, "{v}");
        let recs = v["records"].as_array().expect("records").clone();
        if recs.is_empty() {
            assert_eq!(v["next_offset"], v["high_watermark"], "{v}");
            return out;
        }
        off = v["next_offset"].as_u64().expect("next");
        out.extend(recs);
    }
}

fn raw_post(d: &Daemon, path: &str, token: &str, ctype: &str, body: &[u8]) -> (u16, Value) {
    let r = ureq::post(&format!("{}{path}", d.url))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", ctype)
        .send_bytes(body);
    let (s, text) = match r {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
        Err(e) => panic!("POST {path}: {e}"),
    };
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn produce_and_consume_every_record_json_and_binary() {
    let d = Daemon::start();
    let t = d.project("streamer", None);
    create_topic(&d, &t, "events", 4);
    // 20 JSON batches of 500 keyed records with headers.
    let mut expected: HashMap<String, (String, u32, u64)> = HashMap::new();
    let mut key_partition: HashMap<String, u32> = HashMap::new();
    for b in 0..20 {
        let records: Vec<Value> = (0..500)
            .map(|i| {
                let n = b * 500 + i;
                json!({ "key": format!("k{}", n % 97), "value": format!("v{n}"),
                        "headers": { "n": n.to_string() } })
            })
            .collect();
        let (s, v) = d.post(
            "/v1/topics/events/records",
            &t,
            json!({ "records": records }),
        );
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["durability"], "os-buffer", "{v}");
        assert_eq!(v["duplicate"], false);
        let offs = v["offsets"].as_array().expect("offsets");
        assert_eq!(offs.len(), 500);
        for (i, o) in offs.iter().enumerate() {
            let n = b * 500 + i;
            let key = format!("k{}", n % 97);
            let p = o["partition"].as_u64().expect("p") as u32;
            // The key's hash picks the partition, stably.
            assert_eq!(*key_partition.entry(key.clone()).or_insert(p), p);
            expected.insert(
                n.to_string(),
                (format!("v{n}"), p, o["offset"].as_u64().expect("o")),
            );
        }
    }
    // One binary batch of 1,000 unkeyed records to partition 2.
    let recs: Vec<streams::ProduceRecord> = (0..1000)
        .map(|i| streams::ProduceRecord {
            value: Some(format!("bin{i}").into()),
            headers: vec![streams::Header::new("n", format!("b{i}"))],
            partition: Some(2),
            ..Default::default()
        })
        .collect();
    let (s, v) = raw_post(
        &d,
        "/v1/topics/events/records",
        &t,
        BATCH,
        &streams::binary::encode_produce(&recs),
    );
    assert_eq!(s, 200, "{v}");
    for (i, o) in v["offsets"].as_array().expect("offsets").iter().enumerate() {
        assert_eq!(o["partition"], 2);
        expected.insert(
            format!("b{i}"),
            (format!("bin{i}"), 2, o["offset"].as_u64().expect("o")),
        );
    }
    // Every record comes back once, where the ack said, with its value.
    let mut seen = 0;
    for p in 0..4 {
        let recs = read_all(&d, &t, "events", p);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r["offset"], i as u64);
            let n = r["headers"]["n"].as_str().expect("n header");
            let (value, ep, eo) = expected.remove(n).expect("produced once");
            assert_eq!(r["value"], value.as_str());
            assert_eq!((ep, eo), (p, i as u64), "{r}");
            seen += 1;
        }
    }
    assert_eq!(seen, 11_000);
    assert!(expected.is_empty());
    // The binary fetch form gives the same records of partition 2.
    let resp = ureq::get(&format!(
        "{}/v1/topics/events/partitions/2/records?offset=0&max_records=100000&max_bytes=67108864",
        d.url
    ))
    .set("Authorization", &format!("Bearer {t}"))
    .set("Accept", BATCH)
    .call()
    .expect("binary fetch");
    let next: u64 = resp
        .header("x-next-offset")
        .expect("hdr")
        .parse()
        .expect("n");
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).expect("read");
    let got = streams::binary::decode_fetch(body.into()).expect("decode");
    assert_eq!(got.len() as u64, next);
    let bins: Vec<_> = got
        .iter()
        .filter(|r| r.key.is_none())
        .map(|r| String::from_utf8_lossy(r.value.as_deref().expect("v")).into_owned())
        .collect();
    assert_eq!(
        bins,
        (0..1000).map(|i| format!("bin{i}")).collect::<Vec<_>>()
    );
    // Idempotent producer: a retried batch lands once; an older one is 409.
    let body =
        json!({ "records": [{"value": "once", "partition": 0}], "producer_id": 7, "sequence": 1 });
    let (s, first) = d.post("/v1/topics/events/records", &t, body.clone());
    assert_eq!(s, 200, "{first}");
    let (s, again) = d.post("/v1/topics/events/records", &t, body);
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["offsets"], first["offsets"]);
    let (s, stale) = d.post(
        "/v1/topics/events/records",
        &t,
        json!({ "records": [{"value": "x"}], "producer_id": 7, "sequence": 0 }),
    );
    assert_eq!(s, 409, "{stale}");
    // Describe, by timestamp, add partitions, delete.
    let (s, v) = d.get("/v1/topics/events", &t);
    assert_eq!(s, 200);
    assert_eq!(v["partitions"].as_array().map(Vec::len), Some(4));
    let (s, v) = d.get(
        "/v1/topics/events/partitions/0/records?timestamp=0&max_records=1",
        &t,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["records"][0]["offset"], 0);
    let (s, v) = d.post(
        "/v1/topics/events/partitions",
        &t,
        json!({ "partitions": 6 }),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["partitions"].as_array().map(Vec::len), Some(6));
    assert_eq!(d.call("DELETE", "/v1/topics/events", &t, None).0, 204);
    assert_eq!(d.get("/v1/topics/events", &t).0, 404);
}

#[test]
fn tenants_do_not_see_each_others_topics_queues_or_jobs() {
    let d = Daemon::start();
    let ta = d.project("alpha", None);
    let tb = d.project("beta", None);
    create_topic(&d, &ta, "secret", 1);
    let (s, _) = d.post(
        "/v1/topics/secret/records",
        &ta,
        json!({"records": [{"value": "classified"}]}),
    );
    assert_eq!(s, 200);
    assert_eq!(
        d.post("/v1/queues", &ta, json!({"name": "q"})).0,
        201,
        "queue"
    );
    for (method, path, body) in [
        ("GET", "/v1/topics/secret", None),
        (
            "GET",
            "/v1/topics/secret/partitions/0/records?offset=0",
            None,
        ),
        (
            "POST",
            "/v1/topics/secret/records",
            Some(r#"{"records":[{"value":"x"}]}"#),
        ),
        (
            "POST",
            "/v1/topics/secret/partitions",
            Some(r#"{"partitions":2}"#),
        ),
        ("DELETE", "/v1/topics/secret", None),
        ("GET", "/v1/queues/q", None),
        ("POST", "/v1/queues/q/messages", Some(r#"{"body":"x"}"#)),
        ("POST", "/v1/queues/q/receive", Some("{}")),
        (
            "POST",
            "/v1/groups/g/join",
            Some(r#"{"member_id":"m","topics":["secret"]}"#),
        ),
    ] {
        let (s, v) = d.call(method, path, &tb, body);
        assert_eq!(s, 404, "{method} {path}: {v}");
        assert!(!v.to_string().contains("classified"), "{v}");
    }
    assert_eq!(d.get("/v1/topics", &tb).1["topics"], json!([]));
    assert_eq!(d.get("/v1/queues", &tb).1["queues"], json!([]));
    // The same names are free in the other project.
    create_topic(&d, &tb, "secret", 1);
    let (_, v) = d.get("/v1/topics/secret/partitions/0/records?offset=0", &tb);
    assert_eq!(v["records"], json!([]));
    let (_, v) = d.get("/v1/topics/secret/partitions/0/records?offset=0", &ta);
    assert_eq!(v["records"][0]["value"], "classified");
}

#[test]
fn a_long_poll_returns_when_data_arrives() {
    let d = Daemon::start();
    let t = d.project("poller", None);
    create_topic(&d, &t, "lp", 1);
    let url = format!(
        "{}/v1/topics/lp/partitions/0/records?offset=0&wait_ms=20000",
        d.url
    );
    let token = t.clone();
    let started = Instant::now();
    let waiter = std::thread::spawn(move || {
        let v: Value = ureq::get(&url)
            .set("Authorization", &format!("Bearer {token}"))
            .call()
            .expect("poll")
            .into_json()
            .expect("json");
        (v, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    let (s, _) = d.post(
        "/v1/topics/lp/records",
        &t,
        json!({"records": [{"value": "wake"}]}),
    );
    assert_eq!(s, 200);
    let (v, took) = waiter.join().expect("join");
    assert_eq!(v["records"][0]["value"], "wake", "{v}");
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // With nothing arriving it answers empty after the wait.
    let t0 = Instant::now();
    let (s, v) = d.get(
        "/v1/topics/lp/partitions/0/records?offset=1&wait_ms=300",
        &t,
    );
    assert_eq!(s, 200);
    assert_eq!(v["records"], json!([]));
    assert!(t0.elapsed() >= Duration::from_millis(250));
}

#[test]
fn consumer_groups_join_commit_and_report_lag() {
    let d = Daemon::start();
    let t = d.project("grouper", None);
    create_topic(&d, &t, "in", 4);
    let records: Vec<Value> = (0..40)
        .map(|i| json!({"value": format!("r{i}"), "partition": i % 4}))
        .collect();
    assert_eq!(
        d.post("/v1/topics/in/records", &t, json!({ "records": records }))
            .0,
        200
    );
    let (s, a) = d.post(
        "/v1/groups/g1/join",
        &t,
        json!({"member_id": "m1", "topics": ["in"]}),
    );
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["partitions"].as_array().map(Vec::len), Some(4));
    let (s, b) = d.post(
        "/v1/groups/g1/join",
        &t,
        json!({"member_id": "m2", "topics": ["in"]}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["partitions"].as_array().map(Vec::len), Some(2));
    let generation = b["generation"].as_u64().expect("gen");
    // m1's heartbeat shows the rebalance.
    let (s, a) = d.post("/v1/groups/g1/heartbeat", &t, json!({"member_id": "m1"}));
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["generation"], generation);
    assert_eq!(a["partitions"].as_array().map(Vec::len), Some(2));
    // Commit with the current generation; a stale one is refused.
    let mine: Vec<Value> = a["partitions"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|tp| json!({"topic": "in", "partition": tp["partition"], "offset": 4}))
        .collect();
    let (s, v) = d.post(
        "/v1/groups/g1/offsets",
        &t,
        json!({"member_id": "m1", "generation": generation, "offsets": mine}),
    );
    assert_eq!(s, 204, "{v}");
    let (s, v) = d.post(
        "/v1/groups/g1/offsets",
        &t,
        json!({"member_id": "m1", "generation": generation - 1, "offsets": mine}),
    );
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("rebalanced"),
        "{v}"
    );
    let (s, g) = d.get("/v1/groups/g1", &t);
    assert_eq!(s, 200, "{g}");
    assert_eq!(g["members"].as_array().map(Vec::len), Some(2));
    // 2 partitions at 4 of 10 (lag 6 each), 2 never committed (lag 10).
    assert_eq!(g["lag"], 6 + 6 + 10 + 10, "{g}");
    let (_, o) = d.get("/v1/groups/g1/offsets", &t);
    let committed: Vec<_> = o["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .filter(|p| p["committed"] == 4)
        .collect();
    assert_eq!(committed.len(), 2, "{o}");
    let (_, l) = d.get("/v1/groups", &t);
    assert_eq!(l["groups"][0]["group"], "g1", "{l}");
    assert_eq!(l["groups"][0]["lag"], 32);
    // Leaving gives the other member everything.
    assert_eq!(
        d.post("/v1/groups/g1/leave", &t, json!({"member_id": "m2"}))
            .0,
        204
    );
    let (_, a) = d.post("/v1/groups/g1/heartbeat", &t, json!({"member_id": "m1"}));
    assert_eq!(a["partitions"].as_array().map(Vec::len), Some(4), "{a}");
    assert_eq!(d.get("/v1/groups/nope", &t).0, 404);
}

#[test]
fn queue_visibility_timeouts_and_the_dead_letter_queue() {
    let d = Daemon::start();
    let t = d.project("queuer", None);
    assert_eq!(d.post("/v1/queues", &t, json!({"name": "dlq"})).0, 201);
    let (s, v) = d.post(
        "/v1/queues",
        &t,
        json!({"name": "work", "visibility_timeout_ms": 300,
               "redrive": {"dead_letter_queue": "dlq", "max_receive_count": 2}}),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = d.post(
        "/v1/queues/work/messages",
        &t,
        json!({"messages": [{"body": "poison"}, {"body": "good", "attributes": {"a": "1"}}]}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message_ids"].as_array().map(Vec::len), Some(2));
    let (_, v) = d.post("/v1/queues/work/receive", &t, json!({"max": 10}));
    let msgs = v["messages"].as_array().expect("msgs").clone();
    assert_eq!(msgs.len(), 2, "{v}");
    let good = msgs.iter().find(|m| m["body"] == "good").expect("good");
    assert_eq!(good["attributes"]["a"], "1");
    // Deleting by receipt removes it for good.
    let rh = good["receipt_handle"].as_str().expect("rh");
    assert_eq!(
        d.call(
            "DELETE",
            &format!("/v1/queues/work/messages/{rh}"),
            &t,
            None
        )
        .0,
        204
    );
    // Hidden while in flight.
    let (_, v) = d.post("/v1/queues/work/receive", &t, json!({"max": 10}));
    assert_eq!(v["messages"], json!([]), "{v}");
    // Visible again after the timeout (long poll waits for it).
    let (_, v) = d.post(
        "/v1/queues/work/receive",
        &t,
        json!({"max": 10, "wait_ms": 3000}),
    );
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["messages"][0]["body"], "poison");
    assert_eq!(v["messages"][0]["receive_count"], 2);
    // Change visibility to 0: visible at once; this third receive moves it
    // to the DLQ instead of delivering it.
    let rh = v["messages"][0]["receipt_handle"].as_str().expect("rh");
    let (s, v) = d.post(
        &format!("/v1/queues/work/messages/{rh}/visibility"),
        &t,
        json!({"timeout_ms": 0}),
    );
    assert_eq!(s, 204, "{v}");
    let (_, v) = d.post("/v1/queues/work/receive", &t, json!({"max": 10}));
    assert_eq!(v["messages"], json!([]), "{v}");
    let (_, v) = d.post("/v1/queues/dlq/receive", &t, json!({"max": 10}));
    assert_eq!(v["messages"][0]["body"], "poison", "{v}");
    let (_, v) = d.get("/v1/queues/work", &t);
    assert_eq!(
        (&v["visible"], &v["in_flight"], &v["delayed"]),
        (&json!(0), &json!(0), &json!(0)),
        "{v}"
    );
    let (s, v) = d.post(
        "/v1/queues/work/messages/zz.1/visibility",
        &t,
        json!({"timeout_ms": 5}),
    );
    assert_eq!(s, 422, "{v}");
    assert_eq!(d.call("DELETE", "/v1/queues/work", &t, None).0, 204);
    assert_eq!(d.get("/v1/queues/work", &t).0, 404);
}

#[test]
fn a_stream_jobs_windows_equal_a_recomputation() {
    let d = Daemon::start();
    let t = d.project("jobber", None);
    create_topic(&d, &t, "readings", 1);
    // 3 sensors, 3000 readings, event time 0..30 s in 10 ms steps.
    let mut input = Vec::new();
    for i in 0..3000i64 {
        input.push((format!("s{}", i % 3), i * 10, (i * 7) % 101));
    }
    for chunk in input.chunks(500) {
        let records: Vec<Value> = chunk
            .iter()
            .map(|(s, ts, temp)| json!({"value": {"sensor": s, "ts": ts, "temp": temp}}))
            .collect();
        assert_eq!(
            d.post(
                "/v1/topics/readings/records",
                &t,
                json!({ "records": records })
            )
            .0,
            200
        );
    }
    // A late-time record closes every window of the real data.
    d.post(
        "/v1/topics/readings/records",
        &t,
        json!({"records": [{"value": {"sensor": "flush", "ts": 10_000_000, "temp": 0}}]}),
    );
    let (s, v) = d.post(
        "/v1/stream-jobs",
        &t,
        json!({"name": "agg", "input": "readings", "output": "agg-out", "key": "/sensor",
               "window": {"type": "tumbling", "size_ms": 1000, "time": {"event_time": "/ts"}},
               "aggregates": [{"op": "count"}, {"op": "sum", "field": "/temp"},
                              {"op": "max", "field": "/temp"}]}),
    );
    assert_eq!(s, 201, "{v}");
    let mut want: BTreeMap<(String, i64), (u64, f64, f64)> = BTreeMap::new();
    for (s, ts, temp) in &input {
        let e = want
            .entry((s.clone(), ts - ts % 1000))
            .or_insert((0, 0.0, f64::MIN));
        e.0 += 1;
        e.1 += *temp as f64;
        e.2 = e.2.max(*temp as f64);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let (_, st) = d.get("/v1/stream-jobs/agg", &t);
        let out = read_all(&d, &t, "agg-out", 0);
        if out.len() >= want.len() && st["lag"] == 0 {
            assert_eq!(st["state"], "running", "{st}");
            assert!(st["tasks"][0]["processed"].as_u64() >= Some(3001), "{st}");
            break out;
        }
        assert!(Instant::now() < deadline, "job too slow: {st}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut have = BTreeMap::new();
    for r in &got {
        let v: Value = serde_json::from_str(r["value"].as_str().expect("v")).expect("json");
        let k = (
            v["key"].as_str().expect("key").to_string(),
            v["window_start"].as_i64().expect("ws"),
        );
        assert_eq!(v["window_end"].as_i64(), Some(k.1 + 1000));
        let old = have.insert(
            k,
            (
                v["count"].as_u64().expect("count"),
                v["sum_temp"].as_f64().expect("sum"),
                v["max_temp"].as_f64().expect("max"),
            ),
        );
        assert!(old.is_none(), "each window once: {v}");
    }
    assert_eq!(have, want);
    let (_, l) = d.get("/v1/stream-jobs", &t);
    assert_eq!(l["jobs"][0]["name"], "agg");
    let (s, v) = d.post("/v1/stream-jobs/agg/stop", &t, json!({}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "stopped");
    assert_eq!(d.call("DELETE", "/v1/stream-jobs/agg", &t, None).0, 204);
    assert_eq!(d.get("/v1/stream-jobs/agg", &t).0, 404);
}

#[test]
fn bad_input_gets_clear_4xx_errors() {
    let d = Daemon::start();
    let t = d.project(
        "careless",
        Some(json!({
        "max_instances": 1, "max_vcpus": 1, "max_memory_mib": 128,
        "max_volumes": 1, "max_buckets": 1, "max_topics": 3})),
    );
    let msg = |v: &Value| v["error"]["message"].as_str().unwrap_or("").to_string();
    // Unknown topic.
    let (s, v) = d.get("/v1/topics/nope/partitions/0/records?offset=0", &t);
    assert_eq!(s, 404, "{v}");
    assert_eq!(msg(&v), "unknown topic \"nope\"");
    let (s, v) = d.post(
        "/v1/topics/nope/records",
        &t,
        json!({"records": [{"value": "x"}]}),
    );
    assert_eq!(s, 404, "{v}");
    create_topic(&d, &t, "small", 2);
    d.post(
        "/v1/topics/small/records",
        &t,
        json!({"records": [{"value": "a", "partition": 0}, {"value": "b", "partition": 0}]}),
    );
    // Offset out of range, with the range.
    let (s, v) = d.get("/v1/topics/small/partitions/0/records?offset=99", &t);
    assert_eq!(s, 422, "{v}");
    assert!(msg(&v).contains("valid offsets are 0..=2"), "{v}");
    assert_eq!(v["error"]["details"]["next_offset"], 2);
    // Unknown partition.
    let (s, v) = d.get("/v1/topics/small/partitions/7/records?offset=0", &t);
    assert_eq!(s, 404, "{v}");
    assert!(msg(&v).contains("has no partition 7"), "{v}");
    // Oversized record (over 1 MiB).
    let big = "x".repeat((1 << 20) + 10);
    let (s, v) = d.post(
        "/v1/topics/small/records",
        &t,
        json!({"records": [{"value": big}]}),
    );
    assert_eq!(s, 413, "{v}");
    assert!(msg(&v).contains("larger than the maximum"), "{v}");
    // Malformed bodies name the field.
    let (s, v) = d.post(
        "/v1/topics/small/records",
        &t,
        json!({"records": [{"valu": "x"}]}),
    );
    assert_eq!(s, 422, "{v}");
    assert!(msg(&v).contains("valu"), "{v}");
    let (s, v) = raw_post(&d, "/v1/topics/small/records", &t, BATCH, b"MCB1\x05");
    assert_eq!(s, 422, "{v}");
    assert!(msg(&v).contains("malformed binary batch"), "{v}");
    let (s, v) = d.post("/v1/topics", &t, json!({"name": "bad/name"}));
    assert_eq!(s, 422, "{v}");
    let (s, v) = d.post("/v1/topics", &t, json!({"name": "p0", "partitions": 0}));
    assert_eq!(s, 422, "{v}");
    assert!(msg(&v).contains("partitions must be"), "{v}");
    let (s, _) = d.post("/v1/topics", &t, json!({"name": "small"}));
    assert_eq!(s, 409);
    // Bad window specs.
    let job = |window: Value| {
        json!({"name": "j", "input": "small", "output": "j-out", "key": "/k",
               "window": window, "aggregates": [{"op": "count"}]})
    };
    let (s, v) = d.post(
        "/v1/stream-jobs",
        &t,
        job(json!({"type": "tumbling", "size_ms": 0})),
    );
    assert_eq!(s, 422, "{v}");
    assert!(msg(&v).starts_with("bad window spec: size_ms"), "{v}");
    let (s, v) = d.post(
        "/v1/stream-jobs",
        &t,
        job(json!({"type": "hopping", "size_ms": 10, "advance_ms": 20})),
    );
    assert_eq!(s, 422, "{v}");
    assert!(msg(&v).contains("advance_ms"), "{v}");
    let (s, v) = d.post(
        "/v1/stream-jobs",
        &t,
        job(json!({"type": "sliding", "size_ms": 5})),
    );
    assert_eq!(s, 422, "{v}");
    assert!(msg(&v).contains("window"), "{v}");
    // Queue errors.
    let (s, v) = d.post("/v1/queues/none/receive", &t, json!({}));
    assert_eq!(s, 404, "{v}");
    let (s, v) = d.post(
        "/v1/queues",
        &t,
        json!({"name": "q", "redrive": {"dead_letter_queue": "missing", "max_receive_count": 1}}),
    );
    assert_eq!(s, 404, "{v}");
    // Quota: topics and queues together (small + 2 more).
    assert_eq!(d.post("/v1/queues", &t, json!({"name": "q1"})).0, 201);
    create_topic(&d, &t, "t3", 1);
    let (s, v) = d.post("/v1/topics", &t, json!({"name": "t4"}));
    assert_eq!(s, 403, "{v}");
    assert!(msg(&v).contains("quota exceeded: topics would be 4"), "{v}");
    let (s, _) = d.post("/v1/queues", &t, json!({"name": "q2"}));
    assert_eq!(s, 403);
    // A stream job's output and changelog topics count too: nothing is
    // created when they do not fit.
    let (s, v) = d.post(
        "/v1/stream-jobs",
        &t,
        json!({"name": "j", "input": "small", "output": "small-out", "key": "/k",
               "window": {"type": "tumbling", "size_ms": 1000},
               "aggregates": [{"op": "count"}]}),
    );
    assert_eq!(s, 403, "{v}");
    assert!(msg(&v).contains("quota exceeded: topics would be 5"), "{v}");
    let (_, topics) = d.get("/v1/topics", &t);
    assert!(!topics.to_string().contains("small-out"), "{topics}");
    let (s, _) = d.get("/v1/stream-jobs/j", &t);
    assert_eq!(s, 404);
}

fn cli(d: &Daemon, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_minicloud"))
        .args(args)
        .env("MINICLOUD_URL", &d.url)
        .env("MINICLOUD_TOKEN", token)
        .env("MINICLOUD_CONFIG", d.dir.path().join("none.json"))
        .output()
        .expect("run minicloud");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_drives_topics_groups_queues_and_jobs() {
    let d = Daemon::start();
    let t = d.project("clier", None);
    let ok = |args: &[&str]| {
        let (code, out, err) = cli(&d, &t, args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        out
    };
    ok(&["topic", "create", "logs", "--partitions", "2"]);
    let out = ok(&["topic", "list"]);
    assert!(out.starts_with("NAME") && out.contains("logs"), "{out}");
    let out = ok(&[
        "topic",
        "produce",
        "logs",
        "--key",
        "a",
        "--partition",
        "1",
        "hello",
        "world",
    ]);
    assert!(out.contains("2 records"), "{out}");
    let out = ok(&["topic", "consume", "logs", "--partition", "1", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["records"][0]["value"], "hello", "{v}");
    assert_eq!(v["records"][1]["value"], "world");
    let out = ok(&["topic", "consume", "logs", "--partition", "1"]);
    assert!(out.contains("hello") && out.contains("world"), "{out}");
    let out = ok(&["topic", "describe", "logs"]);
    assert!(out.contains("PARTITION") && out.contains("NEXT"), "{out}");
    d.post(
        "/v1/groups/gg/join",
        &t,
        json!({"member_id": "m", "topics": ["logs"]}),
    );
    let out = ok(&["group", "list"]);
    assert!(out.contains("gg"), "{out}");
    let out = ok(&["group", "describe", "gg"]);
    assert!(out.contains("LAG") && out.contains("logs"), "{out}");
    ok(&["queue", "create", "jobs-q"]);
    ok(&["queue", "send", "jobs-q", "do-it"]);
    let out = ok(&["queue", "list"]);
    assert!(out.contains("jobs-q"), "{out}");
    let out = ok(&["queue", "receive", "jobs-q", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["messages"][0]["body"], "do-it", "{v}");
    let out = ok(&[
        "job",
        "create",
        "counter",
        "--input",
        "logs",
        "--output-topic",
        "logs-count",
        "--key",
        "/k",
        "--window",
        "tumbling:1000",
        "--aggregate",
        "count",
    ]);
    assert!(out.contains("counter"), "{out}");
    let out = ok(&["job", "list"]);
    assert!(out.contains("counter") && out.contains("LAG"), "{out}");
    let out = ok(&["job", "show", "counter"]);
    assert!(out.contains("PROCESSED"), "{out}");
    let out = ok(&["job", "stop", "counter"]);
    assert!(out.contains("stopped"), "{out}");
    ok(&["queue", "delete", "jobs-q"]);
    ok(&["topic", "delete", "logs"]);
    let (code, _, err) = cli(&d, &t, &["topic", "describe", "logs"]);
    assert_ne!(code, 0);
    assert_eq!(err.trim(), "minicloud: unknown topic \"logs\" (HTTP 404)");
    let (code, _, err) = cli(
        &d,
        &t,
        &[
            "job",
            "create",
            "x",
            "--input",
            "a",
            "--output-topic",
            "b",
            "--key",
            "/k",
            "--window",
            "tumbling:0",
            "--aggregate",
            "count",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("HTTP 4"), "{err}");
}
