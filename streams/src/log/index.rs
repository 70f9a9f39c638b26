//! Sparse per-segment indexes: the offset index (`NNN.index`) maps a batch's
//! offset to its byte position, the time index (`NNN.timeindex`) maps a
//! timestamp to the first batch that may hold it. Both hold one entry per
//! `index_interval_bytes` of log, are kept in memory, appended to their file
//! as the log grows, and rebuilt from the log when a file is missing or does
//! not match it.
//!
//! File formats (little-endian): offset index entries are
//! `u32 offset - segment base | u32 byte position` (8 bytes); time index
//! entries are `i64 max timestamp so far | u32 offset - segment base`
//! (12 bytes).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// One offset index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Batch base offset relative to the segment's base.
    pub rel_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

/// One time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp in the segment up to and including this batch.
    pub max_timestamp: i64,
    /// Batch base offset relative to the segment's base.
    pub rel_offset: u32,
}

/// The in-memory copy of both indexes of one segment and their files.
#[derive(Debug)]
pub struct SegmentIndex {
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    offset_file: File,
    time_file: File,
    offset_path: PathBuf,
    time_path: PathBuf,
}

impl SegmentIndex {
    /// Opens (creating if needed) the index files beside `log_path` and
    /// loads their entries. The caller validates them with
    /// [`SegmentIndex::consistent_with`] and rebuilds if needed.
    pub fn open(log_path: &Path) -> Result<Self> {
        let offset_path = log_path.with_extension("index");
        let time_path = log_path.with_extension("timeindex");
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(p)
                .ctx(|| format!("opening index {}", p.display()))
        };
        let offset_file = open(&offset_path)?;
        let time_file = open(&time_path)?;
        let ob =
            std::fs::read(&offset_path).ctx(|| format!("reading {}", offset_path.display()))?;
        let tb = std::fs::read(&time_path).ctx(|| format!("reading {}", time_path.display()))?;
        let offsets = ob
            .chunks_exact(8)
            .map(|c| OffsetEntry {
                rel_offset: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                position: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let times = tb
            .chunks_exact(12)
            .map(|c| {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&c[0..8]);
                TimeEntry {
                    max_timestamp: i64::from_le_bytes(ts),
                    rel_offset: u32::from_le_bytes([c[8], c[9], c[10], c[11]]),
                }
            })
            .collect();
        let mut idx = SegmentIndex {
            offsets,
            times,
            offset_file,
            time_file,
            offset_path,
            time_path,
        };
        if ob.len() % 8 != 0 || tb.len() % 12 != 0 {
            idx.offsets.clear();
            idx.times.clear();
        }
        Ok(idx)
    }

    /// Whether every entry is sorted and points inside a log of `log_size`
    /// bytes, and the index is not empty when the log is not.
    pub fn consistent_with(&self, log_size: u64) -> bool {
        let offsets_ok = self
            .offsets
            .windows(2)
            .all(|w| w[0].rel_offset < w[1].rel_offset && w[0].position < w[1].position)
            && self
                .offsets
                .iter()
                .all(|e| u64::from(e.position) < log_size);
        let times_ok = self.times.windows(2).all(|w| {
            w[0].max_timestamp <= w[1].max_timestamp && w[0].rel_offset <= w[1].rel_offset
        });
        offsets_ok && times_ok && (log_size == 0 || !self.offsets.is_empty())
    }

    /// Drops every entry and empties both files.
    pub fn clear(&mut self) -> Result<()> {
        self.offsets.clear();
        self.times.clear();
        self.offset_file
            .set_len(0)
            .ctx(|| format!("truncating {}", self.offset_path.display()))?;
        self.time_file
            .set_len(0)
            .ctx(|| format!("truncating {}", self.time_path.display()))
    }

    /// Appends an offset entry (in memory and to the file).
    pub fn push_offset(&mut self, e: OffsetEntry) -> Result<()> {
        let mut b = [0u8; 8];
        b[0..4].copy_from_slice(&e.rel_offset.to_le_bytes());
        b[4..8].copy_from_slice(&e.position.to_le_bytes());
        self.offset_file
            .write_all(&b)
            .ctx(|| format!("writing {}", self.offset_path.display()))?;
        self.offsets.push(e);
        Ok(())
    }

    /// Appends a time entry if it raises the indexed maximum timestamp.
    pub fn push_time(&mut self, e: TimeEntry) -> Result<()> {
        if self
            .times
            .last()
            .is_some_and(|l| l.max_timestamp >= e.max_timestamp)
        {
            return Ok(());
        }
        let mut b = [0u8; 12];
        b[0..8].copy_from_slice(&e.max_timestamp.to_le_bytes());
        b[8..12].copy_from_slice(&e.rel_offset.to_le_bytes());
        self.time_file
            .write_all(&b)
            .ctx(|| format!("writing {}", self.time_path.display()))?;
        self.times.push(e);
        Ok(())
    }

    /// The byte position of the last indexed batch starting at or before
    /// `rel_offset` (0 when none is).
    pub fn position_for(&self, rel_offset: u32) -> u32 {
        let i = self.offsets.partition_point(|e| e.rel_offset <= rel_offset);
        if i == 0 {
            0
        } else {
            self.offsets[i - 1].position
        }
    }

    /// The relative offset from which to scan for the first record with a
    /// timestamp of at least `ts`: the last indexed batch before which every
    /// timestamp is below `ts`.
    pub fn rel_offset_for_time(&self, ts: i64) -> u32 {
        let i = self.times.partition_point(|e| e.max_timestamp < ts);
        if i == 0 {
            0
        } else {
            self.times[i - 1].rel_offset
        }
    }

    /// Flushes both files to stable storage.
    pub fn sync(&self) -> Result<()> {
        self.offset_file
            .sync_data()
            .ctx(|| format!("syncing {}", self.offset_path.display()))?;
        self.time_file
            .sync_data()
            .ctx(|| format!("syncing {}", self.time_path.display()))
    }

    /// Removes both files.
    pub fn remove_files(&self) -> Result<()> {
        for p in [&self.offset_path, &self.time_path] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::Error::io(format!("removing {}", p.display()), e)),
            }
        }
        Ok(())
    }

    /// Number of offset entries (for tests and diagnostics).
    pub fn offset_entries(&self) -> usize {
        self.offsets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("00000000000000000000.log");
        {
            let mut idx = SegmentIndex::open(&log).expect("open");
            for (i, pos) in [(0u32, 0u32), (10, 4096), (20, 8192)] {
                idx.push_offset(OffsetEntry {
                    rel_offset: i,
                    position: pos,
                })
                .expect("push");
                idx.push_time(TimeEntry {
                    max_timestamp: 1000 + i64::from(i),
                    rel_offset: i,
                })
                .expect("push");
            }
            assert_eq!(idx.position_for(15), 4096);
            assert_eq!(idx.position_for(0), 0);
            assert_eq!(idx.position_for(99), 8192);
            assert_eq!(idx.rel_offset_for_time(1015), 10);
            assert_eq!(idx.rel_offset_for_time(5), 0);
        }
        let idx = SegmentIndex::open(&log).expect("reopen");
        assert_eq!(idx.offset_entries(), 3);
        assert!(idx.consistent_with(9000));
        assert!(!idx.consistent_with(100));
    }
}
