//! Monthly invoices over 1,000,000 events for 1,000 projects.
//! `cargo bench -p metering --bench invoice`
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::*;
use metering::{EndReason, Ingestor, Month, PriceBook, RunPolicy, RunStart};

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
        // Plus one instance per project that ran 1-9 days, and one still running.
        let mut c = pool.acquire().await.unwrap();
        for p in 0..1000i64 {
            let start = RunStart {
                project: format!("project-{p:04}"),
                resource_id: format!("vm-{p:04}"),
                vcpus: 1 + (p % 4) as u32,
                memory_mib: 512 << (p % 3),
                started_at: month.start() + p * 60_000,
                policy: RunPolicy::default(),
            };
            metering::open_run(&mut c, &start).await.unwrap();
            if p % 10 != 0 {
                let end = start.started_at + (1 + p % 9) * 86_400_000;
                metering::close_run(&mut c, &start.resource_id, end, EndReason::Stopped).await.unwrap();
            }
        }
        drop(c);

        let project = "project-0001";
        let mut draft = Vec::new();
        for _ in 0..20 {
            let s = Instant::now();
            let inv = metering::month_invoice(&pool, &book, project, month, month.end()).await.unwrap();
            draft.push(s.elapsed().as_secs_f64() * 1000.0);
            assert!(!inv.lines.is_empty());
        }
        println!("invoice: draft month_invoice for 1 project: median {:.2} ms, p99 {:.2} ms", median_ms(draft.clone()), p99_ms(draft));

        let s = Instant::now();
        let sum = metering::close_month(&pool, &book, month, month.end()).await.unwrap();
        let ms = s.elapsed().as_secs_f64() * 1000.0;
        let lines: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM metering_invoice_lines").fetch_one(&pool).await.unwrap();
        println!(
            "invoice: close_month {month}: {ms:.0} ms for {n} events + 1000 runs, {} projects -> {} invoices, {lines} lines stored",
            1000,
            sum.invoices.len()
        );
        let mut stored = Vec::new();
        for id in sum.invoices.iter().take(20) {
            let s = Instant::now();
            metering::invoice(&pool, *id).await.unwrap();
            stored.push(s.elapsed().as_secs_f64() * 1000.0);
        }
        println!("invoice: read a stored invoice: median {:.2} ms", median_ms(stored));
    });
}
