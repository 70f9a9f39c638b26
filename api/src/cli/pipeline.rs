//! `minicloud pipeline`: the hosted stream pipeline, end to end, on this
//! cloud (what the README's first command runs).
//!
//! Sensor VMs produce readings over their vsock to the topic `readings`;
//! the stream job `readings-avg` averages them per sensor in tumbling
//! windows into `readings-avg`; the sink `readings-avg-s3` writes every
//! closed window into the project's bucket as newline-delimited JSON; a
//! consumer VM reads `readings-avg` in the consumer group `dashboard`;
//! then a second job version replays `readings` from offset 0 with
//! another window (Kappa) into `readings-avg-v2`, and both jobs' outputs
//! are checked against a recomputation from the raw readings.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::Conn;
use super::client::{Client, pct};
use super::output::items;

/// Topic the sensors write.
pub const READINGS: &str = "readings";
/// The first job and its output topic.
pub const AVG: &str = "readings-avg";
/// The replayed job and its output topic.
pub const AVG_V2: &str = "readings-avg-v2";
/// The sink of `readings-avg`.
pub const SINK: &str = "readings-avg-s3";
/// The consumer VM's group.
pub const GROUP: &str = "dashboard";

/// `minicloud pipeline ...`
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Sensor VMs.
    #[arg(long, default_value_t = 3)]
    pub sensors: u32,
    /// Readings each sensor produces.
    #[arg(long, default_value_t = 250)]
    pub readings: u64,
    /// Milliseconds between a sensor's readings.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Readings per produce request.
    #[arg(long, default_value_t = 10)]
    pub batch: u64,
    /// Guest image of the VMs (`linux` on hosts with hardware
    /// virtualization: its `minicloud-guest` has the same commands).
    #[arg(long, default_value = "mini")]
    pub image: String,
    /// Memory of each VM in MiB (default: 64 for mini, 128 otherwise).
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Window of the first job (ms).
    #[arg(long, default_value_t = 10_000)]
    pub window_ms: u64,
    /// Window of the replayed job version (ms).
    #[arg(long, default_value_t = 5_000)]
    pub replay_window_ms: u64,
    /// Bucket for the windows (default: pipeline-<project id prefix>).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Remove the topics, jobs and sink of an earlier run first.
    #[arg(long)]
    pub fresh: bool,
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    pb.set_message(msg.to_string());
    pb
}

fn step(n: u32, text: &str) {
    println!("\n[{n}/7] {text}");
}

/// The first job's spec.
pub fn job_spec(name: &str, output: &str, window_ms: u64) -> Value {
    json!({
        "name": name, "input": READINGS, "output": output, "key": "/sensor",
        "window": {"type": "tumbling", "size_ms": window_ms, "grace_ms": 3000,
                   "time": {"event_time": "/ts"}},
        "aggregates": [{"op": "count"}, {"op": "avg", "field": "/temp"},
                       {"op": "min", "field": "/temp"}, {"op": "max", "field": "/temp"}],
        "start": "earliest"
    })
}

/// Runs the pipeline.
pub fn run(conn: &Conn, a: PipelineArgs) -> anyhow::Result<()> {
    let c = conn.client()?;
    let project = c.get("/v1/project")?;
    let pid = project["project"]["id"]
        .as_str()
        .context("GET /v1/project answered no project id")?
        .to_string();
    let bucket = a.bucket.clone().unwrap_or_else(|| default_bucket(&pid));
    let memory = a
        .memory_mib
        .unwrap_or(if a.image == "mini" { 64 } else { 128 });
    let run_id = super::super::store::now_ms();
    let prefix = format!("runs/{run_id}/");
    println!(
        "minicloud pipeline: {} sensor VMs × {} readings every {} ms → {READINGS} → job {AVG} ({} s windows) → s3://{bucket}/{prefix}",
        a.sensors,
        a.readings,
        a.interval_ms,
        a.window_ms / 1000
    );

    step(1, "topics, stream job, bucket and sink");
    if a.fresh {
        let _ = c.delete(&format!("/v1/sinks/{SINK}"));
        for j in [AVG, AVG_V2] {
            let _ = c.delete(&format!("/v1/stream-jobs/{j}"));
        }
        for t in [READINGS, AVG, AVG_V2] {
            let _ = c.delete(&format!("/v1/topics/{t}"));
        }
    }
    c.post(
        "/v1/topics",
        Some(json!({"name": READINGS, "partitions": 3})),
    )
    .context("creating the topic readings (an earlier run? pass --fresh)")?;
    c.post("/v1/stream-jobs", Some(job_spec(AVG, AVG, a.window_ms)))?;
    match c.post("/v1/buckets", Some(json!({ "name": bucket }))) {
        Ok(_) => {}
        Err(e) if e.to_string().contains("already_exists") => {}
        Err(e) => return Err(e).context("creating the bucket"),
    }
    c.post(
        "/v1/sinks",
        Some(
            json!({"name": SINK, "topic": AVG, "bucket": bucket, "prefix": prefix,
                    "max_records": 1000, "flush_ms": 1000}),
        ),
    )?;
    println!("  topic {READINGS} (3 partitions), job {AVG}, bucket {bucket}, sink {SINK}");

    step(2, "sensor VMs produce readings over vsock");
    let t0 = Instant::now();
    let mut sensors = Vec::new();
    for i in 1..=a.sensors {
        let name = format!("sensor-{i}");
        let run = format!(
            "produce {READINGS} {} {name} {} {}",
            a.readings, a.interval_ms, a.batch
        );
        let v = c.post(
            "/v1/instances",
            Some(json!({"name": name, "image": a.image, "vcpus": 1, "memory_mib": memory, "run": run})),
        )?;
        let id = v["instance"]["id"]
            .as_str()
            .context("launch answered no id")?
            .to_string();
        sensors.push((name, id));
    }
    let total = a.readings * u64::from(a.sensors);
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("  {bar:40} {pos}/{len} readings [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    loop {
        pb.set_position(topic_records(&c, READINGS)?.min(total));
        let states = sensors
            .iter()
            .map(|(_, id)| instance_state(&c, id))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let running = states.iter().filter(|s| !is_final(s)).count();
        pb.set_message(format!("{running} sensors running"));
        if running == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    pb.set_position(topic_records(&c, READINGS)?.min(total));
    pb.finish();
    for (name, id) in &sensors {
        let console = c.get_text(&format!("/v1/instances/{id}/console"))?;
        let done = console
            .lines()
            .find(|l| l.starts_with("produce: done"))
            .unwrap_or("no `produce: done` line (see its console)");
        println!("  {name}: {done}");
    }
    let produced = topic_records(&c, READINGS)?;
    println!(
        "  {produced} readings in {READINGS} after {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    step(
        3,
        "the stream job closes windows; the sink writes them to the bucket",
    );
    let sp = spinner("waiting for the job and the sink to catch up");
    wait_until(Duration::from_secs(120), || {
        Ok(job_lag(&c, AVG)? == 0 && sink_lag(&c, SINK)? == 0)
    })?;
    sp.finish_and_clear();
    let windows = topic_records(&c, AVG)?;
    let objects = c.get(&format!(
        "/v1/buckets/{bucket}/objects?prefix={}",
        pct(&prefix)
    ))?;
    let n_obj = objects["objects"].as_array().map_or(0, Vec::len);
    println!("  {windows} closed windows in {AVG}; {n_obj} objects in s3://{bucket}/{prefix}");
    println!(
        "  (the newest window of each sensor stays open until later readings move stream time past it)"
    );

    step(
        4,
        "a consumer VM reads readings-avg in the consumer group `dashboard`",
    );
    let run = format!("consume {AVG} {GROUP} {} 3000", windows.max(1));
    let v = c.post(
        "/v1/instances",
        Some(json!({"name": "dashboard", "image": a.image, "vcpus": 1, "memory_mib": memory, "run": run})),
    )?;
    let id = v["instance"]["id"]
        .as_str()
        .context("launch answered no id")?
        .to_string();
    let sp = spinner("consumer VM running");
    wait_until(Duration::from_secs(120), || {
        Ok(is_final(&instance_state(&c, &id)?))
    })?;
    sp.finish_and_clear();
    let console = c.get_text(&format!("/v1/instances/{id}/console"))?;
    for l in console.lines().filter(|l| l.starts_with("record ")).take(3) {
        println!("  {l}");
    }
    let done = console
        .lines()
        .find(|l| l.starts_with("consume: done"))
        .unwrap_or("no `consume: done` line (see its console)");
    println!("  dashboard: {done}");

    step(
        5,
        "Kappa: a second job version replays readings from offset 0",
    );
    c.post(
        "/v1/stream-jobs",
        Some(job_spec(AVG_V2, AVG_V2, a.replay_window_ms)),
    )?;
    let sp = spinner("replaying");
    wait_until(Duration::from_secs(120), || Ok(job_lag(&c, AVG_V2)? == 0))?;
    sp.finish_and_clear();
    let readings = fetch_all(&c, READINGS)?;
    for (job, w) in [(AVG, a.window_ms), (AVG_V2, a.replay_window_ms)] {
        let got = windows_of(&fetch_all(&c, job)?);
        let want = recompute(&readings, w as i64, 3000);
        let same = got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|((k1, a1), (k2, a2))| k1 == k2 && a1.0 == a2.0 && (a1.1 - a2.1).abs() < 1e-9);
        println!(
            "  {job}: {} windows of {} s; recomputed from {} raw readings: {}",
            got.len(),
            w / 1000,
            readings.len(),
            if same { "identical" } else { "DIFFERENT" }
        );
        if !same {
            bail!("{job}'s output differs from the recomputation");
        }
    }

    step(6, "what it cost");
    let sp = spinner("waiting for the meters' next sample (every 10 s)");
    std::thread::sleep(Duration::from_secs(11));
    sp.finish_and_clear();
    super::billing::bill(
        conn,
        super::billing::BillArgs {
            from: None,
            to: None,
            group_by: "resource".into(),
            format: None,
            chart: None,
            cmd: None,
        },
    )?;

    step(7, "where to look");
    let url = &c.url;
    let mc = cli_name();
    println!("  API:       {url}   (OpenAPI: {url}/openapi.json)");
    println!("  VMs:       {mc} vm list;  {mc} vm console sensor-1");
    println!(
        "  streams:   {mc} topic describe {READINGS};  {mc} job show {AVG};  {mc} group describe {GROUP}"
    );
    println!("  windows:   {mc} bucket ls {bucket} --prefix {prefix}");
    println!(
        "             {mc} bucket cat {bucket} <key>   (or any S3 client: {mc} s3-key create)"
    );
    println!("  the bill:  {mc} bill;  {mc} bill --group-by resource");
    Ok(())
}

/// The default bucket of a project's pipeline: `pipeline-` and the last 12
/// hex digits of the project id (its random part; bucket names are global).
pub fn default_bucket(project_id: &str) -> String {
    let hex: String = project_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("pipeline-{}", &hex[hex.len().saturating_sub(12)..])
}

/// How the user runs this CLI: `minicloud` when that name on PATH is this
/// binary, else its full path (as after `scripts/run.sh`, which does not
/// install it).
fn cli_name() -> String {
    let me = std::env::current_exe().and_then(std::fs::canonicalize).ok();
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("minicloud"))
            .find(|c| c.is_file())
            .and_then(|c| std::fs::canonicalize(c).ok())
    });
    match me {
        Some(me) if on_path.as_ref() != Some(&me) => me.display().to_string(),
        _ => "minicloud".to_string(),
    }
}

/// Whether an instance state is final.
fn is_final(s: &str) -> bool {
    matches!(s, "stopped" | "failed")
}

fn instance_state(c: &Client, id: &str) -> anyhow::Result<String> {
    Ok(c.get(&format!("/v1/instances/{id}"))?["state"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let end = Instant::now() + limit;
    while !f()? {
        if Instant::now() > end {
            bail!("gave up after {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// Records in a topic (sum of its partitions' high watermarks minus
/// their first offsets).
pub fn topic_records(c: &Client, topic: &str) -> anyhow::Result<u64> {
    let t = c.get(&format!("/v1/topics/{topic}"))?;
    Ok(t["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    p["next_offset"]
                        .as_u64()
                        .unwrap_or(0)
                        .saturating_sub(p["first_offset"].as_u64().unwrap_or(0))
                })
                .sum()
        })
        .unwrap_or(0))
}

fn job_lag(c: &Client, job: &str) -> anyhow::Result<u64> {
    let j = c.get(&format!("/v1/stream-jobs/{job}"))?;
    j["lag"].as_u64().context("the job status has no lag")
}

fn sink_lag(c: &Client, sink: &str) -> anyhow::Result<u64> {
    let s = c.get(&format!("/v1/sinks/{sink}"))?;
    let topic = s["topic"].as_str().unwrap_or_default().to_string();
    let t = c.get(&format!("/v1/topics/{topic}"))?;
    let committed: BTreeMap<u64, u64> = s["progress"]["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| Some((p["partition"].as_u64()?, p["committed"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok(t["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .enumerate()
                .map(|(i, p)| {
                    let hw = p["next_offset"].as_u64().unwrap_or(0);
                    hw.saturating_sub(committed.get(&(i as u64)).copied().unwrap_or(0))
                })
                .sum()
        })
        .unwrap_or(0))
}

/// Every record of a topic: (partition, JSON value).
pub fn fetch_all(c: &Client, topic: &str) -> anyhow::Result<Vec<(u32, Value)>> {
    let t = c.get(&format!("/v1/topics/{topic}"))?;
    let n = t["partitions"].as_array().map_or(0, Vec::len) as u32;
    let mut out = Vec::new();
    for p in 0..n {
        let mut offset = 0u64;
        loop {
            let r = c.get(&format!(
                "/v1/topics/{topic}/partitions/{p}/records?offset={offset}&max_records=10000"
            ))?;
            let recs = items(&r["records"]);
            if recs.is_empty() {
                break;
            }
            for rec in &recs {
                if let Some(v) = rec["value"]
                    .as_str()
                    .and_then(|s| serde_json::from_str(s).ok())
                {
                    out.push((p, v));
                }
            }
            offset = r["next_offset"]
                .as_u64()
                .unwrap_or(offset + recs.len() as u64);
        }
    }
    Ok(out)
}

/// (sensor, window_start) → (count, avg) of a job's output.
pub fn windows_of(out: &[(u32, Value)]) -> BTreeMap<(String, i64), (u64, f64)> {
    out.iter()
        .filter_map(|(_, v)| {
            Some((
                (v["key"].as_str()?.to_string(), v["window_start"].as_i64()?),
                (v["count"].as_u64()?, v["avg_temp"].as_f64()?),
            ))
        })
        .collect()
}

/// The windows a tumbling event-time job with `grace_ms` closes over
/// `readings` (partition, value), replaying its rules: per partition in
/// offset order, stream time is the largest `ts` seen, a record whose
/// window ended at or before stream time − grace is late and dropped, and
/// a window is emitted once its end is at or before stream time − grace.
pub fn recompute(
    readings: &[(u32, Value)],
    size_ms: i64,
    grace_ms: i64,
) -> BTreeMap<(String, i64), (u64, f64)> {
    let mut by_part: BTreeMap<u32, Vec<&Value>> = BTreeMap::new();
    for (p, v) in readings {
        by_part.entry(*p).or_default().push(v);
    }
    let mut closed = BTreeMap::new();
    for recs in by_part.values() {
        let mut open: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
        let mut max_ts = i64::MIN;
        for v in recs {
            let (Some(s), Some(t), Some(temp)) =
                (v["sensor"].as_str(), v["ts"].as_i64(), v["temp"].as_f64())
            else {
                continue;
            };
            max_ts = max_ts.max(t);
            let wm = max_ts.saturating_sub(grace_ms);
            let start = t.div_euclid(size_ms) * size_ms;
            if start + size_ms > wm {
                let e = open.entry((s.to_string(), start)).or_insert((0, 0.0));
                e.0 += 1;
                e.1 += temp;
            }
            let done: Vec<_> = open
                .keys()
                .filter(|(_, st)| st + size_ms <= wm)
                .cloned()
                .collect();
            for k in done {
                if let Some((n, sum)) = open.remove(&k) {
                    closed.insert(k, (n, sum / n as f64));
                }
            }
        }
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bucket_names_are_valid_and_differ_per_project() {
        let a = default_bucket("prj-01a21456a78e7739a6e70c9887f85c32");
        let b = default_bucket("prj-01a21456a78e7739a6e70c9887f85c33");
        assert_eq!(a, "pipeline-0c9887f85c32");
        assert_ne!(a, b);
        assert!(
            a.len() <= 63
                && a.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        );
    }
}
