//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use streams::{Streams, StreamsConfig};

/// Opens a service on `dir` with default settings.
pub fn open(dir: &Path) -> Streams {
    Streams::open(StreamsConfig::new(dir)).expect("open streams")
}

/// Reads a whole partition from its first offset.
pub fn read_all(s: &Streams, project: &str, topic: &str, partition: u32) -> Vec<streams::Record> {
    let mut out = Vec::new();
    let mut off = s
        .describe_topic(project, topic)
        .expect("describe")
        .partitions[partition as usize]
        .first_offset;
    loop {
        let r = s
            .fetch(
                project,
                topic,
                partition,
                off,
                streams::FetchOptions {
                    max_records: 50_000,
                    max_bytes: 16 << 20,
                },
            )
            .expect("fetch");
        if r.records.is_empty() {
            return out;
        }
        off = r.next_offset;
        out.extend(r.records);
    }
}
