//! Control-plane benchmark (issue 5): `cargo bench -p api --bench api`.
//!
//! Starts a real `minicloud serve` (release build) on a loopback port with a
//! fresh data directory and measures, from the client's side:
//! - `POST /v1/instances` to `running` and to the guest's boot line on the
//!   console, p50/p99 over 20 launches one at a time and 20 as two waves of
//!   10 at once;
//! - requests per second and latency of `GET /v1/instances` with 100
//!   instances recorded, from `wrk` on loopback (installed from Debian by
//!   this bench if missing).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Daemon, call, start};

/// One launch: (time to running, time to boot line).
fn launch(d: &Daemon, name: &str, run: Option<&str>) -> (Duration, Duration) {
    let t0 = Instant::now();
    let mut body = json!({"name": name, "image": "mini", "vcpus": 1, "memory_mib": 64});
    if let Some(r) = run {
        body["run"] = json!(r);
    }
    let v = call(d, "POST", "/v1/instances", Some(body));
    let id = v["instance"]["id"].as_str().expect("id").to_string();
    let mut running = None;
    loop {
        if running.is_none() {
            let i = call(d, "GET", &format!("/v1/instances/{id}"), None);
            if i["state"] == "running" || i["state"] == "stopped" {
                running = Some(t0.elapsed());
            }
        }
        if running.is_some() {
            let text = ureq::get(&format!("{}/v1/instances/{id}/console", d.url))
                .set("Authorization", &format!("Bearer {}", d.token))
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .unwrap_or_default();
            if text.contains("minicloud-mini v") {
                return (running.unwrap_or_default(), t0.elapsed());
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "launch {name} too slow"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn report(case: &str, r: &[(Duration, Duration)]) {
    let run: Vec<_> = r.iter().map(|x| x.0).collect();
    let boot: Vec<_> = r.iter().map(|x| x.1).collect();
    println!(
        "case={case} launches={} to_running_p50_ms={:.1} to_running_p99_ms={:.1} to_boot_line_p50_ms={:.1} to_boot_line_p99_ms={:.1}",
        r.len(),
        pct(run.clone(), 0.5),
        pct(run, 0.99),
        pct(boot.clone(), 0.5),
        pct(boot, 0.99)
    );
}

fn delete_all(d: &Daemon) {
    let list = call(d, "GET", "/v1/instances", None);
    for i in list["instances"].as_array().cloned().unwrap_or_default() {
        let id = i["id"].as_str().unwrap_or_default();
        let _ = ureq::delete(&format!("{}/v1/instances/{id}", d.url))
            .set("Authorization", &format!("Bearer {}", d.token))
            .call();
    }
}

fn wrk_available() -> bool {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return true;
    }
    Command::new("apt-get")
        .args(["install", "-y", "-qq", "wrk"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let d = start(&[]);
    // Warm-up.
    launch(&d, "warm", Some("echo warm"));
    delete_all(&d);

    let seq: Vec<_> = (0..20)
        .map(|i| {
            let r = launch(&d, &format!("seq-{i}"), None);
            delete_all(&d);
            r
        })
        .collect();
    report("one_at_a_time", &seq);
    delete_all(&d);

    let mut burst = Vec::new();
    for wave in 0..2 {
        let got: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..10)
                .map(|i| {
                    let d = &d;
                    s.spawn(move || launch(d, &format!("burst-{wave}-{i}"), None))
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("join")).collect()
        });
        burst.extend(got);
        delete_all(&d);
    }
    report("ten_at_once", &burst);

    // 100 recorded instances (they run a command and stop).
    for i in 0..100 {
        call(
            &d,
            "POST",
            "/v1/instances",
            Some(
                json!({"name": format!("rec-{i}"), "image": "mini", "vcpus": 1, "memory_mib": 16, "run": "echo x"}),
            ),
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    let n = call(&d, "GET", "/v1/instances", None)["instances"]
        .as_array()
        .map_or(0, Vec::len);
    if !wrk_available() {
        println!("case=list_instances skipped=wrk-not-installable");
        return;
    }
    let out = Command::new("wrk")
        .args(["-t2", "-c16", "-d10s", "--latency", "-H"])
        .arg(format!("Authorization: Bearer {}", d.token))
        .arg(format!("{}/v1/instances", d.url))
        .output()
        .expect("wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let grab = |prefix: &str| -> String {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string()
    };
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    println!(
        "case=list_instances instances={n} connections=16 requests_per_sec={rps} latency_p50={} latency_p99={}",
        grab("50%"),
        grab("99%")
    );
    delete_all(&d);
}
