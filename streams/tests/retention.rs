//! Retention deletes whole segments by time and by size; compaction keeps
//! the latest value of every key.

mod common;

use streams::{CleanupPolicy, ProduceRecord, TopicConfig};

fn small_segments(partitions: u32) -> TopicConfig {
    let mut c = TopicConfig::new(partitions);
    c.segment_bytes = 4096;
    c
}

#[test]
fn retention_by_bytes_keeps_the_newest_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    let mut cfg = small_segments(1);
    cfg.retention_bytes = Some(20_000);
    s.create_topic("p", "t", cfg).expect("create");
    for i in 0..1000 {
        s.produce("p", "t", &[ProduceRecord::value(format!("{i:080}"))], None)
            .expect("produce");
    }
    let before = s.describe_topic("p", "t").expect("d").partitions[0].clone();
    assert!(before.bytes > 100_000);
    let report = s.maintain().expect("maintain");
    assert!(report.segments > 10);
    let after = s.describe_topic("p", "t").expect("d").partitions[0].clone();
    assert!(after.bytes <= 20_000, "{after:?}");
    assert!(after.first_offset > 700);
    assert_eq!(after.next_offset, 1000);
    let recs = common::read_all(&s, "p", "t", 0);
    assert_eq!(recs.first().map(|r| r.offset), Some(after.first_offset));
    assert_eq!(recs.last().map(|r| r.offset), Some(999));
    // Reading below the start is out of range, with the range in the error.
    let err = s
        .fetch("p", "t", 0, 0, Default::default())
        .expect_err("deleted");
    assert!(
        err.to_string()
            .contains(&format!("valid offsets are {}..=1000", after.first_offset)),
        "{err}"
    );
}

#[test]
fn retention_by_time_deletes_old_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    let mut cfg = small_segments(1);
    cfg.retention_ms = Some(60_000);
    s.create_topic("p", "t", cfg).expect("create");
    let now = streams::now_ms();
    // Old records (timestamps two minutes ago), then fresh ones.
    for i in 0..300 {
        let r = ProduceRecord {
            timestamp: Some(now - 120_000),
            ..ProduceRecord::value(format!("old{i:060}"))
        };
        s.produce("p", "t", &[r], None).expect("produce");
    }
    for i in 0..300 {
        s.produce(
            "p",
            "t",
            &[ProduceRecord::value(format!("new{i:060}"))],
            None,
        )
        .expect("produce");
    }
    s.maintain().expect("maintain");
    let recs = common::read_all(&s, "p", "t", 0);
    assert!(
        recs.iter()
            .all(|r| r.value.as_deref().is_some_and(|v| v.starts_with(b"new")) || r.offset >= 250)
    );
    assert!(
        recs.iter()
            .filter(|r| r.value.as_deref().is_some_and(|v| v.starts_with(b"old")))
            .count()
            < 60
    );
    assert_eq!(
        recs.iter()
            .filter(|r| r.value.as_deref().is_some_and(|v| v.starts_with(b"new")))
            .count(),
        300
    );

    // A topic whose every record expired ends empty, offsets kept.
    let mut cfg = small_segments(1);
    cfg.retention_ms = Some(1_000);
    s.create_topic("p", "gone", cfg).expect("create");
    let r = ProduceRecord {
        timestamp: Some(now - 10_000),
        ..ProduceRecord::value("x")
    };
    s.produce("p", "gone", &[r.clone(), r], None)
        .expect("produce");
    s.maintain().expect("maintain");
    let info = s.describe_topic("p", "gone").expect("d").partitions[0].clone();
    assert_eq!((info.first_offset, info.next_offset), (2, 2));
}

#[test]
fn compaction_keeps_latest_value_per_key_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    let mut cfg = small_segments(2);
    cfg.cleanup = CleanupPolicy::Compact;
    s.create_topic("p", "c", cfg).expect("create");
    assert!(matches!(
        s.produce("p", "c", &[ProduceRecord::value("no key")], None),
        Err(streams::Error::KeyRequired { .. })
    ));
    let mut latest = std::collections::HashMap::new();
    for round in 0..50 {
        let recs: Vec<ProduceRecord> = (0..40)
            .map(|k| {
                let v = format!("k{k}-round{round}");
                latest.insert(format!("k{k}"), v.clone());
                ProduceRecord::keyed(format!("k{k}"), v)
            })
            .collect();
        s.produce("p", "c", &recs, None).expect("produce");
    }
    // A tombstone deletes k0.
    s.produce(
        "p",
        "c",
        &[ProduceRecord {
            key: Some("k0".into()),
            value: None,
            ..Default::default()
        }],
        None,
    )
    .expect("tombstone");
    let before: u64 = s
        .describe_topic("p", "c")
        .expect("d")
        .partitions
        .iter()
        .map(|p| p.bytes)
        .sum();
    let report = s.maintain().expect("compact");
    assert!(report.records_removed > 1000, "{report:?}");
    drop(s);
    let s = common::open(dir.path());
    let after: u64 = s
        .describe_topic("p", "c")
        .expect("d")
        .partitions
        .iter()
        .map(|p| p.bytes)
        .sum();
    assert!(after < before / 5, "{before} -> {after}");
    let mut view = std::collections::HashMap::new();
    for p in 0..2 {
        for r in common::read_all(&s, "p", "c", p) {
            let k = String::from_utf8(r.key.expect("key").to_vec()).expect("utf8");
            match r.value {
                Some(v) => view.insert(k, String::from_utf8(v.to_vec()).expect("utf8")),
                None => view.remove(&k),
            };
        }
    }
    latest.remove("k0");
    assert_eq!(view, latest);
}
