//! Bad configurations give a clear one-line error and status 2, before
//! any VM exists.

mod common;

use std::time::Duration;

use common::*;

fn refused(args: &[&str], needle: &str) {
    let o = run_vmm(args, Duration::from_secs(10));
    assert_status(&o, 2);
    let err = stderr(&o);
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
}

#[test]
fn missing_kernel() {
    refused(
        &["--kernel", "/nonexistent/vmlinux"],
        "kernel /nonexistent/vmlinux: No such file",
    );
}

#[test]
fn zero_and_too_many_vcpus() {
    let k = mini_kernel();
    let k = k.to_str().expect("utf8");
    refused(
        &["--kernel", k, "--vcpus", "0"],
        "vcpus must be between 1 and 32, got 0",
    );
    refused(
        &["--kernel", k, "--vcpus", "33"],
        "vcpus must be between 1 and 32, got 33",
    );
}

#[test]
fn more_memory_than_the_host_has() {
    let k = mini_kernel();
    refused(
        &[
            "--kernel",
            k.to_str().expect("utf8"),
            "--memory-mib",
            "999999999",
        ],
        "is more than this host's",
    );
}

#[test]
fn unreadable_disk_and_bad_disk_spec() {
    let k = mini_kernel();
    let k = k.to_str().expect("utf8");
    refused(
        &["--kernel", k, "--disk", "/nonexistent/disk.img"],
        "disk /nonexistent/disk.img",
    );
    refused(
        &["--kernel", k, "--disk", "/tmp/x,bogus"],
        "bad --disk value",
    );
}

#[test]
fn bad_json_config() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("vm.json");
    std::fs::write(
        &p,
        r#"{"kernel":"/k","vcpus":1,"memory_mib":64,"turbo":true}"#,
    )
    .expect("w");
    refused(
        &["--config", p.to_str().expect("utf8")],
        "unknown field `turbo`",
    );
}

#[test]
fn a_file_that_is_not_a_kernel_is_a_load_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("garbage");
    std::fs::write(&p, vec![0x42u8; 10000]).expect("w");
    let o = run_vmm(
        &["--kernel", p.to_str().expect("utf8")],
        Duration::from_secs(10),
    );
    assert_status(&o, 1);
    assert!(
        stderr(&o).contains("neither ELF nor bzImage"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn json_config_boots_like_flags() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("vm.json");
    let cfg = serde_json::json!({
        "kernel": mini_kernel(),
        "cmdline": "minicloud.run=info",
        "vcpus": 2,
        "memory_mib": 96
    });
    std::fs::write(&p, cfg.to_string()).expect("w");
    let o = run_vmm(
        &["--config", p.to_str().expect("utf8")],
        Duration::from_secs(30),
    );
    assert_status(&o, 0);
    assert!(
        stdout(&o).contains("cpus=2 memory_mib=96"),
        "{}",
        stdout(&o)
    );
}
