//! Invoices: per project per calendar month (closed and stored, then
//! immutable) or for any range (always a draft).
//!
//! A line item is one resource's meter over one window in which its price
//! is constant: the invoice's month, cut at any price change inside it. Its
//! amount is `quantity × unit price` rounded once (see [`crate::money`]);
//! the total is the exact sum of the line amounts.
//!
//! **Closing a month** ([`close_month`]) settles open runs through the
//! month's end, records the highest usage `seq` it billed, and stores one
//! invoice per project with usage. Months close in calendar order. Usage
//! written later for a closed month (late events, reconciliation credits)
//! is marked late and billed as `adjustment` lines, priced at the time the
//! usage happened, on the next month's invoice.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::calendar::{Month, UnixMillis, format_rfc3339};
use crate::error::{MeteringError, Result};
use crate::interval;
use crate::meter;
use crate::money::{Money, UnitPrice, format_quantity};
use crate::pricebook::PriceBook;
use crate::report::csv_field;
use crate::store;
use crate::usage::{self, Pieces, Scope};

/// Usage of the invoice's period, or a late correction of an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Usage within the invoice's period.
    Usage,
    /// Usage of an already invoiced month, recorded after it closed.
    Adjustment,
}

impl LineKind {
    fn as_str(self) -> &'static str {
        match self {
            LineKind::Usage => "usage",
            LineKind::Adjustment => "adjustment",
        }
    }
}

/// Draft (still changing) or closed (stored, immutable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    /// Computed now from the usage so far.
    Draft,
    /// Stored when its month closed; never changes.
    Closed,
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineItem {
    /// Usage or adjustment.
    pub kind: LineKind,
    /// The resource.
    pub resource_id: String,
    /// Its type.
    pub resource_type: String,
    /// The meter.
    pub meter: String,
    /// The priced unit (`vCPU-second`...).
    pub unit: String,
    /// Start of the window the usage happened in.
    pub from: UnixMillis,
    /// End (exclusive) of that window.
    pub to: UnixMillis,
    /// Quantity in `unit`, as a decimal string (display; see
    /// [`crate::money::format_quantity`]).
    pub quantity: String,
    /// Exact quantity in the meter's base unit.
    pub quantity_base: i64,
    /// Price per `unit` in the window.
    pub unit_price: UnitPrice,
    /// `quantity × unit_price`, rounded once to micro-units.
    pub amount: Money,
}

/// An invoice of one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invoice {
    /// Stored id, for closed invoices.
    pub id: Option<i64>,
    /// The project billed.
    pub project: String,
    /// The calendar month, for monthly invoices.
    pub month: Option<Month>,
    /// Period start.
    pub from: UnixMillis,
    /// Period end (exclusive).
    pub to: UnixMillis,
    /// Draft or closed.
    pub status: InvoiceStatus,
    /// Currency of every amount.
    pub currency: String,
    /// When it was closed.
    pub closed_at: Option<UnixMillis>,
    /// Lines, usage first, each by resource, meter and window.
    pub lines: Vec<LineItem>,
    /// Exact sum of the line amounts.
    pub total: Money,
}

/// A stored invoice without its lines, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvoiceSummary {
    /// Stored id.
    pub id: i64,
    /// Project.
    pub project: String,
    /// Month.
    pub month: Month,
    /// Period start.
    pub from: UnixMillis,
    /// Period end (exclusive).
    pub to: UnixMillis,
    /// Currency.
    pub currency: String,
    /// Total.
    pub total: Money,
    /// When it was closed.
    pub closed_at: UnixMillis,
}

/// What [`close_month`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseSummary {
    /// The month closed.
    pub month: Month,
    /// Stored invoice ids, one per project with usage or adjustments.
    pub invoices: Vec<i64>,
    /// Open runs settled through the month's end.
    pub runs_settled: usize,
    /// Highest usage seq billed.
    pub seq_through: i64,
}

impl Invoice {
    /// CSV with a header; amounts as decimal strings, times RFC 3339.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "invoice,project,kind,resource_id,resource_type,meter,from,to,quantity,unit,unit_price,amount,currency\n",
        );
        let id = self
            .id
            .map(|i| i.to_string())
            .unwrap_or_else(|| "draft".into());
        for l in &self.lines {
            let _ = writeln!(
                s,
                "{id},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&self.project),
                l.kind.as_str(),
                csv_field(&l.resource_id),
                csv_field(&l.resource_type),
                l.meter,
                format_rfc3339(l.from),
                format_rfc3339(l.to),
                l.quantity,
                l.unit,
                l.unit_price,
                l.amount,
                self.currency
            );
        }
        let _ = writeln!(
            s,
            "{id},{},total,,,,,,,,,{},{}",
            csv_field(&self.project),
            self.total,
            self.currency
        );
        s
    }
}

/// Prices pieces into lines, per project.
fn price(
    book: &PriceBook,
    kind: LineKind,
    pieces: Pieces,
    out: &mut BTreeMap<String, Vec<LineItem>>,
) -> Result<()> {
    for ((series, from, to), q) in pieces {
        if q == 0 {
            continue;
        }
        let m = meter::lookup(&series.meter).map_err(|e| MeteringError::Corrupt(e.to_string()))?;
        let unit_price = book.price_at(&series.meter, from);
        let quantity_base =
            i64::try_from(q).map_err(|_| MeteringError::Overflow("line quantity"))?;
        out.entry(series.project).or_default().push(LineItem {
            kind,
            resource_id: series.resource_id,
            resource_type: series.resource_type,
            meter: series.meter,
            unit: m.unit.to_owned(),
            from,
            to,
            quantity: format_quantity(q, m.base_per_unit),
            quantity_base,
            unit_price,
            amount: unit_price.amount(q, m.base_per_unit)?,
        });
    }
    Ok(())
}

fn total(lines: &[LineItem]) -> Result<Money> {
    lines
        .iter()
        .try_fold(Money::ZERO, |t, l| t.checked_add(l.amount))
}

fn check_range(from: UnixMillis, to: UnixMillis) -> Result<()> {
    if from >= to {
        return Err(MeteringError::InvalidTime(format!(
            "empty range {} .. {}",
            format_rfc3339(from),
            format_rfc3339(to)
        )));
    }
    Ok(())
}

/// A draft invoice of `project` for `[from, to)`: all usage known now,
/// including running instances up to `now`; no adjustments.
pub async fn range_invoice(
    pool: &SqlitePool,
    book: &PriceBook,
    project: &str,
    from: UnixMillis,
    to: UnixMillis,
    now: UnixMillis,
) -> Result<Invoice> {
    check_range(from, to)?;
    let mut conn = pool.acquire().await?;
    let scope = Scope {
        project: Some(project),
        from,
        to,
        seq_max: i64::MAX,
        by_day: false,
        accrue_until: Some(now),
    };
    let pieces = usage::pieces(&mut conn, book, &scope).await?;
    let mut by_project = BTreeMap::new();
    price(book, LineKind::Usage, pieces, &mut by_project)?;
    let lines = by_project.remove(project).unwrap_or_default();
    Ok(Invoice {
        id: None,
        project: project.to_owned(),
        month: None,
        from,
        to,
        status: InvoiceStatus::Draft,
        currency: book.currency().to_owned(),
        closed_at: None,
        total: total(&lines)?,
        lines,
    })
}

/// The invoice of `project` for `month`: the stored one once the month is
/// closed, otherwise a draft (usage so far, running instances up to `now`,
/// and — for the month right after the last closed one — the adjustments
/// it will carry).
pub async fn month_invoice(
    pool: &SqlitePool,
    book: &PriceBook,
    project: &str,
    month: Month,
    now: UnixMillis,
) -> Result<Invoice> {
    let mut conn = pool.acquire().await?;
    let stored: Option<i64> = sqlx::query_scalar(
        "SELECT invoice_id FROM metering_invoices WHERE project = ?1 AND month = ?2",
    )
    .bind(project)
    .bind(month.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = stored {
        return load(&mut conn, id).await;
    }
    let st = store::state(&mut conn).await?;
    let closed = st.closed_through.is_some_and(|c| c >= month.end());
    let mut by_project = BTreeMap::new();
    if !closed {
        let scope = Scope {
            project: Some(project),
            from: month.start(),
            to: month.end(),
            seq_max: i64::MAX,
            by_day: false,
            accrue_until: Some(now),
        };
        price(
            book,
            LineKind::Usage,
            usage::pieces(&mut conn, book, &scope).await?,
            &mut by_project,
        )?;
        if st.closed_through == Some(month.start()) {
            let late =
                usage::late_pieces(&mut conn, book, Some(project), st.close_seq, i64::MAX).await?;
            price(book, LineKind::Adjustment, late, &mut by_project)?;
        }
    }
    let lines = by_project.remove(project).unwrap_or_default();
    Ok(Invoice {
        id: None,
        project: project.to_owned(),
        month: Some(month),
        from: month.start(),
        to: month.end(),
        // A closed month without a stored invoice had no usage.
        status: if closed {
            InvoiceStatus::Closed
        } else {
            InvoiceStatus::Draft
        },
        currency: book.currency().to_owned(),
        closed_at: None,
        total: total(&lines)?,
        lines,
    })
}

fn close_err(month: Month, reason: String) -> MeteringError {
    MeteringError::Close {
        month: month.to_string(),
        reason,
    }
}

/// Closes `month` for every project: settles open runs through its end and
/// stores the invoices (immutable from then on). `now` must be at or after
/// the month's end; months close in order, the first one being the month
/// of the earliest usage.
pub async fn close_month(
    pool: &SqlitePool,
    book: &PriceBook,
    month: Month,
    now: UnixMillis,
) -> Result<CloseSummary> {
    if now < month.end() {
        return Err(close_err(
            month,
            format!("it is not over until {}", format_rfc3339(month.end())),
        ));
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let st = store::state(&mut tx).await?;
    match st.closed_through {
        Some(c) if c == month.start() => {}
        Some(c) if c >= month.end() => return Err(close_err(month, "already closed".into())),
        Some(c) => {
            return Err(close_err(
                month,
                format!("the next month to close is {}", Month::containing(c)),
            ));
        }
        None => {
            let open_from: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(billed_through) FROM metering_runs WHERE ended_at IS NULL",
            )
            .fetch_one(&mut *tx)
            .await?;
            let earliest = [st.first_ts, open_from].into_iter().flatten().min();
            if let Some(e) = earliest.filter(|e| *e < month.start()) {
                return Err(close_err(
                    month,
                    format!(
                        "usage exists from {}: close that month first",
                        Month::containing(e)
                    ),
                ));
            }
        }
    }
    let runs_settled = interval::settle_open_runs(&mut tx, month.end()).await?;
    let seq_through = store::max_seq(&mut tx).await?;
    let scope = Scope {
        project: None,
        from: month.start(),
        to: month.end(),
        seq_max: seq_through,
        by_day: false,
        accrue_until: None,
    };
    let mut by_project = BTreeMap::new();
    price(
        book,
        LineKind::Usage,
        usage::pieces(&mut tx, book, &scope).await?,
        &mut by_project,
    )?;
    let late = usage::late_pieces(&mut tx, book, None, st.close_seq, seq_through).await?;
    price(book, LineKind::Adjustment, late, &mut by_project)?;

    let mut invoices = Vec::with_capacity(by_project.len());
    for (project, mut lines) in by_project {
        lines.sort_by(|a, b| {
            (a.kind, &a.resource_id, &a.meter, a.from).cmp(&(
                b.kind,
                &b.resource_id,
                &b.meter,
                b.from,
            ))
        });
        let id = store_invoice(&mut tx, book, &project, month, now, &lines).await?;
        invoices.push(id);
    }
    sqlx::query("UPDATE metering_state SET closed_through = ?1, close_seq = ?2 WHERE id = 1")
        .bind(month.end())
        .bind(seq_through)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO metering_periods (month, period_start, period_end, closed_at, seq_through) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(month.to_string())
    .bind(month.start())
    .bind(month.end())
    .bind(now)
    .bind(seq_through)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(CloseSummary {
        month,
        invoices,
        runs_settled,
        seq_through,
    })
}

const LINE_CHUNK: usize = 64;

async fn store_invoice(
    conn: &mut SqliteConnection,
    book: &PriceBook,
    project: &str,
    month: Month,
    now: UnixMillis,
    lines: &[LineItem],
) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO metering_invoices (project, month, period_start, period_end, currency, total_micros, closed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING invoice_id",
    )
    .bind(project)
    .bind(month.to_string())
    .bind(month.start())
    .bind(month.end())
    .bind(book.currency())
    .bind(total(lines)?.micros())
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    for (c, chunk) in lines.chunks(LINE_CHUNK).enumerate() {
        let values = vec!["(?,?,?,?,?,?,?,?,?,?,?)"; chunk.len()].join(",");
        let sql = format!(
            "INSERT INTO metering_invoice_lines (invoice_id, line_no, kind, resource_id, resource_type, meter, \
             seg_from, seg_to, quantity_base, unit_price, amount_micros) VALUES {values}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (i, l) in chunk.iter().enumerate() {
            q = q
                .bind(id)
                .bind((c * LINE_CHUNK + i) as i64)
                .bind(l.kind.as_str())
                .bind(&l.resource_id)
                .bind(&l.resource_type)
                .bind(&l.meter)
                .bind(l.from)
                .bind(l.to)
                .bind(l.quantity_base)
                .bind(l.unit_price.to_string())
                .bind(l.amount.micros());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(id)
}

async fn load(conn: &mut SqliteConnection, id: i64) -> Result<Invoice> {
    let Some(head) = sqlx::query(
        "SELECT project, month, period_start, period_end, currency, total_micros, closed_at \
         FROM metering_invoices WHERE invoice_id = ?1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Err(MeteringError::InvoiceNotFound(id));
    };
    let rows = sqlx::query(
        "SELECT kind, resource_id, resource_type, meter, seg_from, seg_to, quantity_base, unit_price, amount_micros \
         FROM metering_invoice_lines WHERE invoice_id = ?1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut lines = Vec::with_capacity(rows.len());
    for r in rows {
        let kind = match r.try_get::<&str, _>(0)? {
            "usage" => LineKind::Usage,
            "adjustment" => LineKind::Adjustment,
            other => return Err(MeteringError::Corrupt(format!("line kind {other:?}"))),
        };
        let meter_key: String = r.try_get(3)?;
        let m = meter::lookup(&meter_key).map_err(|e| MeteringError::Corrupt(e.to_string()))?;
        let quantity_base: i64 = r.try_get(6)?;
        lines.push(LineItem {
            kind,
            resource_id: r.try_get(1)?,
            resource_type: r.try_get(2)?,
            meter: meter_key,
            unit: m.unit.to_owned(),
            from: r.try_get(4)?,
            to: r.try_get(5)?,
            quantity: format_quantity(i128::from(quantity_base), m.base_per_unit),
            quantity_base,
            unit_price: r
                .try_get::<&str, _>(7)?
                .parse()
                .map_err(|e| MeteringError::Corrupt(format!("{e}")))?,
            amount: Money::from_micros(r.try_get(8)?),
        });
    }
    let month: Month = head.try_get::<&str, _>(1)?.parse()?;
    Ok(Invoice {
        id: Some(id),
        project: head.try_get(0)?,
        month: Some(month),
        from: head.try_get(2)?,
        to: head.try_get(3)?,
        status: InvoiceStatus::Closed,
        currency: head.try_get(4)?,
        closed_at: Some(head.try_get(6)?),
        total: Money::from_micros(head.try_get(5)?),
        lines,
    })
}

/// A stored (closed) invoice by id.
pub async fn invoice(pool: &SqlitePool, id: i64) -> Result<Invoice> {
    let mut conn = pool.acquire().await?;
    load(&mut conn, id).await
}

/// Stored invoices, newest month first, of one project or all.
pub async fn list_invoices(
    pool: &SqlitePool,
    project: Option<&str>,
) -> Result<Vec<InvoiceSummary>> {
    let rows = sqlx::query(
        "SELECT invoice_id, project, month, period_start, period_end, currency, total_micros, closed_at \
         FROM metering_invoices WHERE (?1 IS NULL OR project = ?1) ORDER BY month DESC, project",
    )
    .bind(project)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(InvoiceSummary {
                id: r.try_get(0)?,
                project: r.try_get(1)?,
                month: r.try_get::<&str, _>(2)?.parse()?,
                from: r.try_get(3)?,
                to: r.try_get(4)?,
                currency: r.try_get(5)?,
                total: Money::from_micros(r.try_get(6)?),
                closed_at: r.try_get(7)?,
            })
        })
        .collect()
}

/// Closed months, oldest first.
pub async fn closed_months(pool: &SqlitePool) -> Result<Vec<Month>> {
    let rows: Vec<String> = sqlx::query_scalar("SELECT month FROM metering_periods ORDER BY month")
        .fetch_all(pool)
        .await?;
    rows.iter().map(|m| m.parse()).collect()
}
