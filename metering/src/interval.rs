//! Run intervals: instances (and gauges such as provisioned volumes) billed
//! by the millisecond from `running` to `stopped`, exactly once.
//!
//! A run is open from [`open_run`] to [`close_run`]. Its time is *settled*
//! into usage rows (one per meter per UTC day, `source = "metering.run"`)
//! whenever its state changes ([`pause`], [`resume`], [`close_run`]) and when
//! a month is closed ([`settle_open_runs`]); between settlements, reports
//! and draft invoices accrue the open part up to "now" without writing.
//! `billed_through` records how far a run is settled, so nothing is counted
//! twice.
//!
//! **Minimum and granularity.** When a run closes, its running time is
//! rounded up to the policy's granularity (1 s by default: billed per
//! second) and raised to the policy's minimum (60 s by default, as EC2
//! does); the difference is billed as one top-up row per running meter at
//! the end time. A 10 s run bills 60 vCPU-seconds per vCPU; a 75 s run 75.
//!
//! **Crashes.** A daemon that dies leaves its runs open in the database.
//! On restart it lists them with [`open_runs`] and, for each, either
//! leaves it open (the VM still runs: the run simply continues) or closes it
//! with the real end time it learns from the VMM. If a month close settled
//! the run past its real end, closing it earlier writes negative rows for
//! the excess, so the run bills exactly its real time (the credit lands as
//! an adjustment when that month was already invoiced). State changes are
//! never rewritten before the last recorded one: an end time earlier than
//! the last pause/resume is moved up to it.

use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::calendar::{DAY_MS, MAX_TIME, MIN_TIME, UnixMillis, day_floor, format_rfc3339};
use crate::error::{MeteringError, Result};
use crate::event::RUN_SOURCE;
use crate::meter::{self, INSTANCE_MEMORY, INSTANCE_PAUSED, INSTANCE_PAUSED_MEMORY, INSTANCE_VCPU};
use crate::store::{self, NewRow, RawRow, SeriesInfo};

/// How a run's running time is rounded when it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPolicy {
    /// Least running time billed per run, in ms (60,000 by default).
    pub min_billed_ms: i64,
    /// Running time is rounded up to a multiple of this, in ms (1,000 by
    /// default: per-second billing; 1 bills to the millisecond).
    pub granularity_ms: i64,
}

impl Default for RunPolicy {
    fn default() -> Self {
        RunPolicy {
            min_billed_ms: 60_000,
            granularity_ms: 1000,
        }
    }
}

impl RunPolicy {
    /// Billed running time for `running_ms` of real running time.
    pub fn billed_ms(&self, running_ms: i64) -> i64 {
        let g = self.granularity_ms.max(1);
        let r = running_ms.max(0);
        let rounded = (r + g - 1) / g * g;
        rounded.max(self.min_billed_ms)
    }
}

/// An instance that just reached `running`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStart {
    /// Project billed.
    pub project: String,
    /// Instance id.
    pub resource_id: String,
    /// vCPUs (billed as `instance.vcpu`).
    pub vcpus: u32,
    /// Memory in MiB (billed as `instance.memory`, and as
    /// `instance.paused_memory` while paused).
    pub memory_mib: u64,
    /// When it started running.
    pub started_at: UnixMillis,
    /// Minimum and rounding.
    #[serde(default)]
    pub policy: RunPolicy,
}

/// A resource billed for an amount over time, e.g. a 10 GiB volume
/// (`amount` = 10,240 MiB on `volume.storage`). Change the amount by closing
/// and opening again at the same time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GaugeStart {
    /// Project billed.
    pub project: String,
    /// Resource id.
    pub resource_id: String,
    /// A duration meter ([`meter::MeterDef::per_ms`]); the resource type is
    /// the meter's.
    pub meter: String,
    /// Rate in the meter's base unit per millisecond (MiB for volumes,
    /// partitions for streams).
    pub amount: i64,
    /// From when.
    pub started_at: UnixMillis,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Orderly stop or guest poweroff.
    Stopped,
    /// The VM failed (VMM exit with an error).
    Failed,
    /// The resource was deleted.
    Deleted,
    /// Found dead at reconciliation; the end time is the VMM's.
    Lost,
}

impl EndReason {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Stopped => "stopped",
            EndReason::Failed => "failed",
            EndReason::Deleted => "deleted",
            EndReason::Lost => "lost",
        }
    }
}

/// State of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Accruing the running meters.
    Running,
    /// Accruing the paused meters.
    Paused,
    /// Over.
    Closed,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "running" => Ok(RunState::Running),
            "paused" => Ok(RunState::Paused),
            "closed" => Ok(RunState::Closed),
            other => Err(MeteringError::Corrupt(format!("run state {other:?}"))),
        }
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// Run id.
    pub run_id: i64,
    /// Project billed.
    pub project: String,
    /// Resource id.
    pub resource_id: String,
    /// Resource type (`instance`, `volume`...).
    pub resource_type: String,
    /// Current state.
    pub state: RunState,
    /// Start.
    pub started_at: UnixMillis,
    /// End, once closed.
    pub ended_at: Option<UnixMillis>,
    /// Why it ended, once closed.
    pub end_reason: Option<String>,
    /// Time of the last state change.
    pub state_since: UnixMillis,
    /// Settled into usage rows up to here.
    pub billed_through: UnixMillis,
    /// Running time settled so far, ms.
    pub running_ms: i64,
    /// Paused time settled so far, ms.
    pub paused_ms: i64,
    /// Running time billed (after minimum and rounding), once closed.
    pub billed_running_ms: Option<i64>,
    /// Rounding policy.
    pub policy: RunPolicy,
    /// vCPUs, for instances.
    pub vcpus: Option<i64>,
    /// Memory MiB, for instances.
    pub memory_mib: Option<i64>,
}

const COLUMNS: &str = "run_id, project, resource_id, resource_type, state, started_at, ended_at, \
    end_reason, state_since, billed_through, running_ms, paused_ms, min_billed_ms, granularity_ms, \
    running_rates, paused_rates, vcpus, memory_mib, next_row";

/// A run row with its rates, as the settlement code needs it.
struct Run {
    rec: RunRecord,
    running_rates: Vec<(String, i64)>,
    paused_rates: Vec<(String, i64)>,
    next_row: i64,
}

fn parse_rates(s: &str) -> Result<Vec<(String, i64)>> {
    serde_json::from_str(s).map_err(|e| MeteringError::Corrupt(format!("run rates {s:?}: {e}")))
}

fn from_row(row: &SqliteRow) -> Result<Run> {
    let state = RunState::parse(row.try_get("state")?)?;
    let policy = RunPolicy {
        min_billed_ms: row.try_get("min_billed_ms")?,
        granularity_ms: row.try_get("granularity_ms")?,
    };
    let running_ms: i64 = row.try_get("running_ms")?;
    Ok(Run {
        rec: RunRecord {
            run_id: row.try_get("run_id")?,
            project: row.try_get("project")?,
            resource_id: row.try_get("resource_id")?,
            resource_type: row.try_get("resource_type")?,
            state,
            started_at: row.try_get("started_at")?,
            ended_at: row.try_get("ended_at")?,
            end_reason: row.try_get("end_reason")?,
            state_since: row.try_get("state_since")?,
            billed_through: row.try_get("billed_through")?,
            running_ms,
            paused_ms: row.try_get("paused_ms")?,
            billed_running_ms: (state == RunState::Closed).then(|| policy.billed_ms(running_ms)),
            policy,
            vcpus: row.try_get("vcpus")?,
            memory_mib: row.try_get("memory_mib")?,
        },
        running_rates: parse_rates(row.try_get("running_rates")?)?,
        paused_rates: parse_rates(row.try_get("paused_rates")?)?,
        next_row: row.try_get("next_row")?,
    })
}

fn check_time(resource_id: &str, what: &str, t: UnixMillis) -> Result<()> {
    if (MIN_TIME..MAX_TIME).contains(&t) {
        Ok(())
    } else {
        Err(MeteringError::Run {
            resource_id: resource_id.to_owned(),
            reason: format!("{what} {t} outside 1970..9999"),
        })
    }
}

fn check_id(resource_id: &str, field: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > crate::event::MAX_ID_LEN || v.chars().any(char::is_control) {
        return Err(MeteringError::Run {
            resource_id: resource_id.to_owned(),
            reason: format!("{field} must be 1-256 bytes without control characters"),
        });
    }
    Ok(())
}

/// `[a, b)` cut at UTC midnights.
pub(crate) fn day_pieces(a: UnixMillis, b: UnixMillis) -> Vec<(UnixMillis, UnixMillis)> {
    let mut out = Vec::new();
    let mut x = a;
    while x < b {
        let y = (day_floor(x) + DAY_MS).min(b);
        out.push((x, y));
        x = y;
    }
    out
}

struct NewRun<'a> {
    project: &'a str,
    resource_id: &'a str,
    resource_type: &'a str,
    started_at: UnixMillis,
    policy: RunPolicy,
    running_rates: Vec<(String, i64)>,
    paused_rates: Vec<(String, i64)>,
    vcpus: Option<i64>,
    memory_mib: Option<i64>,
}

async fn insert_run(conn: &mut SqliteConnection, r: NewRun<'_>) -> Result<bool> {
    check_id(r.resource_id, "project", r.project)?;
    check_id(r.resource_id, "resource_id", r.resource_id)?;
    check_time(r.resource_id, "started_at", r.started_at)?;
    if r.policy.min_billed_ms < 0 || r.policy.granularity_ms < 1 {
        return Err(MeteringError::Run {
            resource_id: r.resource_id.to_owned(),
            reason: "policy: min_billed_ms must be >= 0 and granularity_ms >= 1".into(),
        });
    }
    let to_json = |v: &Vec<(String, i64)>| {
        serde_json::to_string(v).map_err(|e| MeteringError::Corrupt(format!("rates: {e}")))
    };
    // One statement: refuses (inserts nothing) when a run is open or the
    // previous run ended after this start, so an error never leaves a row.
    let done = sqlx::query(
        "INSERT INTO metering_runs (project, resource_id, resource_type, started_at, state, state_since, \
             billed_through, min_billed_ms, granularity_ms, running_rates, paused_rates, vcpus, memory_mib) \
         SELECT ?1, ?2, ?3, ?4, 'running', ?4, ?4, ?5, ?6, ?7, ?8, ?9, ?10 \
         WHERE NOT EXISTS (SELECT 1 FROM metering_runs WHERE resource_id = ?2 AND ended_at > ?4) \
         ON CONFLICT (resource_id) WHERE ended_at IS NULL DO NOTHING",
    )
    .bind(r.project)
    .bind(r.resource_id)
    .bind(r.resource_type)
    .bind(r.started_at)
    .bind(r.policy.min_billed_ms)
    .bind(r.policy.granularity_ms)
    .bind(to_json(&r.running_rates)?)
    .bind(to_json(&r.paused_rates)?)
    .bind(r.vcpus)
    .bind(r.memory_mib)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(true);
    }
    let conflict = |reason: String| MeteringError::Run {
        resource_id: r.resource_id.to_owned(),
        reason,
    };
    let open: Option<(String, i64)> = sqlx::query_as(
        "SELECT project, started_at FROM metering_runs WHERE resource_id = ?1 AND ended_at IS NULL",
    )
    .bind(r.resource_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((project, started)) = open {
        if project == r.project && started == r.started_at {
            return Ok(false); // the same open, replayed
        }
        return Err(conflict(format!(
            "a run is already open since {}",
            format_rfc3339(started)
        )));
    }
    let end: Option<i64> =
        sqlx::query_scalar("SELECT MAX(ended_at) FROM metering_runs WHERE resource_id = ?1")
            .bind(r.resource_id)
            .fetch_one(&mut *conn)
            .await?;
    Err(conflict(format!(
        "starts at {} before its previous run ended at {}",
        format_rfc3339(r.started_at),
        end.map(format_rfc3339).unwrap_or_default()
    )))
}

/// Opens an instance run (call it in the transaction that records
/// `running`). Returns `false` when the same run (same project and start)
/// is already open; a different open run for the resource, or a start
/// before the previous run's end, is an error.
pub async fn open_run(conn: &mut SqliteConnection, start: &RunStart) -> Result<bool> {
    if start.vcpus == 0 || start.memory_mib == 0 {
        return Err(MeteringError::Run {
            resource_id: start.resource_id.clone(),
            reason: "vcpus and memory_mib must be positive".into(),
        });
    }
    let mem = i64::try_from(start.memory_mib)
        .ok()
        .filter(|m| *m <= 1 << 40)
        .ok_or_else(|| MeteringError::Run {
            resource_id: start.resource_id.clone(),
            reason: "memory_mib too large".into(),
        })?;
    let vcpus = i64::from(start.vcpus);
    insert_run(
        conn,
        NewRun {
            project: &start.project,
            resource_id: &start.resource_id,
            resource_type: "instance",
            started_at: start.started_at,
            policy: start.policy,
            running_rates: vec![(INSTANCE_VCPU.into(), vcpus), (INSTANCE_MEMORY.into(), mem)],
            paused_rates: vec![
                (INSTANCE_PAUSED.into(), 1),
                (INSTANCE_PAUSED_MEMORY.into(), mem),
            ],
            vcpus: Some(vcpus),
            memory_mib: Some(mem),
        },
    )
    .await
}

/// Opens a gauge interval (volume, snapshot, partitions...): billed
/// `amount` per millisecond, no minimum, to the millisecond. Same
/// idempotency as [`open_run`]; closed with [`close_run`].
pub async fn open_gauge(conn: &mut SqliteConnection, start: &GaugeStart) -> Result<bool> {
    let m = meter::lookup(&start.meter)?;
    if !m.per_ms || start.amount <= 0 || start.amount > 1 << 40 {
        return Err(MeteringError::Run {
            resource_id: start.resource_id.clone(),
            reason: format!(
                "a gauge needs a duration meter and an amount in 1..2^40 (got {} {})",
                m.key, start.amount
            ),
        });
    }
    insert_run(
        conn,
        NewRun {
            project: &start.project,
            resource_id: &start.resource_id,
            resource_type: m.resource_type,
            started_at: start.started_at,
            policy: RunPolicy {
                min_billed_ms: 0,
                granularity_ms: 1,
            },
            running_rates: vec![(m.key.into(), start.amount)],
            paused_rates: vec![],
            vcpus: None,
            memory_mib: None,
        },
    )
    .await
}

/// Locks (by writing) and loads the open run of a resource.
async fn load_open(conn: &mut SqliteConnection, resource_id: &str) -> Result<Option<Run>> {
    let sql = format!(
        "UPDATE metering_runs SET next_row = next_row WHERE resource_id = ?1 AND ended_at IS NULL RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(resource_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Writes usage rows for the run's current state over the time between
/// `billed_through` and `to` (negative rows when `to` is earlier), and
/// moves `billed_through` to `to`. Does not persist the run row.
async fn settle(conn: &mut SqliteConnection, run: &mut Run, to: UnixMillis) -> Result<()> {
    let from = run.rec.billed_through;
    if to == from {
        return Ok(());
    }
    let (a, b, sign) = if to > from {
        (from, to, 1)
    } else {
        (to, from, -1)
    };
    let rates = if run.rec.state == RunState::Running {
        &run.running_rates
    } else {
        &run.paused_rates
    };
    let r = &run.rec;
    let keys: Vec<store::Key<'_>> = rates
        .iter()
        .map(|(m, _)| {
            (
                r.project.as_str(),
                r.resource_id.as_str(),
                r.resource_type.as_str(),
                m.as_str(),
            )
        })
        .collect();
    let ids = store::resolve_series(conn, &keys).await?;
    let pieces = day_pieces(a, b);
    let mut event_ids = Vec::with_capacity(pieces.len() * rates.len());
    for _ in 0..pieces.len() * rates.len() {
        event_ids.push(format!("{}-{}", r.run_id, run.next_row));
        run.next_row += 1;
    }
    let mut rows = Vec::with_capacity(event_ids.len());
    let mut n = 0;
    for &(x, y) in &pieces {
        for ((_, rate), id) in rates.iter().zip(&ids) {
            let rate = sign * rate;
            rows.push(NewRow {
                series_id: *id,
                source: RUN_SOURCE,
                event_id: &event_ids[n],
                ts_start: x,
                ts_end: y,
                rate: Some(rate),
                quantity: rate
                    .checked_mul(y - x)
                    .ok_or(MeteringError::Overflow("run row quantity"))?,
                data: None,
            });
            n += 1;
        }
    }
    store::insert_rows(conn, &rows).await?;
    let ms = sign * (b - a);
    match run.rec.state {
        RunState::Running => run.rec.running_ms += ms,
        RunState::Paused => run.rec.paused_ms += ms,
        RunState::Closed => {}
    }
    run.rec.billed_through = to;
    Ok(())
}

async fn save(conn: &mut SqliteConnection, run: &Run) -> Result<()> {
    let r = &run.rec;
    sqlx::query(
        "UPDATE metering_runs SET state = ?2, state_since = ?3, billed_through = ?4, running_ms = ?5, \
             paused_ms = ?6, next_row = ?7, ended_at = ?8, end_reason = ?9 WHERE run_id = ?1",
    )
    .bind(r.run_id)
    .bind(r.state.as_str())
    .bind(r.state_since)
    .bind(r.billed_through)
    .bind(r.running_ms)
    .bind(r.paused_ms)
    .bind(run.next_row)
    .bind(r.ended_at)
    .bind(r.end_reason.as_deref())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn transition(
    conn: &mut SqliteConnection,
    resource_id: &str,
    at: UnixMillis,
    from: RunState,
    to: RunState,
) -> Result<bool> {
    check_time(resource_id, "time", at)?;
    let Some(mut run) = load_open(conn, resource_id).await? else {
        return Err(MeteringError::Run {
            resource_id: resource_id.to_owned(),
            reason: "no open run".into(),
        });
    };
    if run.rec.state != from {
        return Ok(false);
    }
    let at = at.max(run.rec.state_since);
    settle(conn, &mut run, at).await?;
    run.rec.state = to;
    run.rec.state_since = at;
    save(conn, &run).await?;
    Ok(true)
}

/// The instance was paused at `at`: running meters stop, paused meters
/// start. `false` if it was already paused.
pub async fn pause(conn: &mut SqliteConnection, resource_id: &str, at: UnixMillis) -> Result<bool> {
    transition(conn, resource_id, at, RunState::Running, RunState::Paused).await
}

/// The instance resumed at `at`. `false` if it was already running.
pub async fn resume(
    conn: &mut SqliteConnection,
    resource_id: &str,
    at: UnixMillis,
) -> Result<bool> {
    transition(conn, resource_id, at, RunState::Paused, RunState::Running).await
}

/// Closes the open run of `resource_id` at `ended_at` (the real end time),
/// settling it and billing the minimum/rounding top-up. Idempotent: with
/// no open run (already closed, or never opened) it returns `None` and
/// changes nothing.
pub async fn close_run(
    conn: &mut SqliteConnection,
    resource_id: &str,
    ended_at: UnixMillis,
    reason: EndReason,
) -> Result<Option<RunRecord>> {
    check_time(resource_id, "ended_at", ended_at)?;
    let Some(mut run) = load_open(conn, resource_id).await? else {
        return Ok(None);
    };
    let end = ended_at.max(run.rec.state_since);
    settle(conn, &mut run, end).await?;
    let billed = run.rec.policy.billed_ms(run.rec.running_ms);
    let topup = billed - run.rec.running_ms;
    if topup > 0 {
        let r = &run.rec;
        let keys: Vec<store::Key<'_>> = run
            .running_rates
            .iter()
            .map(|(m, _)| {
                (
                    r.project.as_str(),
                    r.resource_id.as_str(),
                    r.resource_type.as_str(),
                    m.as_str(),
                )
            })
            .collect();
        let ids = store::resolve_series(conn, &keys).await?;
        let event_ids: Vec<String> = (0..keys.len() as i64)
            .map(|i| format!("{}-{}", r.run_id, run.next_row + i))
            .collect();
        let mut rows = Vec::new();
        for (((_, rate), id), eid) in run.running_rates.iter().zip(&ids).zip(&event_ids) {
            rows.push(NewRow {
                series_id: *id,
                source: RUN_SOURCE,
                event_id: eid,
                ts_start: end,
                ts_end: end,
                rate: None,
                quantity: rate
                    .checked_mul(topup)
                    .ok_or(MeteringError::Overflow("run top-up"))?,
                data: Some(r#"{"kind":"minimum"}"#.to_owned()),
            });
        }
        store::insert_rows(conn, &rows).await?;
        run.next_row += keys.len() as i64;
    }
    run.rec.state = RunState::Closed;
    run.rec.state_since = end;
    run.rec.ended_at = Some(end);
    run.rec.end_reason = Some(reason.as_str().to_owned());
    run.rec.billed_running_ms = Some(billed);
    save(conn, &run).await?;
    Ok(Some(run.rec))
}

/// Every open run, for reconciliation at daemon start: close each whose VM
/// is gone with its real end time, leave the others open.
pub async fn open_runs(conn: &mut SqliteConnection) -> Result<Vec<RunRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM metering_runs WHERE ended_at IS NULL ORDER BY run_id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| from_row(r).map(|run| run.rec))
        .collect()
}

/// Every run of a resource, oldest first.
pub async fn runs(conn: &mut SqliteConnection, resource_id: &str) -> Result<Vec<RunRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM metering_runs WHERE resource_id = ?1 ORDER BY started_at, run_id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(resource_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| from_row(r).map(|run| run.rec))
        .collect()
}

/// Settles every open run up to `through` (a checkpoint: month close does
/// this at the month's end). Returns how many runs moved.
pub async fn settle_open_runs(conn: &mut SqliteConnection, through: UnixMillis) -> Result<usize> {
    let sql = format!(
        "UPDATE metering_runs SET next_row = next_row WHERE ended_at IS NULL AND billed_through < ?1 RETURNING {COLUMNS}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(through)
        .fetch_all(&mut *conn)
        .await?;
    let mut runs = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    for run in &mut runs {
        settle(conn, run, through).await?;
        save(conn, run).await?;
    }
    Ok(runs.len())
}

/// The not yet settled part of open runs up to `until`, as virtual rows
/// (nothing is written): what drafts and reports add for running VMs.
pub(crate) async fn accrual(
    conn: &mut SqliteConnection,
    project: Option<&str>,
    until: UnixMillis,
) -> Result<Vec<RawRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM metering_runs WHERE ended_at IS NULL AND billed_through < ?1 \
         AND (?2 IS NULL OR project = ?2)"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(until)
        .bind(project)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::new();
    for row in &rows {
        let run = from_row(row)?;
        let rates = if run.rec.state == RunState::Running {
            &run.running_rates
        } else {
            &run.paused_rates
        };
        for (x, y) in day_pieces(run.rec.billed_through, until) {
            for (m, rate) in rates {
                out.push(RawRow {
                    series: SeriesInfo {
                        project: run.rec.project.clone(),
                        resource_id: run.rec.resource_id.clone(),
                        resource_type: run.rec.resource_type.clone(),
                        meter: m.clone(),
                    },
                    ts_start: x,
                    ts_end: y,
                    rate: Some(*rate),
                    quantity: rate.saturating_mul(y - x),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rounds_up_and_applies_the_minimum() {
        let p = RunPolicy::default();
        assert_eq!(p.billed_ms(75_000), 75_000);
        assert_eq!(p.billed_ms(74_001), 75_000);
        assert_eq!(p.billed_ms(10_000), 60_000);
        assert_eq!(p.billed_ms(0), 60_000);
        let exact = RunPolicy {
            min_billed_ms: 0,
            granularity_ms: 1,
        };
        assert_eq!(exact.billed_ms(1234), 1234);
    }

    #[test]
    fn day_pieces_cut_at_midnight() {
        assert_eq!(day_pieces(5, 5), vec![]);
        assert_eq!(
            day_pieces(DAY_MS - 10, DAY_MS + 10),
            vec![(DAY_MS - 10, DAY_MS), (DAY_MS, DAY_MS + 10)]
        );
        assert_eq!(day_pieces(0, 3 * DAY_MS).len(), 3);
    }
}
