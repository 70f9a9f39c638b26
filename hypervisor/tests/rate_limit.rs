//! Block rate limits measured from inside the mini guest (`blk-bench`):
//! bandwidth and IOPS hold within 10%, and the control API changes them
//! on a running VM.

mod common;
mod http_client;

use std::sync::Mutex;
use std::time::Duration;

use common::*;
use http_client::*;

/// The measurements run one at a time: three emulated guests at once on a
/// two-core host would measure the host, not the limiter.
static SERIAL: Mutex<()> = Mutex::new(());

fn disk(dir: &tempfile::TempDir) -> String {
    let img = dir.path().join("d.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(16 << 20))
        .expect("image");
    img.display().to_string()
}

fn bench_value(out: &str, key: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("blk-bench: "))
        .unwrap_or_else(|| panic!("no blk-bench line:\n{out}"));
    field(line, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

fn assert_within(measured: f64, limit: f64, what: &str) {
    let err = (measured - limit).abs() / limit;
    assert!(
        err <= 0.10,
        "{what}: measured {measured}, limit {limit} ({:.1}% off)",
        err * 100.0
    );
}

// The limits are far below what the guest does unlimited even on a busy
// host (thousands of requests/s, tens of MiB/s), so the limiter is what
// sets the pace. With a full bucket of B at the start, N tokens take
// (N - B) / rate seconds: the rate the guest sees over that time is the
// limit. The bucket also absorbs the host's scheduling hiccups (tokens
// that accrue while the guest is descheduled are kept up to the burst).

#[test]
fn bandwidth_limit_holds_within_ten_percent() {
    let _one = SERIAL.lock();
    let dir = tempfile::tempdir().expect("tmp");
    // 640 KiB of 32 KiB writes at 256 KiB/s with a 128 KiB burst: 2 s.
    let spec = format!("{},bw=256K,bw_burst=128K", disk(&dir));
    let o = run_mini(&["--disk", &spec], "blk-bench 0 write 64 1280");
    assert_status(&o, 0);
    let ms = bench_value(&stdout(&o), "ms");
    let rate = (640.0 - 128.0) / (ms / 1000.0);
    assert_within(rate, 256.0, "write KiB/s past the burst");
}

#[test]
fn iops_limit_holds_within_ten_percent() {
    let _one = SERIAL.lock();
    let dir = tempfile::tempdir().expect("tmp");
    // 110 reads of 4 KiB at 50/s with a burst of 10: 2 s.
    let spec = format!("{},iops=50,iops_burst=10", disk(&dir));
    let o = run_mini(&["--disk", &spec], "blk-bench 0 read 8 880");
    assert_status(&o, 0);
    let ms = bench_value(&stdout(&o), "ms");
    let rate = (110.0 - 10.0) / (ms / 1000.0);
    assert_within(rate, 50.0, "read IOPS past the burst");
}

#[test]
fn limits_change_through_the_api_on_a_running_vm() {
    let _one = SERIAL.lock();
    let dir = tempfile::tempdir().expect("tmp");
    let spec = format!("{},id=data,bw=256K,bw_burst=32K", disk(&dir));
    let sock = dir.path().join("api.sock");
    let kernel = mini_kernel();
    let mut g = Interactive::start(&[
        "--kernel",
        kernel.to_str().expect("utf8"),
        "--cmdline",
        "console=ttyS0",
        "--disk",
        &spec,
        "--api-sock",
        sock.to_str().expect("utf8"),
    ]);
    g.expect("prompt", |l| l.ends_with("mini# "), Duration::from_secs(30));
    wait_for_socket(&sock, Duration::from_secs(5));

    let r = request(&sock, "GET", "/drives/data", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["rate_limiter"]["bandwidth"]["rate"], 256 * 1024);

    // Raise to 1 MiB/s (by index id this time), add an ops limit.
    let body =
        r#"{"rate_limiter":{"bandwidth":{"rate":2097152,"burst":65536},"ops":{"rate":10000}}}"#;
    let r = request(&sock, "PATCH", "/drives/disk0", Some(body));
    assert_eq!(r.status, 204, "{r:?}");
    g.send("blk-bench 0 write 64 8192");
    let line = g.expect(
        "bench",
        |l| l.starts_with("blk-bench: "),
        Duration::from_secs(30),
    );
    let kib_s: f64 = field(&line, "kib_s")
        .and_then(|v| v.parse().ok())
        .expect("kib_s");
    assert!(
        (kib_s - 2048.0).abs() / 2048.0 <= 0.10,
        "after raising to 2 MiB/s: {line}"
    );
    let m = request(&sock, "GET", "/metrics", None).json();
    assert!(
        m["devices"][0]["throttled"].as_u64().expect("throttled") > 0,
        "{m}"
    );

    // Remove every limit.
    let r = request(
        &sock,
        "PATCH",
        "/drives/data",
        Some(r#"{"rate_limiter":{}}"#),
    );
    assert_eq!(r.status, 204);
    let r = request(&sock, "GET", "/drives", None).json();
    assert_eq!(
        r[0]["rate_limiter"]["bandwidth"],
        serde_json::Value::Null,
        "{r}"
    );
    // Bad limits are refused and change nothing.
    for bad in [
        r#"{"rate_limiter":{"bandwidth":{"rate":0}}}"#,
        r#"{"rate_limiter":{"bandwidth":{"rate":1,"burst":0}}}"#,
        r#"{"rate_limiter":{"bw":{"rate":1}}}"#,
        r#"{}"#,
    ] {
        let r = request(&sock, "PATCH", "/drives/disk0", Some(bad));
        assert_eq!(r.status, 400, "{bad}: {r:?}");
    }
    assert_eq!(
        request(
            &sock,
            "PATCH",
            "/drives/disk7",
            Some(r#"{"rate_limiter":{}}"#)
        )
        .status,
        404
    );
    g.send("poweroff");
    assert_eq!(g.wait(Duration::from_secs(10)), 0);
}
