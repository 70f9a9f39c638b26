//! minicloud metering: per-second usage in SQLite, a price book, invoices,
//! budgets and reports.
//!
//! Every resource is billed to the second, exactly: usage is stored as
//! integers in each meter's base unit, times are UTC unix milliseconds
//! (`i64`, [`calendar::UnixMillis`]), money is integer micro-units
//! ([`money::Money`]), and the one rounding happens once per invoice line
//! (half to even, to 0.000001). No floats touch a quantity or an amount.
//!
//! # Modules
//!
//! | module | holds |
//! | --- | --- |
//! | [`calendar`] | UTC milliseconds, months, days, parsing and formatting |
//! | [`meter`] | the meter catalog (every resource's billable dimensions) |
//! | [`event`] | [`UsageEvent`], the generic quantity event, and its validation |
//! | [`ingest`](mod@ingest) | [`record`] (inside a caller's transaction), [`ingest`](ingest()) / [`Ingestor`] (batches) |
//! | [`interval`] | instance runs and gauges: [`open_run`], [`pause`], [`resume`], [`close_run`], [`open_runs`] |
//! | [`money`] | [`Money`], [`UnitPrice`], the rounding rule |
//! | [`pricebook`] | [`PriceBook`] from TOML with effective dates |
//! | [`invoice`](mod@invoice) | monthly and range invoices, [`close_month`], stored invoices |
//! | [`budget`](mod@budget) | thresholds per project and the crossing events |
//! | [`report`] | usage reports (JSON/CSV) and daily cost series |
//! | [`chart`] | [`sparkline`] and [`svg_chart`] |
//! | [`error`] | [`MeteringError`] |
//! | `store`, `usage` (private) | SQL and the aggregation invoices and reports share |
//!
//! # Database
//!
//! Metering lives in the control plane's SQLite file (WAL). [`migrate`]
//! applies its schema (`metering/migrations/`, versions 1000–1999) beside
//! other crates' migrations in the shared `_sqlx_migrations` table. Writers
//! that must be atomic with a state change take `&mut SqliteConnection`
//! (pass `&mut *tx`); batch and read operations take the pool.
//!
//! # Exactness
//!
//! * Events are idempotent on `(source, id)`: replaying changes nothing.
//! * A run is settled up to `billed_through` and never again before it;
//!   closing twice is a no-op; a reconciliation that learns an earlier real
//!   end writes the exact negative difference.
//! * A closed month's invoice is stored and protected by triggers; usage that
//!   arrives for it later becomes adjustment lines on the next invoice.

pub mod budget;
pub mod calendar;
pub mod chart;
pub mod error;
pub mod event;
pub mod ingest;
pub mod interval;
pub mod invoice;
pub mod meter;
pub mod money;
pub mod pricebook;
pub mod report;
mod store;
mod usage;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use budget::{BudgetEvent, budget, budget_events, check_budgets, set_budget};
pub use calendar::{Month, UnixMillis};
pub use chart::{sparkline, svg_chart};
pub use error::{MeteringError, Result};
pub use event::UsageEvent;
pub use ingest::{IngestStats, Ingestor, ingest, record};
pub use interval::{
    EndReason, GaugeStart, RunPolicy, RunRecord, RunStart, RunState, close_run, open_gauge,
    open_run, open_runs, pause, resume, runs, settle_open_runs,
};
pub use invoice::{
    CloseSummary, Invoice, InvoiceStatus, InvoiceSummary, LineItem, LineKind, close_month,
    closed_months, invoice, list_invoices, month_invoice, range_invoice,
};
pub use money::{Money, UnitPrice};
pub use pricebook::PriceBook;
pub use report::{
    CostSeries, GroupBy, MeterCosts, ReportRow, UsageReport, daily_costs, usage_report,
};

/// Applies metering's migrations (versions 1000–1999). Other crates'
/// applied migrations in the same `_sqlx_migrations` table are ignored.
pub async fn migrate(pool: &SqlitePool) -> Result<(), MeteringError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}

/// Opens (creating if needed) a SQLite file the way metering expects it:
/// WAL, `synchronous = NORMAL`, foreign keys on, 5 s busy timeout, a
/// 256 MiB page cache per connection. The
/// daemon may use its own pool with the same settings instead.
pub async fn connect(path: impl AsRef<Path>, max_connections: u32) -> Result<SqlitePool> {
    let opts = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path.as_ref())
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5))
        // Usage indexes are written in series order, not time order: keep
        // their hot pages in memory (up to 256 MiB per connection, lazily).
        .pragma("cache_size", "-262144")
        .pragma("temp_store", "memory")
        .pragma("mmap_size", "1073741824");
    Ok(SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .connect_with(opts)
        .await?)
}

/// Now, as unix milliseconds.
pub fn now_ms() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
