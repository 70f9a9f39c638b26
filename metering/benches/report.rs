//! Report latency at library level over 1,000,000 events.
//! `cargo bench -p metering --bench report`
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::*;
use metering::{GroupBy, Ingestor, Month, PriceBook};

fn main() {
    let n: usize = std::env::var("METERING_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let book = PriceBook::default_book().unwrap();
        let month: Month = "2026-02".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pool = fresh_db(&dir).await;
        let ing = Ingestor::new(pool.clone());
        for chunk in events(n, 1000, month, "e").chunks(10_000) {
            ing.ingest(chunk).await.unwrap();
        }
        let (from, to) = (month.start(), month.end());
        for g in [GroupBy::Resource, GroupBy::Meter, GroupBy::Day] {
            let mut v = Vec::new();
            let mut rows = 0;
            for i in 0..50 {
                let project = format!("project-{:04}", i * 17 % 1000);
                let s = Instant::now();
                let r = metering::usage_report(&pool, &book, &project, from, to, g, to).await.unwrap();
                let _ = r.to_csv();
                v.push(s.elapsed().as_secs_f64() * 1000.0);
                rows = r.rows.len();
            }
            println!(
                "report: group_by={g:<8} 1 project's month (~{} events, {rows} rows) + CSV: median {:.2} ms, p99 {:.2} ms",
                n / 1000,
                median_ms(v.clone()),
                p99_ms(v)
            );
        }
        let mut v = Vec::new();
        for i in 0..50 {
            let project = format!("project-{:04}", i * 17 % 1000);
            let s = Instant::now();
            let c = metering::daily_costs(&pool, &book, &project, from, to, to).await.unwrap();
            let _ = metering::sparkline(&c.total_micros());
            let _ = metering::svg_chart(&c);
            v.push(s.elapsed().as_secs_f64() * 1000.0);
        }
        println!("report: daily_costs + sparkline + SVG, 1 project's month: median {:.2} ms, p99 {:.2} ms", median_ms(v.clone()), p99_ms(v));
    });
}
