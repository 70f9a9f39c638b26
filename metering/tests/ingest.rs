//! Usage events: idempotent batches and single records, validation,
//! migrations shared with other crates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use metering::meter::{OBJECT_BYTES_OUT, OBJECT_REQUESTS_READ, OBJECT_REQUESTS_WRITE};
use metering::{IngestStats, Ingestor, MeteringError};

#[tokio::test]
async fn replaying_a_batch_changes_nothing() {
    let db = db().await;
    let t0 = t("2026-02-10T10:00:00Z");
    let batch: Vec<_> = (0..1000)
        .map(|i| {
            ev(
                &format!("e{i}"),
                &format!("p{}", i % 3),
                &format!("b{}", i % 7),
                OBJECT_REQUESTS_READ,
                1 + i,
                t0 + i,
            )
        })
        .collect();
    let first = metering::ingest(&db.pool, &batch).await.unwrap();
    assert_eq!(
        first,
        IngestStats {
            received: 1000,
            inserted: 1000,
            duplicates: 0
        }
    );
    let (from, to) = (t("2026-02-01"), t("2026-03-01"));
    let before = metering::range_invoice(&db.pool, &book(), "p1", from, to, to)
        .await
        .unwrap();
    let again = metering::ingest(&db.pool, &batch).await.unwrap();
    assert_eq!(
        again,
        IngestStats {
            received: 1000,
            inserted: 0,
            duplicates: 1000
        }
    );
    // Same ids with other content are duplicates too: the first write wins.
    let mut changed = batch[..10].to_vec();
    changed.iter_mut().for_each(|e| e.quantity = 1_000_000);
    let ing = Ingestor::new(db.pool.clone());
    assert_eq!(ing.ingest(&changed).await.unwrap().inserted, 0);
    let after = metering::range_invoice(&db.pool, &book(), "p1", from, to, to)
        .await
        .unwrap();
    assert_eq!(before, after);
    let expected: i64 = batch
        .iter()
        .filter(|e| e.project == "p1")
        .map(|e| e.quantity)
        .sum();
    assert_eq!(
        after.lines.iter().map(|l| l.quantity_base).sum::<i64>(),
        expected
    );
    // Same id from another source is another event.
    let mut other = batch[0].clone();
    other.source = "storage@other".into();
    assert!(
        metering::record(&mut db.pool.acquire().await.unwrap(), &other)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn duplicates_inside_one_batch_count_once() {
    let db = db().await;
    let e = ev("same", "p1", "b", OBJECT_REQUESTS_WRITE, 5, t("2026-02-10"));
    let s = metering::ingest(&db.pool, &[e.clone(), e.clone(), e])
        .await
        .unwrap();
    assert_eq!((s.inserted, s.duplicates), (1, 2));
}

#[tokio::test]
async fn record_joins_the_callers_transaction() {
    let db = db().await;
    let e = ev("x1", "p1", "b", OBJECT_BYTES_OUT, 1 << 30, t("2026-02-10"));
    let mut tx = db.pool.begin().await.unwrap();
    assert!(metering::record(&mut tx, &e).await.unwrap());
    assert!(!metering::record(&mut tx, &e).await.unwrap());
    tx.rollback().await.unwrap();
    let (from, to) = (t("2026-02-01"), t("2026-03-01"));
    assert_eq!(billed(&db, "p1", OBJECT_BYTES_OUT, from, to, to).await, 0);
    let mut tx = db.pool.begin().await.unwrap();
    assert!(metering::record(&mut tx, &e).await.unwrap());
    tx.commit().await.unwrap();
    let inv = metering::range_invoice(&db.pool, &book(), "p1", from, to, to)
        .await
        .unwrap();
    assert_eq!(inv.lines.len(), 1);
    assert_eq!(inv.lines[0].quantity, "1");
    assert_eq!(inv.lines[0].amount.micros(), 90_000);
}

#[tokio::test]
async fn an_invalid_event_refuses_the_whole_batch_and_names_it() {
    let db = db().await;
    let t0 = t("2026-02-10");
    let mut batch = vec![ev("ok", "p1", "b", OBJECT_REQUESTS_READ, 1, t0)];
    let mut bad = ev("bad-1", "p1", "b", OBJECT_REQUESTS_READ, -3, t0);
    bad.quantity = -3;
    batch.push(bad);
    match metering::ingest(&db.pool, &batch).await {
        Err(MeteringError::InvalidEvent { id, field, .. }) => {
            assert_eq!((id.as_str(), field), ("bad-1", "quantity"))
        }
        other => panic!("{other:?}"),
    }
    let mut unknown = ev("u", "p1", "b", "bucket.gpu", 1, t0);
    unknown.meter = "bucket.gpu".into();
    assert!(metering::ingest(&db.pool, &[unknown]).await.is_err());
    let (from, to) = (t("2026-02-01"), t("2026-03-01"));
    assert_eq!(
        billed(&db, "p1", OBJECT_REQUESTS_READ, from, to, to).await,
        0
    );
}

#[tokio::test]
async fn migrations_share_the_table_with_other_crates() {
    let dir = tempfile::tempdir().unwrap();
    let pool = metering::connect(dir.path().join("db"), 2).await.unwrap();
    // Another crate's migrator (versions 1 and 2000) runs first...
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("0001_api.sql"),
        "CREATE TABLE api_things (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    std::fs::write(
        other.path().join("2000_streams.sql"),
        "CREATE TABLE streams_things (id INTEGER);",
    )
    .unwrap();
    let mut m = sqlx::migrate::Migrator::new(other.path()).await.unwrap();
    m.set_ignore_missing(true);
    m.run(&pool).await.unwrap();
    // ...then metering's, then both again: nothing complains.
    metering::migrate(&pool).await.unwrap();
    metering::migrate(&pool).await.unwrap();
    m.run(&pool).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(versions, vec![1, 1000, 2000]);
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}
