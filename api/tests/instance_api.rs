//! The instance API over vsock: identity from the connection's origin,
//! metadata, tenant scoping, and a hostile guest (garbage, floods,
//! hundreds of connections) kept to itself.
//!
//! Host-side checks speak to the same listener the VMM forwards guest
//! port 80 to (`<vm dir>/vsock.sock_80`); the guest-side ones run the mini
//! guest's own client.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use common::Daemon;
use serde_json::{Value, json};

fn sock(d: &Daemon, id: &str) -> PathBuf {
    d.data_dir().join("vms").join(id).join("vsock.sock_80")
}

/// One HTTP/1.1 request on a fresh connection; (status, body).
fn http(path: &PathBuf, req: &str) -> (u16, String) {
    let mut s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(req.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get(path: &PathBuf, uri: &str) -> (u16, Value) {
    let (s, b) = http(
        path,
        &format!("GET {uri} HTTP/1.1\r\nHost: minicloud\r\nConnection: close\r\n\r\n"),
    );
    (s, serde_json::from_str(&b).unwrap_or(Value::String(b)))
}

#[test]
fn each_vm_is_itself_within_its_project() {
    let d = Daemon::start();
    let ta = d.project("tenant-a", None);
    let tb = d.project("tenant-b", None);
    let (s, v) = d.post(
        "/v1/topics",
        &tb,
        json!({"name": "secret", "partitions": 1}),
    );
    assert_eq!(s, 201, "{v}");
    let a = d.launch(
        &ta,
        json!({"name": "web-a", "image": "mini", "vcpus": 1, "memory_mib": 64, "user_data": "role=web"}),
    );
    let b = d.launch(
        &tb,
        json!({"name": "web-b", "image": "mini", "vcpus": 1, "memory_mib": 64}),
    );
    d.wait_state(&ta, &a, "running");
    d.wait_state(&tb, &b, "running");

    let (s, m) = get(&sock(&d, &a), "/v1/metadata");
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["instance_id"], a.as_str());
    assert_eq!(m["name"], "web-a");
    assert_eq!(m["project"], "tenant-a");
    assert_eq!(m["user_data"], "role=web");
    let (_, m) = get(&sock(&d, &b), "/v1/metadata");
    assert_eq!(m["instance_id"], b.as_str());

    // A token in the guest's request changes nothing: it is still web-a.
    let (s, m) = http(
        &sock(&d, &a),
        &format!(
            "GET /v1/metadata HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tb}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(s, 200);
    assert!(m.contains(&a), "{m}");
    // Another tenant's topic does not exist for web-a; its own project does.
    let (s, v) = get(&sock(&d, &a), "/v1/topics/secret");
    assert_eq!(s, 404, "{v}");
    let (s, v) = get(&sock(&d, &b), "/v1/topics/secret");
    assert_eq!(s, 200, "{v}");
    // Instances act within their project, never as admin.
    let (s, v) = get(&sock(&d, &a), "/v1/projects");
    assert_eq!(s, 403, "{v}");
    // Over TCP there is no instance: the metadata service is not there.
    let (s, v) = d.get("/v1/metadata", &ta);
    assert_eq!(s, 404, "{v}");

    // The guest's own client reaches it (mini's `metadata` command).
    let c = d.launch(
        &ta,
        json!({"name": "asker", "image": "mini", "vcpus": 1, "memory_mib": 64, "user_data": "hello", "run": "metadata"}),
    );
    d.wait_state(&ta, &c, "stopped");
    let text = d.wait_console(&ta, &c, "metadata: ");
    assert!(text.contains(&format!("\"instance_id\":\"{c}\"")), "{text}");
    assert!(text.contains("\"user_data\":\"hello\""), "{text}");

    // A daemon restart (kill -9) serves the running VMs again.
    let mut d = d;
    d.kill9();
    d.spawn();
    let (s, m) = get(&sock(&d, &a), "/v1/metadata");
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["instance_id"], a.as_str());

    // The listener goes away with the VM.
    let (s, v) = d.post(&format!("/v1/instances/{a}/stop"), &ta, json!({}));
    assert!(s == 202 || s == 200, "{v}");
    d.wait_state(&ta, &a, "stopped");
    assert!(!sock(&d, &a).exists(), "socket left behind");
}

#[test]
fn a_hostile_guest_is_limited_and_logged_and_harms_no_one() {
    // A low request rate so that the flood below crosses it quickly.
    let d = Daemon::start_with_env(&[("MINICLOUD_GUEST_RATE", "200")]);
    let t = d.project("noisy", None);
    let id = d.launch(
        &t,
        json!({"name": "noisy", "image": "mini", "vcpus": 1, "memory_mib": 64}),
    );
    let calm = d.launch(
        &t,
        json!({"name": "calm", "image": "mini", "vcpus": 1, "memory_mib": 64}),
    );
    d.wait_state(&t, &id, "running");
    d.wait_state(&t, &calm, "running");
    let path = sock(&d, &id);

    // Garbage: answered 400 and closed.
    let (s, _) = http(&path, "\x00\x01\x02 garbage garbage\r\n\r\n");
    assert_eq!(s, 400);
    // Hundreds of connections: beyond the limit they are closed at once.
    let conns: Vec<UnixStream> = (0..300)
        .map(|_| UnixStream::connect(&path).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    let mut held = Vec::new();
    let mut refused = 0;
    for mut c in conns {
        c.set_nonblocking(true).expect("nonblocking");
        let mut b = [0u8; 1];
        match c.read(&mut b) {
            Ok(0) => refused += 1,
            _ => held.push(c),
        }
    }
    assert_eq!(held.len(), 32, "the per-VM connection limit:\n{}", d.log());
    assert_eq!(refused, 268);
    // The other VM and the TCP API are unaffected meanwhile.
    let (s, m) = get(&sock(&d, &calm), "/v1/metadata");
    assert_eq!(s, 200, "{m}");
    let (s, _) = d.get("/v1/instances", &t);
    assert_eq!(s, 200);
    drop(held);
    std::thread::sleep(Duration::from_millis(300));

    // A request flood on one keep-alive connection: 429 past the rate.
    let mut c = UnixStream::connect(&path).expect("connect");
    let req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3000);
    let mut r = c.try_clone().expect("clone");
    let writer = std::thread::spawn(move || c.write_all(req.as_bytes()));
    let mut all = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    r.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&all);
        if text.matches("HTTP/1.1 ").count() >= 3000 {
            break;
        }
    }
    let _ = writer.join();
    let text = String::from_utf8_lossy(&all);
    let ok = text.matches("HTTP/1.1 200").count();
    let limited = text.matches("HTTP/1.1 429").count();
    assert!(ok >= 200 && limited >= 1000, "200: {ok}, 429: {limited}");

    // From inside: the guest sends 64 KiB of garbage to port 80.
    let g = d.launch(
        &t,
        json!({"name": "garbler", "image": "mini", "vcpus": 1, "memory_mib": 64, "run": "vsock-send 80 65536; metadata"}),
    );
    d.wait_state(&t, &g, "stopped");
    let text = d.wait_console(&t, &g, "metadata: ");
    assert!(
        text.contains(&g),
        "the guest's next request still works:\n{text}"
    );

    // Logged, with the instance, and the daemon is still up.
    let log = d.log();
    assert!(log.contains("over its open connection limit"), "{log}");
    assert!(log.contains("malformed or stalled request"), "{log}");
    assert!(log.contains("over its request rate"), "{log}");
    let (s, m) = get(&sock(&d, &calm), "/v1/metadata");
    assert_eq!(s, 200, "{m}");
}
