//! Produce and consume throughput, end-to-end latency, and Redis Streams
//! side by side in the same run. One printed line per figure.
//!
//! ```sh
//! cargo bench -p streams --bench throughput
//! STREAMS_BENCH_RECORDS=5000000 cargo bench -p streams --bench throughput
//! STREAMS_BENCH_NO_REDIS=1 cargo bench -p streams --bench throughput
//! ```
//!
//! Redis: uses `redis-server` from PATH, installing Debian's package with
//! `apt-get install -y redis-server` when missing; it runs on 127.0.0.1 on
//! a free port with `appendonly yes, appendfsync everysec` (the same
//! promise as this log's default of fsync at most every second), and is
//! driven over raw RESP: XADD pipelined in batches, XREADGROUP COUNT.

use std::time::{Duration, Instant};

use bytes::Bytes;
use streams::{FetchOptions, ProduceRecord, Streams, StreamsConfig, TopicConfig};

#[path = "support/redis.rs"]
mod redis;

use redis::{BATCH, VALUE_BYTES};

fn records_env() -> usize {
    std::env::var("STREAMS_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000)
}

fn line(what: &str, n: usize, secs: f64, bytes: usize) -> f64 {
    let rate = n as f64 / secs;
    println!(
        "{what}: {n} records in {secs:.3} s = {rate:.0} records/s, {:.1} MB/s",
        bytes as f64 / secs / 1e6
    );
    rate
}

fn batch(value: &Bytes) -> Vec<ProduceRecord> {
    (0..BATCH)
        .map(|_| ProduceRecord {
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect()
}

fn bench_log(partitions: u32, n: usize) {
    let dir = tempfile::tempdir_in(bench_dir()).expect("tempdir");
    let s = Streams::open(StreamsConfig::new(dir.path())).expect("open");
    let mut cfg = TopicConfig::new(partitions);
    cfg.segment_bytes = 256 << 20;
    s.create_topic("bench", "t", cfg).expect("create");
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    // Build batches outside the timed loop would flatter the figure; build
    // them inside (cheap: refcounted values).
    let t0 = Instant::now();
    let mut produced = 0;
    while produced < n {
        let b = batch(&value);
        s.produce("bench", "t", &b, None).expect("produce");
        produced += BATCH;
    }
    let secs = t0.elapsed().as_secs_f64();
    line(
        &format!("streams in-process produce, {partitions} partition(s), batches of {BATCH}"),
        produced,
        secs,
        produced * VALUE_BYTES,
    );

    let t0 = Instant::now();
    let mut consumed = 0usize;
    let mut bytes = 0usize;
    for p in 0..partitions {
        let mut off = 0;
        loop {
            let r = s
                .fetch(
                    "bench",
                    "t",
                    p,
                    off,
                    FetchOptions {
                        max_records: 10_000,
                        max_bytes: 4 << 20,
                    },
                )
                .expect("fetch");
            if r.records.is_empty() {
                break;
            }
            for rec in &r.records {
                bytes += rec.value.as_ref().map_or(0, |v| v.len());
            }
            consumed += r.records.len();
            off = r.next_offset;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(consumed, produced);
    line(
        &format!("streams in-process consume, {partitions} partition(s), fetches of 10000"),
        consumed,
        secs,
        bytes,
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// A producer thread paced at `rate` records/s (spin-waiting to the
/// schedule) and a tokio consumer long-polling with `fetch_wait`; each
/// record carries its send time, latency is arrival minus send.
fn bench_latency(rate: u64) {
    let dir = tempfile::tempdir_in(bench_dir()).expect("tempdir");
    let s = Streams::open(StreamsConfig::new(dir.path())).expect("open");
    s.create_topic("bench", "lat", TopicConfig::new(1))
        .expect("create");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let n = 20_000usize;
    let base = Instant::now();
    let s2 = s.clone();
    let consumer = rt.spawn(async move {
        let mut off = 0;
        let mut lat = Vec::with_capacity(n);
        while lat.len() < n {
            let r = s2
                .fetch_wait(
                    "bench",
                    "lat",
                    0,
                    off,
                    FetchOptions::default(),
                    Duration::from_secs(5),
                )
                .await
                .expect("fetch");
            let now = base.elapsed().as_nanos() as u64;
            for rec in &r.records {
                let sent: u64 = std::str::from_utf8(&rec.value.as_deref().expect("v")[..20])
                    .expect("utf8")
                    .parse()
                    .expect("n");
                lat.push(Duration::from_nanos(now.saturating_sub(sent)));
            }
            off = r.next_offset;
        }
        lat
    });
    let gap = Duration::from_nanos(1_000_000_000 / rate);
    let pad = "x".repeat(VALUE_BYTES - 20);
    for i in 0..n {
        let due = gap * i as u32;
        while base.elapsed() < due {
            std::hint::spin_loop();
        }
        let v = format!("{:020}{pad}", base.elapsed().as_nanos() as u64);
        s.produce("bench", "lat", &[ProduceRecord::value(v)], None)
            .expect("produce");
    }
    let mut lat = rt.block_on(consumer).expect("join");
    lat.sort();
    println!(
        "streams in-process end-to-end latency (1 record per produce at {rate}/s -> long-poll fetch_wait), {n} records: p50 {:.1} us, p99 {:.1} us",
        percentile(&lat, 0.5).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6
    );
}

fn bench_dir() -> std::path::PathBuf {
    std::env::var("STREAMS_BENCH_DIR")
        .map_or_else(|_| std::env::temp_dir(), std::path::PathBuf::from)
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let n = records_env();
    println!("# streams throughput bench: {n} records of {VALUE_BYTES} bytes, value only");
    bench_log(1, n);
    bench_log(4, n);
    bench_latency(10_000);
    if std::env::var("STREAMS_BENCH_NO_REDIS").is_err() {
        redis::bench_redis(n, &bench_dir(), line);
    }
    println!("# HTTP-path figures come with the api crate's routes (not measured here)");
}
