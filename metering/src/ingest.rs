//! Writing usage events: one at a time inside the caller's transaction
//! ([`record`]), or in batches ([`ingest`], [`Ingestor`]).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use sqlx::{SqliteConnection, SqlitePool};

use crate::error::Result;
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
pub async fn ingest(pool: &SqlitePool, events: &[UsageEvent]) -> Result<IngestStats> {
    Ingestor::new(pool.clone()).ingest(events).await
}

/// Most series ids an [`Ingestor`] remembers before it starts over.
const CACHE_LIMIT: usize = 1 << 20;

/// Batched ingestion that remembers series ids between batches, for
/// services that report continuously (hold one per process).
#[derive(Debug)]
pub struct Ingestor {
    pool: SqlitePool,
    /// Composite key → series id; series are never deleted, so an id seen
    /// in a committed transaction stays valid.
    series: Mutex<HashMap<String, i64>>,
}

impl Ingestor {
    /// An ingestor writing through `pool`.
    pub fn new(pool: SqlitePool) -> Self {
        Ingestor {
            pool,
            series: Mutex::new(HashMap::new()),
        }
    }

    /// The pool it writes through.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Stores a batch in one transaction; see [`ingest`].
    pub async fn ingest(&self, events: &[UsageEvent]) -> Result<IngestStats> {
        if events.is_empty() {
            return Ok(IngestStats::default());
        }
        for e in events {
            e.validate()?;
        }
        // Distinct series of the batch, and which are already known.
        let mut distinct: HashMap<Key<'_>, i64> = HashMap::new();
        for e in events {
            distinct.entry(key(e)).or_insert(0);
        }
        let mut missing: Vec<Key<'_>> = Vec::new();
        {
            let cache = self.series.lock().unwrap_or_else(|p| p.into_inner());
            for (k, id) in distinct.iter_mut() {
                match cache.get(&composite(*k)) {
                    Some(known) => *id = *known,
                    None => missing.push(*k),
                }
            }
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let new_ids = store::resolve_series(&mut tx, &missing).await?;
        for (k, id) in missing.iter().zip(&new_ids) {
            distinct.insert(*k, *id);
        }
        let rows: Vec<NewRow<'_>> = events.iter().map(|e| row(e, distinct[&key(e)])).collect();
        let inserted = store::insert_rows(&mut tx, &rows).await?;
        tx.commit().await?;
        if !missing.is_empty() {
            let mut cache = self.series.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() + missing.len() > CACHE_LIMIT {
                cache.clear();
            }
            for (k, id) in missing.iter().zip(new_ids) {
                cache.insert(composite(*k), id);
            }
        }
        Ok(IngestStats {
            received: events.len(),
            inserted,
            duplicates: events.len() as u64 - inserted,
        })
    }
}
