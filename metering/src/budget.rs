//! Budgets: monthly cost thresholds per project, and the events emitted
//! when a project's accrued cost for the month crosses one.
//!
//! [`check_budgets`] computes each budgeted project's month-to-date draft
//! (usage, adjustments, running instances up to `now`) and stores one
//! [`BudgetEvent`] per threshold crossed, at most once per project, month
//! and threshold. The daemon calls it periodically; the API and CLI read
//! [`budget_events`].

use serde::Serialize;
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::calendar::{Month, UnixMillis};
use crate::error::{MeteringError, Result};
use crate::invoice::month_invoice;
use crate::money::Money;
use crate::pricebook::PriceBook;

/// A threshold crossing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetEvent {
    /// Event id.
    pub id: i64,
    /// Project.
    pub project: String,
    /// Month whose accrued cost crossed it.
    pub month: Month,
    /// The threshold.
    pub threshold: Money,
    /// Accrued cost when it was noticed.
    pub accrued: Money,
    /// Currency.
    pub currency: String,
    /// When it was noticed.
    pub crossed_at: UnixMillis,
}

/// Replaces the monthly thresholds of `project` (an empty list removes its
/// budget). Thresholds must be positive.
pub async fn set_budget(
    conn: &mut SqliteConnection,
    project: &str,
    thresholds: &[Money],
) -> Result<()> {
    if let Some(t) = thresholds.iter().find(|t| t.micros() <= 0) {
        return Err(MeteringError::Invalid {
            name: "threshold",
            reason: format!("{t} is not positive"),
        });
    }
    sqlx::query("DELETE FROM metering_budgets WHERE project = ?1")
        .bind(project)
        .execute(&mut *conn)
        .await?;
    for t in thresholds {
        sqlx::query(
            "INSERT OR IGNORE INTO metering_budgets (project, threshold_micros) VALUES (?1, ?2)",
        )
        .bind(project)
        .bind(t.micros())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The thresholds of `project`, ascending.
pub async fn budget(conn: &mut SqliteConnection, project: &str) -> Result<Vec<Money>> {
    let v: Vec<i64> =
        sqlx::query_scalar("SELECT threshold_micros FROM metering_budgets WHERE project = ?1 ORDER BY threshold_micros")
            .bind(project)
            .fetch_all(&mut *conn)
            .await?;
    Ok(v.into_iter().map(Money::from_micros).collect())
}

/// Emits the crossings of the month containing `now`; returns the new
/// events (none when nothing new was crossed).
pub async fn check_budgets(
    pool: &SqlitePool,
    book: &PriceBook,
    now: UnixMillis,
) -> Result<Vec<BudgetEvent>> {
    let month = Month::containing(now);
    let projects: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT project FROM metering_budgets ORDER BY project")
            .fetch_all(pool)
            .await?;
    let mut new = Vec::new();
    for project in projects {
        let accrued = month_invoice(pool, book, &project, month, now).await?.total;
        let mut conn = pool.acquire().await?;
        let rows = sqlx::query(
            "INSERT INTO metering_budget_events (project, month, threshold_micros, accrued_micros, currency, crossed_at) \
             SELECT project, ?2, threshold_micros, ?3, ?4, ?5 FROM metering_budgets \
             WHERE project = ?1 AND threshold_micros <= ?3 \
             ON CONFLICT (project, month, threshold_micros) DO NOTHING \
             RETURNING event_id, threshold_micros",
        )
        .bind(&project)
        .bind(month.to_string())
        .bind(accrued.micros())
        .bind(book.currency())
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            new.push(BudgetEvent {
                id: r.try_get(0)?,
                project: project.clone(),
                month,
                threshold: Money::from_micros(r.try_get(1)?),
                accrued,
                currency: book.currency().to_owned(),
                crossed_at: now,
            });
        }
    }
    new.sort_by_key(|e| e.id);
    Ok(new)
}

/// Emitted crossings, newest first, of one project or all.
pub async fn budget_events(
    conn: &mut SqliteConnection,
    project: Option<&str>,
) -> Result<Vec<BudgetEvent>> {
    let rows = sqlx::query(
        "SELECT event_id, project, month, threshold_micros, accrued_micros, currency, crossed_at \
         FROM metering_budget_events WHERE (?1 IS NULL OR project = ?1) ORDER BY event_id DESC",
    )
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(BudgetEvent {
                id: r.try_get(0)?,
                project: r.try_get(1)?,
                month: r.try_get::<&str, _>(2)?.parse()?,
                threshold: Money::from_micros(r.try_get(3)?),
                accrued: Money::from_micros(r.try_get(4)?),
                currency: r.try_get(5)?,
                crossed_at: r.try_get(6)?,
            })
        })
        .collect()
}
