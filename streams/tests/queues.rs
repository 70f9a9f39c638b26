//! Queues over (real) time: delays, visibility timeouts, long polls,
//! change of visibility, redrive to a dead-letter queue, retention, and
//! restarts that neither lose nor duplicate messages.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use streams::{Error, QueueConfig, RedrivePolicy, SendMessage};

fn msg(body: &str) -> SendMessage {
    SendMessage {
        body: body.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn visibility_redrive_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    s.create_queue("p", "dlq", QueueConfig::default())
        .expect("dlq");
    let cfg = QueueConfig {
        visibility_timeout_ms: 200,
        redrive: Some(RedrivePolicy {
            dead_letter_queue: "dlq".into(),
            max_receive_count: 2,
        }),
        ..Default::default()
    };
    s.create_queue("p", "q", cfg.clone()).expect("q");
    assert!(matches!(
        s.create_queue("p", "q", cfg),
        Err(Error::QueueExists { .. })
    ));
    let bodies: Vec<SendMessage> = (0..10).map(|i| msg(&format!("m{i}"))).collect();
    s.send("p", "q", &bodies).expect("send");
    s.send(
        "p",
        "q",
        &[SendMessage {
            body: "late".into(),
            delay_ms: Some(400),
            ..Default::default()
        }],
    )
    .expect("send");

    let first = s.receive_now("p", "q", 100, None).expect("receive");
    assert_eq!(first.len(), 10, "the delayed one is not visible yet");
    for m in &first[..5] {
        s.delete_message("p", "q", &m.receipt_handle)
            .expect("delete");
    }
    assert!(
        s.receive_now("p", "q", 100, None)
            .expect("receive")
            .is_empty(),
        "all in flight"
    );
    let info = s.describe_queue("p", "q").expect("info");
    assert_eq!((info.visible, info.in_flight, info.delayed), (0, 5, 1));

    // Long poll: the 5 undeleted come back after the 200 ms timeout.
    let t0 = Instant::now();
    let second = s
        .receive("p", "q", 100, None, Duration::from_secs(2))
        .await
        .expect("receive");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    assert_eq!(second.len(), 5);
    assert!(second.iter().all(|m| m.receive_count == 2));
    // The old receipt handle no longer works.
    assert!(matches!(
        s.delete_message("p", "q", &first[6].receipt_handle),
        Err(Error::InvalidReceipt { .. })
    ));
    // Make one visible at once, keep another hidden longer.
    s.change_visibility("p", "q", &second[0].receipt_handle, 0)
        .expect("visible now");
    s.change_visibility("p", "q", &second[1].receipt_handle, 5_000)
        .expect("hide longer");

    // Restart: nothing lost, in-flight messages stay hidden.
    drop(s);
    let s = common::open(dir.path());
    // second[0] was received twice: its next receive redrives it.
    let got = s.receive_now("p", "q", 100, None).expect("receive");
    assert!(got.is_empty(), "{got:?}");
    let dlq = s.receive_now("p", "dlq", 100, None).expect("dlq");
    assert_eq!(
        dlq.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec![second[0].body.as_str()]
    );
    s.delete_message("p", "dlq", &dlq[0].receipt_handle)
        .expect("delete");

    tokio::time::sleep(Duration::from_millis(450)).await;
    // The other three undeleted reached the limit too; the delayed one is
    // now visible for the first time.
    let got = s.receive_now("p", "q", 100, None).expect("receive");
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec!["late"]
    );
    let dlq: BTreeSet<String> = s
        .receive_now("p", "dlq", 100, None)
        .expect("dlq")
        .into_iter()
        .map(|m| m.body)
        .collect();
    let expect: BTreeSet<String> = second[2..].iter().map(|m| m.body.clone()).collect();
    assert_eq!(dlq, expect);
    s.delete_message("p", "q", &got[0].receipt_handle)
        .expect("delete");
    // second[1] is still hidden (5 s), then goes to the DLQ too.
    let info = s.describe_queue("p", "q").expect("info");
    assert_eq!((info.visible, info.in_flight, info.delayed), (0, 1, 0));
    s.shutdown().await.expect("shutdown");
    assert!(matches!(
        s.send("p", "q", &[msg("x")]),
        Err(Error::ShuttingDown)
    ));
}

#[tokio::test]
async fn retention_drops_old_messages_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    let cfg = QueueConfig {
        retention_ms: 1000,
        max_message_bytes: 10,
        ..Default::default()
    };
    s.create_queue("p", "short", cfg).expect("create");
    s.send("p", "short", &[msg("a"), msg("b")]).expect("send");
    assert!(matches!(
        s.send("p", "short", &[msg("01234567890")]),
        Err(Error::RecordTooLarge { .. })
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.maintain().expect("maintain");
    assert!(
        s.receive_now("p", "short", 10, None)
            .expect("receive")
            .is_empty()
    );
    assert!(matches!(
        s.delete_message("p", "short", "zz"),
        Err(Error::InvalidReceipt { .. })
    ));
    assert!(matches!(
        s.receive_now("p", "nope", 1, None),
        Err(Error::UnknownQueue { .. })
    ));
    assert!(matches!(
        s.receive_now("other", "short", 1, None),
        Err(Error::UnknownQueue { .. })
    ));
    let bad = QueueConfig {
        redrive: Some(RedrivePolicy {
            dead_letter_queue: "missing".into(),
            max_receive_count: 1,
        }),
        ..Default::default()
    };
    assert!(matches!(
        s.create_queue("p", "x", bad),
        Err(Error::UnknownQueue { .. })
    ));
    s.delete_queue("p", "short").expect("delete");
    assert!(s.list_queues("p").is_empty());
}

#[tokio::test]
async fn many_messages_survive_restart_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::open(dir.path());
    s.create_queue(
        "p",
        "q",
        QueueConfig {
            visibility_timeout_ms: 60_000,
            ..Default::default()
        },
    )
    .expect("create");
    let msgs: Vec<SendMessage> = (0..5000).map(|i| msg(&i.to_string())).collect();
    s.send("p", "q", &msgs).expect("send");
    let mut got = BTreeSet::new();
    for _ in 0..25 {
        for m in s.receive_now("p", "q", 100, None).expect("receive") {
            assert!(got.insert(m.body.clone()));
            s.delete_message("p", "q", &m.receipt_handle)
                .expect("delete");
        }
    }
    // 2,500 more received but not deleted before the "crash".
    let mut inflight = 0;
    for _ in 0..25 {
        inflight += s.receive_now("p", "q", 100, None).expect("receive").len();
    }
    assert_eq!(inflight, 2500);
    drop(s);
    let s = common::open(dir.path());
    let info = s.describe_queue("p", "q").expect("info");
    assert_eq!((info.visible, info.in_flight), (0, 2500));
    assert_eq!(got.len(), 2500);
}
