//! Object-storage sinks: a connector (Kafka Connect's S3 sink, in this
//! cloud) that writes a topic's records into a bucket of the same project
//! as newline-delimited JSON objects, which the batch layer of a Lambda
//! architecture, or any S3 client, reads.
//!
//! Each partition's records go to objects named by the offsets they hold,
//! `<prefix><topic>/partition=<p>/<first:020>-<last:020>.ndjson`; a batch
//! is written when it has `max_records` records or its first record has
//! waited `flush_ms`. Progress is the consumer group `sink-<name>`,
//! committed only after the object is durable. Exactly once: a crash
//! between the write and the commit leaves an object whose first offset
//! is the committed one; on restart the sink finds it and commits past it
//! instead of writing the records again, so objects never overlap.

mod runner;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::Store;
pub use store::SinkSpec;

/// The consumer group a sink commits its progress in.
pub fn group_of(name: &str) -> String {
    format!("sink-{name}")
}

/// What a sink has done since the daemon started it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SinkStats {
    /// Objects written.
    pub objects: u64,
    /// Records written into them.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The last error (the sink retries after one), if any.
    pub last_error: Option<String>,
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    stats: Arc<Mutex<SinkStats>>,
}

/// The running sinks.
#[derive(Clone)]
pub struct Sinks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    streams: streams::Streams,
    objects: storage::s3::Backend,
    running: Mutex<HashMap<(String, String), Running>>,
}

impl Sinks {
    /// No sinks running yet; [`Sinks::resume_all`] starts the stored ones.
    pub fn new(store: Store, streams: streams::Streams, objects: storage::s3::Backend) -> Self {
        Sinks {
            inner: Arc::new(Inner {
                store,
                streams,
                objects,
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The object store sinks write to.
    pub fn objects(&self) -> &storage::s3::Backend {
        &self.inner.objects
    }

    /// Starts every stored sink (after a daemon start).
    pub async fn resume_all(&self) -> Result<usize, sqlx::Error> {
        let all = store::all(&self.inner.store.pool).await?;
        let n = all.len();
        for s in all {
            self.start(s);
        }
        Ok(n)
    }

    /// Starts (or restarts) a sink.
    pub fn start(&self, spec: SinkSpec) {
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(Mutex::new(SinkStats::default()));
        let key = (spec.project_id.clone(), spec.name.clone());
        let task = tokio::spawn(runner::run(
            self.inner.streams.clone(),
            self.inner.objects.clone(),
            spec,
            stats.clone(),
            stop_rx,
        ));
        let old = self
            .inner
            .running
            .lock()
            .ok()
            .and_then(|mut r| r.insert(key, Running { stop, task, stats }));
        if let Some(old) = old {
            let _ = old.stop.send(true);
            old.task.abort();
        }
    }

    /// Stops a sink (its objects and committed offsets stay).
    pub async fn stop(&self, project: &str, name: &str) {
        let run = self
            .inner
            .running
            .lock()
            .ok()
            .and_then(|mut r| r.remove(&(project.to_string(), name.to_string())));
        if let Some(r) = run {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
    }

    /// A running sink's counters.
    pub fn stats(&self, project: &str, name: &str) -> Option<SinkStats> {
        let r = self.inner.running.lock().ok()?;
        let run = r.get(&(project.to_string(), name.to_string()))?;
        run.stats.lock().ok().map(|s| s.clone())
    }
}
