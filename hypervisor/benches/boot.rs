//! Boot benchmark of `minicloud-vmm` with the mini guest (issue 2).
//!
//! `cargo bench -p hypervisor --bench boot` prints one line per figure:
//! process start to the guest's boot line, to its `minicloud.run` command
//! finished, and to process exit (median, min, max over 10 runs); the VMM's
//! peak RSS with a 128 MiB guest and how much of it is guest memory; and
//! 10 and 20 VMs launched at once.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 10;

fn kernel() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let st = Command::new(root.join("images/build"))
        .arg("mini")
        .stdout(Stdio::null())
        .status()
        .expect("images/build");
    assert!(st.success(), "images/build mini failed");
    let dir = std::env::var_os("MINICLOUD_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/minicloud/images")
        });
    dir.join("mini/kernel")
}

struct Timing {
    boot_line: Duration,
    run_done: Duration,
    exit: Duration,
}

fn one_boot(kernel: &Path, vcpus: u32) -> Timing {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_minicloud-vmm"))
        .args([
            "--kernel",
            kernel.to_str().expect("utf8"),
            "--memory-mib",
            "128",
        ])
        .args(["--vcpus", &vcpus.to_string()])
        .args([
            "--cmdline",
            "console=ttyS0 minicloud.run=\"echo bench-done\"",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let (mut boot_line, mut run_done) = (None, None);
    loop {
        let n = out.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if boot_line.is_none() && text.contains("minicloud-mini v") && text.contains('\n') {
            boot_line = Some(start.elapsed());
        }
        if run_done.is_none() && text.contains("minicloud.run: done") {
            run_done = Some(start.elapsed());
        }
    }
    let status = child.wait().expect("wait");
    let exit = start.elapsed();
    assert!(
        status.success(),
        "VMM failed: {}",
        String::from_utf8_lossy(&seen)
    );
    Timing {
        boot_line: boot_line.expect("boot line"),
        run_done: run_done.expect("run done"),
        exit,
    }
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median_ms={:.1} min_ms={:.1} max_ms={:.1}",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1])
    )
}

/// Peak RSS of an idle VM at its prompt, and the part that is guest memory.
fn rss(kernel: &Path) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minicloud-vmm"))
        .args([
            "--kernel",
            kernel.to_str().expect("utf8"),
            "--memory-mib",
            "128",
            "--vcpus",
            "2",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("mini# ") {
        let n = out.read(&mut buf).expect("read");
        assert!(n > 0, "VMM ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    let pid = child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // The guest memory mapping is the one 128 MiB anonymous region.
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let mut guest_rss = 0u64;
    let mut in_guest = false;
    for line in smaps.lines() {
        if let Some(size) = line.strip_prefix("Size:") {
            let kb: u64 = size
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse()
                .unwrap_or(0);
            in_guest = kb == 128 * 1024;
        } else if let Some(r) = line.strip_prefix("Rss:")
            && in_guest
        {
            guest_rss += r
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "case=rss guest_mib=128 vmm_peak_rss_kib={} vmm_rss_kib={} guest_memory_touched_kib={} vmm_own_kib={}",
        kib("VmHWM:"),
        kib("VmRSS:"),
        guest_rss,
        kib("VmRSS:").saturating_sub(guest_rss)
    );
}

fn concurrent(kernel: &Path, n: usize) {
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let k = kernel.to_path_buf();
            std::thread::spawn(move || one_boot(&k, 1))
        })
        .collect();
    let timings: Vec<Timing> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    let all = start.elapsed();
    println!(
        "case=concurrent vms={n} all_exited_ms={:.1} boot_line {}",
        all.as_secs_f64() * 1000.0,
        stats(timings.iter().map(|t| t.boot_line).collect())
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let k = kernel();
    for vcpus in [1u32, 2] {
        let _ = one_boot(&k, vcpus); // warm the page cache
        let t: Vec<Timing> = (0..RUNS).map(|_| one_boot(&k, vcpus)).collect();
        println!(
            "case=boot vcpus={vcpus} runs={RUNS} to=boot_line {}",
            stats(t.iter().map(|x| x.boot_line).collect())
        );
        println!(
            "case=boot vcpus={vcpus} runs={RUNS} to=run_done {}",
            stats(t.iter().map(|x| x.run_done).collect())
        );
        println!(
            "case=boot vcpus={vcpus} runs={RUNS} to=exit {}",
            stats(t.iter().map(|x| x.exit).collect())
        );
    }
    rss(&k);
    concurrent(&k, 10);
    concurrent(&k, 20);
}
