//! The compact binary batch encodings, for clients that want throughput
//! rather than JSON (`Content-Type: application/x-minicloud-batch`).
//!
//! All integers little-endian. A produce batch:
//!
//! ```text
//! "MCB1"                      4-byte magic
//! u32 record_count
//! record_count × record:
//!   u8  flags                 bit 0: partition, 1: timestamp, 2: key, 3: value
//!   [u32 partition]           if bit 0
//!   [i64 timestamp_ms]        if bit 1
//!   [u32 key_len | key]       if bit 2
//!   [u32 value_len | value]   if bit 3 (absent: a tombstone)
//!   u16 header_count
//!   header_count × (u16 name_len | name (UTF-8) | u32 value_len | value)
//! ```
//!
//! A fetch answer (`"MCR1"`) is the same with, per record, `u64 offset` and
//! `i64 timestamp_ms` first and no partition or timestamp flags.

use bytes::{Buf, Bytes};

use crate::error::{Error, Result};
use crate::record::{Header, ProduceRecord, Record};

const PRODUCE_MAGIC: &[u8; 4] = b"MCB1";
const FETCH_MAGIC: &[u8; 4] = b"MCR1";

/// Encodes produce records.
pub fn encode_produce(records: &[ProduceRecord]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + records.iter().map(|r| r.encoded_len() + 8).sum::<usize>());
    b.extend_from_slice(PRODUCE_MAGIC);
    b.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        let flags = u8::from(r.partition.is_some())
            | (u8::from(r.timestamp.is_some()) << 1)
            | (u8::from(r.key.is_some()) << 2)
            | (u8::from(r.value.is_some()) << 3);
        b.push(flags);
        if let Some(p) = r.partition {
            b.extend_from_slice(&p.to_le_bytes());
        }
        if let Some(t) = r.timestamp {
            b.extend_from_slice(&t.to_le_bytes());
        }
        put_body(&mut b, r.key.as_deref(), r.value.as_deref(), &r.headers);
    }
    b
}

fn put_body(b: &mut Vec<u8>, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) {
    for part in [key, value].into_iter().flatten() {
        b.extend_from_slice(&(part.len() as u32).to_le_bytes());
        b.extend_from_slice(part);
    }
    b.extend_from_slice(&(headers.len() as u16).to_le_bytes());
    for h in headers {
        b.extend_from_slice(&(h.name.len() as u16).to_le_bytes());
        b.extend_from_slice(h.name.as_bytes());
        b.extend_from_slice(&(h.value.len() as u32).to_le_bytes());
        b.extend_from_slice(&h.value);
    }
}

/// Decodes a produce batch; keys, values and header values are slices of
/// `buf` (no copy).
pub fn decode_produce(buf: Bytes) -> Result<Vec<ProduceRecord>> {
    let mut c = Cursor::new(buf, PRODUCE_MAGIC)?;
    let n = c.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let flags = c.u8()?;
        let partition = if flags & 1 != 0 { Some(c.u32()?) } else { None };
        let timestamp = if flags & 2 != 0 {
            Some(c.u64()? as i64)
        } else {
            None
        };
        let key = if flags & 4 != 0 {
            Some(c.sized()?)
        } else {
            None
        };
        let value = if flags & 8 != 0 {
            Some(c.sized()?)
        } else {
            None
        };
        let headers = c.headers()?;
        out.push(ProduceRecord {
            key,
            value,
            headers,
            partition,
            timestamp,
        });
    }
    c.end()?;
    Ok(out)
}

/// Encodes fetched records.
pub fn encode_fetch(records: &[Record]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + records.iter().map(|r| r.encoded_len() + 16).sum::<usize>());
    b.extend_from_slice(FETCH_MAGIC);
    b.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        b.extend_from_slice(&r.offset.to_le_bytes());
        b.extend_from_slice(&r.timestamp.to_le_bytes());
        b.push((u8::from(r.key.is_some()) << 2) | (u8::from(r.value.is_some()) << 3));
        put_body(&mut b, r.key.as_deref(), r.value.as_deref(), &r.headers);
    }
    b
}

/// Decodes a fetch answer.
pub fn decode_fetch(buf: Bytes) -> Result<Vec<Record>> {
    let mut c = Cursor::new(buf, FETCH_MAGIC)?;
    let n = c.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let offset = c.u64()?;
        let timestamp = c.u64()? as i64;
        let flags = c.u8()?;
        let key = if flags & 4 != 0 {
            Some(c.sized()?)
        } else {
            None
        };
        let value = if flags & 8 != 0 {
            Some(c.sized()?)
        } else {
            None
        };
        let headers = c.headers()?;
        out.push(Record {
            offset,
            timestamp,
            key,
            value,
            headers,
        });
    }
    c.end()?;
    Ok(out)
}

struct Cursor {
    buf: Bytes,
}

impl Cursor {
    fn new(mut buf: Bytes, magic: &[u8; 4]) -> Result<Self> {
        if buf.len() < 4 || &buf[..4] != magic {
            return Err(Error::Decode(format!(
                "expected magic {:?}",
                String::from_utf8_lossy(magic)
            )));
        }
        buf.advance(4);
        Ok(Cursor { buf })
    }
    fn need(&self, n: usize) -> Result<()> {
        if self.buf.remaining() < n {
            return Err(Error::Decode(format!(
                "truncated: needed {n} more bytes, {} left",
                self.buf.remaining()
            )));
        }
        Ok(())
    }
    fn u8(&mut self) -> Result<u8> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    fn u16(&mut self) -> Result<u16> {
        self.need(2)?;
        Ok(self.buf.get_u16_le())
    }
    fn u32(&mut self) -> Result<u32> {
        self.need(4)?;
        Ok(self.buf.get_u32_le())
    }
    fn u64(&mut self) -> Result<u64> {
        self.need(8)?;
        Ok(self.buf.get_u64_le())
    }
    fn take(&mut self, n: usize) -> Result<Bytes> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }
    fn sized(&mut self) -> Result<Bytes> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn headers(&mut self) -> Result<Vec<Header>> {
        let n = self.u16()? as usize;
        let mut hs = Vec::with_capacity(n);
        for _ in 0..n {
            let len = self.u16()? as usize;
            let name = self.take(len)?;
            let name = std::str::from_utf8(&name)
                .map_err(|_| Error::Decode("header name is not UTF-8".into()))?
                .to_string();
            let value = self.sized()?;
            hs.push(Header { name, value });
        }
        Ok(hs)
    }
    fn end(&self) -> Result<()> {
        if self.buf.has_remaining() {
            return Err(Error::Decode(format!(
                "{} trailing bytes",
                self.buf.remaining()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_roundtrip_and_errors() {
        let recs = vec![
            ProduceRecord {
                key: Some(Bytes::from_static(b"k")),
                value: None,
                headers: vec![Header::new("a", &b"b"[..])],
                partition: Some(3),
                timestamp: Some(-5),
            },
            ProduceRecord::value(&b"v"[..]),
        ];
        let enc = encode_produce(&recs);
        assert_eq!(
            decode_produce(Bytes::from(enc.clone())).expect("decode"),
            recs
        );
        assert!(matches!(
            decode_produce(Bytes::from(enc[..enc.len() - 1].to_vec())),
            Err(Error::Decode(_))
        ));
        assert!(matches!(
            decode_produce(Bytes::from_static(b"nope")),
            Err(Error::Decode(_))
        ));
        let fetched = vec![Record {
            offset: 9,
            timestamp: 1,
            key: None,
            value: Some(Bytes::from_static(b"x")),
            headers: vec![],
        }];
        assert_eq!(
            decode_fetch(Bytes::from(encode_fetch(&fetched))).expect("decode"),
            fetched
        );
    }
}
