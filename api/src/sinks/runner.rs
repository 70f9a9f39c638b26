//! One sink's loop: read each partition from the committed offset, batch,
//! write an object, commit past it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use streams::{FetchOptions, Record, Streams, TopicPartition};
use tokio::sync::watch;

use super::{SinkSpec, SinkStats, group_of};

/// Pause after an error before trying again.
const RETRY: Duration = Duration::from_secs(1);
/// Longest pause while the same error repeats.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Pause when no partition had records.
const IDLE: Duration = Duration::from_millis(100);

struct Part {
    partition: u32,
    /// Next offset to read.
    pos: u64,
    buf: Vec<Record>,
    first_at: Option<Instant>,
}

/// The key prefix of one partition's objects.
fn partition_prefix(spec: &SinkSpec, p: u32) -> String {
    format!("{}{}/partition={p}/", spec.prefix, spec.topic)
}

/// The key of the object holding offsets `first..=last`.
pub(crate) fn object_key(spec: &SinkSpec, p: u32, first: u64, last: u64) -> String {
    format!("{}{first:020}-{last:020}.ndjson", partition_prefix(spec, p))
}

/// One line per record: the value when it is JSON, else the value as a
/// JSON string (`null` for a tombstone).
pub(crate) fn ndjson(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        match &r.value {
            Some(v) if serde_json::from_slice::<serde::de::IgnoredAny>(v).is_ok() => {
                // One line per record: JSON text has no raw newlines
                // outside strings, but pretty-printed values may.
                out.extend(
                    v.iter()
                        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
                );
            }
            Some(v) => {
                let s = serde_json::Value::String(String::from_utf8_lossy(v).into_owned());
                out.extend_from_slice(s.to_string().as_bytes());
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'\n');
    }
    out
}

pub(crate) async fn run(
    streams: Streams,
    objects: storage::s3::Backend,
    spec: SinkSpec,
    stats: Arc<Mutex<SinkStats>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut delay = RETRY;
    loop {
        let err = match run_once(&streams, &objects, &spec, &stats, &mut stop).await {
            Ok(()) => return,
            Err(e) => e,
        };
        // The same error again (a deleted bucket, say) backs off to
        // MAX_RETRY and is not logged again; a new one is, at once.
        let repeated = stats
            .lock()
            .map(|s| s.last_error.as_deref() == Some(err.as_str()))
            .unwrap_or(false);
        if repeated {
            delay = (delay * 2).min(MAX_RETRY);
        } else {
            delay = RETRY;
            tracing::warn!(project = %spec.project_id, sink = %spec.name, error = %err, "sink: retrying");
        }
        if let Ok(mut s) = stats.lock() {
            s.last_error = Some(err);
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Runs until stopped (`Ok`) or an error (`Err`, the caller retries from
/// the committed offsets).
async fn run_once(
    streams: &Streams,
    objects: &storage::s3::Backend,
    spec: &SinkSpec,
    stats: &Mutex<SinkStats>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let project = spec.project_id.as_str();
    let group = group_of(&spec.name);
    let max = spec.max_records.clamp(1, 100_000) as usize;
    let flush = Duration::from_millis(spec.flush_ms.max(0) as u64);
    let mut parts: Vec<Part> = Vec::new();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        // Partitions may be added while the sink runs.
        let count = streams
            .describe_topic(project, &spec.topic)
            .map_err(|e| e.to_string())?
            .partitions
            .len() as u32;
        while (parts.len() as u32) < count {
            let p = parts.len() as u32;
            let committed = streams
                .committed_offset(project, &group, &spec.topic, p)
                .ok()
                .flatten()
                .unwrap_or(0);
            let pos = recover(streams, objects, spec, &group, p, committed).await?;
            parts.push(Part {
                partition: p,
                pos,
                buf: Vec::new(),
                first_at: None,
            });
        }
        let mut progressed = false;
        for part in parts.iter_mut() {
            let left = max.saturating_sub(part.buf.len());
            if left > 0 {
                let opts = FetchOptions {
                    max_records: left,
                    max_bytes: 8 << 20,
                };
                let r = match streams.fetch(project, &spec.topic, part.partition, part.pos, opts) {
                    Ok(r) => r,
                    Err(streams::Error::OffsetOutOfRange { first, next, .. }) => {
                        // Retention removed what the sink had not read.
                        part.pos = part.pos.clamp(first, next);
                        continue;
                    }
                    Err(e) => return Err(e.to_string()),
                };
                if !r.records.is_empty() {
                    progressed = true;
                    part.first_at.get_or_insert_with(Instant::now);
                    part.pos = r.next_offset;
                    part.buf.extend(r.records);
                }
            }
            let due = part.buf.len() >= max || part.first_at.is_some_and(|t| t.elapsed() >= flush);
            if due && !part.buf.is_empty() {
                write_batch(streams, objects, spec, &group, part, stats).await?;
                progressed = true;
            }
        }
        if !progressed {
            tokio::select! {
                _ = tokio::time::sleep(IDLE) => {}
                _ = stop.changed() => return Ok(()),
            }
        }
    }
}

/// Writes a partition's batch as one object, then commits past it.
async fn write_batch(
    streams: &Streams,
    objects: &storage::s3::Backend,
    spec: &SinkSpec,
    group: &str,
    part: &mut Part,
    stats: &Mutex<SinkStats>,
) -> Result<(), String> {
    let (Some(first), Some(last)) = (part.buf.first(), part.buf.last()) else {
        return Ok(());
    };
    let (first, last) = (first.offset, last.offset);
    let body = ndjson(&part.buf);
    let len = body.len() as u64;
    let key = object_key(spec, part.partition, first, last);
    objects
        .put_bytes(
            &spec.project_id,
            &spec.bucket,
            &key,
            Bytes::from(body),
            Some("application/x-ndjson".into()),
        )
        .await
        .map_err(|e| format!("writing s3://{}/{key}: {e}", spec.bucket))?;
    commit(streams, spec, group, part.partition, last + 1)?;
    if let Ok(mut s) = stats.lock() {
        s.objects += 1;
        s.records += part.buf.len() as u64;
        s.bytes += len;
        s.last_error = None;
    }
    part.buf.clear();
    part.first_at = None;
    Ok(())
}

fn commit(
    streams: &Streams,
    spec: &SinkSpec,
    group: &str,
    p: u32,
    next: u64,
) -> Result<(), String> {
    let tp = TopicPartition {
        topic: spec.topic.clone(),
        partition: p,
    };
    streams
        .commit_offsets(&spec.project_id, group, None, &[(tp, next)])
        .map_err(|e| format!("committing the sink's offset: {e}"))
}

/// After a crash between an object's write and its commit: objects that
/// start at the committed offset are already written, so commit past them.
async fn recover(
    streams: &Streams,
    objects: &storage::s3::Backend,
    spec: &SinkSpec,
    group: &str,
    p: u32,
    mut pos: u64,
) -> Result<u64, String> {
    loop {
        let prefix = format!("{}{pos:020}-", partition_prefix(spec, p));
        let (found, _) = objects
            .objects_of(&spec.project_id, &spec.bucket, &prefix, None, 1)
            .await
            .map_err(|e| format!("listing s3://{}/{prefix}: {e}", spec.bucket))?;
        let Some(last) = found
            .first()
            .and_then(|o| o.key.strip_prefix(&prefix))
            .and_then(|rest| rest.strip_suffix(".ndjson"))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&last| last >= pos)
        else {
            return Ok(pos);
        };
        tracing::info!(sink = %spec.name, partition = p, first = pos, last, "sink: object written before a crash; committing past it");
        pos = last + 1;
        commit(streams, spec, group, p, pos)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: u64, value: Option<&str>) -> Record {
        Record {
            offset,
            timestamp: 0,
            key: None,
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: Vec::new(),
        }
    }

    #[test]
    fn ndjson_keeps_json_and_quotes_the_rest() {
        let out = ndjson(&[
            rec(0, Some("{\"a\": 1}")),
            rec(1, Some("plain text")),
            rec(2, None),
            rec(3, Some("{\n\"b\":\n2}")),
        ]);
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            ["{\"a\": 1}", "\"plain text\"", "null", "{ \"b\": 2}"]
        );
        for l in lines {
            serde_json::from_str::<serde_json::Value>(l).expect("a JSON line");
        }
    }

    /// A crash after an object was written but before its offset was
    /// committed: the restarted sink commits past it instead of writing
    /// those records again, then goes on from there.
    #[tokio::test]
    async fn recovery_never_writes_a_record_twice() {
        let dir = tempfile::tempdir().expect("tmp");
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("db"))
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.expect("pool");
        storage::migrate(&pool).await.expect("migrate");
        let objects = storage::s3::Backend::open(pool, &dir.path().join("s3"))
            .await
            .expect("backend");
        objects
            .create_bucket_for("p1", "out-bucket")
            .await
            .expect("bucket");
        let streams = Streams::open(streams::StreamsConfig::new(dir.path().join("streams")))
            .expect("streams");
        streams
            .create_topic("p1", "t", streams::TopicConfig::new(1))
            .expect("topic");
        let recs: Vec<streams::ProduceRecord> = (0..5)
            .map(|i| streams::ProduceRecord {
                key: None,
                value: Some(Bytes::from(format!("{{\"n\":{i}}}"))),
                headers: Vec::new(),
                partition: None,
                timestamp: None,
            })
            .collect();
        streams.produce("p1", "t", &recs, None).expect("produce");
        let spec = SinkSpec {
            project_id: "p1".into(),
            name: "s".into(),
            topic: "t".into(),
            bucket: "out-bucket".into(),
            prefix: "x/".into(),
            max_records: 1000,
            flush_ms: 10,
            created_at: 0,
        };
        // What the crashed sink had written: records 0..=2, uncommitted.
        objects
            .put_bytes(
                "p1",
                "out-bucket",
                &object_key(&spec, 0, 0, 2),
                Bytes::from("{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n"),
                None,
            )
            .await
            .expect("put");
        let stats = Arc::new(Mutex::new(SinkStats::default()));
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run(
            streams.clone(),
            objects.clone(),
            spec.clone(),
            stats,
            rx,
        ));
        let group = group_of("s");
        for _ in 0..200 {
            if streams
                .committed_offset("p1", &group, "t", 0)
                .ok()
                .flatten()
                == Some(5)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop.send(true);
        let _ = task.await;
        assert_eq!(
            streams
                .committed_offset("p1", &group, "t", 0)
                .ok()
                .flatten(),
            Some(5)
        );
        let (list, _) = objects
            .objects_of("p1", "out-bucket", "x/", None, 100)
            .await
            .expect("list");
        let keys: Vec<&str> = list.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [object_key(&spec, 0, 0, 2), object_key(&spec, 0, 3, 4)],
            "no object overlaps another"
        );
        let mut lines = Vec::new();
        for k in keys {
            let b = objects
                .get_bytes("p1", "out-bucket", k, 1 << 20)
                .await
                .expect("get");
            lines.extend(String::from_utf8_lossy(&b).lines().map(str::to_string));
        }
        let want: Vec<String> = (0..5).map(|i| format!("{{\"n\":{i}}}")).collect();
        assert_eq!(lines, want);
    }

    #[test]
    fn object_keys_sort_by_offset() {
        let spec = SinkSpec {
            project_id: "p".into(),
            name: "s".into(),
            topic: "t".into(),
            bucket: "b".into(),
            prefix: "out/".into(),
            max_records: 10,
            flush_ms: 10,
            created_at: 0,
        };
        let a = object_key(&spec, 0, 9, 99);
        let b = object_key(&spec, 0, 100, 101);
        assert!(a < b);
        assert_eq!(
            a,
            "out/t/partition=0/00000000000000000009-00000000000000000099.ndjson"
        );
    }
}
