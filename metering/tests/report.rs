//! Reports, cost series, charts and budgets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use metering::meter::{
    INSTANCE_MEMORY, INSTANCE_VCPU, OBJECT_REQUESTS_READ, OBJECT_REQUESTS_WRITE,
};
use metering::{EndReason, GroupBy, Money, RunPolicy, RunStart};

async fn fixture() -> common::Db {
    let db = db().await;
    let d1 = t("2026-02-10");
    metering::ingest(
        &db.pool,
        &[
            ev("a", "p1", "b1", OBJECT_REQUESTS_READ, 1000, d1 + 5),
            ev(
                "b",
                "p1",
                "b2",
                OBJECT_REQUESTS_READ,
                500,
                d1 + 86_400_000 + 7,
            ),
            ev("c", "p1", "b1", OBJECT_REQUESTS_WRITE, 10, d1 + 9),
            ev("other", "p2", "b9", OBJECT_REQUESTS_READ, 99_999, d1),
        ],
    )
    .await
    .unwrap();
    let mut c = db.pool.acquire().await.unwrap();
    let start = RunStart {
        project: "p1".into(),
        resource_id: "vm,1".into(),
        vcpus: 4,
        memory_mib: 2048,
        started_at: d1 + 86_400_000 - 60_000,
        policy: RunPolicy::default(),
    };
    metering::open_run(&mut c, &start).await.unwrap();
    metering::close_run(&mut c, "vm,1", d1 + 86_400_000 + 60_000, EndReason::Stopped)
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn usage_grouped_by_resource_meter_and_day() {
    let db = fixture().await;
    let b = book();
    let (from, to) = (t("2026-02-01"), t("2026-03-01"));
    let by_res = metering::usage_report(&db.pool, &b, "p1", from, to, GroupBy::Resource, to)
        .await
        .unwrap();
    let keys: Vec<_> = by_res
        .rows
        .iter()
        .map(|r| (r.resource_id.clone().unwrap(), r.meter.clone()))
        .collect();
    assert_eq!(
        keys,
        [
            ("b1".into(), OBJECT_REQUESTS_READ.to_string()),
            ("b1".into(), OBJECT_REQUESTS_WRITE.into()),
            ("b2".into(), OBJECT_REQUESTS_READ.into()),
            ("vm,1".into(), INSTANCE_MEMORY.into()),
            ("vm,1".into(), INSTANCE_VCPU.into()),
        ]
    );
    let by_meter = metering::usage_report(&db.pool, &b, "p1", from, to, GroupBy::Meter, to)
        .await
        .unwrap();
    let reads = by_meter
        .rows
        .iter()
        .find(|r| r.meter == OBJECT_REQUESTS_READ)
        .unwrap();
    assert_eq!(
        (reads.quantity.as_str(), reads.cost.micros()),
        ("1500", 1500)
    );
    assert_eq!(by_meter.total, by_res.total);
    let by_day = metering::usage_report(&db.pool, &b, "p1", from, to, GroupBy::Day, to)
        .await
        .unwrap();
    let vcpu_days: Vec<_> = by_day
        .rows
        .iter()
        .filter(|r| r.meter == INSTANCE_VCPU)
        .map(|r| (r.date.clone().unwrap(), r.quantity.clone()))
        .collect();
    assert_eq!(
        vcpu_days,
        [
            ("2026-02-10".to_string(), "240".to_string()),
            ("2026-02-11".into(), "240".into())
        ]
    );
    assert_eq!(by_day.total, by_res.total);
    // The invoice bills the same usage; per-line rounding is the only difference.
    let inv = metering::range_invoice(&db.pool, &b, "p1", from, to, to)
        .await
        .unwrap();
    assert!((inv.total.micros() - by_res.total.micros()).abs() <= inv.lines.len() as i64);

    let csv = by_res.to_csv();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("resource_id,resource_type,meter,quantity,unit,quantity_base,cost,currency")
    );
    assert!(
        csv.contains("\"vm,1\",instance,instance.vcpu,480,vCPU-second,480000,0.004800,USD"),
        "{csv}"
    );
    assert!(by_day.to_csv().starts_with("date,meter,"));
    let json = serde_json::to_value(&by_day).unwrap();
    assert_eq!(json["group_by"], "day");
    assert_eq!(json["rows"][0]["date"], "2026-02-10");
    assert!(
        json["rows"][0]["cost"].is_string(),
        "money is a string in JSON"
    );
    // Bad ranges are errors, not empty reports.
    assert!(
        metering::usage_report(&db.pool, &b, "p1", to, from, GroupBy::Day, to)
            .await
            .is_err()
    );
    assert!("week".parse::<GroupBy>().is_err());
}

#[tokio::test]
async fn daily_cost_series_and_pictures() {
    let db = fixture().await;
    let b = book();
    let (from, to) = (t("2026-02-08"), t("2026-02-13"));
    let s = metering::daily_costs(&db.pool, &b, "p1", from, to, to)
        .await
        .unwrap();
    assert_eq!(
        s.days,
        [
            "2026-02-08",
            "2026-02-09",
            "2026-02-10",
            "2026-02-11",
            "2026-02-12"
        ]
    );
    assert_eq!(s.totals.len(), 5);
    let total: i64 = s.total_micros().iter().sum();
    let report = metering::usage_report(&db.pool, &b, "p1", from, to, GroupBy::Day, to)
        .await
        .unwrap();
    assert_eq!(total, report.total.micros());
    let spark = metering::sparkline(&s.total_micros());
    assert_eq!(spark.chars().count(), 5);
    assert!(spark.starts_with("▁▁"));
    let svg = metering::svg_chart(&s);
    assert!(svg.contains("<svg") && svg.contains(INSTANCE_VCPU));
}

#[tokio::test]
async fn budgets_emit_one_event_per_threshold_crossed() {
    let db = db().await;
    let b = book();
    let d = t("2026-02-10");
    let mut c = db.pool.acquire().await.unwrap();
    metering::set_budget(
        &mut c,
        "p1",
        &["0.001".parse().unwrap(), "0.01".parse().unwrap()],
    )
    .await
    .unwrap();
    assert!(
        metering::set_budget(&mut c, "p1", &[Money::ZERO])
            .await
            .is_err()
    );
    assert_eq!(metering::budget(&mut c, "p1").await.unwrap().len(), 2);
    drop(c);
    assert!(
        metering::check_budgets(&db.pool, &b, d)
            .await
            .unwrap()
            .is_empty()
    );
    // 0.000001 per read: 2,000 reads = 0.002 crosses the first threshold.
    metering::ingest(
        &db.pool,
        &[ev("r1", "p1", "b", OBJECT_REQUESTS_READ, 2000, d)],
    )
    .await
    .unwrap();
    let ev1 = metering::check_budgets(&db.pool, &b, d + 1).await.unwrap();
    assert_eq!(ev1.len(), 1);
    assert_eq!(
        (
            ev1[0].threshold.to_string().as_str(),
            ev1[0].accrued.micros()
        ),
        ("0.001000", 2000)
    );
    assert!(
        metering::check_budgets(&db.pool, &b, d + 2)
            .await
            .unwrap()
            .is_empty(),
        "emitted once"
    );
    // A running instance accrues towards the budget without being stopped.
    let mut c = db.pool.acquire().await.unwrap();
    let start = RunStart {
        project: "p1".into(),
        resource_id: "vm".into(),
        vcpus: 1,
        memory_mib: 1024,
        started_at: d,
        policy: RunPolicy::default(),
    };
    metering::open_run(&mut c, &start).await.unwrap();
    drop(c);
    let ev2 = metering::check_budgets(&db.pool, &b, d + 1_000_000)
        .await
        .unwrap();
    assert_eq!(ev2.len(), 1);
    assert_eq!(ev2[0].threshold.micros(), 10_000);
    let mut c = db.pool.acquire().await.unwrap();
    let all = metering::budget_events(&mut c, Some("p1")).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        metering::budget_events(&mut c, Some("p2"))
            .await
            .unwrap()
            .is_empty()
    );
}
