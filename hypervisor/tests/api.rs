//! The control API against the real binary: state, pause/resume, metrics,
//! bad requests, orderly shutdown (the guest answers Ctrl-Alt-Del), the
//! shutdown deadline, kill and SIGTERM.

mod common;
mod http_client;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use http_client::*;

struct Vm {
    guest: Interactive,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(extra: &[&str]) -> Vm {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("api.sock");
    let kernel = mini_kernel();
    let mut args = vec![
        "--kernel",
        kernel.to_str().expect("utf8"),
        "--cmdline",
        "console=ttyS0",
        "--api-sock",
        sock.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    let mut guest = Interactive::start(&args);
    guest.expect("prompt", |l| l.ends_with("mini# "), Duration::from_secs(30));
    wait_for_socket(&sock, Duration::from_secs(5));
    Vm {
        guest,
        sock,
        _dir: dir,
    }
}

fn state(sock: &Path) -> String {
    let r = request(sock, "GET", "/vm", None);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["state"].as_str().expect("state").to_string()
}

#[test]
fn get_vm_reports_state_config_and_uptime() {
    let mut vm = start(&["--vcpus", "2", "--memory-mib", "64"]);
    let r = request(&vm.sock, "GET", "/vm", None);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["state"], "running");
    assert_eq!(v["config"]["vcpus"], 2);
    assert_eq!(v["config"]["memory_mib"], 64);
    assert!(v["uptime_ms"].as_u64().expect("uptime") < 60_000);
    vm.guest.send("poweroff");
    assert_eq!(vm.guest.wait(Duration::from_secs(10)), 0);
}

#[test]
fn pause_stops_the_guest_and_resume_lets_it_go_on() {
    let mut vm = start(&["--vcpus", "2"]);
    let r = request(&vm.sock, "PATCH", "/vm", Some(r#"{"state":"paused"}"#));
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(state(&vm.sock), "paused");
    // Pausing again is harmless.
    let r = request(&vm.sock, "PATCH", "/vm", Some(r#"{"state":"paused"}"#));
    assert_eq!(r.status, 204);
    let before = request(&vm.sock, "GET", "/metrics", None).json();
    vm.guest.send("echo while-paused");
    std::thread::sleep(Duration::from_millis(500));
    let after = request(&vm.sock, "GET", "/metrics", None).json();
    assert_eq!(before["vcpus"], after["vcpus"], "no vCPU ran while paused");
    let r = request(&vm.sock, "PATCH", "/vm", Some(r#"{"state":"resumed"}"#));
    assert_eq!(r.status, 204);
    assert_eq!(state(&vm.sock), "running");
    vm.guest.expect(
        "the echo typed while paused",
        |l| l == "while-paused",
        Duration::from_secs(10),
    );
    // Pause and resume quickly many times: every pause parks every vCPU.
    for _ in 0..20 {
        assert_eq!(
            request(&vm.sock, "PATCH", "/vm", Some(r#"{"state":"paused"}"#)).status,
            204
        );
        assert_eq!(
            request(&vm.sock, "PATCH", "/vm", Some(r#"{"state":"resumed"}"#)).status,
            204
        );
    }
    vm.guest.send("echo still-alive");
    vm.guest
        .expect("echo", |l| l == "still-alive", Duration::from_secs(10));
    vm.guest.send("poweroff");
    assert_eq!(vm.guest.wait(Duration::from_secs(10)), 0);
}

#[test]
fn metrics_count_exits_run_time_devices_and_rss() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = dir.path().join("d.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).expect("img");
    let mut vm = start(&["--disk", img.to_str().expect("utf8")]);
    vm.guest.send("blk-write 0 0 16 3");
    vm.guest.expect(
        "write",
        |l| l.starts_with("blk-write: ok"),
        Duration::from_secs(10),
    );
    vm.guest.send("blk-read 0 0");
    vm.guest.expect(
        "read",
        |l| l.starts_with("blk-read: "),
        Duration::from_secs(10),
    );
    let m = request(&vm.sock, "GET", "/metrics", None).json();
    let v0 = &m["vcpus"][0];
    assert!(v0["run_ns"].as_u64().expect("run_ns") > 0, "{m}");
    assert!(v0["exits"]["io_out"].as_u64().expect("io_out") > 100, "{m}");
    assert!(v0["exits"]["mmio_write"].as_u64().expect("mmio") > 0, "{m}");
    let d = &m["devices"][0];
    assert_eq!(d["id"], "disk0");
    assert_eq!(d["type"], "block");
    assert_eq!(d["write_bytes"], 16 * 512, "{m}");
    assert_eq!(d["read_bytes"], 512, "{m}");
    assert!(d["flush_ops"].as_u64().expect("flushes") >= 1, "{m}");
    assert!(m["rss_bytes"].as_u64().expect("rss") > 1 << 20);
    vm.guest.send("poweroff");
    assert_eq!(vm.guest.wait(Duration::from_secs(10)), 0);
}

#[test]
fn bad_requests_get_clear_errors_and_the_vmm_keeps_running() {
    let mut vm = start(&[]);
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("PATCH", "/vm", Some("{not json"), 400, "invalid body"),
        (
            "PATCH",
            "/vm",
            Some(r#"{"state":"paused","x":1}"#),
            400,
            "unknown field",
        ),
        (
            "PATCH",
            "/vm",
            Some(r#"{"state":"sleeping"}"#),
            400,
            "unknown variant",
        ),
        ("PATCH", "/vm", None, 400, "needs a JSON body"),
        (
            "PUT",
            "/actions",
            Some(r#"{"action_type":"reboot"}"#),
            400,
            "unknown variant",
        ),
        ("PUT", "/actions", Some(r#"{}"#), 400, "missing field"),
        ("GET", "/nope", None, 404, "no route"),
        ("DELETE", "/vm", None, 405, "not allowed"),
        ("GET", "/drives/disk9", None, 404, "no drive"),
        (
            "GET",
            "/network-interfaces/net0",
            None,
            404,
            "no network interface",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let r = request(&vm.sock, method, path, *body);
        assert_eq!(r.status, *status, "{method} {path} {body:?}: {r:?}");
        let msg = r.json()["fault_message"]
            .as_str()
            .expect("fault")
            .to_string();
        assert!(msg.contains(needle), "{method} {path}: {msg}");
    }
    // Garbage that is not HTTP at all.
    {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&vm.sock).expect("c");
        s.write_all(b"\x00\x01garbage\r\n\r\n").expect("w");
        assert_eq!(read_reply(&mut s).status, 400);
    }
    // Keep-alive: several requests on one connection.
    let mut s = std::os::unix::net::UnixStream::connect(&vm.sock).expect("c");
    for _ in 0..3 {
        send(&mut s, "GET", "/vm", None);
        assert_eq!(read_reply(&mut s).status, 200);
    }
    assert_eq!(state(&vm.sock), "running");
    vm.guest.send("echo alive");
    vm.guest
        .expect("echo", |l| l == "alive", Duration::from_secs(10));
    vm.guest.send("poweroff");
    assert_eq!(vm.guest.wait(Duration::from_secs(10)), 0);
}

#[test]
fn shutdown_asks_the_guest_which_powers_off() {
    let mut vm = start(&["--vcpus", "2"]);
    // Also from a paused VM: shutdown resumes it first.
    assert_eq!(
        request(&vm.sock, "PATCH", "/vm", Some(r#"{"state":"paused"}"#)).status,
        204
    );
    let t = Instant::now();
    let r = request(
        &vm.sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type":"shutdown"}"#),
    );
    assert_eq!(r.status, 204, "{r:?}");
    vm.guest.expect(
        "the guest's shutdown line",
        |l| l == "shutdown: ctrl-alt-del",
        Duration::from_secs(10),
    );
    assert_eq!(vm.guest.wait(Duration::from_secs(10)), 0);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(vm.guest.stderr().contains("guest powered off"));
}

#[test]
fn shutdown_of_a_guest_that_does_not_answer_ends_at_the_deadline() {
    let mut vm = start(&["--shutdown-timeout", "1.5"]);
    vm.guest.send("hang 30");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let r = request(
        &vm.sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type":"shutdown"}"#),
    );
    assert_eq!(r.status, 204);
    assert_eq!(state(&vm.sock), "shutting_down");
    // A second shutdown while one is under way is accepted and changes
    // nothing; pausing now is refused.
    let r = request(
        &vm.sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type":"shutdown"}"#),
    );
    assert_eq!(r.status, 204);
    let r = request(&vm.sock, "PATCH", "/vm", Some(r#"{"state":"paused"}"#));
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(vm.guest.wait(Duration::from_secs(10)), 7);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert!(vm.guest.stderr().contains("shutdown deadline"));
}

#[test]
fn kill_ends_the_vm_at_once_with_status_6() {
    let mut vm = start(&[]);
    vm.guest.send("hang 30");
    let r = request(
        &vm.sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type":"kill"}"#),
    );
    assert_eq!(r.status, 204);
    assert_eq!(vm.guest.wait(Duration::from_secs(5)), 6);
    assert!(vm.guest.stderr().contains("killed through the control API"));
}

#[test]
fn sigterm_is_an_orderly_shutdown() {
    let mut vm = start(&[]);
    let rc = std::process::Command::new("kill")
        .args(["-TERM", &vm.guest.pid().to_string()])
        .status()
        .expect("kill");
    assert!(rc.success());
    vm.guest.expect(
        "the guest's shutdown line",
        |l| l == "shutdown: ctrl-alt-del",
        Duration::from_secs(10),
    );
    assert_eq!(vm.guest.wait(Duration::from_secs(10)), 0);
    assert!(vm.guest.stderr().contains("SIGTERM"));
}
