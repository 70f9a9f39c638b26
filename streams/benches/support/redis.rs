//! Redis Streams as the peer of the streams benches, shared by
//! `streams/benches/throughput.rs` and `api/benches/streams_http.rs` (the
//! latter includes this file by path: bench targets of two crates cannot
//! share a module otherwise).
//!
//! Uses `redis-server` from PATH, installing Debian's package with
//! `apt-get install -y redis-server` when missing; it runs on 127.0.0.1 on
//! a free port with `appendonly yes, appendfsync everysec`, and is driven
//! over raw RESP: XADD pipelined in batches, XREADGROUP COUNT 10000.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A value's bytes in every XADD.
pub const VALUE_BYTES: usize = 100;
/// XADDs per round trip.
pub const BATCH: usize = 1000;

/// A running redis-server (killed on drop).
pub struct Redis {
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

/// Starts redis-server with its data in a new directory under `parent`.
pub fn start_redis(parent: &Path) -> Option<Redis> {
    let bin = redis_server_path()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = tempfile::tempdir_in(parent).ok()?;
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

/// Appends one RESP command.
pub fn resp_cmd(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one RESP reply; for an XREADGROUP answer adds the entries (arrays
/// at depth 2) and the field bytes (bulks at depth 5) to `counts`.
pub fn read_reply(r: &mut BufReader<TcpStream>, depth: usize, counts: &mut (usize, usize)) {
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

/// XADD `n` records, then read them with XREADGROUP with and without
/// NOACK; `line` prints a figure and answers its records/s. Answers
/// (XADD, XREADGROUP, XREADGROUP NOACK) records/s, or `None` without Redis.
pub fn bench_redis(
    n: usize,
    parent: &Path,
    line: impl Fn(&str, usize, f64, usize) -> f64,
) -> Option<(f64, f64, f64)> {
    let Some(redis) = start_redis(parent) else {
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
