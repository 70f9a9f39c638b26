//! Consumer groups: members come and go (join, leave, session timeout)
//! while records keep arriving; every record is consumed (at-least-once:
//! duplicates only around rebalances), offsets are committed durably and
//! lag reaches zero.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use streams::{
    Error, FetchOptions, JoinGroup, ProduceRecord, Streams, TopicConfig, TopicPartition,
};

const P: u32 = 6;

fn produce(s: &Streams, from: usize, n: usize) {
    let recs: Vec<ProduceRecord> = (from..from + n)
        .map(|i| ProduceRecord::value(format!("{i}")))
        .collect();
    s.produce("p", "t", &recs, None).expect("produce");
}

/// One poll of one member: consume up to 50 records of each owned
/// partition from the committed offset and commit. Returns how many it
/// consumed.
fn poll(s: &Streams, member: &str, seen: &mut Vec<usize>) -> usize {
    let a = match s.heartbeat("p", "g", member) {
        Ok(a) => a,
        Err(Error::UnknownMember { .. }) => return 0,
        Err(e) => panic!("heartbeat: {e}"),
    };
    let mut n = 0;
    for tp in &a.partitions {
        let off = s
            .committed_offset("p", "g", &tp.topic, tp.partition)
            .expect("committed")
            .unwrap_or(0);
        let r = s
            .fetch(
                "p",
                "t",
                tp.partition,
                off,
                FetchOptions {
                    max_records: 50,
                    max_bytes: 1 << 20,
                },
            )
            .expect("fetch");
        if r.records.is_empty() {
            continue;
        }
        for rec in &r.records {
            seen.push(
                std::str::from_utf8(rec.value.as_deref().expect("value"))
                    .expect("utf8")
                    .parse()
                    .expect("n"),
            );
        }
        n += r.records.len();
        match s.commit_offsets(
            "p",
            "g",
            Some((member, a.generation)),
            &[(tp.clone(), r.next_offset)],
        ) {
            Ok(()) | Err(Error::IllegalGeneration { .. }) => {}
            Err(e) => panic!("commit: {e}"),
        }
    }
    n
}

#[test]
fn rebalances_as_members_come_and_go_without_skipping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    s.create_topic("p", "t", TopicConfig::new(P))
        .expect("create");
    let join = |m: &str| {
        let mut j = JoinGroup::new(m, &["t"]);
        j.session_timeout_ms = 2_000;
        s.join_group("p", "g", j).expect("join")
    };
    let mut seen = Vec::new();
    let mut produced = 0;
    produce(&s, produced, 3000);
    produced += 3000;
    let a = join("a");
    assert_eq!(a.partitions.len(), P as usize);
    let mut live: Vec<&str> = vec!["a"];
    let mut generations = vec![a.generation];
    for step in 0..400 {
        match step {
            10 => {
                join("b");
                live.push("b");
            }
            20 => {
                join("c");
                live.push("c");
            }
            40 => {
                s.leave_group("p", "g", "a").expect("leave");
                live.retain(|m| *m != "a");
            }
            60 => {
                // b goes silent: after its session timeout c takes over.
                live.retain(|m| *m != "b");
                for _ in 0..22 {
                    std::thread::sleep(Duration::from_millis(100));
                    for m in &live {
                        s.heartbeat("p", "g", m)
                            .expect("live members keep their session");
                    }
                }
            }
            80 => {
                join("d");
                live.push("d");
            }
            _ => {}
        }
        if step % 5 == 0 && produced < 12_000 {
            produce(&s, produced, 500);
            produced += 500;
        }
        for m in live.clone() {
            poll(&s, m, &mut seen);
        }
        let g = s.describe_group("p", "g").expect("describe");
        if generations.last() != Some(&g.generation) {
            generations.push(g.generation);
            // Every partition is owned by exactly one live member.
            let mut owned: Vec<TopicPartition> = g
                .members
                .iter()
                .flat_map(|m| m.partitions.clone())
                .collect();
            owned.sort();
            owned.dedup();
            assert_eq!(owned.len(), P as usize, "{g:?}");
        }
        if produced >= 12_000 && g.partitions.iter().all(|p| p.lag == 0) {
            break;
        }
    }
    assert!(generations.len() >= 5, "generations {generations:?}");
    let distinct: HashSet<usize> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), produced, "every record consumed");
    assert!((0..produced).all(|i| distinct.contains(&i)));
    let dups = seen.len() - distinct.len();
    assert!(
        dups < 50 * P as usize * 6,
        "duplicates {dups} only around rebalances"
    );
    let g = s.describe_group("p", "g").expect("describe");
    let members: BTreeMap<String, usize> = g
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.partitions.len()))
        .collect();
    assert_eq!(
        members.keys().cloned().collect::<Vec<_>>(),
        vec!["c".to_string(), "d".to_string()]
    );
    assert!(
        g.partitions
            .iter()
            .all(|p| p.lag == 0 && p.committed == Some(p.high_watermark))
    );
    // Offsets survive a restart; membership does not need to.
    drop(s);
    let s = common::open(dir.path());
    for p in 0..P {
        let hw = s.describe_topic("p", "t").expect("d").partitions[p as usize].next_offset;
        assert_eq!(
            s.committed_offset("p", "g", "t", p).expect("offset"),
            Some(hw)
        );
    }
    assert_eq!(s.list_groups("p"), vec!["g".to_string()]);
    assert!(matches!(
        s.heartbeat("p", "g", "c"),
        Err(Error::UnknownMember { .. })
    ));
    assert!(matches!(
        s.describe_group("p", "nope"),
        Err(Error::UnknownGroup { .. })
    ));
}

#[test]
fn round_robin_and_stale_commit_fencing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    s.create_topic("p", "x", TopicConfig::new(3))
        .expect("create");
    s.create_topic("p", "y", TopicConfig::new(3))
        .expect("create");
    let mut j = JoinGroup::new("m1", &["x", "y"]);
    j.strategy = streams::AssignmentStrategy::RoundRobin;
    let a1 = s.join_group("p", "rr", j.clone()).expect("join");
    assert_eq!(a1.partitions.len(), 6);
    j.member_id = "m2".into();
    let a2 = s.join_group("p", "rr", j).expect("join");
    assert_eq!(a2.partitions.len(), 3);
    let tp = a2.partitions[0].clone();
    // m1's generation is old now.
    assert!(matches!(
        s.commit_offsets("p", "rr", Some(("m1", a1.generation)), &[(tp.clone(), 1)]),
        Err(Error::IllegalGeneration { .. })
    ));
    // m1 with the current generation still cannot commit m2's partition.
    let a1b = s.heartbeat("p", "rr", "m1").expect("hb");
    assert!(
        s.commit_offsets("p", "rr", Some(("m1", a1b.generation)), &[(tp.clone(), 1)])
            .is_err()
    );
    s.commit_offsets("p", "rr", Some(("m2", a2.generation)), &[(tp, 0)])
        .expect("owner commits");
    // Adding partitions rebalances on the next heartbeat.
    s.add_partitions("p", "x", 5).expect("grow");
    let a = s.heartbeat("p", "rr", "m1").expect("hb");
    assert!(a.generation > a2.generation);
    let g = s.describe_group("p", "rr").expect("describe");
    let total: usize = g.members.iter().map(|m| m.partitions.len()).sum();
    assert_eq!(total, 8);
}
