//! A partition whose last segment ends in a torn batch (a crash in the
//! middle of a write) is repaired on open: the torn batch is cut, every
//! complete batch is kept, and appends continue at the right offset.

mod common;

use std::fs::OpenOptions;

use streams::{FetchOptions, ProduceRecord, TopicConfig};

#[test]
fn torn_segment_tail_is_truncated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    s.create_topic("p", "t", TopicConfig::new(1))
        .expect("create");
    for b in 0..10 {
        let recs: Vec<ProduceRecord> = (0..100)
            .map(|i| ProduceRecord::value(format!("b{b}-r{i}")))
            .collect();
        s.produce("p", "t", &recs, None).expect("produce");
    }
    drop(s);
    let seg = dir.path().join("topics/p/t/0/00000000000000000000.log");
    let len = std::fs::metadata(&seg).expect("stat").len();
    // Cut the last batch in the middle, then append garbage as a torn write
    // may leave.
    let f = OpenOptions::new().write(true).open(&seg).expect("open");
    f.set_len(len - 500).expect("truncate");
    drop(f);
    let s = common::open(dir.path());
    let info = s.describe_topic("p", "t").expect("describe");
    assert_eq!(
        info.partitions[0].next_offset, 900,
        "the torn batch of 100 is gone"
    );
    let recs = common::read_all(&s, "p", "t", 0);
    assert_eq!(recs.len(), 900);
    assert_eq!(recs[899].value.as_deref(), Some(&b"b8-r99"[..]));
    let ack = s
        .produce("p", "t", &[ProduceRecord::value("after")], None)
        .expect("produce");
    assert_eq!(ack.offsets[0].offset, 900);
    drop(s);

    // A flipped byte inside the last batch: the CRC catches it.
    let len = std::fs::metadata(&seg).expect("stat").len();
    let mut raw = std::fs::read(&seg).expect("read");
    let at = (len - 3) as usize;
    raw[at] ^= 0xff;
    std::fs::write(&seg, &raw).expect("write");
    let s = common::open(dir.path());
    assert_eq!(
        s.describe_topic("p", "t").expect("describe").partitions[0].next_offset,
        900
    );
    let r = s
        .fetch("p", "t", 0, 850, FetchOptions::default())
        .expect("fetch");
    assert_eq!(r.records.len(), 50);
}
