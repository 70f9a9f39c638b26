//! The `minicloud` CLI, driven as a real binary against a real daemon.

mod common;

use std::process::Command;

use common::Daemon;

fn cli(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_minicloud"))
        .args(args)
        .env("MINICLOUD_URL", &d.url)
        .env("MINICLOUD_TOKEN", &d.admin_token)
        .env("MINICLOUD_CONFIG", d.dir.path().join("none.json"))
        .output()
        .expect("run minicloud");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_launches_lists_shows_and_stops() {
    let d = Daemon::start();
    let (code, out, err) = cli(
        &d,
        &[
            "vm", "launch", "--name", "cli-vm", "--vcpus", "2", "--memory", "96", "--wait", "-o",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["instance"]["state"], "running", "{v}");
    let (code, out, _) = cli(&d, &["vm", "list"]);
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap_or("").starts_with("ID"), "{out}");
    assert!(out.contains("cli-vm") && out.contains("running"), "{out}");
    let (code, out, _) = cli(&d, &["vm", "show", "cli-vm", "-o", "json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).expect("json")["vcpus"],
        2
    );
    d.wait_console(&d.admin_token, "cli-vm", "mini# ");
    let (code, out, _) = cli(&d, &["vm", "console", "cli-vm"]);
    assert_eq!(code, 0);
    assert!(out.contains("cpus=2 memory_mib=96"), "{out}");
    let (code, out, err) = cli(&d, &["vm", "stop", "cli-vm", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = cli(&d, &["host", "info"]);
    assert_eq!(code, 0);
    assert!(out.contains("host local"), "{out}");
}

#[test]
fn cli_errors_are_one_human_line_and_a_failure_status() {
    let d = Daemon::start();
    let (code, out, err) = cli(&d, &["vm", "show", "does-not-exist"]);
    assert_ne!(code, 0);
    assert!(out.is_empty());
    assert_eq!(
        err.trim(),
        "minicloud: instance does-not-exist not found (HTTP 404)"
    );
    let (code, _, err) = cli(&d, &["vm", "launch", "--vcpus", "0"]);
    assert_ne!(code, 0);
    assert!(err.contains("vcpus: must be 1 to 32"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_minicloud"))
        .args(["vm", "list"])
        .env("MINICLOUD_URL", "http://127.0.0.1:1")
        .env("MINICLOUD_TOKEN", "x")
        .output()
        .expect("run");
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Is `minicloud serve` running?"));
}
