//! Object storage usage into billing: every few seconds the daemon samples
//! the S3 endpoint's per-bucket counters (requests by class, bytes out) and
//! each bucket's stored bytes, and records what changed as metering usage
//! events. Stored bytes are billed as MiB × the sampling interval
//! (GiB-seconds at a 10 s resolution, as S3 itself bills storage by
//! periodic measurement). Event ids are `(boot, sample, bucket, meter)`.

use std::collections::HashMap;
use std::sync::Arc;

use metering::UsageEvent;
use storage::s3::usage::{BucketCounters, S3Usage, bucket_projects, stored_bytes};

use crate::store::{Store, now_ms};

fn event(
    boot: &str,
    sample: u64,
    project: &str,
    bucket: &str,
    meter: &str,
    quantity: i64,
    now: i64,
) -> UsageEvent {
    UsageEvent {
        id: format!("{boot}-{sample}-bucket:{bucket}-{meter}"),
        source: "s3".into(),
        project: project.to_string(),
        resource_id: format!("bucket:{bucket}"),
        resource_type: metering::meter::lookup(meter)
            .map_or("bucket", |m| m.resource_type)
            .into(),
        meter: meter.into(),
        quantity,
        timestamp: now,
        data: None,
    }
}

/// Runs the sampler for the daemon's lifetime.
pub fn spawn(store: Store, usage: Arc<S3Usage>) {
    tokio::spawn(async move {
        let boot = uuid::Uuid::now_v7().simple().to_string();
        let mut last: HashMap<String, BucketCounters> = HashMap::new();
        let mut tick = tokio::time::interval(crate::streams_usage::SAMPLE_EVERY);
        let mut prev = now_ms();
        let mut sample = 0u64;
        loop {
            tick.tick().await;
            let now = now_ms();
            let elapsed = now - prev;
            prev = now;
            sample += 1;
            let (Ok(owners), Ok(stored)) = (
                bucket_projects(&store.pool).await,
                stored_bytes(&store.pool).await,
            ) else {
                continue;
            };
            let mut events = Vec::new();
            for (bucket, c) in usage.snapshot() {
                let before = last.insert(bucket.clone(), c).unwrap_or_default();
                let Some(project) = owners.get(&bucket) else {
                    continue;
                };
                for (meter, q) in [
                    (
                        metering::meter::OBJECT_REQUESTS_WRITE,
                        c.write_requests - before.write_requests.min(c.write_requests),
                    ),
                    (
                        metering::meter::OBJECT_REQUESTS_READ,
                        c.read_requests - before.read_requests.min(c.read_requests),
                    ),
                    (
                        metering::meter::OBJECT_BYTES_OUT,
                        c.bytes_out - before.bytes_out.min(c.bytes_out),
                    ),
                ] {
                    if q > 0 {
                        events.push(event(&boot, sample, project, &bucket, meter, q as i64, now));
                    }
                }
            }
            for (project, bucket, bytes) in stored {
                let mib = (bytes + (1 << 20) - 1) >> 20;
                if mib > 0 && elapsed > 0 {
                    events.push(event(
                        &boot,
                        sample,
                        &project,
                        &bucket,
                        metering::meter::OBJECT_STORAGE,
                        mib * elapsed,
                        now,
                    ));
                }
            }
            if events.is_empty() {
                continue;
            }
            if let Err(e) = metering::ingest(&store.pool, &events).await {
                tracing::warn!(error = %e, "recording object storage usage failed");
            }
        }
    });
}
