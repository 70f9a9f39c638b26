//! Instance runs: per-second billing, minimum, pause, idempotent close,
//! reconciliation after a crash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use metering::meter::{
    INSTANCE_MEMORY, INSTANCE_PAUSED, INSTANCE_PAUSED_MEMORY, INSTANCE_VCPU, VOLUME_STORAGE,
};
use metering::{EndReason, GaugeStart, RunPolicy, RunStart, RunState};

fn start(id: &str, at: i64) -> RunStart {
    RunStart {
        project: "p1".into(),
        resource_id: id.into(),
        vcpus: 2,
        memory_mib: 512,
        started_at: at,
        policy: RunPolicy::default(),
    }
}

async fn run_for(db: &common::Db, id: &str, from: i64, ms: i64) {
    let mut tx = db.pool.begin().await.unwrap();
    assert!(metering::open_run(&mut tx, &start(id, from)).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let closed = metering::close_run(&mut tx, id, from + ms, EndReason::Stopped)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(closed.running_ms, ms);
}

#[tokio::test]
async fn a_75_second_run_bills_75_seconds_and_a_10_second_run_bills_60() {
    let db = db().await;
    let t0 = t("2026-02-10T10:00:00Z");
    run_for(&db, "vm-75", t0, 75_000).await;
    run_for(&db, "vm-10", t0 + 3_600_000, 10_000).await;
    let (from, to) = (t("2026-02-01"), t("2026-03-01"));
    let inv = metering::range_invoice(&db.pool, &book(), "p1", from, to, to)
        .await
        .unwrap();
    let q = |id: &str, meter: &str| -> i64 {
        inv.lines
            .iter()
            .filter(|l| l.resource_id == id && l.meter == meter)
            .map(|l| l.quantity_base)
            .sum()
    };
    // vCPU-ms: 2 vCPUs × 75 s, and 2 × 60 s (minimum).
    assert_eq!(q("vm-75", INSTANCE_VCPU), 2 * 75_000);
    assert_eq!(q("vm-10", INSTANCE_VCPU), 2 * 60_000);
    // MiB-ms: 512 MiB × the same seconds.
    assert_eq!(q("vm-75", INSTANCE_MEMORY), 512 * 75_000);
    assert_eq!(q("vm-10", INSTANCE_MEMORY), 512 * 60_000);
    let line = inv
        .lines
        .iter()
        .find(|l| l.resource_id == "vm-75" && l.meter == INSTANCE_VCPU)
        .unwrap();
    assert_eq!(line.quantity, "150");
    assert_eq!(line.unit, "vCPU-second");
    // 150 vCPU-s × 0.00001 = 0.0015
    assert_eq!(line.amount.micros(), 1500);
    assert_total_is_sum(&inv);
    // Per-second rounding: 74.2 s bills 75 s.
    run_for(&db, "vm-74", t0 + 7_200_000, 74_200).await;
    assert_eq!(
        billed(&db, "p1", INSTANCE_VCPU, from, to, to).await,
        2 * (75_000 + 60_000 + 75_000)
    );
}

#[tokio::test]
async fn closing_twice_and_replaying_opens_change_nothing() {
    let db = db().await;
    let t0 = t("2026-02-10T10:00:00Z");
    let mut conn = db.pool.acquire().await.unwrap();
    assert!(
        metering::open_run(&mut conn, &start("vm", t0))
            .await
            .unwrap()
    );
    assert!(
        !metering::open_run(&mut conn, &start("vm", t0))
            .await
            .unwrap(),
        "same open replayed"
    );
    assert!(
        metering::open_run(&mut conn, &start("vm", t0 + 5))
            .await
            .is_err(),
        "a second, different open run"
    );
    let first = metering::close_run(&mut conn, "vm", t0 + 90_000, EndReason::Stopped)
        .await
        .unwrap();
    assert_eq!(
        first.as_ref().map(|r| r.billed_running_ms),
        Some(Some(90_000))
    );
    assert!(
        metering::close_run(&mut conn, "vm", t0 + 95_000, EndReason::Deleted)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        metering::close_run(&mut conn, "never-opened", t0, EndReason::Deleted)
            .await
            .unwrap()
            .is_none()
    );
    // A new run may not start before the previous one ended.
    assert!(
        metering::open_run(&mut conn, &start("vm", t0 + 80_000))
            .await
            .is_err()
    );
    assert!(
        metering::open_run(&mut conn, &start("vm", t0 + 90_000))
            .await
            .unwrap()
    );
    metering::close_run(&mut conn, "vm", t0 + 150_000, EndReason::Stopped)
        .await
        .unwrap();
    drop(conn);
    let (from, to) = (t("2026-02-01"), t("2026-03-01"));
    assert_eq!(
        billed(&db, "p1", INSTANCE_VCPU, from, to, to).await,
        2 * (90_000 + 60_000)
    );
    let runs = {
        let mut c = db.pool.acquire().await.unwrap();
        metering::runs(&mut c, "vm").await.unwrap()
    };
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.state == RunState::Closed));
}

#[tokio::test]
async fn a_rolled_back_state_change_leaves_no_usage() {
    let db = db().await;
    let t0 = t("2026-02-10T10:00:00Z");
    let mut tx = db.pool.begin().await.unwrap();
    metering::open_run(&mut tx, &start("vm", t0)).await.unwrap();
    tx.rollback().await.unwrap();
    let mut c = db.pool.acquire().await.unwrap();
    assert!(metering::open_runs(&mut c).await.unwrap().is_empty());
    assert!(
        metering::close_run(&mut c, "vm", t0 + 1000, EndReason::Stopped)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn pause_is_billed_as_the_price_book_says() {
    let db = db().await;
    let t0 = t("2026-02-10T10:00:00Z");
    let mut c = db.pool.acquire().await.unwrap();
    metering::open_run(&mut c, &start("vm", t0)).await.unwrap();
    assert!(metering::pause(&mut c, "vm", t0 + 100_000).await.unwrap());
    assert!(
        !metering::pause(&mut c, "vm", t0 + 110_000).await.unwrap(),
        "already paused"
    );
    assert!(metering::resume(&mut c, "vm", t0 + 400_000).await.unwrap());
    assert!(!metering::resume(&mut c, "vm", t0 + 400_001).await.unwrap());
    let r = metering::close_run(&mut c, "vm", t0 + 450_000, EndReason::Stopped)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.running_ms, r.paused_ms), (150_000, 300_000));
    drop(c);
    let (from, to) = (t("2026-02-01"), t("2026-03-01"));
    let inv = metering::range_invoice(&db.pool, &book(), "p1", from, to, to)
        .await
        .unwrap();
    let line = |m: &str| inv.lines.iter().find(|l| l.meter == m).unwrap().clone();
    assert_eq!(line(INSTANCE_VCPU).quantity_base, 2 * 150_000);
    assert_eq!(line(INSTANCE_PAUSED).quantity_base, 300_000);
    assert_eq!(
        line(INSTANCE_PAUSED).amount.micros(),
        0,
        "paused instance-seconds are free in this book"
    );
    assert_eq!(line(INSTANCE_PAUSED_MEMORY).quantity_base, 512 * 300_000);
    // 0.5 GiB × 300 s × 0.0000005 = 0.000075
    assert_eq!(line(INSTANCE_PAUSED_MEMORY).amount.micros(), 75);
    assert_total_is_sum(&inv);
}

#[tokio::test]
async fn a_run_left_open_by_a_crash_bills_exactly_its_real_seconds() {
    let db = db().await;
    let t0 = t("2026-02-10T10:00:00Z");
    {
        let mut tx = db.pool.begin().await.unwrap();
        metering::open_run(&mut tx, &start("vm-dead", t0))
            .await
            .unwrap();
        metering::open_run(&mut tx, &start("vm-alive", t0))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // The daemon was killed mid-transaction: this pause never commits.
        let mut tx = db.pool.begin().await.unwrap();
        metering::pause(&mut tx, "vm-dead", t0 + 10_000)
            .await
            .unwrap();
        drop(tx);
    }
    // Restart: reconcile. vm-dead's VMM exited at t0 + 123.456 s; vm-alive runs on.
    let db = db.reopen().await;
    let mut c = db.pool.acquire().await.unwrap();
    let open = metering::open_runs(&mut c).await.unwrap();
    assert_eq!(open.len(), 2);
    assert!(
        open.iter()
            .all(|r| r.state == RunState::Running && r.billed_through == t0)
    );
    let real_end = t0 + 123_456;
    let r = metering::close_run(&mut c, "vm-dead", real_end, EndReason::Lost)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.running_ms, 123_456);
    assert_eq!(
        r.billed_running_ms,
        Some(124_000),
        "rounded up to the second"
    );
    assert!(
        metering::close_run(&mut c, "vm-dead", real_end + 5000, EndReason::Lost)
            .await
            .unwrap()
            .is_none()
    );
    drop(c);
    let (from, to) = (t("2026-02-01"), t("2026-03-01"));
    let inv = metering::range_invoice(&db.pool, &book(), "p1", from, to, t0 + 200_000)
        .await
        .unwrap();
    let q = |id: &str| -> i64 {
        inv.lines
            .iter()
            .filter(|l| l.resource_id == id && l.meter == INSTANCE_VCPU)
            .map(|l| l.quantity_base)
            .sum()
    };
    assert_eq!(q("vm-dead"), 2 * 124_000);
    // The live one accrues up to "now" in drafts, without writing anything.
    assert_eq!(q("vm-alive"), 2 * 200_000);
}

#[tokio::test]
async fn reconciliation_across_a_closed_month_credits_the_excess() {
    let db = db().await;
    let b = book();
    let t0 = t("2026-01-31T23:00:00Z");
    let mut c = db.pool.acquire().await.unwrap();
    metering::open_run(&mut c, &start("vm", t0)).await.unwrap();
    drop(c);
    // The daemon is down; January is closed on Feb 2 (the run is settled
    // through Feb 1 00:00), then February is closed too.
    let jan = "2026-01".parse().unwrap();
    let sum = metering::close_month(&db.pool, &b, jan, t("2026-02-02"))
        .await
        .unwrap();
    assert_eq!(sum.runs_settled, 1);
    let jan_inv = metering::month_invoice(&db.pool, &b, "p1", jan, t("2026-02-02"))
        .await
        .unwrap();
    let vcpu_jan: i64 = jan_inv
        .lines
        .iter()
        .filter(|l| l.meter == INSTANCE_VCPU)
        .map(|l| l.quantity_base)
        .sum();
    assert_eq!(vcpu_jan, 2 * 3_600_000);
    // On restart the daemon learns the VM actually died at 23:30 on Jan 31.
    let mut c = db.pool.acquire().await.unwrap();
    let real_end = t("2026-01-31T23:30:00Z");
    let r = metering::close_run(&mut c, "vm", real_end, EndReason::Lost)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.running_ms, 1_800_000);
    drop(c);
    // January's invoice is unchanged; February's draft carries the credit.
    let again = metering::month_invoice(&db.pool, &b, "p1", jan, t("2026-02-03"))
        .await
        .unwrap();
    assert_eq!(again, jan_inv);
    let feb = metering::month_invoice(&db.pool, &b, "p1", jan.next(), t("2026-02-03"))
        .await
        .unwrap();
    let adj: Vec<_> = feb
        .lines
        .iter()
        .filter(|l| l.kind == metering::LineKind::Adjustment)
        .collect();
    let credit: i64 = adj
        .iter()
        .filter(|l| l.meter == INSTANCE_VCPU)
        .map(|l| l.quantity_base)
        .sum();
    assert_eq!(credit, -2 * 1_800_000);
    assert!(feb.total.micros() < 0);
    assert_total_is_sum(&feb);
    // Net over both months: exactly the real 30 minutes.
    assert_eq!(vcpu_jan + credit, 2 * 1_800_000);
}

#[tokio::test]
async fn gauges_bill_provisioned_capacity_to_the_millisecond() {
    let db = db().await;
    let t0 = t("2026-02-27T12:00:00Z");
    let mut c = db.pool.acquire().await.unwrap();
    let g = GaugeStart {
        project: "p1".into(),
        resource_id: "vol-1".into(),
        meter: VOLUME_STORAGE.into(),
        amount: 10 * 1024,
        started_at: t0,
    };
    assert!(metering::open_gauge(&mut c, &g).await.unwrap());
    // Across two midnights and a month boundary.
    let end = t("2026-03-01T06:00:00.5Z");
    metering::close_run(&mut c, "vol-1", end, EndReason::Deleted)
        .await
        .unwrap();
    drop(c);
    let feb = billed(
        &db,
        "p1",
        VOLUME_STORAGE,
        t("2026-02-01"),
        t("2026-03-01"),
        end,
    )
    .await;
    let mar = billed(
        &db,
        "p1",
        VOLUME_STORAGE,
        t("2026-03-01"),
        t("2026-04-01"),
        end,
    )
    .await;
    assert_eq!(feb, 10 * 1024 * (t("2026-03-01") - t0));
    assert_eq!(mar, 10 * 1024 * (end - t("2026-03-01")));
    let bad = GaugeStart {
        meter: "object.requests.read".into(),
        ..g
    };
    let mut c = db.pool.acquire().await.unwrap();
    assert!(metering::open_gauge(&mut c, &bad).await.is_err());
}
