//! Streams over HTTP (issue 9): `cargo bench -p api --bench streams_http`.
//!
//! Starts a real `minicloud serve` (bench profile) on a loopback port with a
//! fresh data directory and measures, from one client thread over one
//! keep-alive HTTP/1.1 connection:
//! - produce throughput of 100-byte records in batches of 1,000 per
//!   `POST /v1/topics/{t}/records`, JSON and binary
//!   (`application/vnd.minicloud.batch`), to topics of 1 and 4 partitions;
//! - consume throughput with `GET .../partitions/{p}/records` of up to
//!   10,000 records per request, JSON and binary (`Accept:`), every
//!   partition read to its end and every record counted;
//!
//! and, in the same run, Redis Streams over TCP loopback: Debian's
//! `redis-server` (installed with apt-get when missing) on a free
//! 127.0.0.1 port, `appendonly yes, appendfsync everysec` (the daemon's
//! default promise: fsync at most every second), raw RESP over one
//! connection: `XADD` pipelined 1,000 per round trip, then `XREADGROUP
//! COUNT 10000` (with and without `NOACK`).
//!
//! ```sh
//! cargo bench -p api --bench streams_http
//! STREAMS_HTTP_BENCH_RECORDS=2000000 cargo bench -p api --bench streams_http
//! ```

use std::io::Read;
use std::time::{Duration, Instant};

use serde::Deserialize;

#[path = "../../streams/benches/support/redis.rs"]
mod redis;
mod support;

use redis::{BATCH, VALUE_BYTES};
const FETCH: usize = 10_000;
const BATCH_TYPE: &str = "application/vnd.minicloud.batch";

fn records_env() -> usize {
    std::env::var("STREAMS_HTTP_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn line(what: &str, n: usize, secs: f64, bytes: usize) -> f64 {
    let rate = n as f64 / secs;
    println!(
        "{what}: {n} records in {secs:.3} s = {rate:.0} records/s, {:.1} MB/s",
        bytes as f64 / secs / 1e6
    );
    rate
}

// -------------------------------------------------------------------- http

#[derive(Deserialize)]
struct FetchJson<'a> {
    #[serde(borrow)]
    records: Vec<FetchedRecord<'a>>,
    next_offset: u64,
}

/// A record's value borrowed from the response body (a client that
/// copies each value would pay one allocation per record more).
#[derive(Deserialize)]
struct FetchedRecord<'a> {
    #[serde(borrow)]
    value: Option<std::borrow::Cow<'a, str>>,
}

fn json_batch(value: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(BATCH * (VALUE_BYTES + 16) + 16);
    b.extend_from_slice(b"{\"records\":[");
    for i in 0..BATCH {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(b"{\"value\":\"");
        b.extend_from_slice(value.as_bytes());
        b.extend_from_slice(b"\"}");
    }
    b.extend_from_slice(b"]}");
    b
}

fn binary_batch(value: &axum::body::Bytes) -> Vec<u8> {
    let recs: Vec<streams::ProduceRecord> = (0..BATCH)
        .map(|_| streams::ProduceRecord {
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect();
    streams::binary::encode_produce(&recs)
}

/// Produces `n` records to a new topic, then reads every partition to its
/// end; answers (produce, consume) records/s.
fn bench_http(
    d: &support::Daemon,
    agent: &ureq::Agent,
    partitions: u32,
    binary: bool,
    n: usize,
) -> (f64, f64) {
    let form = if binary { "binary" } else { "JSON" };
    let topic = format!("bench-{partitions}-{}", if binary { "bin" } else { "json" });
    let auth = format!("Bearer {}", d.token);
    let r = agent
        .post(&format!("{}/v1/topics", d.url))
        .set("Authorization", &auth)
        .send_json(serde_json::json!({
            "name": topic, "partitions": partitions, "segment_bytes": 256 << 20
        }));
    assert!(r.is_ok(), "create topic: {r:?}");
    let value_s = "x".repeat(VALUE_BYTES);
    let value_b = axum::body::Bytes::from(value_s.clone());
    let url = format!("{}/v1/topics/{topic}/records", d.url);
    let t0 = Instant::now();
    let mut produced = 0;
    while produced < n {
        // Build each request inside the timed loop, as a client would.
        let (body, ctype) = if binary {
            (binary_batch(&value_b), BATCH_TYPE)
        } else {
            (json_batch(&value_s), "application/json")
        };
        let resp = agent
            .post(&url)
            .set("Authorization", &auth)
            .set("Content-Type", ctype)
            .send_bytes(&body)
            .expect("produce");
        let mut ack = Vec::new();
        resp.into_reader().read_to_end(&mut ack).expect("ack");
        assert!(ack.starts_with(b"{\"offsets\""), "ack");
        produced += BATCH;
    }
    let secs = t0.elapsed().as_secs_f64();
    let p = line(
        &format!(
            "HTTP produce {form}, {partitions} partition(s), batches of {BATCH} (one connection)"
        ),
        produced,
        secs,
        produced * VALUE_BYTES,
    );

    let t0 = Instant::now();
    let mut consumed = 0usize;
    let mut bytes = 0usize;
    for part in 0..partitions {
        let mut off = 0u64;
        loop {
            let mut req = agent
                .get(&format!(
                    "{}/v1/topics/{topic}/partitions/{part}/records?offset={off}&max_records={FETCH}&max_bytes=8388608",
                    d.url
                ))
                .set("Authorization", &auth);
            if binary {
                req = req.set("Accept", BATCH_TYPE);
            }
            let resp = req.call().expect("fetch");
            let next: Option<u64> = resp.header("x-next-offset").and_then(|v| v.parse().ok());
            let mut body = Vec::new();
            resp.into_reader().read_to_end(&mut body).expect("body");
            let (count, vbytes, next) = if binary {
                let recs = streams::binary::decode_fetch(body.into()).expect("decode");
                let vb: usize = recs
                    .iter()
                    .map(|r| r.value.as_ref().map_or(0, |v| v.len()))
                    .sum();
                (recs.len(), vb, next.expect("x-next-offset"))
            } else {
                let f: FetchJson = serde_json::from_slice(&body).expect("json");
                let vb: usize = f
                    .records
                    .iter()
                    .map(|r| r.value.as_ref().map_or(0, |v| v.len()))
                    .sum();
                (f.records.len(), vb, f.next_offset)
            };
            if count == 0 {
                break;
            }
            consumed += count;
            bytes += vbytes;
            off = next;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(consumed, produced, "every record read back");
    assert_eq!(bytes, produced * VALUE_BYTES);
    let c = line(
        &format!(
            "HTTP consume {form}, {partitions} partition(s), fetches of up to {FETCH} (one connection)"
        ),
        consumed,
        secs,
        bytes,
    );
    (p, c)
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let n = records_env();
    println!(
        "# streams over HTTP: {n} records of {VALUE_BYTES} bytes per figure, value only; Redis Streams in the same run"
    );
    // Streams only: no VMs, so no VMM binary or images.
    let d = support::serve(
        std::path::Path::new("/nonexistent/minicloud-vmm"),
        Some(std::path::Path::new("/nonexistent/images")),
        &[],
    );
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .max_idle_connections_per_host(1)
        .build();
    let mut ours = Vec::new();
    for binary in [false, true] {
        for partitions in [1, 4] {
            ours.push((
                binary,
                partitions,
                bench_http(&d, &agent, partitions, binary, n),
            ));
        }
    }
    drop(d);
    let Some((xadd, xread, xread_noack)) = redis::bench_redis(n, &std::env::temp_dir(), line)
    else {
        return;
    };
    println!(
        "# ratio to Redis Streams (produce vs XADD pipelined; consume vs XREADGROUP, and vs XREADGROUP NOACK)"
    );
    for (binary, partitions, (p, c)) in ours {
        println!(
            "ratio {} {partitions} partition(s): produce {:.2}x, consume {:.2}x ({:.2}x vs NOACK)",
            if binary { "binary" } else { "JSON" },
            p / xadd,
            c / xread,
            c / xread_noack
        );
    }
}
