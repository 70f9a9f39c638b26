//! Records as producers send them ([`ProduceRecord`]) and as consumers get
//! them back ([`Record`]), with their headers.

use bytes::Bytes;

/// One record header: a name and an opaque value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name (UTF-8).
    pub name: String,
    /// The header's value.
    pub value: Bytes,
}

impl Header {
    /// Builds a header.
    pub fn new(name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A record to append to a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    /// The record's key; also picks the partition (stable hash) when
    /// `partition` is not given. Compacted topics require one.
    pub key: Option<Bytes>,
    /// The record's value; `None` is a tombstone (deletes the key on
    /// compaction).
    pub value: Option<Bytes>,
    /// Headers, kept in order.
    pub headers: Vec<Header>,
    /// The partition to append to; when `None` it is derived from the key,
    /// or chosen round-robin for keyless records.
    pub partition: Option<u32>,
    /// The record's timestamp in milliseconds since the Unix epoch; the
    /// append time when `None`.
    pub timestamp: Option<i64>,
}

impl ProduceRecord {
    /// A record with a value only.
    pub fn value(value: impl Into<Bytes>) -> Self {
        ProduceRecord {
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// A record with a key and a value.
    pub fn keyed(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        ProduceRecord {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// The record's size once encoded in a log batch (its share of the
    /// batch, without the batch header).
    pub fn encoded_len(&self) -> usize {
        crate::log::batch::record_encoded_len(
            self.key.as_deref(),
            self.value.as_deref(),
            &self.headers,
        )
    }
}

/// A record read back from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's offset in its partition.
    pub offset: u64,
    /// Its timestamp in milliseconds since the Unix epoch (the producer's,
    /// or the append time).
    pub timestamp: i64,
    /// Its key.
    pub key: Option<Bytes>,
    /// Its value (`None`: a tombstone).
    pub value: Option<Bytes>,
    /// Its headers, in order.
    pub headers: Vec<Header>,
}

impl Record {
    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| &h.value)
    }

    /// The record's size as counted against `max_bytes` and in metering.
    pub fn encoded_len(&self) -> usize {
        crate::log::batch::record_encoded_len(
            self.key.as_deref(),
            self.value.as_deref(),
            &self.headers,
        )
    }
}
