//! Shared bench data: a real WAL SQLite file and synthetic usage.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use metering::meter::{OBJECT_BYTES_OUT, OBJECT_REQUESTS_READ, OBJECT_REQUESTS_WRITE};
use metering::{Month, UsageEvent};
use sqlx::SqlitePool;

pub async fn fresh_db(dir: &tempfile::TempDir) -> SqlitePool {
    let pool = metering::connect(dir.path().join("bench.db"), 4)
        .await
        .unwrap();
    metering::migrate(&pool).await.unwrap();
    pool
}

/// `n` events spread over `month` for `projects` projects with 5 buckets
/// each and three meters (15 series per project).
pub fn events(n: usize, projects: usize, month: Month, id_prefix: &str) -> Vec<UsageEvent> {
    let span = (month.end() - month.start()) as u64;
    let meters = [
        OBJECT_REQUESTS_READ,
        OBJECT_REQUESTS_WRITE,
        OBJECT_BYTES_OUT,
    ];
    // A small LCG: reproducible, no extra dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let p = (x >> 33) as usize % projects;
            let b = (x >> 20) as usize % 5;
            let m = (x >> 12) as usize % 3;
            UsageEvent {
                id: format!("{id_prefix}{i}"),
                source: "bench".into(),
                project: format!("project-{p:04}"),
                resource_id: format!("bucket-{p:04}-{b}"),
                resource_type: "bucket".into(),
                meter: meters[m].into(),
                quantity: 1 + (x >> 40) as i64 % 10_000,
                timestamp: month.start() + (i as u64 * (span / n as u64)) as i64,
                data: None,
            }
        })
        .collect()
}

pub fn per_sec(n: usize, start: Instant) -> f64 {
    n as f64 / start.elapsed().as_secs_f64()
}

/// Median of timings, in milliseconds.
pub fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn p99_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 * 0.99).ceil() as usize)
        .saturating_sub(1)
        .min(v.len() - 1)]
}
