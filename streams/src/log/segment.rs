//! One segment of a partition log: the file `{base_offset:020}.log` holding
//! whole batches back to back, with its [`SegmentIndex`].
//!
//! A segment is opened by scanning its batch headers (a read of 57 bytes per
//! batch, skipping the records): this yields its next offset, its largest
//! timestamp and the idempotent producers' last sequences. With
//! `verify_crc` (the active, last segment) every batch is also read whole
//! and checked against its CRC; the log is truncated at the first batch that
//! is short or fails the check (a torn tail), and its indexes are rebuilt.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader, HEADER_LEN};
use super::index::{OffsetEntry, SegmentIndex, TimeEntry};
use crate::error::{Error, IoContext, Result};
use crate::record::Record;

/// What the header scan of a segment found about one idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    /// Producer id.
    pub producer_id: u64,
    /// Its sequence.
    pub seq: u64,
    /// First offset of the batch.
    pub base_offset: u64,
    /// Number of records.
    pub count: u32,
}

/// Result of opening a segment.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Bytes cut from a torn or corrupt tail.
    pub truncated_bytes: u64,
    /// Idempotent batches found, in log order.
    pub producer_batches: Vec<ProducerBatch>,
}

/// One segment file and its indexes.
#[derive(Debug)]
pub struct Segment {
    /// Offset of the segment's first record (its file name).
    pub base_offset: u64,
    /// One past the last offset stored in this segment (equals
    /// `base_offset` while empty).
    pub next_offset: u64,
    /// File size in bytes.
    pub size: u64,
    /// Largest record timestamp (`i64::MIN` while empty).
    pub max_timestamp: i64,
    /// Wall-clock time (ms) the segment was created or its first batch
    /// timestamp, for rolling by age.
    pub created_ms: i64,
    file: File,
    path: PathBuf,
    index: SegmentIndex,
    bytes_since_index: u64,
    index_interval: u64,
}

/// The segment file name for a base offset.
pub fn file_name(base_offset: u64) -> String {
    format!("{base_offset:020}.log")
}

impl Segment {
    /// Creates a new, empty segment in `dir`.
    pub fn create(dir: &Path, base_offset: u64, index_interval: u64, now_ms: i64) -> Result<Self> {
        let path = dir.join(file_name(base_offset));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .ctx(|| format!("creating segment {}", path.display()))?;
        let mut index = SegmentIndex::open(&path)?;
        index.clear()?;
        Ok(Segment {
            base_offset,
            next_offset: base_offset,
            size: 0,
            max_timestamp: i64::MIN,
            created_ms: now_ms,
            file,
            path,
            index,
            bytes_since_index: 0,
            index_interval,
        })
    }

    /// Opens an existing segment, scanning its headers; see the module doc.
    pub fn open(
        path: &Path,
        base_offset: u64,
        index_interval: u64,
        verify_crc: bool,
        now_ms: i64,
    ) -> Result<(Self, OpenReport)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .ctx(|| format!("opening segment {}", path.display()))?;
        let file_len = file
            .metadata()
            .ctx(|| format!("stat {}", path.display()))?
            .len();
        let index = SegmentIndex::open(path)?;
        let mut seg = Segment {
            base_offset,
            next_offset: base_offset,
            size: 0,
            max_timestamp: i64::MIN,
            created_ms: now_ms,
            file,
            path: path.to_path_buf(),
            index,
            bytes_since_index: 0,
            index_interval,
        };
        let mut report = OpenReport::default();
        let mut pos = 0u64;
        let mut hbuf = [0u8; HEADER_LEN];
        let mut entries: Vec<(OffsetEntry, TimeEntry)> = Vec::new();
        let mut since_index = u64::MAX;
        let mut running_max = i64::MIN;
        let mut first = true;
        while pos < file_len {
            if pos + HEADER_LEN as u64 > file_len {
                break;
            }
            seg.file
                .read_exact_at(&mut hbuf, pos)
                .ctx(|| format!("reading {}", path.display()))?;
            let Some(h) = BatchHeader::parse(&hbuf) else {
                break;
            };
            if pos + h.total_len as u64 > file_len || h.base_offset < seg.next_offset {
                break;
            }
            if verify_crc {
                let mut whole = vec![0u8; h.total_len];
                seg.file
                    .read_exact_at(&mut whole, pos)
                    .ctx(|| format!("reading {}", path.display()))?;
                if !h.crc_ok(&whole) {
                    break;
                }
            }
            if first {
                seg.created_ms = h.first_timestamp;
                first = false;
            }
            running_max = running_max.max(h.max_timestamp);
            if since_index >= index_interval {
                let rel = (h.base_offset - base_offset) as u32;
                entries.push((
                    OffsetEntry {
                        rel_offset: rel,
                        position: pos as u32,
                    },
                    TimeEntry {
                        max_timestamp: running_max,
                        rel_offset: rel,
                    },
                ));
                since_index = 0;
            }
            since_index += h.total_len as u64;
            if h.producer_id != 0 {
                report.producer_batches.push(ProducerBatch {
                    producer_id: h.producer_id,
                    seq: h.producer_seq,
                    base_offset: h.base_offset,
                    count: h.record_count,
                });
            }
            seg.next_offset = h.last_offset() + 1;
            seg.max_timestamp = running_max;
            pos += h.total_len as u64;
        }
        seg.size = pos;
        seg.bytes_since_index = if since_index == u64::MAX {
            u64::MAX
        } else {
            since_index
        };
        if pos < file_len {
            if !verify_crc {
                return Err(Error::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!(
                        "bad batch at byte {pos} of {file_len} in a segment that is not the last"
                    ),
                });
            }
            report.truncated_bytes = file_len - pos;
            seg.file
                .set_len(pos)
                .ctx(|| format!("truncating torn tail of {}", path.display()))?;
            seg.file
                .sync_all()
                .ctx(|| format!("syncing {}", path.display()))?;
        }
        // Rebuild the indexes when they do not match what the scan found
        // (always after a repair; also when files were lost or torn).
        let expected_offsets: Vec<OffsetEntry> = entries.iter().map(|e| e.0).collect();
        let rebuild = report.truncated_bytes > 0
            || !seg.index.consistent_with(pos)
            || seg.index.offset_entries() != expected_offsets.len();
        if rebuild {
            seg.index.clear()?;
            for (o, t) in entries {
                seg.index.push_offset(o)?;
                seg.index.push_time(t)?;
            }
        }
        Ok((seg, report))
    }

    /// Appends an encoded batch (whose base offset must be `next_offset` or
    /// later). `header` is the batch's parsed header.
    pub fn append(&mut self, raw: &[u8], header: &BatchHeader) -> Result<()> {
        if self.size == 0 {
            self.bytes_since_index = u64::MAX;
        }
        self.file
            .write_all_at(raw, self.size)
            .ctx(|| format!("appending to {}", self.path.display()))?;
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        if self.bytes_since_index >= self.index_interval {
            let rel = (header.base_offset - self.base_offset) as u32;
            self.index.push_offset(OffsetEntry {
                rel_offset: rel,
                position: self.size as u32,
            })?;
            self.index.push_time(TimeEntry {
                max_timestamp: self.max_timestamp,
                rel_offset: rel,
            })?;
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += raw.len() as u64;
        self.size += raw.len() as u64;
        self.next_offset = header.last_offset() + 1;
        Ok(())
    }

    /// Flushes the segment and its indexes to stable storage.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .ctx(|| format!("syncing {}", self.path.display()))?;
        self.index.sync()
    }

    /// Reads records with offsets >= `offset`, stopping after `max_records`
    /// records or once `max_bytes` are reached (but returning at least one
    /// record if there is one). Returns the bytes counted.
    pub fn read(
        &self,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<usize> {
        let rel = offset
            .saturating_sub(self.base_offset)
            .min(u64::from(u32::MAX)) as u32;
        let mut pos = u64::from(self.index.position_for(rel));
        let mut bytes = 0usize;
        let start_len = out.len();
        let mut hbuf = [0u8; HEADER_LEN];
        while pos < self.size && out.len() - start_len < max_records {
            // Skip whole batches that end before `offset` by header only.
            self.file
                .read_exact_at(&mut hbuf, pos)
                .ctx(|| format!("reading {}", self.path.display()))?;
            let h =
                BatchHeader::parse(&hbuf).ok_or_else(|| self.corrupt(pos, "bad batch header"))?;
            if h.last_offset() < offset {
                pos += h.total_len as u64;
                continue;
            }
            // Read this batch and as many following whole batches as fit in
            // the byte budget, in one read.
            let want = (max_bytes.saturating_sub(bytes)).max(h.total_len) as u64;
            let len = want.min(self.size - pos) as usize;
            let mut buf = BytesMut::zeroed(len);
            self.file
                .read_exact_at(&mut buf, pos)
                .ctx(|| format!("reading {}", self.path.display()))?;
            let chunk: Bytes = buf.freeze();
            let mut at = 0usize;
            while at + HEADER_LEN <= chunk.len() {
                let h = BatchHeader::parse(&chunk[at..])
                    .ok_or_else(|| self.corrupt(pos + at as u64, "bad batch header"))?;
                if at + h.total_len > chunk.len() {
                    break;
                }
                let one = chunk.slice(at..at + h.total_len);
                let before = out.len();
                batch::decode_records(&one, &h, offset, out)
                    .map_err(|e| self.corrupt(pos + at as u64, &e.to_string()))?;
                at += h.total_len;
                let mut keep = None;
                for (i, r) in out.iter().enumerate().skip(before) {
                    let n = r.encoded_len();
                    if i - start_len >= max_records || (bytes + n > max_bytes && i > start_len) {
                        keep = Some(i);
                        break;
                    }
                    bytes += n;
                }
                if let Some(k) = keep {
                    out.truncate(k);
                    return Ok(bytes);
                }
                if bytes >= max_bytes || out.len() - start_len >= max_records {
                    return Ok(bytes);
                }
            }
            if at == 0 {
                return Err(self.corrupt(pos, "batch larger than its read"));
            }
            pos += at as u64;
        }
        Ok(bytes)
    }

    /// The first offset whose record timestamp is >= `ts`, if any record in
    /// this segment qualifies.
    pub fn offset_for_time(&self, ts: i64) -> Result<Option<u64>> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        let mut offset = self.base_offset + u64::from(self.index.rel_offset_for_time(ts));
        loop {
            let mut recs = Vec::new();
            self.read(offset, 4096, usize::MAX, &mut recs)?;
            let Some(last) = recs.last() else {
                return Ok(None);
            };
            if let Some(r) = recs.iter().find(|r| r.timestamp >= ts) {
                return Ok(Some(r.offset));
            }
            offset = last.offset + 1;
        }
    }

    /// Every record of the segment (for compaction).
    pub fn read_all(&self) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        self.read(self.base_offset, usize::MAX, usize::MAX, &mut out)?;
        Ok(out)
    }

    /// Removes the segment's files.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_file(&self.path).ctx(|| format!("removing {}", self.path.display()))?;
        self.index.remove_files()
    }

    /// The segment's log file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, pos: u64, reason: &str) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            reason: format!("at byte {pos}: {reason}"),
        }
    }
}

/// Writes a replacement segment (used by compaction) to `path` from
/// encoded batches, syncing it before returning.
pub fn write_segment_file(path: &Path, batches: &[Vec<u8>]) -> Result<()> {
    let mut f = File::create(path).ctx(|| format!("creating {}", path.display()))?;
    for b in batches {
        f.write_all(b)
            .ctx(|| format!("writing {}", path.display()))?;
    }
    f.sync_all().ctx(|| format!("syncing {}", path.display()))
}
