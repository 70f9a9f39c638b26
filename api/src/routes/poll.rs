//! `POST /v1/groups/{group}/poll`: a consumer-group member reads from the
//! partitions the group assigns it, starting at the group's committed
//! offsets, and (by default) commits what it was given, in one call (the
//! consumer-instance model of Kafka's REST proxies; clients that cannot
//! keep a fetch loop per partition, such as guests over vsock, use it).

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use futures::future::select_all;
use serde::{Deserialize, Serialize};
use streams::{FetchOptions, JoinGroup, TopicPartition};
use utoipa::ToSchema;

use super::streams::{MAX_WAIT_MS, stream_error};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ValidJson;
use crate::state::AppState;

/// A poll.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    /// The member (joins the group on its first poll).
    pub member_id: String,
    /// Topics it reads.
    pub topics: Vec<String>,
    /// Most records (1-10000, default 100).
    #[serde(default)]
    pub max_records: Option<usize>,
    /// Wait up to this many ms when no partition has records (at most
    /// 300000; default 0).
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// Commit the returned records' next offsets (default true; with
    /// false the member commits through `/offsets` after processing, for
    /// at-least-once).
    #[serde(default)]
    pub commit: Option<bool>,
}

/// One polled record.
#[derive(Debug, Serialize)]
pub struct PolledRecord {
    topic: String,
    partition: u32,
    offset: u64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
}

/// A poll's answer.
#[derive(Debug, Serialize)]
pub struct PollResponse {
    records: Vec<PolledRecord>,
    /// The group generation the member polled in.
    generation: u64,
    /// The partitions the member owns.
    partitions: Vec<TopicPartition>,
    /// Offsets committed by this poll (next offset to read).
    committed: Vec<Committed>,
}

/// An offset a poll committed.
#[derive(Debug, Serialize)]
pub struct Committed {
    topic: String,
    partition: u32,
    /// The next offset to read.
    offset: u64,
}

/// Polls records for a group member from its assigned partitions.
#[utoipa::path(post, path = "/v1/groups/{group}/poll", tag = "streams", params(("group" = String, Path)),
    request_body = PollRequest,
    responses((status = 200, body = serde_json::Value, description = "`{records: [{topic, partition, offset, timestamp, key, value}], generation, partitions, committed}`"),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn poll(
    State(st): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    ValidJson(req): ValidJson<PollRequest>,
) -> ApiResult<Json<PollResponse>> {
    let p = caller.project.id.as_str();
    let max = req.max_records.unwrap_or(100);
    if !(1..=10_000).contains(&max) {
        return Err(ApiError::invalid("max_records", "must be 1 to 10000"));
    }
    let wait = req.wait_ms.unwrap_or(0);
    if wait > MAX_WAIT_MS {
        return Err(ApiError::invalid("wait_ms", "must be at most 300000"));
    }
    if req.topics.is_empty() {
        return Err(ApiError::invalid("topics", "at least one topic is needed"));
    }
    let mut join = JoinGroup::new(req.member_id.clone(), &[]);
    join.topics = req.topics;
    let a = st
        .streams
        .join_group(p, &group, join)
        .map_err(stream_error)?;
    let deadline = Instant::now() + Duration::from_millis(wait);
    // Where each owned partition is read from: the committed offset, else
    // the first retained record (auto.offset.reset = earliest).
    let mut positions = Vec::with_capacity(a.partitions.len());
    for tp in &a.partitions {
        let committed = st
            .streams
            .committed_offset(p, &group, &tp.topic, tp.partition)
            .map_err(stream_error)?;
        positions.push((tp.clone(), committed.unwrap_or(0)));
    }
    let mut records = Vec::new();
    let mut committed = Vec::new();
    loop {
        for (tp, pos) in positions.iter_mut() {
            let left = max - records.len();
            if left == 0 {
                break;
            }
            let opts = FetchOptions {
                max_records: left,
                max_bytes: 4 << 20,
            };
            let r = match st.streams.fetch(p, &tp.topic, tp.partition, *pos, opts) {
                Ok(r) => r,
                Err(streams::Error::OffsetOutOfRange { first, next, .. }) => {
                    *pos = (*pos).clamp(first, next);
                    st.streams
                        .fetch(p, &tp.topic, tp.partition, *pos, opts)
                        .map_err(stream_error)?
                }
                Err(e) => return Err(stream_error(e)),
            };
            if r.records.is_empty() {
                continue;
            }
            *pos = r.next_offset;
            committed.push((tp.clone(), r.next_offset));
            records.extend(r.records.into_iter().map(|rec| PolledRecord {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: rec.offset,
                timestamp: rec.timestamp,
                key: rec.key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                value: rec.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
            }));
        }
        let now = Instant::now();
        if !records.is_empty() || now >= deadline || positions.is_empty() {
            break;
        }
        // Long poll: wake on the first partition that gets a record.
        let left = deadline - now;
        let waits = positions.iter().map(|(tp, pos)| {
            let streams = st.streams.clone();
            let (topic, part, pos) = (tp.topic.clone(), tp.partition, *pos);
            let project = p.to_string();
            Box::pin(async move {
                let opts = FetchOptions {
                    max_records: 1,
                    max_bytes: 1,
                };
                let _ = streams
                    .fetch_wait(&project, &topic, part, pos, opts, left)
                    .await;
            })
        });
        let _ = select_all(waits).await;
    }
    let commit = req.commit.unwrap_or(true);
    if commit && !committed.is_empty() {
        st.streams
            .commit_offsets(
                p,
                &group,
                Some((req.member_id.as_str(), a.generation)),
                &committed,
            )
            .map_err(stream_error)?;
    }
    Ok(Json(PollResponse {
        records,
        generation: a.generation,
        partitions: a.partitions,
        committed: if commit {
            committed
                .into_iter()
                .map(|(tp, offset)| Committed {
                    topic: tp.topic,
                    partition: tp.partition,
                    offset,
                })
                .collect()
        } else {
            Vec::new()
        },
    }))
}
