//! Invoices: totals, price changes, closing, immutability, late events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use metering::meter::{INSTANCE_VCPU, OBJECT_REQUESTS_READ, OBJECT_REQUESTS_WRITE};
use metering::{EndReason, InvoiceStatus, LineKind, Month, RunPolicy, RunStart};
use proptest::prelude::*;

#[tokio::test]
async fn a_mid_month_price_change_splits_the_line_at_the_effective_time() {
    let db = db().await;
    let change = t("2026-03-15T12:00:00Z");
    let mut c = db.pool.acquire().await.unwrap();
    let start = RunStart {
        project: "p1".into(),
        resource_id: "vm".into(),
        vcpus: 1,
        memory_mib: 1024,
        started_at: change - 3_600_000,
        policy: RunPolicy::default(),
    };
    metering::open_run(&mut c, &start).await.unwrap();
    metering::close_run(&mut c, "vm", change + 1_800_000, EndReason::Stopped)
        .await
        .unwrap();
    drop(c);
    let march: Month = "2026-03".parse().unwrap();
    let inv = metering::month_invoice(&db.pool, &book(), "p1", march, t("2026-03-20"))
        .await
        .unwrap();
    let vcpu: Vec<_> = inv
        .lines
        .iter()
        .filter(|l| l.meter == INSTANCE_VCPU)
        .collect();
    assert_eq!(vcpu.len(), 2, "{inv:#?}");
    assert_eq!((vcpu[0].from, vcpu[0].to), (march.start(), change));
    assert_eq!((vcpu[1].from, vcpu[1].to), (change, march.end()));
    assert_eq!(
        (
            vcpu[0].quantity.as_str(),
            vcpu[0].unit_price.to_string().as_str()
        ),
        ("3600", "0.00001")
    );
    assert_eq!(
        (
            vcpu[1].quantity.as_str(),
            vcpu[1].unit_price.to_string().as_str()
        ),
        ("1800", "0.00002")
    );
    assert_eq!(vcpu[0].amount.micros(), 36_000);
    assert_eq!(vcpu[1].amount.micros(), 36_000);
    // Memory's price did not change, but the window still splits there.
    assert_eq!(inv.lines.len(), 4);
    assert_total_is_sum(&inv);
    assert_eq!(inv.status, InvoiceStatus::Draft);
    let csv = inv.to_csv();
    assert!(csv.starts_with("invoice,project,kind,"));
    assert_eq!(csv.lines().count(), 1 + 4 + 1);
}

#[tokio::test]
async fn closing_a_month_stores_an_immutable_invoice_and_late_events_adjust_the_next() {
    let db = db().await;
    let b = book();
    let feb: Month = "2026-02".parse().unwrap();
    let events: Vec<_> = (0..50)
        .map(|i| {
            ev(
                &format!("f{i}"),
                if i % 2 == 0 { "p1" } else { "p2" },
                "b",
                OBJECT_REQUESTS_READ,
                100,
                feb.start() + i * 3_600_000,
            )
        })
        .collect();
    metering::ingest(&db.pool, &events).await.unwrap();
    // Not over yet; and a month after February cannot close first.
    assert!(
        metering::close_month(&db.pool, &b, feb, feb.end() - 1)
            .await
            .is_err()
    );
    assert!(
        metering::close_month(&db.pool, &b, feb.next(), feb.next().end())
            .await
            .is_err()
    );
    let draft = metering::month_invoice(&db.pool, &b, "p1", feb, feb.end())
        .await
        .unwrap();
    let sum = metering::close_month(&db.pool, &b, feb, feb.end() + 1000)
        .await
        .unwrap();
    assert_eq!(sum.invoices.len(), 2);
    assert!(
        metering::close_month(&db.pool, &b, feb, feb.end() + 2000)
            .await
            .is_err(),
        "already closed"
    );
    let closed = metering::month_invoice(&db.pool, &b, "p1", feb, feb.end() + 5000)
        .await
        .unwrap();
    assert_eq!(closed.status, InvoiceStatus::Closed);
    assert_eq!(closed.lines, draft.lines);
    assert_eq!(closed.total.micros(), 25 * 100);
    assert_total_is_sum(&closed);
    let id = closed.id.unwrap();
    assert_eq!(metering::invoice(&db.pool, id).await.unwrap(), closed);
    assert!(matches!(
        metering::invoice(&db.pool, 999_999).await,
        Err(metering::MeteringError::InvoiceNotFound(_))
    ));
    // The database itself refuses to change a closed invoice.
    assert!(
        sqlx::query("UPDATE metering_invoices SET total_micros = 0")
            .execute(&db.pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM metering_invoice_lines")
            .execute(&db.pool)
            .await
            .is_err()
    );

    // Late events for February, and March usage.
    let late = vec![
        ev(
            "late-1",
            "p1",
            "b",
            OBJECT_REQUESTS_READ,
            7,
            feb.start() + 10,
        ),
        ev("late-2", "p1", "b", OBJECT_REQUESTS_WRITE, 3, feb.end() - 1),
        ev("m-1", "p1", "b", OBJECT_REQUESTS_READ, 11, feb.end()),
    ];
    metering::ingest(&db.pool, &late).await.unwrap();
    // A replayed February event is a duplicate, not a late event.
    assert_eq!(
        metering::ingest(&db.pool, &events[..4])
            .await
            .unwrap()
            .inserted,
        0
    );
    let again = metering::month_invoice(&db.pool, &b, "p1", feb, feb.end() + 9000)
        .await
        .unwrap();
    assert_eq!(again, closed, "closed invoice unchanged");
    let mar = feb.next();
    let sum = metering::close_month(&db.pool, &b, mar, mar.end())
        .await
        .unwrap();
    assert_eq!(
        sum.invoices.len(),
        1,
        "only p1 had March usage or adjustments"
    );
    let m = metering::month_invoice(&db.pool, &b, "p1", mar, mar.end())
        .await
        .unwrap();
    let adj: Vec<_> = m
        .lines
        .iter()
        .filter(|l| l.kind == LineKind::Adjustment)
        .collect();
    assert_eq!(adj.len(), 2, "{m:#?}");
    assert!(
        adj.iter()
            .all(|l| l.from == feb.start() && l.to == feb.end())
    );
    let usage: Vec<_> = m
        .lines
        .iter()
        .filter(|l| l.kind == LineKind::Usage)
        .collect();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].quantity_base, 11);
    assert_eq!(m.total.micros(), 7 + 3 * 5 + 11);
    assert_total_is_sum(&m);
    // p2 has no March invoice: its March draft is closed and empty.
    let p2 = metering::month_invoice(&db.pool, &b, "p2", mar, mar.end())
        .await
        .unwrap();
    assert_eq!((p2.status, p2.lines.len()), (InvoiceStatus::Closed, 0));
    let listed = metering::list_invoices(&db.pool, Some("p1")).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|i| i.month.to_string())
            .collect::<Vec<_>>(),
        ["2026-03", "2026-02"]
    );
    assert_eq!(
        metering::closed_months(&db.pool).await.unwrap(),
        vec![feb, mar]
    );
}

#[tokio::test]
async fn the_first_close_must_be_the_month_of_the_earliest_usage() {
    let db = db().await;
    let b = book();
    metering::ingest(
        &db.pool,
        &[ev("a", "p1", "b", OBJECT_REQUESTS_READ, 1, t("2026-01-20"))],
    )
    .await
    .unwrap();
    let feb: Month = "2026-02".parse().unwrap();
    let err = metering::close_month(&db.pool, &b, feb, feb.end())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("2026-01"), "{err}");
    metering::close_month(&db.pool, &b, feb.prev(), feb.end())
        .await
        .unwrap();
    metering::close_month(&db.pool, &b, feb, feb.end())
        .await
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random usage: the total is the exact sum of lines, replay changes
    /// nothing, and a month's lines sum to the same quantity as its events.
    #[test]
    fn totals_are_the_exact_sum_of_lines(
        evs in prop::collection::vec((0u8..3, 0u8..4, 0u8..3, 0i64..1_000_000_000, 0i64..31 * 86_400_000), 1..120),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let db = db().await;
            let b = book();
            let march: Month = "2026-03".parse().unwrap();
            let meters = [OBJECT_REQUESTS_READ, OBJECT_REQUESTS_WRITE, metering::meter::OBJECT_BYTES_OUT];
            let batch: Vec<_> = evs.iter().enumerate().map(|(i, (p, r, m, q, at))| {
                ev(&format!("e{i}"), &format!("p{p}"), &format!("b{r}"), meters[*m as usize], *q, march.start() + at)
            }).collect();
            metering::ingest(&db.pool, &batch).await.unwrap();
            for p in 0..3 {
                let project = format!("p{p}");
                let inv = metering::month_invoice(&db.pool, &b, &project, march, march.end()).await.unwrap();
                assert_total_is_sum(&inv);
                let want: i64 = batch.iter().filter(|e| e.project == project).map(|e| e.quantity).sum();
                assert_eq!(inv.lines.iter().map(|l| l.quantity_base).sum::<i64>(), want);
                metering::ingest(&db.pool, &batch).await.unwrap();
                let again = metering::month_invoice(&db.pool, &b, &project, march, march.end()).await.unwrap();
                assert_eq!(inv, again);
            }
            metering::close_month(&db.pool, &b, march, march.end()).await.unwrap();
            for p in 0..3 {
                let inv = metering::month_invoice(&db.pool, &b, &format!("p{p}"), march, march.end()).await.unwrap();
                assert_total_is_sum(&inv);
            }
        });
    }
}
