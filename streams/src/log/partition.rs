//! [`PartitionLog`]: one partition's ordered list of segments, the last of
//! which is active (appended to). It appends batches (rolling segments by
//! size and age, syncing per the fsync policy), reads by offset and by
//! timestamp, applies retention (whole segments) and compaction (latest
//! value per key), and remembers idempotent producers' last sequences.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::batch::{BatchBuilder, BatchHeader};
use super::segment::{self, Segment};
use super::{CleanupPolicy, Durability, FsyncPolicy, LogConfig};
use crate::error::{Error, IoContext, Result};
use crate::record::{ProduceRecord, Record};

/// The last batch an idempotent producer wrote to this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerState {
    /// Its sequence number.
    pub seq: u64,
    /// Offset of the batch's first record.
    pub base_offset: u64,
    /// Number of records in the batch.
    pub count: u32,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Number of records.
    pub count: u32,
    /// What the acknowledgement guarantees.
    pub durability: Durability,
}

/// What a retention or compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Segments deleted (retention) or rewritten (compaction).
    pub segments: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Records removed by compaction.
    pub records_removed: u64,
}

/// One partition's log on disk.
#[derive(Debug)]
pub struct PartitionLog {
    topic: String,
    partition: u32,
    dir: PathBuf,
    segments: Vec<Segment>,
    config: LogConfig,
    producers: HashMap<u64, ProducerState>,
    last_sync_ms: i64,
    dirty: bool,
    /// Bytes cut from a torn tail when the log was opened.
    pub repaired_bytes: u64,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, repairing a torn tail of the
    /// last segment.
    pub fn open(
        topic: &str,
        partition: u32,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        let mut bases: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<u64>() {
                    bases.push(base);
                }
            } else if name.ends_with(".cleaned") {
                // A compaction that did not finish: the original is intact.
                let p = entry.path();
                std::fs::remove_file(&p).ctx(|| format!("removing {}", p.display()))?;
            }
        }
        bases.sort_unstable();
        let mut log = PartitionLog {
            topic: topic.to_string(),
            partition,
            dir: dir.to_path_buf(),
            segments: Vec::with_capacity(bases.len().max(1)),
            config,
            producers: HashMap::new(),
            last_sync_ms: now_ms,
            dirty: false,
            repaired_bytes: 0,
        };
        let n = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            let path = dir.join(segment::file_name(base));
            let (mut seg, report) =
                Segment::open(&path, base, config.index_interval_bytes, i + 1 == n, now_ms)?;
            log.repaired_bytes += report.truncated_bytes;
            if let Some(prev) = log.segments.last() {
                // Compaction may leave gaps; never go back.
                seg.next_offset = seg.next_offset.max(seg.base_offset);
                if seg.base_offset < prev.next_offset {
                    return Err(Error::Corrupt {
                        path,
                        reason: format!(
                            "segment overlaps the previous one (ends at {})",
                            prev.next_offset
                        ),
                    });
                }
            }
            for pb in report.producer_batches {
                log.producers.insert(
                    pb.producer_id,
                    ProducerState {
                        seq: pb.seq,
                        base_offset: pb.base_offset,
                        count: pb.count,
                    },
                );
            }
            log.segments.push(seg);
        }
        if log.segments.is_empty() {
            log.segments.push(Segment::create(
                dir,
                0,
                config.index_interval_bytes,
                now_ms,
            )?);
        }
        Ok(log)
    }

    /// The first offset still retained.
    pub fn log_start_offset(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.base_offset)
    }

    /// The offset the next record will get.
    pub fn next_offset(&self) -> u64 {
        self.active().next_offset
    }

    /// Bytes on disk (log files only).
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The partition's configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces retention and cleanup settings (segment size etc. apply to
    /// new segments).
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// The last batch written by an idempotent producer, if any.
    pub fn producer(&self, producer_id: u64) -> Option<ProducerState> {
        self.producers.get(&producer_id).copied()
    }

    fn active(&self) -> &Segment {
        // `open` and every mutation keep at least one segment.
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let n = self.segments.len();
        &mut self.segments[n - 1]
    }

    /// Appends records as one batch. Timestamps default to `now_ms`.
    /// `producer` is `(producer_id, sequence)` for idempotent batches.
    pub fn append(
        &mut self,
        records: &[&ProduceRecord],
        now_ms: i64,
        producer: Option<(u64, u64)>,
    ) -> Result<Appended> {
        let base = self.next_offset();
        if records.is_empty() {
            return Ok(Appended {
                base_offset: base,
                count: 0,
                durability: self.durability(),
            });
        }
        let cap: usize = records.iter().map(|r| r.encoded_len()).sum();
        let mut b = BatchBuilder::new(base, cap);
        for (i, r) in records.iter().enumerate() {
            b.push(
                base + i as u64,
                r.timestamp.unwrap_or(now_ms),
                r.key.as_deref(),
                r.value.as_deref(),
                &r.headers,
            );
        }
        let (pid, seq) = producer.unwrap_or((0, 0));
        let raw = b.finish(pid, seq);
        let header = BatchHeader::parse(&raw).ok_or_else(|| Error::Corrupt {
            path: self.dir.clone(),
            reason: "freshly built batch has a bad header".into(),
        })?;
        self.append_raw(&raw, &header, now_ms)?;
        if pid != 0 {
            self.producers.insert(
                pid,
                ProducerState {
                    seq,
                    base_offset: base,
                    count: header.record_count,
                },
            );
        }
        let durability = self.after_write(now_ms)?;
        Ok(Appended {
            base_offset: base,
            count: header.record_count,
            durability,
        })
    }

    fn append_raw(&mut self, raw: &[u8], header: &BatchHeader, now_ms: i64) -> Result<()> {
        let cfg = self.config;
        let active = self.active();
        let too_big = active.size > 0 && active.size + raw.len() as u64 > cfg.segment_bytes;
        let too_old = active.size > 0 && now_ms.saturating_sub(active.created_ms) >= cfg.segment_ms;
        if too_big || too_old {
            self.roll(now_ms)?;
        }
        self.active_mut().append(raw, header)
    }

    /// Closes the active segment and starts a new one at the next offset.
    pub fn roll(&mut self, now_ms: i64) -> Result<()> {
        let next = self.next_offset();
        self.active().sync()?;
        let seg = Segment::create(&self.dir, next, self.config.index_interval_bytes, now_ms)?;
        self.segments.push(seg);
        sync_dir(&self.dir)
    }

    fn durability(&self) -> Durability {
        match self.config.fsync {
            FsyncPolicy::EveryBatch => Durability::Fsync,
            FsyncPolicy::IntervalMs(_) => Durability::OsBuffer,
        }
    }

    fn after_write(&mut self, now_ms: i64) -> Result<Durability> {
        self.dirty = true;
        match self.config.fsync {
            FsyncPolicy::EveryBatch => {
                self.sync(now_ms)?;
                Ok(Durability::Fsync)
            }
            FsyncPolicy::IntervalMs(ms) => {
                if now_ms.saturating_sub(self.last_sync_ms) >= ms as i64 {
                    self.sync(now_ms)?;
                }
                Ok(Durability::OsBuffer)
            }
        }
    }

    /// Syncs the active segment if anything was written since the last sync.
    pub fn sync(&mut self, now_ms: i64) -> Result<()> {
        if self.dirty {
            self.active().sync()?;
            self.dirty = false;
        }
        self.last_sync_ms = now_ms;
        Ok(())
    }

    fn out_of_range(&self, offset: u64) -> Error {
        Error::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            first: self.log_start_offset(),
            next: self.next_offset(),
        }
    }

    /// Reads up to `max_records` records from `offset` within `max_bytes`
    /// (at least one record when any is there). `offset == next_offset()`
    /// gives an empty answer; offsets outside the retained range are an
    /// [`Error::OffsetOutOfRange`] naming the valid range.
    pub fn read(&self, offset: u64, max_records: usize, max_bytes: usize) -> Result<Vec<Record>> {
        if offset < self.log_start_offset() || offset > self.next_offset() {
            return Err(self.out_of_range(offset));
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let start = self
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for seg in &self.segments[start..] {
            if out.len() >= max_records || (bytes >= max_bytes && !out.is_empty()) {
                break;
            }
            if seg.next_offset <= offset {
                continue;
            }
            let budget = max_bytes.saturating_sub(bytes);
            let budget = if out.is_empty() {
                budget.max(1)
            } else {
                budget
            };
            if budget == 0 {
                break;
            }
            bytes += seg.read(offset, max_records - out.len(), budget, &mut out)?;
        }
        Ok(out)
    }

    /// The first offset whose timestamp is >= `ts` (the next offset when no
    /// record is that recent).
    pub fn offset_for_time(&self, ts: i64) -> Result<u64> {
        for seg in &self.segments {
            if let Some(o) = seg.offset_for_time(ts)? {
                return Ok(o);
            }
        }
        Ok(self.next_offset())
    }

    /// Deletes whole closed segments that fall outside retention: those
    /// whose newest record is older than `retention_ms`, and the oldest ones
    /// while the log is larger than `retention_bytes`. An active segment
    /// that has entirely expired is rolled first so it can go too.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        if self.config.cleanup != CleanupPolicy::Delete {
            return Ok(report);
        }
        if let Some(ms) = self.config.retention_ms {
            let a = self.active();
            if a.size > 0 && a.max_timestamp < now_ms.saturating_sub(ms) {
                self.roll(now_ms)?;
            }
        }
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let expired = self
                .config
                .retention_ms
                .is_some_and(|ms| oldest.max_timestamp < now_ms.saturating_sub(ms));
            let oversized = self
                .config
                .retention_bytes
                .is_some_and(|max| self.size_bytes() > max);
            if !(expired || oversized) {
                break;
            }
            let seg = self.segments.remove(0);
            report.segments += 1;
            report.bytes_freed += seg.size;
            seg.remove()?;
        }
        Ok(report)
    }

    /// Compacts closed segments: keeps, for every key, only its record with
    /// the highest offset in the whole log (tombstones included, so a
    /// deletion stays visible); surviving records keep their offsets.
    pub fn compact(&mut self) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        if self.config.cleanup != CleanupPolicy::Compact || self.segments.len() < 2 {
            return Ok(report);
        }
        let mut latest: HashMap<bytes::Bytes, u64> = HashMap::new();
        for seg in &self.segments {
            let mut off = seg.base_offset;
            loop {
                let recs = {
                    let mut v = Vec::new();
                    seg.read(off, 65_536, 16 << 20, &mut v)?;
                    v
                };
                let Some(last) = recs.last() else { break };
                off = last.offset + 1;
                for r in recs {
                    if let Some(k) = r.key {
                        latest.insert(k, r.offset);
                    }
                }
            }
        }
        let closed = self.segments.len() - 1;
        for i in 0..closed {
            let seg = &self.segments[i];
            let recs = seg.read_all()?;
            let keep: Vec<&Record> = recs
                .iter()
                .filter(|r| {
                    r.key
                        .as_ref()
                        .is_none_or(|k| latest.get(k) == Some(&r.offset))
                })
                .collect();
            if keep.len() == recs.len() {
                continue;
            }
            report.records_removed += (recs.len() - keep.len()) as u64;
            let mut batches = Vec::new();
            let mut chunk_start = 0;
            while chunk_start < keep.len() {
                let base = keep[chunk_start].offset;
                let mut b = BatchBuilder::new(base, 1 << 20);
                let mut j = chunk_start;
                while j < keep.len()
                    && (b.size() < (1 << 20))
                    && keep[j].offset - base < u64::from(u32::MAX)
                {
                    let r = keep[j];
                    b.push(
                        r.offset,
                        r.timestamp,
                        r.key.as_deref(),
                        r.value.as_deref(),
                        &r.headers,
                    );
                    j += 1;
                }
                batches.push(b.finish(0, 0));
                chunk_start = j;
            }
            let path = seg.path().to_path_buf();
            let base = seg.base_offset;
            let old_next = seg.next_offset;
            let old_size = seg.size;
            let tmp = path.with_extension("log.cleaned");
            segment::write_segment_file(&tmp, &batches)?;
            std::fs::rename(&tmp, &path).ctx(|| format!("replacing {}", path.display()))?;
            sync_dir(&self.dir)?;
            let now = crate::now_ms();
            let (mut fresh, _) =
                Segment::open(&path, base, self.config.index_interval_bytes, true, now)?;
            // Keep the offset range the segment covered, even when its last
            // records were compacted away.
            fresh.next_offset = old_next;
            report.segments += 1;
            report.bytes_freed += old_size.saturating_sub(fresh.size);
            self.segments[i] = fresh;
        }
        Ok(report)
    }

    /// Removes the whole partition directory.
    pub fn delete(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).ctx(|| format!("removing {}", self.dir.display()))
    }
}

/// Syncs a directory so that created, renamed or removed entries persist.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LogConfig {
        LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 512,
            ..LogConfig::default()
        }
    }

    fn rec(i: usize) -> ProduceRecord {
        ProduceRecord::keyed(format!("k{}", i % 10), format!("value-{i:06}"))
    }

    #[test]
    fn append_read_roll_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = PartitionLog::open("t", 0, dir.path(), cfg(), 1000).expect("open");
        for chunk in 0..50 {
            let recs: Vec<ProduceRecord> = (chunk * 20..chunk * 20 + 20).map(rec).collect();
            let refs: Vec<&ProduceRecord> = recs.iter().collect();
            let a = log
                .append(&refs, 1000 + chunk as i64, None)
                .expect("append");
            assert_eq!(a.base_offset, chunk as u64 * 20);
        }
        assert!(log.segment_count() > 3);
        let check = |log: &PartitionLog| {
            let mut off = 0;
            while off < 1000 {
                let got = log.read(off, 37, 1 << 20).expect("read");
                assert!(!got.is_empty());
                for r in &got {
                    assert_eq!(r.offset, off);
                    assert_eq!(
                        r.value.as_deref(),
                        Some(format!("value-{off:06}").as_bytes())
                    );
                    off += 1;
                }
            }
            assert!(log.read(1000, 10, 100).expect("read at end").is_empty());
            assert!(matches!(
                log.read(1001, 10, 100),
                Err(Error::OffsetOutOfRange {
                    first: 0,
                    next: 1000,
                    ..
                })
            ));
            assert_eq!(log.offset_for_time(1010).expect("time"), 200);
        };
        check(&log);
        drop(log);
        let log = PartitionLog::open("t", 0, dir.path(), cfg(), 2000).expect("reopen");
        assert_eq!(log.repaired_bytes, 0);
        check(&log);
    }

    #[test]
    fn max_bytes_returns_at_least_one_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = PartitionLog::open("t", 0, dir.path(), cfg(), 0).expect("open");
        let recs: Vec<ProduceRecord> = (0..10).map(rec).collect();
        let refs: Vec<&ProduceRecord> = recs.iter().collect();
        log.append(&refs, 0, None).expect("append");
        assert_eq!(log.read(3, 100, 1).expect("read").len(), 1);
        assert_eq!(log.read(3, 100, 72).expect("read").len(), 2);
        assert_eq!(log.read(3, 100, 71).expect("read").len(), 1);
    }

    #[test]
    fn compaction_keeps_latest_per_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = LogConfig {
            cleanup: CleanupPolicy::Compact,
            ..cfg()
        };
        let mut log = PartitionLog::open("t", 0, dir.path(), c, 0).expect("open");
        for i in 0..500 {
            let r = rec(i);
            log.append(&[&r], i as i64, None).expect("append");
        }
        let report = log.compact().expect("compact");
        assert!(report.records_removed > 400, "{report:?}");
        let all = log.read(0, usize::MAX, usize::MAX).expect("read");
        let mut seen = std::collections::HashMap::new();
        for r in &all {
            seen.insert(r.key.clone(), r.offset);
        }
        for k in 0..10 {
            let key = bytes::Bytes::from(format!("k{k}"));
            let want = (490 + k) as u64;
            assert_eq!(seen.get(&Some(key)), Some(&want));
        }
        assert_eq!(log.next_offset(), 500);
    }
}
