//! Stream jobs in Samza's model: a job reads one input topic with one task
//! per input partition, keeps per-task windowed aggregates in a local
//! state store backed by a changelog topic, and writes one record per
//! closed window to its output topic.
//!
//! - [`spec`]: the job specification and its validation.
//! - [`window`]: window arithmetic and the watermark rules.
//! - [`state`]: the task's state store, its changelog encoding and the
//!   checkpoint stored with it.
//! - [`runner`]: the tokio tasks, restore, output deduplication after a
//!   crash, start/stop/status.
//!
//! ## Exactly-once output after a crash
//!
//! Per processing batch a task (1) appends the batch's window results to
//! the output topic, each tagged with headers `job`, `task`, `window-key`
//! and `window-start`, then (2) appends the changed state and the
//! checkpoint (next input offset, and the end of every output partition
//! after step 1) to its changelog partition as a single log batch, which is
//! atomic (one CRC'd write; a torn one is cut on open). After a kill -9 the
//! task restores state and input offset from the changelog, scans the
//! output partitions past the checkpointed ends for results of its own
//! (written in step 1 of the batch that did not reach step 2), and skips
//! exactly those when it reprocesses the batch. Processing is
//! deterministic (results are decided per record, not per batch), so the
//! skipped results are the ones it would have written: every window
//! appears once, with the right values.
//!
//! Kappa-style reprocessing is a new job (new name) with `start:
//! "earliest"` (or a timestamp) and a new output topic; [`JobStatus`]
//! shows each task's progress and lag.

pub mod runner;
pub mod spec;
pub mod state;
pub mod window;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub use spec::{
    Aggregate, AggregateOp, Filter, FilterOp, JobSpec, StartFrom, TimeSource, WindowKind,
    WindowSpec,
};

use crate::error::{Error, IoContext, Result};
use crate::topic::write_json_atomic;

/// A job's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Its tasks are running.
    Running,
    /// Stopped by request (or the service stopped and it was not resumed).
    Stopped,
    /// A task stopped on an error (see the tasks' `error`).
    Failed,
}

/// One task's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    /// The input partition.
    pub partition: u32,
    /// Next input offset to process (checkpointed).
    pub input_offset: u64,
    /// The input partition's next offset.
    pub high_watermark: u64,
    /// Records not yet processed.
    pub lag: u64,
    /// Records processed.
    pub processed: u64,
    /// Window results emitted.
    pub emitted: u64,
    /// Records dropped as late.
    pub late_dropped: u64,
    /// Records skipped as invalid (not JSON, no key or event time).
    pub invalid: u64,
    /// Windows open now.
    pub open_windows: u64,
    /// The error that stopped the task, if any.
    pub error: Option<String>,
}

/// What `job_status` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    /// The job's name.
    pub name: String,
    /// Its spec.
    pub spec: JobSpec,
    /// Running, stopped or failed.
    pub state: JobState,
    /// When it was created (ms).
    pub created_ms: i64,
    /// Per-task progress (empty until it first ran in this process).
    pub tasks: Vec<TaskStatus>,
    /// Sum of the tasks' lag.
    pub lag: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobFile {
    pub(crate) spec: JobSpec,
    pub(crate) running: bool,
    pub(crate) created_ms: i64,
}

/// A job's persisted record and, when started in this process, its tasks.
pub(crate) type JobEntry = (JobFile, Option<runner::Running>);

/// Every job's persisted record and, when running, its tasks.
#[derive(Debug)]
pub(crate) struct JobRegistry {
    dir: PathBuf,
    pub(crate) jobs: Mutex<HashMap<(String, String), JobEntry>>,
}

impl JobRegistry {
    /// Loads `jobs/{project}/{name}.json`.
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let mut jobs = HashMap::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for project in rd.flatten() {
                let pname = project.file_name().to_string_lossy().into_owned();
                let Ok(files) = std::fs::read_dir(project.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let fname = f.file_name().to_string_lossy().into_owned();
                    let Some(name) = fname.strip_suffix(".json") else {
                        continue;
                    };
                    let raw = std::fs::read(f.path())
                        .ctx(|| format!("reading {}", f.path().display()))?;
                    let jf: JobFile = serde_json::from_slice(&raw).map_err(|e| Error::Corrupt {
                        path: f.path(),
                        reason: e.to_string(),
                    })?;
                    jobs.insert((pname.clone(), name.to_string()), (jf, None));
                }
            }
        }
        Ok(JobRegistry {
            dir: dir.to_path_buf(),
            jobs: Mutex::new(jobs),
        })
    }

    pub(crate) fn path(&self, project: &str, name: &str) -> PathBuf {
        self.dir.join(project).join(format!("{name}.json"))
    }

    pub(crate) fn persist(&self, project: &str, name: &str, jf: &JobFile) -> Result<()> {
        let dir = self.dir.join(project);
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        write_json_atomic(&self.path(project, name), jf)
    }

    pub(crate) fn remove(&self, project: &str, name: &str) -> Result<()> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.remove(&(project.to_string(), name.to_string()))
            .ok_or_else(|| Error::UnknownJob {
                job: name.to_string(),
            })?;
        let p = self.path(project, name);
        std::fs::remove_file(&p).ctx(|| format!("removing {}", p.display()))
    }

    pub(crate) fn names(&self, project: &str) -> Vec<String> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = jobs
            .keys()
            .filter(|(p, _)| p == project)
            .map(|(_, n)| n.clone())
            .collect();
        v.sort();
        v
    }
}
