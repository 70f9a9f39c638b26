//! The on-disk record batch: the unit that is appended, checksummed and
//! indexed.
//!
//! All integers are little-endian. A batch is a fixed 57-byte header
//! followed by its records:
//!
//! ```text
//! offset  size  field
//!  0      8     base_offset        offset of the first record
//!  8      4     batch_len          bytes after this field (total - 12)
//! 12      4     crc                CRC-32C of bytes 16..total
//! 16      1     magic              1
//! 17      4     record_count
//! 21      4     last_offset_delta  last record's offset - base_offset
//! 25      8     first_timestamp    ms since the Unix epoch
//! 33      8     max_timestamp
//! 41      8     producer_id        0 = not an idempotent batch
//! 49      8     producer_seq       the producer's sequence for the batch
//! 57            records
//! ```
//!
//! Each record:
//!
//! ```text
//! u32 offset_delta | i64 timestamp | i32 key_len (-1: none) | key
//! | i32 value_len (-1: none, a tombstone) | value
//! | u16 header_count | header_count × (u16 name_len | name | u32 len | value)
//! ```
//!
//! Offsets inside a batch are increasing but may have gaps (compaction
//! removes records and keeps the survivors' offsets).

use bytes::Bytes;

use crate::record::{Header, Record};

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 57;
/// Bytes before the CRC-covered region.
const CRC_START: usize = 16;
/// Batch format version.
const MAGIC: u8 = 1;
/// Fixed per-record overhead (offset delta, timestamp, key and value
/// lengths, header count).
const RECORD_OVERHEAD: usize = 4 + 8 + 4 + 4 + 2;

/// The encoded size of one record in a batch.
pub fn record_encoded_len(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    RECORD_OVERHEAD
        + key.map_or(0, <[u8]>::len)
        + value.map_or(0, <[u8]>::len)
        + headers
            .iter()
            .map(|h| 2 + h.name.len() + 4 + h.value.len())
            .sum::<usize>()
}

/// The parsed fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Total size of the batch including this header.
    pub total_len: usize,
    /// The stored CRC-32C.
    pub crc: u32,
    /// Number of records.
    pub record_count: u32,
    /// Last record's offset minus `base_offset`.
    pub last_offset_delta: u32,
    /// First record's timestamp.
    pub first_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Idempotent producer id (0 = none).
    pub producer_id: u64,
    /// The producer's sequence number for this batch.
    pub producer_seq: u64,
}

impl BatchHeader {
    /// Parses a header from the first [`HEADER_LEN`] bytes; `None` when the
    /// bytes cannot be a batch header (short, wrong magic, bad length).
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < HEADER_LEN || buf[16] != MAGIC {
            return None;
        }
        let batch_len = u32_at(buf, 8) as usize;
        if batch_len + 12 < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: u64_at(buf, 0),
            total_len: batch_len + 12,
            crc: u32_at(buf, 12),
            record_count: u32_at(buf, 17),
            last_offset_delta: u32_at(buf, 21),
            first_timestamp: u64_at(buf, 25) as i64,
            max_timestamp: u64_at(buf, 33) as i64,
            producer_id: u64_at(buf, 41),
            producer_seq: u64_at(buf, 49),
        })
    }

    /// The last offset in the batch.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// Whether `batch` (the whole batch, header included) matches the CRC.
    pub fn crc_ok(&self, batch: &[u8]) -> bool {
        batch.len() == self.total_len && crc32c::crc32c(&batch[CRC_START..]) == self.crc
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Builds one batch in memory.
pub struct BatchBuilder {
    buf: Vec<u8>,
    base_offset: u64,
    count: u32,
    last_delta: u32,
    first_ts: i64,
    max_ts: i64,
}

impl BatchBuilder {
    /// Starts a batch whose first record gets `base_offset`; `capacity` is
    /// a size hint.
    pub fn new(base_offset: u64, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_LEN + capacity);
        buf.resize(HEADER_LEN, 0);
        BatchBuilder {
            buf,
            base_offset,
            count: 0,
            last_delta: 0,
            first_ts: 0,
            max_ts: i64::MIN,
        }
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Current encoded size.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Appends a record at `offset` (which must be >= the base offset and
    /// increasing).
    pub fn push(
        &mut self,
        offset: u64,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        let delta = (offset - self.base_offset) as u32;
        if self.count == 0 {
            self.first_ts = timestamp;
        }
        self.count += 1;
        self.last_delta = delta;
        self.max_ts = self.max_ts.max(timestamp);
        let b = &mut self.buf;
        b.extend_from_slice(&delta.to_le_bytes());
        b.extend_from_slice(&timestamp.to_le_bytes());
        for part in [key, value] {
            match part {
                Some(p) => {
                    b.extend_from_slice(&(p.len() as i32).to_le_bytes());
                    b.extend_from_slice(p);
                }
                None => b.extend_from_slice(&(-1i32).to_le_bytes()),
            }
        }
        b.extend_from_slice(&(headers.len() as u16).to_le_bytes());
        for h in headers {
            b.extend_from_slice(&(h.name.len() as u16).to_le_bytes());
            b.extend_from_slice(h.name.as_bytes());
            b.extend_from_slice(&(h.value.len() as u32).to_le_bytes());
            b.extend_from_slice(&h.value);
        }
    }

    /// Fills in the header and CRC and returns the encoded batch.
    pub fn finish(mut self, producer_id: u64, producer_seq: u64) -> Vec<u8> {
        let total = self.buf.len();
        let max_ts = if self.count == 0 { 0 } else { self.max_ts };
        let h = &mut self.buf[..HEADER_LEN];
        h[0..8].copy_from_slice(&self.base_offset.to_le_bytes());
        h[8..12].copy_from_slice(&((total - 12) as u32).to_le_bytes());
        h[16] = MAGIC;
        h[17..21].copy_from_slice(&self.count.to_le_bytes());
        h[21..25].copy_from_slice(&self.last_delta.to_le_bytes());
        h[25..33].copy_from_slice(&self.first_ts.to_le_bytes());
        h[33..41].copy_from_slice(&max_ts.to_le_bytes());
        h[41..49].copy_from_slice(&producer_id.to_le_bytes());
        h[49..57].copy_from_slice(&producer_seq.to_le_bytes());
        let crc = crc32c::crc32c(&self.buf[CRC_START..]);
        self.buf[12..16].copy_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// Why a batch's records could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch at offset {base_offset}: {reason}")]
pub struct DecodeError {
    /// The batch's base offset.
    pub base_offset: u64,
    /// What is wrong.
    pub reason: &'static str,
}

/// Decodes the records of a whole batch (header included) whose offset is
/// at least `min_offset`, appending them to `out`. Keys, values and header
/// values are zero-copy slices of `batch`.
pub fn decode_records(
    batch: &Bytes,
    header: &BatchHeader,
    min_offset: u64,
    out: &mut Vec<Record>,
) -> Result<(), DecodeError> {
    let err = |reason| DecodeError {
        base_offset: header.base_offset,
        reason,
    };
    let b = &batch[..];
    let mut at = HEADER_LEN;
    for _ in 0..header.record_count {
        let need = |at: usize, n: usize| {
            if at + n <= b.len() {
                Ok(())
            } else {
                Err(err("record runs past the end of the batch"))
            }
        };
        need(at, 12)?;
        let offset = header.base_offset + u64::from(u32_at(b, at));
        let timestamp = u64_at(b, at + 4) as i64;
        at += 12;
        let mut parts: [Option<Bytes>; 2] = [None, None];
        for part in &mut parts {
            need(at, 4)?;
            let len = u32_at(b, at) as i32;
            at += 4;
            if len >= 0 {
                let len = len as usize;
                need(at, len)?;
                *part = Some(batch.slice(at..at + len));
                at += len;
            } else if len != -1 {
                return Err(err("negative length"));
            }
        }
        need(at, 2)?;
        let hcount = u16::from_le_bytes([b[at], b[at + 1]]) as usize;
        at += 2;
        let mut headers = Vec::with_capacity(hcount);
        for _ in 0..hcount {
            need(at, 2)?;
            let nlen = u16::from_le_bytes([b[at], b[at + 1]]) as usize;
            at += 2;
            need(at, nlen + 4)?;
            let name = std::str::from_utf8(&b[at..at + nlen])
                .map_err(|_| err("header name is not UTF-8"))?
                .to_string();
            at += nlen;
            let vlen = u32_at(b, at) as usize;
            at += 4;
            need(at, vlen)?;
            headers.push(Header {
                name,
                value: batch.slice(at..at + vlen),
            });
            at += vlen;
        }
        if offset >= min_offset {
            let [key, value] = parts;
            out.push(Record {
                offset,
                timestamp,
                key,
                value,
                headers,
            });
        }
    }
    if at != b.len() {
        return Err(err("trailing bytes after the last record"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_gaps_headers_and_tombstones() {
        let mut bb = BatchBuilder::new(100, 256);
        bb.push(100, 5, Some(b"k1"), Some(b"v1"), &[]);
        bb.push(103, 9, None, None, &[Header::new("h", &b"x"[..])]);
        let raw = bb.finish(7, 42);
        let h = BatchHeader::parse(&raw).expect("header");
        assert_eq!(h.base_offset, 100);
        assert_eq!(h.last_offset(), 103);
        assert_eq!(h.total_len, raw.len());
        assert_eq!((h.producer_id, h.producer_seq), (7, 42));
        assert_eq!((h.first_timestamp, h.max_timestamp), (5, 9));
        assert!(h.crc_ok(&raw));
        let bytes = Bytes::from(raw);
        let mut out = Vec::new();
        decode_records(&bytes, &h, 101, &mut out).expect("decode");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].offset, 103);
        assert_eq!(out[0].value, None);
        assert_eq!(out[0].header("h").map(|v| &v[..]), Some(&b"x"[..]));
    }

    #[test]
    fn crc_detects_a_flipped_bit() {
        let mut bb = BatchBuilder::new(0, 64);
        bb.push(0, 1, None, Some(b"hello"), &[]);
        let mut raw = bb.finish(0, 0);
        let h = BatchHeader::parse(&raw).expect("header");
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(!h.crc_ok(&raw));
    }
}
