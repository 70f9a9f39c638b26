//! Low-level SQL over the metering tables: series ids, usage rows, and the
//! aggregations every invoice and report is built from.
//!
//! Write helpers always start with a write statement so that, inside a
//! caller's deferred transaction, SQLite takes the write lock before any
//! read (no `SQLITE_BUSY_SNAPSHOT` on lock upgrade).

use std::collections::HashMap;
use std::sync::OnceLock;

use sqlx::{Row, SqliteConnection};

use crate::calendar::{DAY_MS, UnixMillis};
use crate::error::{MeteringError, Result};

/// `(project, resource_id, resource_type, meter)`.
pub(crate) type Key<'a> = (&'a str, &'a str, &'a str, &'a str);

/// One string for a key; ids contain no control characters, so the unit
/// separator cannot be ambiguous.
pub(crate) fn composite(k: Key<'_>) -> String {
    format!("{}\u{1f}{}\u{1f}{}\u{1f}{}", k.0, k.1, k.2, k.3)
}

const SERIES_CHUNK: usize = 200;

/// Series ids of `keys` (in order), creating the missing series.
pub(crate) async fn resolve_series(
    conn: &mut SqliteConnection,
    keys: &[Key<'_>],
) -> Result<Vec<i64>> {
    let mut found: HashMap<String, i64> = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(SERIES_CHUNK) {
        let values = vec!["(?,?,?,?)"; chunk.len()].join(",");
        let insert = format!(
            "INSERT INTO metering_series (project, resource_id, resource_type, meter) VALUES {values} \
             ON CONFLICT DO NOTHING"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(insert));
        for k in chunk {
            q = q.bind(k.0).bind(k.1).bind(k.2).bind(k.3);
        }
        q.execute(&mut *conn).await?;
        let select = format!(
            "SELECT s.series_id, s.project, s.resource_id, s.resource_type, s.meter \
             FROM (VALUES {values}) AS v \
             JOIN metering_series s ON s.project = v.column1 AND s.resource_id = v.column2 \
             AND s.resource_type = v.column3 AND s.meter = v.column4"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(select));
        for k in chunk {
            q = q.bind(k.0).bind(k.1).bind(k.2).bind(k.3);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let key = (
                row.try_get::<&str, _>(1)?,
                row.try_get::<&str, _>(2)?,
                row.try_get::<&str, _>(3)?,
                row.try_get::<&str, _>(4)?,
            );
            found.insert(composite(key), row.try_get(0)?);
        }
    }
    keys.iter()
        .map(|k| {
            found
                .get(&composite(*k))
                .copied()
                .ok_or_else(|| MeteringError::Corrupt(format!("series {k:?} not created")))
        })
        .collect()
}

/// A usage row to insert.
pub(crate) struct NewRow<'a> {
    pub series_id: i64,
    pub source: &'a str,
    pub event_id: &'a str,
    pub ts_start: UnixMillis,
    pub ts_end: UnixMillis,
    pub rate: Option<i64>,
    pub quantity: i64,
    pub data: Option<String>,
}

/// Rows per multi-row INSERT (9 parameters each).
const INSERT_CHUNK: usize = 512;

fn insert_sql(n: usize) -> String {
    let values = vec!["(?,?,?,?,?,?,?,?,?)"; n].join(",");
    format!(
        "INSERT INTO metering_usage (source, event_id, series_id, day, ts_start, ts_end, rate, quantity, data) \
         VALUES {values} ON CONFLICT (source, event_id) DO NOTHING"
    )
}

fn full_chunk_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| insert_sql(INSERT_CHUNK))
}

/// Inserts usage rows, skipping `(source, event_id)` already present, and
/// marks rows that fall in an already closed month as late. Returns how
/// many rows were new.
pub(crate) async fn insert_rows(conn: &mut SqliteConnection, rows: &[NewRow<'_>]) -> Result<u64> {
    let Some(min_ts) = rows.iter().map(|r| r.ts_start).min() else {
        return Ok(0);
    };
    // A write first: takes the write lock and reads the closed watermark.
    let closed_through: Option<i64> = sqlx::query_scalar(
        "UPDATE metering_state SET first_ts = MIN(COALESCE(first_ts, ?1), ?1) WHERE id = 1 \
         RETURNING closed_through",
    )
    .bind(min_ts)
    .fetch_one(&mut *conn)
    .await?;
    let late_possible = closed_through.is_some_and(|c| min_ts < c);
    let before: i64 = if late_possible {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM metering_usage")
            .fetch_one(&mut *conn)
            .await?
    } else {
        0
    };
    let mut inserted = 0;
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut q = if chunk.len() == INSERT_CHUNK {
            sqlx::query(full_chunk_sql())
        } else {
            sqlx::query(sqlx::AssertSqlSafe(insert_sql(chunk.len())))
        };
        for r in chunk {
            q = q
                .bind(r.source)
                .bind(r.event_id)
                .bind(r.series_id)
                .bind(r.ts_start.div_euclid(DAY_MS))
                .bind(r.ts_start)
                .bind(r.ts_end)
                .bind(r.rate)
                .bind(r.quantity)
                .bind(r.data.as_deref());
        }
        inserted += q.execute(&mut *conn).await?.rows_affected();
    }
    if let (true, Some(c)) = (late_possible && inserted > 0, closed_through) {
        sqlx::query(
            "INSERT OR IGNORE INTO metering_late (seq) \
             SELECT seq FROM metering_usage WHERE seq > ?1 AND ts_start < ?2",
        )
        .bind(before)
        .bind(c)
        .execute(&mut *conn)
        .await?;
    }
    Ok(inserted)
}

/// Global metering state (single row).
#[derive(Debug, Clone, Copy)]
pub(crate) struct State {
    /// End of the last closed month.
    pub closed_through: Option<UnixMillis>,
    /// Highest seq billed by the last close (0 before any).
    pub close_seq: i64,
    /// Earliest usage time ever recorded.
    pub first_ts: Option<UnixMillis>,
}

pub(crate) async fn state(conn: &mut SqliteConnection) -> Result<State> {
    let row =
        sqlx::query("SELECT closed_through, close_seq, first_ts FROM metering_state WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
    Ok(State {
        closed_through: row.try_get(0)?,
        close_seq: row.try_get(1)?,
        first_ts: row.try_get(2)?,
    })
}

pub(crate) async fn max_seq(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM metering_usage")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// A resource's meter: what a line item or report row is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SeriesInfo {
    pub project: String,
    pub resource_id: String,
    pub resource_type: String,
    pub meter: String,
}

/// Quantity of one series within a window (a day when grouping by day).
pub(crate) struct Agg {
    pub series: SeriesInfo,
    /// Start of the UTC day, when grouped by day.
    pub day: Option<UnixMillis>,
    pub quantity: i64,
}

macro_rules! agg_sql {
    ($day_col:literal, $project:literal, $day_group:literal) => {
        concat!(
            "WITH RECURSIVE d(day) AS (SELECT ?5 UNION ALL SELECT day + 1 FROM d WHERE day < ?6) \
             SELECT s.project, s.resource_id, s.resource_type, s.meter, ",
            $day_col,
            " SUM(CASE WHEN u.rate IS NULL THEN u.quantity \
                 ELSE u.rate * (MIN(u.ts_end, ?2) - MAX(u.ts_start, ?1)) END) \
             FROM metering_series s CROSS JOIN d CROSS JOIN metering_usage u \
             WHERE ",
            $project,
            " u.day = d.day AND u.series_id = s.series_id \
               AND u.ts_start < ?2 AND (u.ts_end > ?1 OR (u.rate IS NULL AND u.ts_start >= ?1)) \
               AND u.seq <= ?4 \
             GROUP BY s.series_id",
            $day_group
        )
    };
}

/// Every project at once (month close): one sequential scan of the range's
/// days, grouped through a sorter, then joined to the (few) series names.
const AGG_ALL: &str = "SELECT s.project, s.resource_id, s.resource_type, s.meter, g.q \
     FROM (SELECT u.series_id AS series_id, \
                  SUM(CASE WHEN u.rate IS NULL THEN u.quantity \
                      ELSE u.rate * (MIN(u.ts_end, ?2) - MAX(u.ts_start, ?1)) END) AS q \
           FROM metering_usage u \
           WHERE u.day >= ?5 AND u.day <= ?6 AND ?3 IS NULL \
             AND u.ts_start < ?2 AND (u.ts_end > ?1 OR (u.rate IS NULL AND u.ts_start >= ?1)) \
             AND u.seq <= ?4 \
           GROUP BY u.series_id) g \
     JOIN metering_series s ON s.series_id = g.series_id \
     ORDER BY s.series_id";
const AGG_PROJECT: &str = agg_sql!("", "s.project = ?3 AND", "");
const AGG_ALL_DAY: &str = agg_sql!("u.day,", "", ", u.day");
const AGG_PROJECT_DAY: &str = agg_sql!("u.day,", "s.project = ?3 AND", ", u.day");

/// Sums usage in `[from, to)` with `seq <= seq_max`, per series (and per
/// UTC day when `by_day`), clipping interval rows at the bounds. Usage rows
/// never cross a day boundary, so each row is found under its own day.
/// The plan is series (outer, in id order, so grouping needs no sort) ×
/// days of the range × an index seek on `(day, series_id)`.
pub(crate) async fn aggregate(
    conn: &mut SqliteConnection,
    project: Option<&str>,
    from: UnixMillis,
    to: UnixMillis,
    seq_max: i64,
    by_day: bool,
) -> Result<Vec<Agg>> {
    let sql = match (project.is_some(), by_day) {
        (false, false) => AGG_ALL,
        (true, false) => AGG_PROJECT,
        (false, true) => AGG_ALL_DAY,
        (true, true) => AGG_PROJECT_DAY,
    };
    if from >= to {
        return Ok(Vec::new());
    }
    let q = sqlx::query(sql)
        .bind(from)
        .bind(to)
        .bind(project)
        .bind(seq_max)
        .bind(from.div_euclid(DAY_MS))
        .bind((to - 1).div_euclid(DAY_MS));
    let rows = q.fetch_all(&mut *conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (day, qcol) = if by_day {
            (Some(row.try_get::<i64, _>(4)? * DAY_MS), 5)
        } else {
            (None, 4)
        };
        out.push(Agg {
            series: SeriesInfo {
                project: row.try_get(0)?,
                resource_id: row.try_get(1)?,
                resource_type: row.try_get(2)?,
                meter: row.try_get(3)?,
            },
            day,
            quantity: row.try_get(qcol)?,
        });
    }
    Ok(out)
}

/// A usage row with its series, for computations in Rust.
#[derive(Debug, Clone)]
pub(crate) struct RawRow {
    pub series: SeriesInfo,
    pub ts_start: UnixMillis,
    pub ts_end: UnixMillis,
    pub rate: Option<i64>,
    pub quantity: i64,
}

impl RawRow {
    /// The part of this row's quantity that falls in `[a, b)`.
    pub fn portion(&self, a: UnixMillis, b: UnixMillis) -> i128 {
        match self.rate {
            None => {
                if (a..b).contains(&self.ts_start) {
                    i128::from(self.quantity)
                } else {
                    0
                }
            }
            Some(r) => {
                let (lo, hi) = (self.ts_start.max(a), self.ts_end.min(b));
                if hi > lo {
                    i128::from(r) * i128::from(hi - lo)
                } else {
                    0
                }
            }
        }
    }
}

/// Late rows (written after their month closed) with `after < seq <= through`.
pub(crate) async fn late_rows(
    conn: &mut SqliteConnection,
    project: Option<&str>,
    after: i64,
    through: i64,
) -> Result<Vec<RawRow>> {
    let rows = sqlx::query(
        "SELECT s.project, s.resource_id, s.resource_type, s.meter, u.ts_start, u.ts_end, u.rate, u.quantity \
         FROM metering_late l \
         JOIN metering_usage u ON u.seq = l.seq \
         JOIN metering_series s ON s.series_id = u.series_id \
         WHERE l.seq > ?1 AND l.seq <= ?2 AND (?3 IS NULL OR s.project = ?3)",
    )
    .bind(after)
    .bind(through)
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(RawRow {
                series: SeriesInfo {
                    project: row.try_get(0)?,
                    resource_id: row.try_get(1)?,
                    resource_type: row.try_get(2)?,
                    meter: row.try_get(3)?,
                },
                ts_start: row.try_get(4)?,
                ts_end: row.try_get(5)?,
                rate: row.try_get(6)?,
                quantity: row.try_get(7)?,
            })
        })
        .collect()
}
