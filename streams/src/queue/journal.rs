//! The queue journal: an append-only file of state changes
//! (`queues/{project}/{queue}/journal`), replayed on open and rewritten as a
//! snapshot of live messages when mostly dead.
//!
//! Each entry is framed as `u32 length | u32 CRC-32C of the payload |
//! payload (JSON of [`Entry`])`, little-endian. A short or failing entry at
//! the end (a write torn by a crash) is cut off on open; one in the middle
//! is reported as corruption.
//!
//! Why a journal of its own rather than SQLite: a queue's operations are
//! appends of small, self-describing events whose replay order is the file
//! order, exactly what the partition log already does, so this reuses the
//! same framing, CRC and torn-tail rules, keeps the crate free of a SQL
//! engine and its build cost, and makes one `write` (plus an `fdatasync`
//! under the fsync policy) the unit of durability for every operation.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// One state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Entry {
    /// A message was sent (or moved here from another queue, or rewritten
    /// by a snapshot).
    Send {
        /// Message id (unique within the queue).
        id: u64,
        /// Body.
        body: String,
        /// Message attributes.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        attributes: BTreeMap<String, String>,
        /// When it was first sent (ms).
        sent_ms: i64,
        /// When it becomes visible (ms).
        visible_ms: i64,
        /// How many times it was received.
        receive_count: u32,
    },
    /// A message was received: hidden until `visible_ms`.
    Receive {
        /// Message id.
        id: u64,
        /// Hidden until.
        visible_ms: i64,
        /// Its receive count after this receive.
        receive_count: u32,
    },
    /// A message's visibility was changed.
    Visibility {
        /// Message id.
        id: u64,
        /// Hidden until.
        visible_ms: i64,
    },
    /// A message was deleted (by its consumer, by retention, or moved to a
    /// dead-letter queue).
    Delete {
        /// Message id.
        id: u64,
    },
}

/// The journal file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    size: u64,
    fsync: bool,
}

impl Journal {
    /// Opens (creating) the journal and returns it with its entries;
    /// a torn tail is truncated.
    pub fn open(path: &Path, fsync: bool) -> Result<(Self, Vec<Entry>)> {
        let raw = match std::fs::read(path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let mut entries = Vec::new();
        let mut at = 0usize;
        while at + 8 <= raw.len() {
            let len = u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]) as usize;
            let crc = u32::from_le_bytes([raw[at + 4], raw[at + 5], raw[at + 6], raw[at + 7]]);
            if at + 8 + len > raw.len() {
                break;
            }
            let payload = &raw[at + 8..at + 8 + len];
            if crc32c::crc32c(payload) != crc {
                break;
            }
            let e: Entry = serde_json::from_slice(payload).map_err(|e| Error::Corrupt {
                path: path.to_path_buf(),
                reason: format!("entry at byte {at}: {e}"),
            })?;
            entries.push(e);
            at += 8 + len;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ctx(|| format!("opening {}", path.display()))?;
        if at < raw.len() {
            file.set_len(at as u64)
                .ctx(|| format!("truncating torn tail of {}", path.display()))?;
            file.sync_all()
                .ctx(|| format!("syncing {}", path.display()))?;
        }
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                size: at as u64,
                fsync,
            },
            entries,
        ))
    }

    /// Appends entries in one write (synced per the fsync policy).
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let buf = encode(entries)?;
        self.file
            .write_all(&buf)
            .ctx(|| format!("writing {}", self.path.display()))?;
        self.size += buf.len() as u64;
        if self.fsync {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes to stable storage.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .ctx(|| format!("syncing {}", self.path.display()))
    }

    /// Current size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Replaces the journal with `entries` (written to a temporary file,
    /// synced, renamed over).
    pub fn rewrite(&mut self, entries: &[Entry]) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        let buf = encode(entries)?;
        {
            let mut f = File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
            f.write_all(&buf)
                .ctx(|| format!("writing {}", tmp.display()))?;
            f.sync_all().ctx(|| format!("syncing {}", tmp.display()))?;
        }
        std::fs::rename(&tmp, &self.path).ctx(|| format!("renaming {}", tmp.display()))?;
        if let Some(dir) = self.path.parent() {
            crate::log::partition::sync_dir(dir)?;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .ctx(|| format!("opening {}", self.path.display()))?;
        self.size = buf.len() as u64;
        Ok(())
    }
}

fn encode(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    for e in entries {
        let payload = serde_json::to_vec(e).map_err(|e| Error::Decode(e.to_string()))?;
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        buf.extend_from_slice(&payload);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        {
            let (mut j, e) = Journal::open(&path, false).expect("open");
            assert!(e.is_empty());
            j.append(&[Entry::Delete { id: 1 }, Entry::Delete { id: 2 }])
                .expect("append");
        }
        let len = std::fs::metadata(&path).expect("stat").len();
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(len - 3).expect("truncate");
        let (j, e) = Journal::open(&path, false).expect("reopen");
        assert_eq!(e, vec![Entry::Delete { id: 1 }]);
        assert!(j.size() < len - 3);
    }
}
