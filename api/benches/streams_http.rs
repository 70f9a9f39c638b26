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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

const VALUE_BYTES: usize = 100;
const BATCH: usize = 1000;
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

// ------------------------------------------------------------------ daemon

struct Daemon {
    child: Child,
    url: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon() -> Daemon {
    let dir = tempfile::tempdir().expect("tmp");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let data = dir.path().join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_minicloud"))
        .args(["serve", "--no-cli-config", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--images-dir")
        .arg(dir.path().join("images"))
        .arg("--vmm")
        .arg(PathBuf::from("/nonexistent/minicloud-vmm"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn minicloud serve");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("{url}/healthz")).call().is_err() {
        assert!(Instant::now() < deadline, "daemon did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = std::fs::read_to_string(data.join("admin.token"))
        .expect("admin.token")
        .trim()
        .to_string();
    Daemon {
        child,
        url,
        token,
        _dir: dir,
    }
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
    d: &Daemon,
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

// ------------------------------------------------------------------- redis

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

fn which(bin: &str) -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .ok()?;
    found
        .status
        .success()
        .then(|| String::from_utf8_lossy(&found.stdout).trim().to_string())
}

fn redis_server_path() -> Option<String> {
    if let Some(p) = which("redis-server") {
        return Some(p);
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
    which("redis-server")
}

fn start_redis() -> Option<Redis> {
    let bin = redis_server_path()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = tempfile::tempdir().ok()?;
    let child = Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
        ])
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

/// Answers (XADD, XREADGROUP, XREADGROUP NOACK) records/s.
fn bench_redis(n: usize) -> Option<(f64, f64, f64)> {
    let Some(redis) = start_redis() else {
        println!("redis streams: skipped (redis-server not available)");
        return None;
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
    let xadd = line(
        &format!("redis streams XADD pipelined {BATCH} per round trip (TCP loopback)"),
        produced,
        secs,
        produced * VALUE_BYTES,
    );
    let mut reads = Vec::new();
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
        reads.push(line(
            &format!("redis streams {what} (TCP loopback)"),
            counts.0,
            secs,
            counts.1,
        ));
    }
    Some((xadd, reads[0], reads[1]))
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let n = records_env();
    println!(
        "# streams over HTTP: {n} records of {VALUE_BYTES} bytes per figure, value only; Redis Streams in the same run"
    );
    let d = start_daemon();
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
    let Some((xadd, xread, xread_noack)) = bench_redis(n) else {
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
