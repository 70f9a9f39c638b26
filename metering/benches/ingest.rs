//! Ingest rate of usage events into a WAL SQLite file, batched.
//! `cargo bench -p metering --bench ingest` (METERING_BENCH_EVENTS to resize).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::*;
use metering::{Ingestor, Month};

fn main() {
    let n: usize = std::env::var("METERING_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let batch = 10_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let month: Month = "2026-02".parse().unwrap();
        let events = events(n, 1000, month, "e");
        let dir = tempfile::tempdir().unwrap();
        let pool = fresh_db(&dir).await;
        let ing = Ingestor::new(pool.clone());

        // Cold: every series is new the first time it is seen.
        let start = Instant::now();
        for chunk in events.chunks(batch) {
            ing.ingest(chunk).await.unwrap();
        }
        println!("ingest: {:>9.0} events/s  ({n} events, batches of {batch}, Ingestor, WAL file, empty db)", per_sec(n, start));

        // Warm: a second month of new events, series known.
        let more = common::events(n, 1000, month.next(), "f");
        let start = Instant::now();
        for chunk in more.chunks(batch) {
            ing.ingest(chunk).await.unwrap();
        }
        println!("ingest: {:>9.0} events/s  ({n} more events, batches of {batch}, Ingestor, {n} rows already stored)", per_sec(n, start));

        // Bigger batches of new events.
        let big = 100_000;
        let fourth = common::events(n, 1000, month.next().next().next(), "k");
        let start = Instant::now();
        for chunk in fourth.chunks(big) {
            ing.ingest(chunk).await.unwrap();
        }
        println!(
            "ingest: {:>9.0} events/s  ({n} more events, batches of {big}, Ingestor, {} rows already stored)",
            per_sec(n, start),
            2 * n
        );

        // Replay: all duplicates.
        let start = Instant::now();
        for chunk in events.chunks(batch) {
            let s = ing.ingest(chunk).await.unwrap();
            assert_eq!(s.inserted, 0);
        }
        println!("ingest: {:>9.0} events/s  (replay of {n}: all duplicates, nothing written)", per_sec(n, start));

        // The free function (no series cache across batches).
        let third = common::events(n / 4, 1000, month.next().next(), "g");
        let start = Instant::now();
        for chunk in third.chunks(batch) {
            metering::ingest(&pool, chunk).await.unwrap();
        }
        println!("ingest: {:>9.0} events/s  ({} events, batches of {batch}, metering::ingest without cache)", per_sec(third.len(), start), third.len());

        // One event per transaction, as a state change would write it.
        let single = common::events(2000, 1000, month.next().next(), "h");
        let start = Instant::now();
        for e in &single {
            let mut tx = pool.begin().await.unwrap();
            metering::record(&mut tx, e).await.unwrap();
            tx.commit().await.unwrap();
        }
        println!("record: {:>9.0} events/s  (one event per transaction, {} events)", per_sec(single.len(), start), single.len());
        let size = std::fs::metadata(dir.path().join("bench.db")).map(|m| m.len()).unwrap_or(0);
        println!("db size: {:.0} MiB for {} rows", size as f64 / 1048576.0, 3 * n + n / 4 + 2000);
    });
}
