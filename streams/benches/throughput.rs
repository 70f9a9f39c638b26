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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use streams::{FetchOptions, ProduceRecord, Streams, StreamsConfig, TopicConfig};

const VALUE_BYTES: usize = 100;
const BATCH: usize = 1000;

fn records_env() -> usize {
    std::env::var("STREAMS_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000)
}

fn line(what: &str, n: usize, secs: f64, bytes: usize) {
    println!(
        "{what}: {n} records in {secs:.3} s = {:.0} records/s, {:.1} MB/s",
        n as f64 / secs,
        bytes as f64 / secs / 1e6
    );
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

// ------------------------------------------------------------------ redis

struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_server_path() -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .output()
        .ok()?;
    if found.status.success() {
        return Some(String::from_utf8_lossy(&found.stdout).trim().to_string());
    }
    eprintln!("redis-server missing: installing Debian's redis-server");
    let _ = Command::new("apt-get")
        .arg("update")
        .stdout(Stdio::null())
        .status();
    let ok = Command::new("apt-get")
        .args(["install", "-y", "redis-server"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .output()
        .ok()?;
    found
        .status
        .success()
        .then(|| String::from_utf8_lossy(&found.stdout).trim().to_string())
}

fn start_redis() -> Option<Redis> {
    let bin = redis_server_path()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = tempfile::tempdir_in(bench_dir()).ok()?;
    let child = Command::new(bin)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
        ])
        .args(["--appendfsync", "everysec", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let r = Redis {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(r);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn resp_cmd(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one RESP reply; for an XREADGROUP answer adds the entries (arrays
/// at depth 2) and the field bytes (bulks at depth 5) to `counts`.
fn read_reply(r: &mut BufReader<TcpStream>, depth: usize, counts: &mut (usize, usize)) {
    let mut l = Vec::new();
    r.read_until(b'\n', &mut l).expect("read");
    let body = std::str::from_utf8(&l[1..l.len() - 2]).expect("utf8");
    match l[0] {
        b'+' | b':' => {}
        b'-' => panic!("redis error: {body}"),
        b'$' => {
            let n: i64 = body.parse().expect("len");
            if n >= 0 {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf).expect("read");
                if depth == 5 {
                    counts.1 += n as usize;
                }
            }
        }
        b'*' => {
            let n: i64 = body.parse().expect("len");
            if depth == 2 {
                counts.0 += n.max(0) as usize;
            }
            for _ in 0..n.max(0) {
                read_reply(r, depth + 1, counts);
            }
        }
        other => panic!("unexpected RESP type {other}"),
    }
}

fn bench_redis(n: usize) {
    if std::env::var("STREAMS_BENCH_NO_REDIS").is_ok() {
        return;
    }
    let Some(redis) = start_redis() else {
        println!("redis streams: skipped (redis-server not available)");
        return;
    };
    let stream = TcpStream::connect(("127.0.0.1", redis.port)).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::with_capacity(1 << 20, stream);
    let value = vec![b'x'; VALUE_BYTES];
    let mut buf = Vec::with_capacity(BATCH * 160);
    let t0 = Instant::now();
    let mut produced = 0;
    while produced < n {
        buf.clear();
        for _ in 0..BATCH {
            resp_cmd(&mut buf, &[b"XADD", b"bench", b"*", b"v", &value]);
        }
        w.write_all(&buf).expect("write");
        for _ in 0..BATCH {
            read_reply(&mut r, 0, &mut (0, 0));
        }
        produced += BATCH;
    }
    let secs = t0.elapsed().as_secs_f64();
    line(
        &format!("redis streams XADD pipelined {BATCH} per round trip (TCP loopback)"),
        produced,
        secs,
        produced * VALUE_BYTES,
    );

    for (group, noack) in [("g", false), ("g-noack", true)] {
        buf.clear();
        resp_cmd(
            &mut buf,
            &[b"XGROUP", b"CREATE", b"bench", group.as_bytes(), b"0"],
        );
        w.write_all(&buf).expect("write");
        read_reply(&mut r, 0, &mut (0, 0));
        let t0 = Instant::now();
        let mut counts = (0usize, 0usize);
        while counts.0 < produced {
            buf.clear();
            let mut args: Vec<&[u8]> = vec![
                b"XREADGROUP",
                b"GROUP",
                group.as_bytes(),
                b"c",
                b"COUNT",
                b"10000",
            ];
            if noack {
                args.push(b"NOACK");
            }
            args.extend_from_slice(&[b"STREAMS", b"bench", b">"]);
            resp_cmd(&mut buf, &args);
            w.write_all(&buf).expect("write");
            let before = counts.0;
            read_reply(&mut r, 0, &mut counts);
            if counts.0 == before {
                break;
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let what = if noack {
            "XREADGROUP COUNT 10000 NOACK"
        } else {
            "XREADGROUP COUNT 10000 (entries enter the PEL)"
        };
        line(
            &format!("redis streams {what} (TCP loopback)"),
            counts.0,
            secs,
            counts.1,
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let n = records_env();
    println!("# streams throughput bench: {n} records of {VALUE_BYTES} bytes, value only");
    bench_log(1, n);
    bench_log(4, n);
    bench_latency(10_000);
    bench_redis(n);
    println!("# HTTP-path figures come with the api crate's routes (not measured here)");
}
