//! Running jobs: one tokio task per input partition. Each task restores its
//! state from the changelog, finds outputs of an interrupted batch, then
//! loops: long-poll the input, process a batch record by record, write the
//! window results, write the changelog batch with the checkpoint. See the
//! module doc of [`crate::job`] for why this gives exactly-once output.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::spec::{FilterOp, JobSpec, StartFrom, TimeSource, WindowKind};
use super::state::{Checkpoint, TaskState, WindowState};
use super::window;
use super::{JobFile, JobState, JobStatus, TaskStatus};
use crate::error::{Error, Result};
use crate::log::CleanupPolicy;
use crate::metering::ResourceKind;
use crate::record::{Header, ProduceRecord, Record};
use crate::service::Streams;
use crate::topic::{Topic, TopicConfig};

/// Environment variable for crash tests: when set to N, a job task aborts
/// the process right after its N-th output write and before the matching
/// checkpoint.
pub const ABORT_AFTER_OUTPUT_ENV: &str = "STREAMS_FAULT_ABORT_AFTER_OUTPUT_WRITES";

/// The changelog topic of a job.
pub fn changelog_topic(job: &str) -> String {
    format!("{job}-changelog")
}

#[derive(Debug, Default)]
pub(crate) struct Progress {
    input_offset: AtomicU64,
    processed: AtomicU64,
    emitted: AtomicU64,
    late: AtomicU64,
    invalid: AtomicU64,
    open_windows: AtomicU64,
    error: Mutex<Option<String>>,
}

#[derive(Debug, Default)]
struct StopSignal {
    flag: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    fn stop(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
    async fn wait(&self) {
        loop {
            let n = self.notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.flag.load(Ordering::Acquire) {
                return;
            }
            n.await;
        }
    }
}

/// A running job's tasks.
#[derive(Debug)]
pub(crate) struct Running {
    stop: Arc<StopSignal>,
    tasks: Vec<JoinHandle<()>>,
    progress: Vec<Arc<Progress>>,
}

fn ensure_topic(s: &Streams, project: &str, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
    match s.topic(project, name) {
        Ok(t) => Ok(t),
        Err(Error::UnknownTopic { .. }) => {
            match s.create_topic(project, name, config) {
                Ok(_) | Err(Error::TopicExists { .. }) => {}
                Err(e) => return Err(e),
            }
            s.topic(project, name)
        }
        Err(e) => Err(e),
    }
}

/// Creates (or resumes) a job and spawns its tasks.
pub(crate) async fn start(
    s: &Streams,
    project: &str,
    spec: JobSpec,
    create: bool,
) -> Result<JobStatus> {
    let rt = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime("start_job"))?;
    crate::service::validate_name("project", project)?;
    spec.validate()?;
    let input = s.topic(project, &spec.input)?;
    let n = input.config().partitions;
    let k = (project.to_string(), spec.name.clone());
    {
        let jobs = s.inner.jobs.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((jf, run)) = jobs.get(&k)
            && (run.as_ref().is_some_and(|r| !r.tasks.is_empty()) || (create && jf.spec != spec))
        {
            return Err(Error::JobExists {
                job: spec.name.clone(),
            });
        }
    }
    ensure_topic(s, project, &spec.output, TopicConfig::new(n))?;
    let mut cl = TopicConfig::new(n);
    cl.cleanup = CleanupPolicy::Compact;
    cl.retention_ms = None;
    ensure_topic(s, project, &changelog_topic(&spec.name), cl)?;
    let mut jobs = s.inner.jobs.jobs.lock().unwrap_or_else(|p| p.into_inner());
    let created_ms = jobs
        .get(&k)
        .map_or_else(crate::now_ms, |(jf, _)| jf.created_ms);
    let jf = JobFile {
        spec: spec.clone(),
        running: true,
        created_ms,
    };
    s.inner.jobs.persist(project, &spec.name, &jf)?;
    let stop = Arc::new(StopSignal::default());
    let spec = Arc::new(spec);
    let mut tasks = Vec::new();
    let mut progress = Vec::new();
    for p in 0..n {
        let pr = Arc::new(Progress::default());
        progress.push(pr.clone());
        let (s2, project2, spec2, stop2) =
            (s.clone(), project.to_string(), spec.clone(), stop.clone());
        tasks.push(rt.spawn(async move {
            if let Err(e) = run_task(&s2, &project2, &spec2, p, &pr, &stop2).await {
                *pr.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        }));
    }
    jobs.insert(
        k,
        (
            jf,
            Some(Running {
                stop,
                tasks,
                progress,
            }),
        ),
    );
    drop(jobs);
    status(s, project, &spec.name)
}

/// Restarts every job persisted as running.
pub(crate) async fn resume_all(s: &Streams) -> Result<Vec<String>> {
    let todo: Vec<(String, JobSpec)> = {
        let jobs = s.inner.jobs.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter()
            .filter(|(_, (jf, run))| jf.running && run.is_none())
            .map(|((p, _), (jf, _))| (p.clone(), jf.spec.clone()))
            .collect()
    };
    let mut names = Vec::new();
    for (project, spec) in todo {
        names.push(spec.name.clone());
        start(s, &project, spec, false).await?;
    }
    Ok(names)
}

async fn stop_running(run: Running) {
    run.stop.stop();
    for t in run.tasks {
        let _ = t.await;
    }
}

/// Stops a job and marks it stopped.
pub(crate) async fn stop(s: &Streams, project: &str, name: &str) -> Result<JobStatus> {
    let run = {
        let mut jobs = s.inner.jobs.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let (jf, run) = jobs
            .get_mut(&(project.to_string(), name.to_string()))
            .ok_or_else(|| Error::UnknownJob {
                job: name.to_string(),
            })?;
        jf.running = false;
        s.inner.jobs.persist(project, name, jf)?;
        if let Some(r) = run.as_ref() {
            r.stop.stop();
        }
        run.as_mut().map(|r| std::mem::take(&mut r.tasks))
    };
    if let Some(tasks) = run {
        for t in tasks {
            let _ = t.await;
        }
    }
    status(s, project, name)
}

/// Stops every job's tasks without marking them stopped (so that
/// `resume_jobs` restarts them after a restart).
pub(crate) async fn stop_all(s: &Streams) {
    let runs: Vec<Running> = {
        let mut jobs = s.inner.jobs.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.values_mut()
            .filter_map(|(_, run)| run.take())
            .collect()
    };
    for r in runs {
        stop_running(r).await;
    }
}

/// A job's status.
pub(crate) fn status(s: &Streams, project: &str, name: &str) -> Result<JobStatus> {
    let jobs = s.inner.jobs.jobs.lock().unwrap_or_else(|p| p.into_inner());
    let (jf, run) = jobs
        .get(&(project.to_string(), name.to_string()))
        .ok_or_else(|| Error::UnknownJob {
            job: name.to_string(),
        })?;
    let input = s.topic(project, &jf.spec.input).ok();
    let mut tasks = Vec::new();
    let mut failed = false;
    if let Some(run) = run {
        for (p, pr) in run.progress.iter().enumerate() {
            let hw = input
                .as_ref()
                .and_then(|t| t.partition(p as u32).ok())
                .map_or(0, |part| part.next_offset());
            let off = pr.input_offset.load(Ordering::Acquire);
            let error = pr.error.lock().unwrap_or_else(|p| p.into_inner()).clone();
            failed |= error.is_some();
            tasks.push(TaskStatus {
                partition: p as u32,
                input_offset: off,
                high_watermark: hw,
                lag: hw.saturating_sub(off),
                processed: pr.processed.load(Ordering::Acquire),
                emitted: pr.emitted.load(Ordering::Acquire),
                late_dropped: pr.late.load(Ordering::Acquire),
                invalid: pr.invalid.load(Ordering::Acquire),
                open_windows: pr.open_windows.load(Ordering::Acquire),
                error,
            });
        }
    }
    let state = if failed {
        JobState::Failed
    } else if jf.running && run.as_ref().is_some_and(|r| !r.tasks.is_empty()) {
        JobState::Running
    } else {
        JobState::Stopped
    };
    let lag = tasks.iter().map(|t| t.lag).sum();
    Ok(JobStatus {
        name: name.to_string(),
        spec: jf.spec.clone(),
        state,
        created_ms: jf.created_ms,
        tasks,
        lag,
    })
}

// ---------------------------------------------------------------- the task

fn restore(changelog: &Topic, p: u32, state: &mut TaskState) -> Result<()> {
    let part = changelog.partition(p)?;
    let mut off = part.lock().log_start_offset();
    loop {
        let r = changelog.fetch(p, off, 10_000, 16 << 20)?;
        if r.records.is_empty() {
            break;
        }
        for rec in &r.records {
            state.apply_changelog(rec);
        }
        off = r.next_offset;
    }
    state.clear_dirty();
    Ok(())
}

fn output_ends(output: &Topic) -> BTreeMap<u32, u64> {
    output
        .partitions()
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u32, p.next_offset()))
        .collect()
}

/// Results of this task written after the checkpointed output ends.
fn uncommitted_outputs(
    output: &Topic,
    job: &str,
    p: u32,
    ends: &BTreeMap<u32, u64>,
) -> Result<HashSet<(String, i64)>> {
    let mut found = HashSet::new();
    let task = p.to_string();
    for (q, part) in output.partitions().iter().enumerate() {
        let start = part.lock().log_start_offset();
        let mut off = ends.get(&(q as u32)).copied().unwrap_or(start).max(start);
        loop {
            let r = output.fetch(q as u32, off, 10_000, 16 << 20)?;
            if r.records.is_empty() {
                break;
            }
            for rec in &r.records {
                let is_mine = rec.header("job").is_some_and(|v| &v[..] == job.as_bytes())
                    && rec
                        .header("task")
                        .is_some_and(|v| &v[..] == task.as_bytes());
                if !is_mine {
                    continue;
                }
                let key = rec
                    .header("window-key")
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                let start = rec
                    .header("window-start")
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok());
                if let (Some(k), Some(s)) = (key, start) {
                    found.insert((k, s));
                }
            }
            off = r.next_offset;
        }
    }
    Ok(found)
}

fn passes(f: &super::spec::Filter, v: &Value) -> bool {
    let got = v.pointer(&f.field);
    let ord = || -> Option<std::cmp::Ordering> {
        let g = got?;
        match (g, &f.value) {
            (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            _ => None,
        }
    };
    use std::cmp::Ordering::*;
    match f.op {
        FilterOp::Exists => got.is_some(),
        FilterOp::Eq => got == Some(&f.value),
        FilterOp::Ne => got != Some(&f.value),
        FilterOp::Gt => ord() == Some(Greater),
        FilterOp::Gte => matches!(ord(), Some(Greater | Equal)),
        FilterOp::Lt => ord() == Some(Less),
        FilterOp::Lte => matches!(ord(), Some(Less | Equal)),
    }
}

/// Processes one record into the state; returns the windows it closed.
pub(crate) fn process_record(
    spec: &JobSpec,
    state: &mut TaskState,
    cp: &mut Checkpoint,
    rec: &Record,
) -> Vec<((String, i64), WindowState)> {
    cp.processed += 1;
    let Some(v) = rec
        .value
        .as_deref()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
    else {
        cp.invalid += 1;
        return Vec::new();
    };
    let Some(key) = v.pointer(&spec.key) else {
        cp.invalid += 1;
        return Vec::new();
    };
    if let Some(f) = &spec.filter
        && !passes(f, &v)
    {
        return Vec::new();
    }
    let t = match &spec.window.time {
        TimeSource::AppendTime => rec.timestamp,
        TimeSource::EventTime(p) => match v
            .pointer(p)
            .and_then(|t| t.as_i64().or_else(|| t.as_f64().map(|f| f as i64)))
        {
            Some(t) => t,
            None => {
                cp.invalid += 1;
                return Vec::new();
            }
        },
    };
    let values: Vec<Option<f64>> = spec
        .aggregates
        .iter()
        .map(|a| {
            a.field
                .as_ref()
                .and_then(|f| v.pointer(f))
                .and_then(Value::as_f64)
        })
        .collect();
    cp.max_event_ts = cp.max_event_ts.max(t);
    let wm = cp.max_event_ts.saturating_sub(spec.window.grace_ms as i64);
    let keytext = serde_json::to_string(key).unwrap_or_default();
    let nagg = spec.aggregates.len();
    match spec.window.kind {
        WindowKind::Session { gap_ms } => {
            if window::is_late(spec.window.kind, t, t + gap_ms as i64, wm) {
                cp.late += 1;
            } else {
                let mut merged = WindowState::new(key.clone(), t + gap_ms as i64, nagg);
                merged.add(&values);
                let mut start = t;
                for (s, w) in state.windows_of(&keytext) {
                    if window::session_overlaps(s, w.end, t, gap_ms) {
                        state.remove(&(keytext.clone(), s));
                        merged.merge(&w);
                        start = start.min(s);
                    }
                }
                state.put((keytext, start), merged);
            }
        }
        kind => {
            let mut late = false;
            for (s, e) in window::windows_for(kind, t) {
                if window::is_late(kind, t, e, wm) {
                    late = true;
                    continue;
                }
                let k = (keytext.clone(), s);
                let mut w = state
                    .get(&k)
                    .cloned()
                    .unwrap_or_else(|| WindowState::new(key.clone(), e, nagg));
                w.add(&values);
                state.put(k, w);
            }
            if late {
                cp.late += 1;
            }
        }
    }
    state.pop_closed(wm)
}

fn output_record(spec: &JobSpec, p: u32, k: &(String, i64), w: &WindowState) -> ProduceRecord {
    let key: Bytes = match &w.key {
        Value::String(s) => Bytes::from(s.clone()),
        other => Bytes::from(other.to_string()),
    };
    ProduceRecord {
        key: Some(key),
        value: Some(Bytes::from(w.output(k.1, &spec.aggregates).to_string())),
        headers: vec![
            Header::new("job", spec.name.clone()),
            Header::new("task", p.to_string()),
            Header::new("window-key", k.0.clone()),
            Header::new("window-start", k.1.to_string()),
        ],
        partition: None,
        timestamp: Some(w.end),
    }
}

async fn run_task(
    s: &Streams,
    project: &str,
    spec: &JobSpec,
    p: u32,
    pr: &Progress,
    stop: &StopSignal,
) -> Result<()> {
    let input = s.topic(project, &spec.input)?;
    let output = s.topic(project, &spec.output)?;
    let changelog = s.topic(project, &changelog_topic(&spec.name))?;
    let mut state = TaskState::default();
    restore(&changelog, p, &mut state)?;
    let mut cp = match state.checkpoint.clone() {
        Some(cp) => cp,
        None => {
            let offset = match spec.start {
                StartFrom::Earliest => input.partition(p)?.lock().log_start_offset(),
                StartFrom::Latest => input.partition(p)?.next_offset(),
                StartFrom::Timestamp(ts) => input.offset_for_time(p, ts)?,
            };
            let cp = Checkpoint {
                input_offset: offset,
                max_event_ts: i64::MIN,
                out_ends: output_ends(&output),
                ..Default::default()
            };
            let batch = state.changelog_batch(&cp, p);
            s.produce(project, &changelog.name, &batch, None)?;
            cp
        }
    };
    let mut already = uncommitted_outputs(&output, &spec.name, p, &cp.out_ends)?;
    let publish = |cp: &Checkpoint, state: &TaskState| {
        pr.input_offset.store(cp.input_offset, Ordering::Release);
        pr.processed.store(cp.processed, Ordering::Release);
        pr.emitted.store(cp.emitted, Ordering::Release);
        pr.late.store(cp.late, Ordering::Release);
        pr.invalid.store(cp.invalid, Ordering::Release);
        pr.open_windows.store(state.len() as u64, Ordering::Release);
    };
    publish(&cp, &state);
    let opts = crate::service::FetchOptions {
        max_records: spec.batch_records,
        max_bytes: 8 << 20,
    };
    // Fault injection for the crash tests: abort the whole process right
    // after the N-th output write, before its checkpoint (as a kill -9
    // landing there would).
    let abort_after: Option<u64> = std::env::var(ABORT_AFTER_OUTPUT_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    let mut output_writes = 0u64;
    loop {
        if stop.flag.load(Ordering::Acquire) {
            return Ok(());
        }
        let fetched = tokio::select! {
            r = input.fetch_wait(p, cp.input_offset, opts.max_records, opts.max_bytes, Duration::from_millis(500)) => r,
            _ = stop.wait() => return Ok(()),
        };
        let fetched = match fetched {
            Ok(f) => f,
            Err(Error::OffsetOutOfRange { first, next, .. }) => {
                // Retention removed records the job had not read: go on
                // from the oldest retained one.
                cp.input_offset = cp.input_offset.clamp(first, next);
                continue;
            }
            Err(e) => return Err(e),
        };
        if fetched.records.is_empty() {
            continue;
        }
        let mut outputs = Vec::new();
        let in_bytes: usize = fetched.records.iter().map(Record::encoded_len).sum();
        for rec in &fetched.records {
            for (k, w) in process_record(spec, &mut state, &mut cp, rec) {
                cp.emitted += 1;
                if already.remove(&k) {
                    continue;
                }
                outputs.push(output_record(spec, p, &k, &w));
            }
        }
        cp.input_offset = fetched.next_offset;
        if !outputs.is_empty() {
            s.produce(project, &spec.output, &outputs, None)?;
            output_writes += 1;
            if abort_after == Some(output_writes) {
                std::process::abort();
            }
        }
        cp.out_ends = output_ends(&output);
        let batch = state.changelog_batch(&cp, p);
        s.produce(project, &changelog.name, &batch, None)?;
        let out_bytes: usize = outputs.iter().map(ProduceRecord::encoded_len).sum();
        s.inner
            .metering
            .add(project, ResourceKind::Job, &spec.name, |c| {
                c.bytes_out += in_bytes as u64;
                c.records_out += fetched.records.len() as u64;
                c.bytes_in += out_bytes as u64;
                c.records_in += outputs.len() as u64;
            });
        publish(&cp, &state);
    }
}
