//! Usage cut into priceable pieces: per series, per price segment (and per
//! UTC day when asked), with the not yet settled part of open runs added.

use std::collections::BTreeMap;

use sqlx::SqliteConnection;

use crate::calendar::{DAY_MS, Month, UnixMillis, day_floor};
use crate::error::Result;
use crate::interval;
use crate::pricebook::PriceBook;
use crate::store::{self, RawRow, SeriesInfo};

/// Quantity (base units) per (series, window start, window end).
pub(crate) type Pieces = BTreeMap<(SeriesInfo, UnixMillis, UnixMillis), i128>;

/// What to sum.
pub(crate) struct Scope<'a> {
    pub project: Option<&'a str>,
    pub from: UnixMillis,
    pub to: UnixMillis,
    /// Only rows with `seq <= seq_max`.
    pub seq_max: i64,
    /// Cut windows at UTC days too.
    pub by_day: bool,
    /// Add open runs' unsettled time up to this instant.
    pub accrue_until: Option<UnixMillis>,
}

fn window(by_day: bool, a: UnixMillis, b: UnixMillis, day: UnixMillis) -> (UnixMillis, UnixMillis) {
    if by_day {
        (a.max(day), b.min(day + DAY_MS))
    } else {
        (a, b)
    }
}

fn add(p: &mut Pieces, series: &SeriesInfo, w: (UnixMillis, UnixMillis), q: i128) {
    if q != 0 {
        *p.entry((series.clone(), w.0, w.1)).or_insert(0) += q;
    }
}

/// Adds raw rows (late rows, accrual) within `[from, to)`, cut at price
/// segments (and days).
pub(crate) fn add_rows(
    p: &mut Pieces,
    book: &PriceBook,
    rows: &[RawRow],
    from: UnixMillis,
    to: UnixMillis,
    by_day: bool,
) {
    let segs = book.segments(from, to);
    for r in rows {
        // Rows never cross a day, so one day window per row.
        let day = day_floor(r.ts_start);
        for &(a, b) in &segs {
            add(p, &r.series, window(by_day, a, b, day), r.portion(a, b));
        }
    }
}

/// Sums usage in scope into pieces.
pub(crate) async fn pieces(
    conn: &mut SqliteConnection,
    book: &PriceBook,
    s: &Scope<'_>,
) -> Result<Pieces> {
    let mut p = Pieces::new();
    if s.from >= s.to {
        return Ok(p);
    }
    for (a, b) in book.segments(s.from, s.to) {
        for agg in store::aggregate(conn, s.project, a, b, s.seq_max, s.by_day).await? {
            let w = window(s.by_day, a, b, agg.day.unwrap_or(a));
            add(&mut p, &agg.series, w, i128::from(agg.quantity));
        }
    }
    if let Some(until) = s.accrue_until {
        let until = until.min(s.to);
        if until > s.from {
            let rows = interval::accrual(conn, s.project, until).await?;
            add_rows(&mut p, book, &rows, s.from, until, s.by_day);
        }
    }
    Ok(p)
}

/// Late rows with `after < seq <= through`, as pieces cut at the month they
/// belong to and at price segments.
pub(crate) async fn late_pieces(
    conn: &mut SqliteConnection,
    book: &PriceBook,
    project: Option<&str>,
    after: i64,
    through: i64,
) -> Result<Pieces> {
    let rows = store::late_rows(conn, project, after, through).await?;
    let mut p = Pieces::new();
    for r in &rows {
        let m = Month::containing(r.ts_start);
        add_rows(
            &mut p,
            book,
            std::slice::from_ref(r),
            m.start(),
            m.end(),
            false,
        );
    }
    Ok(p)
}
