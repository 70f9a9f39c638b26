//! Topics end to end: a million records produced and read back, long
//! polls, idempotent retries, tenant isolation and clear errors.

mod common;

use std::time::Duration;

use bytes::Bytes;
use streams::{Error, FetchOptions, ProduceRecord, ProducerSeq, TopicConfig};

#[test]
fn a_million_records_round_trip_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    let mut cfg = TopicConfig::new(4);
    cfg.segment_bytes = 8 << 20;
    s.create_topic("p1", "big", cfg).expect("create");
    const N: usize = 1_000_000;
    const BATCH: usize = 5_000;
    let mut positions = Vec::with_capacity(N);
    for b in 0..N / BATCH {
        let recs: Vec<ProduceRecord> = (b * BATCH..(b + 1) * BATCH)
            .map(|i| ProduceRecord::keyed(format!("key-{}", i % 997), format!("{i:0100}")))
            .collect();
        let ack = s.produce("p1", "big", &recs, None).expect("produce");
        positions.extend(ack.offsets);
    }
    assert_eq!(positions.len(), N);
    let check = |s: &streams::Streams| {
        let mut seen = vec![false; N];
        let mut total = 0;
        for p in 0..4u32 {
            let recs = common::read_all(s, "p1", "big", p);
            for (expect_off, r) in recs.into_iter().enumerate() {
                assert_eq!(r.offset, expect_off as u64, "offsets are dense");
                let v = r.value.expect("value");
                let i: usize = std::str::from_utf8(&v)
                    .expect("utf8")
                    .parse()
                    .expect("number");
                assert_eq!(positions[i].partition, p);
                assert_eq!(positions[i].offset, r.offset);
                assert_eq!(
                    r.key.as_deref(),
                    Some(format!("key-{}", i % 997).as_bytes())
                );
                assert!(!seen[i], "record {i} seen twice");
                seen[i] = true;
                total += 1;
            }
        }
        assert_eq!(total, N);
    };
    check(&s);
    drop(s);
    let s = common::open(dir.path());
    check(&s);
    let info = s.describe_topic("p1", "big").expect("describe");
    assert!(info.partitions.iter().all(|p| p.segments > 1), "{info:?}");
}

#[tokio::test]
async fn long_poll_wakes_on_append_and_times_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    s.create_topic("p", "t", TopicConfig::new(1))
        .expect("create");
    let t0 = std::time::Instant::now();
    let r = s
        .fetch_wait(
            "p",
            "t",
            0,
            0,
            FetchOptions::default(),
            Duration::from_millis(150),
        )
        .await
        .expect("fetch");
    assert!(r.records.is_empty());
    assert!(t0.elapsed() >= Duration::from_millis(140));
    let s2 = s.clone();
    let waiter = tokio::spawn(async move {
        s2.fetch_wait(
            "p",
            "t",
            0,
            0,
            FetchOptions::default(),
            Duration::from_secs(10),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t1 = std::time::Instant::now();
    s.produce("p", "t", &[ProduceRecord::value("hello")], None)
        .expect("produce");
    let r = waiter.await.expect("join").expect("fetch");
    assert_eq!(r.records.len(), 1);
    assert!(t1.elapsed() < Duration::from_secs(2));
}

#[test]
fn idempotent_retry_lands_once_even_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    s.create_topic("p", "t", TopicConfig::new(3))
        .expect("create");
    let recs: Vec<ProduceRecord> = (0..10)
        .map(|i| ProduceRecord::value(format!("v{i}")))
        .collect();
    let pid = ProducerSeq {
        producer_id: 42,
        sequence: 1,
    };
    let first = s.produce("p", "t", &recs, Some(pid)).expect("produce");
    assert!(!first.duplicate);
    let again = s.produce("p", "t", &recs, Some(pid)).expect("retry");
    assert!(again.duplicate);
    assert_eq!(again.offsets, first.offsets);
    drop(s);
    let s = common::open(dir.path());
    let again = s
        .produce("p", "t", &recs, Some(pid))
        .expect("retry after restart");
    assert!(again.duplicate);
    assert_eq!(again.offsets, first.offsets);
    let total: u64 = s
        .describe_topic("p", "t")
        .expect("describe")
        .partitions
        .iter()
        .map(|p| p.next_offset)
        .sum();
    assert_eq!(total, 10);
    assert!(matches!(
        s.produce(
            "p",
            "t",
            &recs,
            Some(ProducerSeq {
                producer_id: 42,
                sequence: 0
            })
        ),
        Err(Error::StaleSequence { last: 1, .. })
    ));
    let next = s
        .produce(
            "p",
            "t",
            &recs,
            Some(ProducerSeq {
                producer_id: 42,
                sequence: 2,
            }),
        )
        .expect("next");
    assert!(!next.duplicate);
}

#[test]
fn projects_are_isolated_and_errors_are_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    s.create_topic("alice", "t", TopicConfig::new(2))
        .expect("create");
    assert!(matches!(
        s.describe_topic("bob", "t"),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(s.list_topics("bob").is_empty());
    assert_eq!(s.list_topics("alice"), vec!["t".to_string()]);
    s.create_topic("bob", "t", TopicConfig::new(1))
        .expect("same name in another project");
    assert!(matches!(
        s.create_topic("alice", "t", TopicConfig::new(1)),
        Err(Error::TopicExists { .. })
    ));
    assert!(matches!(
        s.create_topic("alice", "../x", TopicConfig::new(1)),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        s.create_topic("alice", "z", TopicConfig::new(0)),
        Err(Error::InvalidConfig(_))
    ));
    s.produce(
        "alice",
        "t",
        &[ProduceRecord {
            partition: Some(0),
            ..ProduceRecord::value("x")
        }],
        None,
    )
    .expect("produce");
    let err = s
        .fetch("alice", "t", 0, 5, FetchOptions::default())
        .expect_err("out of range");
    assert_eq!(
        err.to_string(),
        "offset 5 is out of range for \"t\" partition 0: valid offsets are 0..=1 (1 is the next offset to be written)"
    );
    assert!(matches!(
        s.fetch("alice", "t", 9, 0, FetchOptions::default()),
        Err(Error::UnknownPartition { partitions: 2, .. })
    ));
    let big = ProduceRecord::value(Bytes::from(vec![0u8; 2 << 20]));
    assert!(matches!(
        s.produce("alice", "t", &[big], None),
        Err(Error::RecordTooLarge { .. })
    ));
    assert!(matches!(
        s.produce(
            "alice",
            "t",
            &[ProduceRecord {
                partition: Some(7),
                ..ProduceRecord::value("x")
            }],
            None
        ),
        Err(Error::UnknownPartition { .. })
    ));
    // Add partitions, delete topics.
    let info = s.add_partitions("alice", "t", 4).expect("grow");
    assert_eq!(info.partitions.len(), 4);
    assert!(matches!(
        s.add_partitions("alice", "t", 3),
        Err(Error::InvalidConfig(_))
    ));
    s.delete_topic("alice", "t").expect("delete");
    assert!(matches!(
        s.describe_topic("alice", "t"),
        Err(Error::UnknownTopic { .. })
    ));
    assert_eq!(
        s.describe_topic("bob", "t")
            .expect("bob's topic stays")
            .partitions
            .len(),
        1
    );
    drop(s);
    let s = common::open(dir.path());
    assert!(s.list_topics("alice").is_empty());
    // Metering counted the produce.
    let _ = s.usage_snapshot();
}

#[test]
fn keys_hash_stably_and_keyless_records_round_robin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    s.create_topic("p", "t", TopicConfig::new(4))
        .expect("create");
    let a = s
        .produce(
            "p",
            "t",
            &[
                ProduceRecord::keyed("user-1", "a"),
                ProduceRecord::keyed("user-1", "b"),
            ],
            None,
        )
        .expect("p");
    assert_eq!(a.offsets[0].partition, a.offsets[1].partition);
    assert_eq!(
        a.offsets[0].partition,
        streams::topic::partition_for_key(b"user-1", 4)
    );
    let recs: Vec<ProduceRecord> = (0..8)
        .map(|i| ProduceRecord::value(format!("{i}")))
        .collect();
    let ack = s.produce("p", "t", &recs, None).expect("p");
    let mut per = [0; 4];
    for o in &ack.offsets {
        per[o.partition as usize] += 1;
    }
    assert_eq!(per, [2, 2, 2, 2]);
    assert_eq!(ack.durability.as_str(), "os-buffer");
    let usage = s.usage_snapshot();
    let u = usage.iter().find(|u| u.name == "t").expect("usage line");
    assert_eq!(u.counters.records_in, 10);
    assert_eq!(u.counters.requests, 2);
    assert_eq!(u.partitions, 4);
    assert!(u.storage_bytes > 0);
}

#[test]
fn fetch_by_timestamp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    s.create_topic("p", "t", TopicConfig::new(1))
        .expect("create");
    let recs: Vec<ProduceRecord> = (0..1000)
        .map(|i| ProduceRecord {
            timestamp: Some(10_000 + i * 10),
            ..ProduceRecord::value(format!("{i}"))
        })
        .collect();
    s.produce("p", "t", &recs, None).expect("produce");
    assert_eq!(s.offset_for_time("p", "t", 0, 0).expect("t"), 0);
    assert_eq!(
        s.offset_for_time("p", "t", 0, 10_000 + 4995).expect("t"),
        500
    );
    assert_eq!(s.offset_for_time("p", "t", 0, 99_999_999).expect("t"), 1000);
}
