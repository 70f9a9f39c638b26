//! Shared helpers for the integration tests: a real SQLite file per test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use metering::calendar::parse_time;
use metering::{PriceBook, UnixMillis, UsageEvent};
use sqlx::SqlitePool;

pub struct Db {
    pub pool: SqlitePool,
    pub dir: tempfile::TempDir,
}

impl Db {
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("minicloud.db")
    }

    pub async fn reopen(self) -> Db {
        self.pool.close().await;
        let pool = metering::connect(self.path(), 4).await.unwrap();
        metering::migrate(&pool).await.unwrap();
        Db {
            pool,
            dir: self.dir,
        }
    }
}

pub async fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let pool = metering::connect(dir.path().join("minicloud.db"), 4)
        .await
        .unwrap();
    metering::migrate(&pool).await.unwrap();
    Db { pool, dir }
}

pub fn t(s: &str) -> UnixMillis {
    parse_time(s).unwrap()
}

/// vCPU 0.00001 / vCPU-s, memory 0.000001 / GiB-s, paused memory half
/// price, requests 0.000001 each, from 2026-01-01; vCPU doubles on
/// 2026-03-15T12:00:00Z.
pub const BOOK: &str = r#"
currency = "USD"
[[period]]
effective = 2026-01-01
[period.prices]
"instance.vcpu" = "0.00001"
"instance.memory" = "0.000001"
"instance.paused" = "0"
"instance.paused_memory" = "0.0000005"
"object.requests.read" = "0.000001"
"object.requests.write" = "0.000005"
"object.bytes_out" = "0.09"
"volume.storage" = "0.0000001"

[[period]]
effective = 2026-03-15T12:00:00Z
[period.prices]
"instance.vcpu" = "0.00002"
"#;

pub fn book() -> PriceBook {
    PriceBook::from_toml_str(BOOK).unwrap()
}

pub fn ev(
    id: &str,
    project: &str,
    bucket: &str,
    meter: &str,
    quantity: i64,
    at: UnixMillis,
) -> UsageEvent {
    UsageEvent {
        id: id.into(),
        source: "storage@test".into(),
        project: project.into(),
        resource_id: bucket.into(),
        resource_type: "bucket".into(),
        meter: meter.into(),
        quantity,
        timestamp: at,
        data: None,
    }
}

/// Sum of `quantity_base` of a meter over a project's range invoice.
pub async fn billed(
    db: &Db,
    project: &str,
    meter: &str,
    from: UnixMillis,
    to: UnixMillis,
    now: UnixMillis,
) -> i64 {
    let inv = metering::range_invoice(&db.pool, &book(), project, from, to, now)
        .await
        .unwrap();
    inv.lines
        .iter()
        .filter(|l| l.meter == meter)
        .map(|l| l.quantity_base)
        .sum()
}

pub fn assert_total_is_sum(inv: &metering::Invoice) {
    let sum: i64 = inv.lines.iter().map(|l| l.amount.micros()).sum();
    assert_eq!(inv.total.micros(), sum, "{inv:#?}");
}
