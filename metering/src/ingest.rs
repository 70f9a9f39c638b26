//! Writing usage events: one at a time inside the caller's transaction
//! ([`record`]), or in batches ([`ingest`], [`Ingestor`]).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use sqlx::{Connection, SqliteConnection, SqlitePool};

use crate::error::{MeteringError, Result};
use crate::event::UsageEvent;
use crate::store::{self, Key, NewRow, composite};

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct IngestStats {
    /// Events in the batch.
    pub received: usize,
    /// Events stored now.
    pub inserted: u64,
    /// Events already stored (same `source` and `id`), left unchanged.
    pub duplicates: u64,
}

fn row<'a>(e: &'a UsageEvent, series_id: i64) -> NewRow<'a> {
    NewRow {
        series_id,
        source: &e.source,
        event_id: &e.id,
        ts_start: e.timestamp,
        ts_end: e.timestamp,
        rate: None,
        quantity: e.quantity,
        data: e.data.as_ref().map(|d| d.to_string()),
    }
}

fn key(e: &UsageEvent) -> Key<'_> {
    (&e.project, &e.resource_id, &e.resource_type, &e.meter)
}

/// Records one event on the caller's connection, typically inside the
/// transaction of the state change that caused it (`&mut *tx`). Returns
/// `true` when it was new, `false` when `(source, id)` was already stored
/// (nothing changes then).
pub async fn record(conn: &mut SqliteConnection, event: &UsageEvent) -> Result<bool> {
    event.validate()?;
    let ids = store::resolve_series(conn, &[key(event)]).await?;
    let inserted = store::insert_rows(conn, &[row(event, ids[0])]).await?;
    Ok(inserted == 1)
}

/// Stores a batch in one transaction (all or nothing: one invalid event
/// refuses the batch and names it). Idempotent on `(source, id)`.
/// Resolves every series of the batch each time: hold an [`Ingestor`] to
/// remember them.
pub async fn ingest(pool: &SqlitePool, events: &[UsageEvent]) -> Result<IngestStats> {
    if events.is_empty() {
        return Ok(IngestStats::default());
    }
    let (keys, per_event) = prepare(events)?;
    let mut ids = vec![0i64; keys.len()];
    let missing: Vec<usize> = (0..keys.len()).collect();
    let mut conn = pool.acquire().await?;
    let inserted = write(&mut conn, &keys, &mut ids, &missing, events, &per_event).await?;
    Ok(stats(events, inserted))
}

fn stats(events: &[UsageEvent], inserted: u64) -> IngestStats {
    IngestStats {
        received: events.len(),
        inserted,
        duplicates: events.len() as u64 - inserted,
    }
}

/// Validates a batch; returns its distinct series keys and, per event, the
/// index of its key.
fn prepare(events: &[UsageEvent]) -> Result<(Vec<Key<'_>>, Vec<usize>)> {
    for e in events {
        e.validate()?;
    }
    let mut slots: HashMap<Key<'_>, usize> = HashMap::new();
    let mut keys: Vec<Key<'_>> = Vec::new();
    let per_event = events
        .iter()
        .map(|e| {
            *slots.entry(key(e)).or_insert_with(|| {
                keys.push(key(e));
                keys.len() - 1
            })
        })
        .collect();
    Ok((keys, per_event))
}

/// Most series ids an [`Ingestor`] remembers before it starts over.
const CACHE_LIMIT: usize = 1 << 20;

/// Batched ingestion that remembers series ids between batches and writes
/// through one dedicated connection (its page cache stays warm; SQLite has
/// one writer anyway), for services that report continuously: hold one per
/// process.
#[derive(Debug)]
pub struct Ingestor {
    pool: SqlitePool,
    /// Taken from the pool on first use, kept until an error.
    conn: tokio::sync::Mutex<Option<SqliteConnection>>,
    /// Composite key → series id; series are never deleted, so an id seen
    /// in a committed transaction stays valid.
    series: Mutex<HashMap<String, i64>>,
}

impl Ingestor {
    /// An ingestor writing through a connection of `pool`.
    pub fn new(pool: SqlitePool) -> Self {
        Ingestor {
            pool,
            conn: tokio::sync::Mutex::new(None),
            series: Mutex::new(HashMap::new()),
        }
    }

    /// The pool it takes its connection from.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Stores a batch in one transaction; see [`ingest`].
    pub async fn ingest(&self, events: &[UsageEvent]) -> Result<IngestStats> {
        if events.is_empty() {
            return Ok(IngestStats::default());
        }
        let (keys, per_event) = prepare(events)?;
        let mut ids = vec![0i64; keys.len()];
        let mut missing: Vec<usize> = Vec::new();
        {
            let cache = self.series.lock().unwrap_or_else(|p| p.into_inner());
            for (i, k) in keys.iter().enumerate() {
                match cache.get(&composite(*k)) {
                    Some(known) => ids[i] = *known,
                    None => missing.push(i),
                }
            }
        }
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(self.pool.acquire().await?.detach());
        }
        let Some(conn) = guard.as_mut() else {
            return Err(MeteringError::Corrupt("ingest connection vanished".into()));
        };
        let result = write(conn, &keys, &mut ids, &missing, events, &per_event).await;
        if result.is_err() {
            // Start over with a fresh connection next time.
            *guard = None;
        }
        drop(guard);
        let inserted = result?;
        if !missing.is_empty() {
            let mut cache = self.series.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() + missing.len() > CACHE_LIMIT {
                cache.clear();
            }
            for &i in &missing {
                cache.insert(composite(keys[i]), ids[i]);
            }
        }
        Ok(stats(events, inserted))
    }
}

async fn write(
    conn: &mut SqliteConnection,
    keys: &[Key<'_>],
    ids: &mut [i64],
    missing: &[usize],
    events: &[UsageEvent],
    per_event: &[usize],
) -> Result<u64> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let want: Vec<Key<'_>> = missing.iter().map(|&i| keys[i]).collect();
    let new_ids = store::resolve_series(&mut tx, &want).await?;
    for (&i, id) in missing.iter().zip(new_ids) {
        ids[i] = id;
    }
    let rows: Vec<NewRow<'_>> = events
        .iter()
        .zip(per_event)
        .map(|(e, &slot)| row(e, ids[slot]))
        .collect();
    let inserted = store::insert_rows(&mut tx, &rows).await?;
    tx.commit().await?;
    Ok(inserted)
}
