//! Streams usage into billing: every few seconds the daemon samples the
//! `streams` service's cumulative counters and turns what changed into
//! metering usage events (bytes in and out, requests), and the partitions
//! each topic holds over the interval into partition-milliseconds.
//!
//! Event ids are `(boot, sample, resource, meter)`, so a replayed batch is
//! ignored by metering's idempotent ingestion.

use std::collections::HashMap;
use std::time::Duration;

use metering::UsageEvent;
use streams::{ResourceKind, Streams, UsageCounters};

use crate::store::{Store, now_ms};

/// How often usage is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

type Key = (String, ResourceKind, String);

fn kind_name(k: ResourceKind) -> &'static str {
    match k {
        ResourceKind::Topic => "topic",
        ResourceKind::Queue => "queue",
        ResourceKind::Job => "stream_job",
    }
}

/// One sampling step: the events for what changed since `last`.
pub fn diff(
    boot: &str,
    sample: u64,
    now: i64,
    elapsed_ms: i64,
    snapshot: &[streams::UsageRecord],
    last: &mut HashMap<Key, UsageCounters>,
) -> Vec<UsageEvent> {
    let mut out = Vec::new();
    for r in snapshot {
        let key = (r.project.clone(), r.kind, r.name.clone());
        let before = last.get(&key).copied().unwrap_or_default();
        let c = r.counters;
        let rid = format!("{}:{}", kind_name(r.kind), r.name);
        let mut push = |meter: &str, quantity: i64| {
            if quantity > 0 {
                out.push(UsageEvent {
                    id: format!("{boot}-{sample}-{rid}-{meter}"),
                    source: "streams".into(),
                    project: r.project.clone(),
                    resource_id: rid.clone(),
                    resource_type: metering::meter::lookup(meter)
                        .map_or("topic", |m| m.resource_type)
                        .into(),
                    meter: meter.into(),
                    quantity,
                    timestamp: now,
                    data: None,
                });
            }
        };
        push(
            metering::meter::STREAMS_BYTES_IN,
            c.bytes_in.saturating_sub(before.bytes_in) as i64,
        );
        push(
            metering::meter::STREAMS_BYTES_OUT,
            c.bytes_out.saturating_sub(before.bytes_out) as i64,
        );
        push(
            metering::meter::STREAMS_REQUESTS,
            c.requests.saturating_sub(before.requests) as i64,
        );
        if r.kind == ResourceKind::Topic {
            push(
                metering::meter::STREAMS_PARTITION,
                i64::from(r.partitions) * elapsed_ms,
            );
        }
        last.insert(key, c);
    }
    out
}

/// Runs the sampler for the daemon's lifetime.
pub fn spawn(store: Store, streams: Streams) {
    tokio::spawn(async move {
        let boot = uuid::Uuid::now_v7().simple().to_string();
        let mut last = HashMap::new();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        let mut prev = now_ms();
        let mut sample = 0u64;
        loop {
            tick.tick().await;
            let now = now_ms();
            tracing::debug!(sample, "sampling streams usage");
            let events = diff(
                &boot,
                sample,
                now,
                now - prev,
                &streams.usage_snapshot(),
                &mut last,
            );
            sample += 1;
            prev = now;
            if events.is_empty() {
                continue;
            }
            match metering::ingest(&store.pool, &events).await {
                Ok(stats) => tracing::debug!(
                    events = events.len(),
                    inserted = stats.inserted,
                    "streams usage recorded"
                ),
                Err(e) => tracing::warn!(error = %e, "recording streams usage failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(bytes_in: u64, partitions: u32) -> streams::UsageRecord {
        streams::UsageRecord {
            project: "p".into(),
            kind: ResourceKind::Topic,
            name: "t".into(),
            counters: UsageCounters {
                bytes_in,
                requests: 1,
                ..Default::default()
            },
            storage_bytes: 0,
            partitions,
        }
    }

    #[test]
    fn only_differences_are_billed() {
        let mut last = HashMap::new();
        let a = diff("b", 0, 1000, 10_000, &[rec(500, 2)], &mut last);
        assert!(
            a.iter()
                .any(|e| e.meter == "streams.bytes_in" && e.quantity == 500)
        );
        assert!(
            a.iter()
                .any(|e| e.meter == "streams.partition" && e.quantity == 20_000)
        );
        let b = diff("b", 1, 2000, 10_000, &[rec(800, 2)], &mut last);
        assert!(
            b.iter()
                .any(|e| e.meter == "streams.bytes_in" && e.quantity == 300)
        );
        assert!(
            !b.iter().any(|e| e.meter == "streams.requests"),
            "no new requests"
        );
        let ids: std::collections::HashSet<_> =
            a.iter().chain(b.iter()).map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), a.len() + b.len(), "unique ids");
    }
}
