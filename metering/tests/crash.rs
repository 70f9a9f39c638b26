//! A process that dies with kill -9 semantics (abort) in the middle of a
//! run and of a transaction loses nothing and doubles nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use metering::meter::INSTANCE_VCPU;
use metering::{EndReason, RunPolicy, RunStart, RunState};

const DB_ENV: &str = "METERING_CRASH_CHILD_DB";

/// Child side: only does something when spawned by the parent test.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = metering::connect(&path, 2).await.unwrap();
        let t0 = t("2026-02-10T10:00:00Z");
        let mut tx = pool.begin().await.unwrap();
        let start = RunStart {
            project: "p1".into(),
            resource_id: "vm".into(),
            vcpus: 2,
            memory_mib: 256,
            started_at: t0,
            policy: RunPolicy::default(),
        };
        metering::open_run(&mut tx, &start).await.unwrap();
        tx.commit().await.unwrap();
        // A stop in flight when the process dies: never committed.
        let mut tx = pool.begin().await.unwrap();
        metering::close_run(&mut tx, "vm", t0 + 30_000, EndReason::Stopped)
            .await
            .unwrap();
        std::process::abort();
    });
}

#[tokio::test]
async fn killed_mid_run_then_reconciled_bills_the_real_seconds_once() {
    let db = db().await;
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(DB_ENV, db.path())
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die");
    let db = db.reopen().await;
    let mut c = db.pool.acquire().await.unwrap();
    let open = metering::open_runs(&mut c).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].state, RunState::Running);
    // The VMM says the VM stopped 95.5 s after it started.
    let t0 = t("2026-02-10T10:00:00Z");
    let r = metering::close_run(&mut c, "vm", t0 + 95_500, EndReason::Lost)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.running_ms, 95_500);
    assert!(
        metering::close_run(&mut c, "vm", t0 + 99_000, EndReason::Stopped)
            .await
            .unwrap()
            .is_none()
    );
    drop(c);
    let (from, to) = (t("2026-02-01"), t("2026-03-01"));
    // Per-second billing rounds 95.5 s up to 96 s, for 2 vCPUs.
    assert_eq!(
        billed(&db, "p1", INSTANCE_VCPU, from, to, to).await,
        2 * 96_000
    );
}
