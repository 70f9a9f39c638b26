//! vCPU threads are pinned where the scheduler says: a shared pool
//! (`--cpu-affinity`) or one host CPU per vCPU (`--vcpu-cpus`). The test
//! reads the affinity of the real threads from /proc.

mod common;

use std::time::Duration;

use common::*;

fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `Cpus_allowed_list` of each `vcpuN` thread of `pid`, by vCPU index.
fn vcpu_affinity(pid: u32) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let dir = task.expect("task").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if let Some(i) = comm
            .trim()
            .strip_prefix("vcpu")
            .and_then(|n| n.parse().ok())
        {
            let status = std::fs::read_to_string(dir.join("status")).expect("status");
            let list = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .expect("Cpus_allowed_list")
                .trim()
                .to_string();
            out.push((i, list));
        }
    }
    out.sort();
    out
}

fn running_vm(extra: &[&str]) -> Interactive {
    let k = mini_kernel();
    let mut args = vec!["--kernel", k.to_str().expect("utf8"), "--vcpus", "2"];
    args.extend_from_slice(extra);
    let mut g = Interactive::start(&args);
    g.expect(
        "the prompt",
        |l| l.ends_with("mini# "),
        Duration::from_secs(30),
    );
    g
}

#[test]
fn shared_pool_pins_every_vcpu_to_the_pool() {
    let last = host_cpus() - 1;
    let pool = format!("{last}");
    let mut g = running_vm(&["--cpu-affinity", &pool]);
    let aff = vcpu_affinity(g.pid());
    assert_eq!(aff, vec![(0, pool.clone()), (1, pool)]);
    g.send("poweroff");
    assert_eq!(g.wait(Duration::from_secs(20)), 0);
}

#[test]
fn dedicated_pins_each_vcpu_to_its_own_cpu() {
    if host_cpus() < 2 {
        eprintln!("skipped: needs 2 host CPUs");
        return;
    }
    let mut g = running_vm(&["--vcpu-cpus", "1,0"]);
    assert_eq!(
        vcpu_affinity(g.pid()),
        vec![(0, "1".into()), (1, "0".into())]
    );
    g.send("poweroff");
    assert_eq!(g.wait(Duration::from_secs(20)), 0);
}

#[test]
fn pinning_to_a_missing_cpu_is_a_config_error() {
    let k = mini_kernel();
    let o = run_vmm(
        &[
            "--kernel",
            k.to_str().expect("utf8"),
            "--cpu-affinity",
            "1000",
        ],
        Duration::from_secs(10),
    );
    assert_status(&o, 2);
    assert!(
        stderr(&o).contains("host has no CPU 1000"),
        "{}",
        stderr(&o)
    );
    let o = run_vmm(
        &[
            "--kernel",
            k.to_str().expect("utf8"),
            "--vcpus",
            "2",
            "--vcpu-cpus",
            "0",
        ],
        Duration::from_secs(10),
    );
    assert_status(&o, 2);
    assert!(stderr(&o).contains("needs one per vCPU"), "{}", stderr(&o));
}
