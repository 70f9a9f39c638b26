//! Every thread of a running VMM is under a seccomp filter with no new
//! privileges (and none is with --no-seccomp); the whole suite runs with
//! filters on, so a system call missing from a list shows up as a killed
//! VMM in the other tests.

mod common;
mod http_client;

use std::time::Duration;

use common::*;

/// (thread name, Seccomp mode, NoNewPrivs) of every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let dir = t.expect("task").path();
        let name = std::fs::read_to_string(dir.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        if status.is_empty() {
            // The thread ended between listing and reading (an API
            // connection thread that finished its request).
            continue;
        }
        let get = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        out.push((name, get("Seccomp:"), get("NoNewPrivs:")));
    }
    out.sort();
    out
}

fn start(dir: &tempfile::TempDir, extra: &[&str]) -> Interactive {
    let img = dir.path().join("d.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).expect("img");
    let api = dir.path().join("api.sock");
    let uds = dir.path().join("v.sock");
    let kernel = mini_kernel();
    let mut args = vec![
        "--kernel",
        kernel.to_str().expect("utf8"),
        "--cmdline",
        "console=ttyS0",
        "--vcpus",
        "2",
        "--disk",
        img.to_str().expect("utf8"),
        "--api-sock",
        api.to_str().expect("utf8"),
        "--vsock-uds",
        uds.to_str().expect("utf8"),
        "--vsock-cid",
        "3",
    ];
    args.extend_from_slice(extra);
    let mut g = Interactive::start(&args);
    g.expect("prompt", |l| l.ends_with("mini# "), Duration::from_secs(30));
    http_client::wait_for_socket(&api, Duration::from_secs(5));
    // Make the API spawn a connection thread, so that it is listed too.
    let _ = http_client::request(&api, "GET", "/metrics", None);
    g
}

#[test]
fn every_thread_is_filtered_and_cannot_gain_privileges() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut g = start(&dir, &[]);
    let list = threads(g.pid());
    let names: Vec<&str> = list.iter().map(|(n, _, _)| n.as_str()).collect();
    for want in [
        "vcpu0",
        "vcpu1",
        "disk0",
        "vsock",
        "api",
        "signals",
        "console-stdin",
    ] {
        assert!(names.contains(&want), "no thread {want}: {list:?}");
    }
    for (name, mode, nnp) in &list {
        assert_eq!(mode, "2", "thread {name} not filtered: {list:?}");
        assert_eq!(nnp, "1", "thread {name} may gain privileges: {list:?}");
    }
    // The filters allow everything the VM does: disk I/O, console, exit.
    g.send("blk-write 0 0 8 1");
    g.expect(
        "write",
        |l| l.starts_with("blk-write: ok"),
        Duration::from_secs(10),
    );
    g.send("poweroff");
    assert_eq!(g.wait(Duration::from_secs(10)), 0);
}

#[test]
fn no_seccomp_turns_filters_off() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut g = start(&dir, &["--no-seccomp"]);
    for (name, mode, _) in threads(g.pid()) {
        assert_eq!(mode, "0", "thread {name}");
    }
    g.send("poweroff");
    assert_eq!(g.wait(Duration::from_secs(10)), 0);
}
