//! Usage reports over `[from, to)`, grouped by resource, meter or day, as
//! JSON-ready structs and CSV, and daily cost series per meter for charts.
//!
//! Report costs are estimates of the same usage an invoice bills: each
//! report row's cost is its exact `Σ quantity × price` (across price
//! changes) rounded once to micro-units, so a report's total can differ
//! from an invoice's by the per-line rounding (at most half a micro-unit
//! per invoice line). Invoices are the authority.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::calendar::{DAY_MS, UnixMillis, day_floor, format_date, format_rfc3339};
use crate::error::{MeteringError, Result};
use crate::meter;
use crate::money::{Money, format_quantity, round_exact};
use crate::pricebook::PriceBook;
use crate::usage::{self, Scope};

/// How report rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One row per resource and meter.
    Resource,
    /// One row per meter, all resources together.
    Meter,
    /// One row per UTC day and meter.
    Day,
}

impl FromStr for GroupBy {
    type Err = MeteringError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "resource" => Ok(GroupBy::Resource),
            "meter" => Ok(GroupBy::Meter),
            "day" => Ok(GroupBy::Day),
            other => Err(MeteringError::Invalid {
                name: "group_by",
                reason: format!("{other:?}: expected resource, meter or day"),
            }),
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GroupBy::Resource => "resource",
            GroupBy::Meter => "meter",
            GroupBy::Day => "day",
        })
    }
}

/// One row of a usage report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportRow {
    /// The UTC day (`YYYY-MM-DD`), when grouped by day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// The resource, when grouped by resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Its type, when grouped by resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// The meter.
    pub meter: String,
    /// Its priced unit.
    pub unit: String,
    /// Quantity in `unit` (display).
    pub quantity: String,
    /// Exact quantity in base units.
    pub quantity_base: i64,
    /// Cost (rounded once per row).
    pub cost: Money,
}

/// Usage of one project over a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// Project.
    pub project: String,
    /// Range start.
    pub from: UnixMillis,
    /// Range end (exclusive).
    pub to: UnixMillis,
    /// Grouping.
    pub group_by: GroupBy,
    /// Currency of the costs.
    pub currency: String,
    /// Rows, sorted by their key.
    pub rows: Vec<ReportRow>,
    /// Sum of row costs.
    pub total: Money,
}

/// Quotes a CSV field when it needs it (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl UsageReport {
    /// CSV with a header; the columns depend on the grouping.
    pub fn to_csv(&self) -> String {
        let mut s = String::new();
        let head = match self.group_by {
            GroupBy::Resource => "resource_id,resource_type,",
            GroupBy::Meter => "",
            GroupBy::Day => "date,",
        };
        let _ = writeln!(s, "{head}meter,quantity,unit,quantity_base,cost,currency");
        for r in &self.rows {
            match self.group_by {
                GroupBy::Resource => {
                    let _ = write!(
                        s,
                        "{},{},",
                        csv_field(r.resource_id.as_deref().unwrap_or("")),
                        csv_field(r.resource_type.as_deref().unwrap_or(""))
                    );
                }
                GroupBy::Meter => {}
                GroupBy::Day => {
                    let _ = write!(s, "{},", r.date.as_deref().unwrap_or(""));
                }
            }
            let _ = writeln!(
                s,
                "{},{},{},{},{},{}",
                r.meter, r.quantity, r.unit, r.quantity_base, r.cost, self.currency
            );
        }
        s
    }
}

#[derive(Default)]
struct Acc {
    quantity: i128,
    exact: i128,
}

type Grouped = BTreeMap<(Option<UnixMillis>, Option<(String, String)>, String), Acc>;

async fn grouped(
    pool: &SqlitePool,
    book: &PriceBook,
    project: &str,
    from: UnixMillis,
    to: UnixMillis,
    group_by: GroupBy,
    now: UnixMillis,
) -> Result<Grouped> {
    if from >= to {
        return Err(MeteringError::InvalidTime(format!(
            "empty range {} .. {}",
            format_rfc3339(from),
            format_rfc3339(to)
        )));
    }
    let by_day = group_by == GroupBy::Day;
    let scope = Scope {
        project: Some(project),
        from,
        to,
        seq_max: i64::MAX,
        by_day,
        accrue_until: Some(now),
    };
    let mut conn = pool.acquire().await?;
    let pieces = usage::pieces(&mut conn, book, &scope).await?;
    let mut g = Grouped::new();
    for ((series, a, _b), q) in pieces {
        let price = book.price_at(&series.meter, a);
        let key = match group_by {
            GroupBy::Resource => (
                None,
                Some((series.resource_id, series.resource_type)),
                series.meter,
            ),
            GroupBy::Meter => (None, None, series.meter),
            GroupBy::Day => (Some(day_floor(a)), None, series.meter),
        };
        let acc = g.entry(key).or_default();
        acc.quantity += q;
        acc.exact = acc
            .exact
            .checked_add(price.exact(q)?)
            .ok_or(MeteringError::Overflow("report cost"))?;
    }
    Ok(g)
}

/// Usage of `project` over `[from, to)` (running instances up to `now`),
/// grouped as asked, with costs from `book`.
pub async fn usage_report(
    pool: &SqlitePool,
    book: &PriceBook,
    project: &str,
    from: UnixMillis,
    to: UnixMillis,
    group_by: GroupBy,
    now: UnixMillis,
) -> Result<UsageReport> {
    let g = grouped(pool, book, project, from, to, group_by, now).await?;
    let mut rows = Vec::with_capacity(g.len());
    let mut total = Money::ZERO;
    for ((day, res, meter_key), acc) in g {
        if acc.quantity == 0 {
            continue;
        }
        let m = meter::lookup(&meter_key).map_err(|e| MeteringError::Corrupt(e.to_string()))?;
        let cost = round_exact(acc.exact, m.base_per_unit)?;
        total = total.checked_add(cost)?;
        let (resource_id, resource_type) = res.unzip();
        rows.push(ReportRow {
            date: day.map(format_date),
            resource_id,
            resource_type,
            meter: meter_key,
            unit: m.unit.to_owned(),
            quantity: format_quantity(acc.quantity, m.base_per_unit),
            quantity_base: i64::try_from(acc.quantity)
                .map_err(|_| MeteringError::Overflow("report quantity"))?,
            cost,
        });
    }
    Ok(UsageReport {
        project: project.to_owned(),
        from,
        to,
        group_by,
        currency: book.currency().to_owned(),
        rows,
        total,
    })
}

/// Daily cost of one meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeterCosts {
    /// Meter key.
    pub meter: String,
    /// Cost per day, aligned with [`CostSeries::days`].
    pub costs: Vec<Money>,
}

/// Daily cost per meter over a range: what the CLI charts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostSeries {
    /// Project.
    pub project: String,
    /// Currency.
    pub currency: String,
    /// Each UTC day of the range, `YYYY-MM-DD`.
    pub days: Vec<String>,
    /// One series per meter with any cost or usage.
    pub meters: Vec<MeterCosts>,
    /// Sum over meters, per day.
    pub totals: Vec<Money>,
}

impl CostSeries {
    /// Daily totals in micro-units, e.g. for [`crate::chart::sparkline`].
    pub fn total_micros(&self) -> Vec<i64> {
        self.totals.iter().map(|m| m.micros()).collect()
    }
}

/// Daily cost per meter of `project` over the UTC days covering
/// `[from, to)` (at most 366 days).
pub async fn daily_costs(
    pool: &SqlitePool,
    book: &PriceBook,
    project: &str,
    from: UnixMillis,
    to: UnixMillis,
    now: UnixMillis,
) -> Result<CostSeries> {
    let first = day_floor(from);
    let n_days = (to - first + DAY_MS - 1).div_euclid(DAY_MS).max(0) as usize;
    if n_days > 366 {
        return Err(MeteringError::InvalidTime(
            "a cost series covers at most 366 days".into(),
        ));
    }
    let g = grouped(pool, book, project, from, to, GroupBy::Day, now).await?;
    let days: Vec<String> = (0..n_days as i64)
        .map(|i| format_date(first + i * DAY_MS))
        .collect();
    let mut per_meter: BTreeMap<String, Vec<Money>> = BTreeMap::new();
    let mut totals = vec![Money::ZERO; n_days];
    for ((day, _, meter_key), acc) in g {
        let m = meter::lookup(&meter_key).map_err(|e| MeteringError::Corrupt(e.to_string()))?;
        let cost = round_exact(acc.exact, m.base_per_unit)?;
        let i = ((day.unwrap_or(first) - first) / DAY_MS) as usize;
        if i < n_days {
            per_meter
                .entry(meter_key)
                .or_insert_with(|| vec![Money::ZERO; n_days])[i] = cost;
            totals[i] = totals[i].checked_add(cost)?;
        }
    }
    Ok(CostSeries {
        project: project.to_owned(),
        currency: book.currency().to_owned(),
        days,
        meters: per_meter
            .into_iter()
            .map(|(meter, costs)| MeterCosts { meter, costs })
            .collect(),
        totals,
    })
}
