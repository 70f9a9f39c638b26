//! Stream jobs: windowed aggregates equal a straightforward recomputation
//! over the same input, for tumbling, hopping and session windows; also
//! when the job runs in a child process that is killed with SIGKILL
//! several times in the middle and resumed.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streams::job::{Aggregate, AggregateOp, JobSpec, TimeSource, WindowKind, WindowSpec};
use streams::{JobState, ProduceRecord, Streams, TopicConfig};

const PARTITIONS: u32 = 3;
const SENSORS: usize = 12;
const GRACE: u64 = 500;

/// Sensor readings: event times move forward 7 ms per record with up to
/// 300 ms of disorder (less than the grace period, so nothing is late);
/// each sensor is silent for 3 s out of every 12 s, making sessions.
fn readings(n: usize) -> Vec<ProduceRecord> {
    let mut out = Vec::new();
    for i in 0..n {
        let sensor = i % SENSORS;
        let t = 1_000_000 + (i as i64) * 7 + ((i as i64 * 7919) % 300);
        if (t / 3000) % 4 == (sensor % 4) as i64 {
            continue;
        }
        let temp = ((i * 31) % 200) as i64 - 50;
        let v = json!({"sensor": format!("s{sensor}"), "ts": t, "temp": temp});
        out.push(ProduceRecord::keyed(format!("s{sensor}"), v.to_string()));
    }
    out
}

fn spec(name: &str, output: &str, kind: WindowKind) -> JobSpec {
    JobSpec {
        name: name.into(),
        input: "readings".into(),
        output: output.into(),
        key: "/sensor".into(),
        filter: None,
        window: WindowSpec {
            kind,
            grace_ms: GRACE,
            time: TimeSource::EventTime("/ts".into()),
        },
        aggregates: vec![
            Aggregate {
                op: AggregateOp::Count,
                field: None,
                name: None,
            },
            Aggregate {
                op: AggregateOp::Sum,
                field: Some("/temp".into()),
                name: None,
            },
            Aggregate {
                op: AggregateOp::Min,
                field: Some("/temp".into()),
                name: None,
            },
            Aggregate {
                op: AggregateOp::Max,
                field: Some("/temp".into()),
                name: None,
            },
            Aggregate {
                op: AggregateOp::Avg,
                field: Some("/temp".into()),
                name: None,
            },
        ],
        start: Default::default(),
        batch_records: 100,
    }
}

/// (task, key, window start) → (window end, count, sum, min, max)
type Results = BTreeMap<(u32, String, i64), (i64, u64, f64, f64, f64)>;

/// The straightforward recomputation: per input partition, every event in
/// every window, keeping the windows the final watermark has closed.
fn recompute(s: &Streams, kind: WindowKind) -> Results {
    let mut out = Results::new();
    for p in 0..PARTITIONS {
        let events: Vec<(String, i64, f64)> = common::read_all(s, "proj", "readings", p)
            .iter()
            .map(|r| {
                let v: Value =
                    serde_json::from_slice(r.value.as_deref().expect("value")).expect("json");
                (
                    v["sensor"].as_str().expect("sensor").to_string(),
                    v["ts"].as_i64().expect("ts"),
                    v["temp"].as_f64().expect("temp"),
                )
            })
            .collect();
        let Some(max_ts) = events.iter().map(|e| e.1).max() else {
            continue;
        };
        let wm = max_ts - GRACE as i64;
        let mut windows: BTreeMap<(String, i64), (i64, Vec<f64>)> = BTreeMap::new();
        match kind {
            WindowKind::Tumbling { size_ms } => {
                let size = size_ms as i64;
                for (k, t, v) in &events {
                    let start = t.div_euclid(size) * size;
                    windows
                        .entry((k.clone(), start))
                        .or_insert((start + size, Vec::new()))
                        .1
                        .push(*v);
                }
            }
            WindowKind::Hopping {
                size_ms,
                advance_ms,
            } => {
                let (size, adv) = (size_ms as i64, advance_ms as i64);
                for (k, t, v) in &events {
                    let mut start = (t - size).div_euclid(adv) * adv;
                    while start <= *t {
                        if start + size > *t {
                            windows
                                .entry((k.clone(), start))
                                .or_insert((start + size, Vec::new()))
                                .1
                                .push(*v);
                        }
                        start += adv;
                    }
                }
            }
            WindowKind::Session { gap_ms } => {
                let gap = gap_ms as i64;
                let mut per_key: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
                for (k, t, v) in &events {
                    per_key.entry(k.clone()).or_default().push((*t, *v));
                }
                for (k, mut evs) in per_key {
                    evs.sort_by_key(|e| e.0);
                    let mut cur: Option<(i64, i64, Vec<f64>)> = None;
                    for (t, v) in evs {
                        cur = match cur {
                            Some((s0, last, mut vals)) if t - last < gap => {
                                vals.push(v);
                                Some((s0, t, vals))
                            }
                            Some((s0, last, vals)) => {
                                windows.insert((k.clone(), s0), (last + gap, vals));
                                Some((t, t, vec![v]))
                            }
                            None => Some((t, t, vec![v])),
                        };
                    }
                    if let Some((s0, last, vals)) = cur {
                        windows.insert((k.clone(), s0), (last + gap, vals));
                    }
                }
            }
        }
        for ((k, start), (end, vals)) in windows {
            if end > wm {
                continue;
            }
            let sum: f64 = vals.iter().sum();
            let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            out.insert(
                (p, serde_json::to_string(&k).expect("json"), start),
                (end, vals.len() as u64, sum, min, max),
            );
        }
    }
    out
}

/// The job's output, failing on any (task, key, window) seen twice.
fn output(s: &Streams, topic: &str) -> Results {
    let mut out = Results::new();
    let parts = s
        .describe_topic("proj", topic)
        .expect("output topic")
        .partitions
        .len() as u32;
    for p in 0..parts {
        for r in common::read_all(s, "proj", topic, p) {
            let task: u32 = std::str::from_utf8(r.header("task").expect("task header"))
                .expect("utf8")
                .parse()
                .expect("n");
            let v: Value =
                serde_json::from_slice(r.value.as_deref().expect("value")).expect("json");
            let key = serde_json::to_string(&v["key"]).expect("json");
            let start = v["window_start"].as_i64().expect("start");
            let count = v["count"].as_u64().expect("count");
            let sum = v["sum_temp"].as_f64().expect("sum");
            let avg = v["avg_temp"].as_f64().expect("avg");
            assert!((avg - sum / count as f64).abs() < 1e-9);
            let row = (
                v["window_end"].as_i64().expect("end"),
                count,
                sum,
                v["min_temp"].as_f64().expect("min"),
                v["max_temp"].as_f64().expect("max"),
            );
            let prev = out.insert((task, key.clone(), start), row);
            assert!(
                prev.is_none(),
                "window ({task}, {key}, {start}) emitted twice"
            );
        }
    }
    out
}

async fn wait_caught_up(s: &Streams, job: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = s.job_status("proj", job).expect("status");
        assert_ne!(st.state, JobState::Failed, "{st:?}");
        if !st.tasks.is_empty() && st.lag == 0 {
            assert!(
                st.tasks
                    .iter()
                    .all(|t| t.late_dropped == 0 && t.invalid == 0),
                "{st:?}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {job} did not catch up: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn setup(dir: &Path, n: usize) -> Streams {
    let s = common::open(dir);
    s.create_topic("proj", "readings", TopicConfig::new(PARTITIONS))
        .expect("create");
    let recs = readings(n);
    for chunk in recs.chunks(1000) {
        s.produce("proj", "readings", chunk, None).expect("produce");
    }
    s
}

const KINDS: [(&str, WindowKind); 3] = [
    ("tumbling", WindowKind::Tumbling { size_ms: 1000 }),
    (
        "hopping",
        WindowKind::Hopping {
            size_ms: 2000,
            advance_ms: 500,
        },
    ),
    ("session", WindowKind::Session { gap_ms: 1000 }),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_equal_recomputation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = setup(dir.path(), 20_000);
    for (name, kind) in KINDS {
        let mut sp = spec(name, &format!("{name}-out"), kind);
        sp.batch_records = 1000;
        s.start_job("proj", sp).await.expect("start");
    }
    for (name, kind) in KINDS {
        wait_caught_up(&s, name).await;
        let want = recompute(&s, kind);
        assert!(want.len() > 50, "{name}: {}", want.len());
        assert_eq!(output(&s, &format!("{name}-out")), want, "{name}");
    }
    // Same spec again: conflict; a bad window: clear error.
    assert!(matches!(
        s.start_job("proj", spec("tumbling", "tumbling-out", KINDS[0].1))
            .await,
        Err(streams::Error::JobExists { .. })
    ));
    let bad = spec(
        "bad",
        "bad-out",
        WindowKind::Hopping {
            size_ms: 100,
            advance_ms: 0,
        },
    );
    let err = s.start_job("proj", bad).await.expect_err("bad window");
    assert!(
        err.to_string().starts_with("bad window spec: advance_ms"),
        "{err}"
    );
    // Stop and resume continues from the checkpoint without duplicates.
    s.stop_job("proj", "tumbling").await.expect("stop");
    assert_eq!(
        s.job_status("proj", "tumbling").expect("status").state,
        JobState::Stopped
    );
    let more = readings(30_000).split_off(readings(20_000).len());
    s.produce("proj", "readings", &more, None)
        .expect("produce more");
    s.start_job("proj", spec("tumbling", "tumbling-out", KINDS[0].1))
        .await
        .expect_err("changed batch size is a different spec");
    let mut sp = spec("tumbling", "tumbling-out", KINDS[0].1);
    sp.batch_records = 1000;
    s.start_job("proj", sp).await.expect("resume");
    wait_caught_up(&s, "tumbling").await;
    assert_eq!(output(&s, "tumbling-out"), recompute(&s, KINDS[0].1));
    // Kappa: a new job from the beginning into a new topic sees everything.
    let mut kappa = spec("tumbling-v2", "tumbling-v2-out", KINDS[0].1);
    kappa.start = streams::job::StartFrom::Earliest;
    s.start_job("proj", kappa).await.expect("kappa");
    wait_caught_up(&s, "tumbling-v2").await;
    assert_eq!(output(&s, "tumbling-v2-out"), output(&s, "tumbling-out"));
    assert_eq!(s.list_jobs("proj").len(), 4);
    s.shutdown().await.expect("shutdown");
}

/// Runs as the child process of `kill_9_in_the_middle_and_resume`: starts
/// (or resumes) the job and prints its progress until killed, or aborts
/// itself (no unwinding, no destructors, no flush: like a kill -9) once
/// `STREAMS_JOB_CHILD_ABORT_AT` records are processed.
#[test]
#[ignore = "child process helper, run by kill_9_in_the_middle_and_resume"]
fn child_job_runner() {
    let Ok(dir) = std::env::var("STREAMS_JOB_CHILD_DIR") else {
        return;
    };
    let kind = match std::env::var("STREAMS_JOB_CHILD_KIND").as_deref() {
        Ok("session") => KINDS[2],
        _ => KINDS[0],
    };
    let abort_at: Option<u64> = std::env::var("STREAMS_JOB_CHILD_ABORT_AT")
        .ok()
        .and_then(|v| v.parse().ok());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut cfg = streams::StreamsConfig::new(&dir);
        cfg.fsync = streams::FsyncPolicy::EveryBatch;
        let s = Streams::open(cfg).expect("open");
        if s.resume_jobs().await.expect("resume").is_empty() {
            s.start_job("proj", spec(kind.0, "out", kind.1))
                .await
                .expect("start");
        }
        loop {
            let st = s.job_status("proj", kind.0).expect("status");
            let processed: u64 = st.tasks.iter().map(|t| t.processed).sum();
            println!("processed {processed} lag {}", st.lag);
            if abort_at.is_some_and(|a| processed >= a) {
                std::process::abort();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
}

/// How a child run ends.
enum Crash {
    /// The child aborts itself once this many records are processed.
    SelfAbortAt(u64),
    /// A job task aborts right after this many output writes.
    AfterOutputWrites(u64),
    /// The parent sends SIGKILL once the child reports this progress.
    SigkillAt(u64),
}

/// Runs the child until it dies (killing it once it reports all `total`
/// records processed); returns the last progress it reported.
fn run_child(dir: &Path, kind: &str, total: u64, crash: Crash) -> u64 {
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    let mut kill_at = u64::MAX;
    match crash {
        Crash::SelfAbortAt(n) => {
            cmd.env("STREAMS_JOB_CHILD_ABORT_AT", n.to_string());
        }
        Crash::AfterOutputWrites(n) => {
            cmd.env(streams::job::runner::ABORT_AFTER_OUTPUT_ENV, n.to_string());
        }
        Crash::SigkillAt(n) => kill_at = n,
    }
    let mut child = cmd
        .args([
            "child_job_runner",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("STREAMS_JOB_CHILD_DIR", dir)
        .env("STREAMS_JOB_CHILD_KIND", kind)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut last = 0;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Some(rest) = line.strip_prefix("processed ") else {
            continue;
        };
        let n: u64 = rest
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("n");
        last = n;
        if n >= kill_at || n >= total {
            break;
        }
    }
    let _ = child.kill(); // SIGKILL on Unix (a no-op if it already died)
    let status = child.wait().expect("reap");
    assert!(!status.success(), "the child must die, not exit");
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_and_resume() {
    for kind in ["tumbling", "session"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = setup(dir.path(), 15_000);
        let total: u64 = s
            .describe_topic("proj", "readings")
            .expect("d")
            .partitions
            .iter()
            .map(|p| p.next_offset)
            .sum();
        s.shutdown().await.expect("shutdown");
        drop(s);
        // Crash the child four ways, each after more progress: abort at 20 %
        // (any point of a batch), abort between an output write and its
        // checkpoint (the case that needs output deduplication), abort at
        // 60 %, then SIGKILL from here.
        let seen = run_child(dir.path(), kind, total, Crash::SelfAbortAt(total / 5));
        assert!(
            seen < total,
            "crashed at {seen} of {total}: must land mid-run"
        );
        let first = seen;
        let seen = run_child(dir.path(), kind, total, Crash::AfterOutputWrites(1));
        assert!(
            seen < total,
            "{kind}: crashed at {seen} of {total} (first crash at {first}): must land mid-run"
        );
        let seen = run_child(dir.path(), kind, total, Crash::SelfAbortAt(total * 3 / 5));
        assert!(
            seen < total,
            "crashed at {seen} of {total}: must land mid-run"
        );
        run_child(dir.path(), kind, total, Crash::SigkillAt(seen + 1));
        // Resume here and finish.
        let s = common::open(dir.path());
        assert_eq!(
            s.resume_jobs().await.expect("resume"),
            vec![kind.to_string()]
        );
        wait_caught_up(&s, kind).await;
        let k = KINDS.iter().find(|k| k.0 == kind).expect("kind").1;
        let want = recompute(&s, k);
        assert!(want.len() > 50);
        assert_eq!(output(&s, "out"), want, "{kind}");
        s.shutdown().await.expect("shutdown");
    }
}
