//! virtio-vsock end to end with the mini guest: megabytes both ways with
//! every byte checked, several connections at once, refusals, the
//! handshake, half-close, and the device's metrics.

mod common;
mod http_client;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

/// Byte `i` of the guest's test pattern (images/README.md).
fn pattern_byte(i: u64) -> u8 {
    let w = (i / 8)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x5851_F42D_4C95_7F2D);
    (w >> ((i % 8) * 8)) as u8
}

fn pattern(off: u64, n: usize) -> Vec<u8> {
    (0..n as u64).map(|i| pattern_byte(off + i)).collect()
}

struct Rig {
    dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Self {
        Rig {
            dir: tempfile::tempdir().expect("tmp"),
        }
    }
    fn uds(&self) -> PathBuf {
        self.dir.path().join("v.sock")
    }
    fn port_path(&self, port: u32) -> PathBuf {
        PathBuf::from(format!("{}_{port}", self.uds().display()))
    }
    fn run(&self, run: &str, extra: &[&str]) -> Output {
        let uds = self.uds();
        let mut args = vec![
            "--vsock-uds",
            uds.to_str().expect("utf8"),
            "--vsock-cid",
            "3",
        ];
        args.extend_from_slice(extra);
        run_mini(&args, run)
    }
}

/// Connects to the VMM's vsock socket and asks for guest `port`, retrying
/// until the guest listens; returns the stream after the `OK` line.
fn connect_guest(uds: &Path, port: u32, within: Duration) -> (UnixStream, String) {
    let end = Instant::now() + within;
    loop {
        if let Ok(mut s) = UnixStream::connect(uds) {
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            s.write_all(format!("CONNECT {port}\n").as_bytes())
                .expect("connect line");
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while let Ok(1) = s.read(&mut b) {
                line.push(b[0]);
                if b[0] == b'\n' {
                    break;
                }
            }
            let line = String::from_utf8_lossy(&line).to_string();
            if line.starts_with("OK ") {
                return (s, line);
            }
        }
        assert!(Instant::now() < end, "guest port {port} never accepted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A host listener on `path` that takes one connection, reads to EOF and
/// returns what it got.
fn sink(path: &Path) -> JoinHandle<Vec<u8>> {
    let l = UnixListener::bind(path).expect("bind");
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().expect("accept");
        let mut all = Vec::new();
        c.read_to_end(&mut all).expect("read");
        all
    })
}

#[test]
fn guest_to_host_megabytes_arrive_intact() {
    let rig = Rig::new();
    let got = sink(&rig.port_path(1234));
    let o = rig.run("vsock-send 1234 3000000", &[]);
    assert_status(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("vsock: cid=3"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("vsock-send: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(field(line, "sent"), Some("3000000"), "{out}");
    let data = got.join().expect("sink");
    assert_eq!(data.len(), 3_000_000);
    if let Some(i) = (0..data.len()).find(|i| data[*i] != pattern_byte(*i as u64)) {
        panic!("first bad byte at {i}");
    }
}

#[test]
fn host_to_guest_megabytes_arrive_intact_and_half_close_works() {
    let rig = Rig::new();
    let uds = rig.uds();
    let host = std::thread::spawn(move || {
        let (mut s, ok) = connect_guest(&uds, 5000, Duration::from_secs(30));
        assert!(
            ok.trim()
                .strip_prefix("OK ")
                .is_some_and(|p| p.parse::<u32>().is_ok())
        );
        let total = 2_000_000usize;
        let mut off = 0;
        while off < total {
            // Odd-sized writes: the guest must not care how bytes are cut.
            let n = (total - off).min(7919 + off % 13);
            s.write_all(&pattern(off as u64, n)).expect("write");
            off += n;
        }
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        // The guest closes after seeing our EOF: we see EOF too.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("eof");
        rest
    });
    let o = rig.run("vsock-recv 5000", &[]);
    assert_status(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("vsock-recv: received=2000000 ok"), "{out}");
    assert!(host.join().expect("host").is_empty());
}

#[test]
fn many_connections_at_once_each_echo_their_own_bytes() {
    let rig = Rig::new();
    let uds = rig.uds();
    const CONNS: usize = 16;
    let clients = std::thread::spawn(move || {
        // Two waves of eight (the guest echoes eight at a time), each
        // connection with its own bytes, written and read concurrently.
        let mut total = 0;
        for wave in 0..2 {
            let mut hs = Vec::new();
            for i in 0..CONNS / 2 {
                let uds = uds.clone();
                hs.push(std::thread::spawn(move || {
                    let (s, _) = connect_guest(&uds, 6000, Duration::from_secs(30));
                    let seed = (wave * 100 + i) as u64 * 1_000_003;
                    let len = 60_000 + i * 1000;
                    let data = pattern(seed, len);
                    let mut w = s.try_clone().expect("clone");
                    let d2 = data.clone();
                    let writer = std::thread::spawn(move || {
                        for chunk in d2.chunks(4096) {
                            w.write_all(chunk).expect("write");
                        }
                        w.shutdown(std::net::Shutdown::Write).expect("shut");
                    });
                    let mut back = Vec::new();
                    let mut r = BufReader::new(s);
                    r.read_to_end(&mut back).expect("read");
                    writer.join().expect("writer");
                    assert_eq!(back.len(), data.len(), "conn {wave}/{i}");
                    assert!(back == data, "conn {wave}/{i}: echoed bytes differ");
                    len
                }));
            }
            for h in hs {
                total += h.join().expect("client");
            }
        }
        total
    });
    let o = rig.run(&format!("vsock-echo 6000 {CONNS}"), &[]);
    assert_status(&o, 0);
    let total = clients.join().expect("clients");
    let out = stdout(&o);
    assert!(
        out.contains(&format!("vsock-echo: conns={CONNS} bytes={total}")),
        "{out}"
    );
}

#[test]
fn refusals_and_bad_handshakes_are_clean() {
    let rig = Rig::new();
    let uds = rig.uds();
    let host = std::thread::spawn(move || {
        // Wait for the socket, then: a port nobody listens on in the guest,
        // and a line that is not CONNECT. Both: closed without an OK.
        let end = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&uds).is_err() {
            assert!(Instant::now() < end);
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut answers = Vec::new();
        for line in ["CONNECT 4444\n", "HELLO\n"] {
            let mut s = UnixStream::connect(&uds).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("t");
            s.write_all(line.as_bytes()).expect("w");
            let mut got = String::new();
            let _ = s.read_to_string(&mut got);
            answers.push(got);
        }
        answers
    });
    // The guest connects to a host port nobody listens on, then idles long
    // enough for the host's attempts.
    let o = rig.run("vsock-send 7777 10; cpu-burn 2", &[]);
    assert_status(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("vsock-send: error connect port=7777 refused"),
        "{out}"
    );
    assert_eq!(
        host.join().expect("host"),
        vec![String::new(), String::new()]
    );
}

#[test]
fn request_answer_over_a_host_listener_and_metrics_count_it() {
    let rig = Rig::new();
    let l = UnixListener::bind(rig.port_path(8000)).expect("bind");
    let api = rig.dir.path().join("api.sock");
    let api2 = api.clone();
    let server = std::thread::spawn(move || {
        let (c, _) = l.accept().expect("accept");
        let mut r = BufReader::new(c.try_clone().expect("clone"));
        let mut line = String::new();
        r.read_line(&mut line).expect("line");
        let mut w = c;
        w.write_all(format!("pong {line}").as_bytes())
            .expect("answer");
        drop(w);
        drop(r);
        // The guest burns a second after its answer: ask the API then.
        std::thread::sleep(Duration::from_millis(400));
        let m = http_client::request(&api2, "GET", "/metrics", None).json();
        (line, m)
    });
    let o = rig.run(
        "vsock-req 8000 hello from the guest; cpu-burn 1",
        &["--api-sock", api.to_str().expect("utf8")],
    );
    assert_status(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("vsock-req: pong hello from the guest"),
        "{out}"
    );
    let (line, m) = server.join().expect("server");
    assert_eq!(line, "hello from the guest\n");
    let dev = m["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["type"] == "vsock")
        .unwrap_or_else(|| panic!("{m}"))
        .clone();
    assert_eq!(dev["write_bytes"], 21, "{m}");
    assert_eq!(dev["read_bytes"], 26, "{m}");
    assert_eq!(dev["connections"], 0, "{m}");
}
