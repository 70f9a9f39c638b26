//! `/v1/topics` and `/v1/groups`: the `streams` crate's topics (create,
//! list, describe, delete, add partitions, produce, long-poll fetch) and
//! consumer groups (join, heartbeat, leave, offsets, lag), every call
//! scoped to the caller's project. Queues are in [`super::queues`], stream
//! jobs in [`super::jobs`].
//!
//! Records travel as JSON (`{"records":[{"key","value","headers",
//! "partition","timestamp"}]}`) or, for throughput, in the binary batch
//! form of [`streams::binary`] (`Content-Type:
//! application/vnd.minicloud.batch`; fetches answer it with the same
//! `Accept`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use streams::{
    AssignmentStrategy, CleanupPolicy, ErrorKind, FetchOptions, JoinGroup, ProduceRecord,
    ProducerSeq, TopicConfig, TopicPartition,
};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::{ValidJson, parse};
use crate::state::AppState;

/// The binary batch media type (and its older `x-` spelling).
pub const BATCH_TYPE: &str = "application/vnd.minicloud.batch";
const BATCH_TYPE_X: &str = "application/x-minicloud-batch";

/// Largest produce request body (JSON or binary).
pub const MAX_PRODUCE_BODY: usize = 64 << 20;

/// Longest long poll.
pub const MAX_WAIT_MS: u64 = 300_000;

/// Maps a streams error to the API's error shape, keeping its message.
pub fn stream_error(e: streams::Error) -> ApiError {
    let details = match &e {
        streams::Error::OffsetOutOfRange {
            offset,
            first,
            next,
            partition,
            ..
        } => {
            json!({ "offset": offset, "first_offset": first, "next_offset": next, "partition": partition })
        }
        streams::Error::RecordTooLarge { size, max }
        | streams::Error::BatchTooLarge { size, max } => {
            json!({ "size": size, "max": max })
        }
        _ => json!({}),
    };
    let (status, code) = match e.kind() {
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorKind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
        ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        ErrorKind::Internal => return ApiError::internal("streams", e),
    };
    ApiError::new(status, code, e.to_string()).details(details)
}

/// Refuses a new topic or queue beyond the project's `max_topics` quota
/// (topics and queues counted together).
pub fn check_topic_quota(st: &AppState, caller: &Caller) -> ApiResult<()> {
    check_topic_quota_n(st, caller, 1)
}

/// Refuses `n` new topics beyond the project's `max_topics` quota.
pub fn check_topic_quota_n(st: &AppState, caller: &Caller, n: usize) -> ApiResult<()> {
    let p = &caller.project.id;
    let have = (st.streams.list_topics(p).len() + st.streams.list_queues(p).len()) as i64;
    let want = have + n as i64;
    let max = caller.project.quotas.max_topics;
    if n > 0 && want > max {
        return Err(ApiError::forbidden(format!(
            "quota exceeded: topics would be {want}, the project's limit is {max}"
        ))
        .details(json!({ "quota": "topics", "requested": want, "limit": max })));
    }
    Ok(())
}

fn is_batch_type(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(BATCH_TYPE) || v.contains(BATCH_TYPE_X))
}

// ------------------------------------------------------------------ topics

/// A topic creation request; unset fields take the defaults.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    /// Name: 1-128 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
    pub name: String,
    /// Partitions (1-1024, default 1).
    #[serde(default)]
    pub partitions: Option<u32>,
    /// Time retention in ms (default 7 days; `null` with `keep_forever`).
    #[serde(default)]
    pub retention_ms: Option<i64>,
    /// Keep records forever (no time retention).
    #[serde(default)]
    pub keep_forever: bool,
    /// Size retention per partition in bytes.
    #[serde(default)]
    pub retention_bytes: Option<u64>,
    /// `delete` (default) or `compact`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub cleanup: Option<CleanupPolicy>,
    /// Segment size (4 KiB to 1 GiB, default 64 MiB).
    #[serde(default)]
    pub segment_bytes: Option<u64>,
    /// Segment age in ms before it rolls (default 7 days).
    #[serde(default)]
    pub segment_ms: Option<i64>,
}

/// Adds partitions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddPartitions {
    /// The new total number of partitions (never fewer than now).
    pub partitions: u32,
}

/// Creates a topic.
#[utoipa::path(post, path = "/v1/topics", request_body = CreateTopic, tag = "streams",
    responses((status = 201, body = serde_json::Value, description = "the topic: config and partitions"),
              (status = 403, body = ErrorBody, description = "quota exceeded"),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_topic(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(req): ValidJson<CreateTopic>,
) -> ApiResult<(StatusCode, Json<streams::TopicInfo>)> {
    check_topic_quota(&st, &caller)?;
    let mut cfg = TopicConfig::new(req.partitions.unwrap_or(1));
    if req.keep_forever {
        cfg.retention_ms = None;
    } else if let Some(ms) = req.retention_ms {
        cfg.retention_ms = Some(ms);
    }
    cfg.retention_bytes = req.retention_bytes;
    if let Some(c) = req.cleanup {
        cfg.cleanup = c;
    }
    if let Some(b) = req.segment_bytes {
        cfg.segment_bytes = b;
    }
    if let Some(ms) = req.segment_ms {
        cfg.segment_ms = ms;
    }
    let info = st
        .streams
        .create_topic(&caller.project.id, &req.name, cfg)
        .map_err(stream_error)?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Lists the project's topics with their partitions.
#[utoipa::path(get, path = "/v1/topics", tag = "streams",
    responses((status = 200, body = serde_json::Value, description = "`{\"topics\": [topic]}`")))]
pub async fn list_topics(State(st): State<AppState>, caller: Caller) -> Json<Value> {
    let p = &caller.project.id;
    let topics: Vec<streams::TopicInfo> = st
        .streams
        .list_topics(p)
        .iter()
        .filter_map(|t| st.streams.describe_topic(p, t).ok())
        .collect();
    Json(json!({ "topics": topics }))
}

/// Describes a topic: config and, per partition, first and next offsets
/// and bytes.
#[utoipa::path(get, path = "/v1/topics/{topic}", tag = "streams", params(("topic" = String, Path)),
    responses((status = 200, body = serde_json::Value), (status = 404, body = ErrorBody)))]
pub async fn describe_topic(
    State(st): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
) -> ApiResult<Json<streams::TopicInfo>> {
    st.streams
        .describe_topic(&caller.project.id, &topic)
        .map(Json)
        .map_err(stream_error)
}

/// Deletes a topic and its data.
#[utoipa::path(delete, path = "/v1/topics/{topic}", tag = "streams", params(("topic" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_topic(
    State(st): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
) -> ApiResult<StatusCode> {
    st.streams
        .delete_topic(&caller.project.id, &topic)
        .map_err(stream_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Grows a topic to `partitions` partitions.
#[utoipa::path(post, path = "/v1/topics/{topic}/partitions", tag = "streams", params(("topic" = String, Path)),
    request_body = AddPartitions,
    responses((status = 200, body = serde_json::Value), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add_partitions(
    State(st): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
    ValidJson(req): ValidJson<AddPartitions>,
) -> ApiResult<Json<streams::TopicInfo>> {
    st.streams
        .add_partitions(&caller.project.id, &topic, req.partitions)
        .map(Json)
        .map_err(stream_error)
}

// ----------------------------------------------------------------- records

/// One record to produce.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonRecord {
    /// Key (UTF-8); picks the partition by a stable hash when `partition`
    /// is not given.
    #[serde(default)]
    pub key: Option<String>,
    /// Value: a string is stored as its UTF-8 bytes, any other JSON value
    /// as its compact JSON text; absent or `null` is a tombstone.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub value: Option<Value>,
    /// Value as hex, for binary values (instead of `value`).
    #[serde(default)]
    pub value_hex: Option<String>,
    /// Headers, name to value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Partition (default: from the key, else round-robin).
    #[serde(default)]
    pub partition: Option<u32>,
    /// Timestamp in ms since the epoch (default: append time).
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// A JSON produce request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceRequest {
    /// The records, appended in order.
    pub records: Vec<JsonRecord>,
    /// Idempotent producer id (or header `X-Producer-Id`).
    #[serde(default)]
    pub producer_id: Option<u64>,
    /// The request's sequence number (or header `X-Producer-Sequence`).
    #[serde(default)]
    pub sequence: Option<u64>,
}

fn header_u64(h: &HeaderMap, name: &str) -> ApiResult<Option<u64>> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::invalid(name, "must be a non-negative integer")),
    }
}

fn producer(id: Option<u64>, seq: Option<u64>) -> ApiResult<Option<ProducerSeq>> {
    match (id, seq) {
        (None, None) => Ok(None),
        (Some(0), _) => Err(ApiError::invalid("producer_id", "must not be 0")),
        (Some(producer_id), Some(sequence)) => Ok(Some(ProducerSeq {
            producer_id,
            sequence,
        })),
        (Some(_), None) => Err(ApiError::invalid(
            "sequence",
            "an idempotent producer must send a sequence number",
        )),
        (None, Some(_)) => Err(ApiError::invalid(
            "producer_id",
            "a sequence number needs a producer id",
        )),
    }
}

fn to_produce(i: usize, r: JsonRecord) -> ApiResult<ProduceRecord> {
    let value = match (r.value, r.value_hex) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                &format!("records[{i}].value_hex"),
                "give value or value_hex, not both",
            ));
        }
        (_, Some(h)) => Some(Bytes::from(hex::decode(&h).map_err(|e| {
            ApiError::invalid(&format!("records[{i}].value_hex"), e.to_string())
        })?)),
        (None | Some(Value::Null), None) => None,
        (Some(Value::String(s)), None) => Some(Bytes::from(s)),
        (Some(v), None) => Some(Bytes::from(v.to_string())),
    };
    Ok(ProduceRecord {
        key: r.key.map(Bytes::from),
        value,
        headers: r
            .headers
            .into_iter()
            .map(|(k, v)| streams::Header::new(k, v))
            .collect(),
        partition: r.partition,
        timestamp: r.timestamp,
    })
}

/// Produces records: a JSON batch, or a binary batch with `Content-Type:
/// application/vnd.minicloud.batch`. An idempotent producer sends
/// `producer_id` and `sequence` (fields, or headers `X-Producer-Id` and
/// `X-Producer-Sequence`): a retry of its last sequence answers the
/// original offsets without writing (`duplicate: true`). `durability`
/// says what the acknowledgement guarantees (`fsync` or `os-buffer`).
#[utoipa::path(post, path = "/v1/topics/{topic}/records", tag = "streams", params(("topic" = String, Path)),
    request_body = ProduceRequest,
    responses((status = 200, body = serde_json::Value, description = "`{offsets: [{partition, offset}], durability, duplicate}`"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "stale producer sequence"),
              (status = 413, body = ErrorBody, description = "record or batch too large"), (status = 422, body = ErrorBody)))]
pub async fn produce(
    State(st): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<streams::ProduceAck>> {
    let mut id = header_u64(&headers, "x-producer-id")?;
    let mut seq = header_u64(&headers, "x-producer-sequence")?;
    let records = if is_batch_type(headers.get(header::CONTENT_TYPE)) {
        streams::binary::decode_produce(body).map_err(stream_error)?
    } else {
        let json_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("expected Content-Type: application/json or {BATCH_TYPE}"),
            ));
        }
        let req: ProduceRequest = parse(&body)?;
        id = id.or(req.producer_id);
        seq = seq.or(req.sequence);
        req.records
            .into_iter()
            .enumerate()
            .map(|(i, r)| to_produce(i, r))
            .collect::<ApiResult<Vec<_>>>()?
    };
    if records.is_empty() {
        return Err(ApiError::invalid(
            "records",
            "at least one record is needed",
        ));
    }
    st.streams
        .produce(&caller.project.id, &topic, &records, producer(id, seq)?)
        .map(Json)
        .map_err(stream_error)
}

/// Where and how much to fetch.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FetchQuery {
    /// First offset to read (default: the first retained one).
    pub offset: Option<u64>,
    /// Instead of `offset`: start at the first record with a timestamp at
    /// least this (ms since the epoch).
    pub timestamp: Option<i64>,
    /// Most records (1-100000, default 1000).
    pub max_records: Option<usize>,
    /// Byte budget (default 1 MiB, at most 64 MiB; one record is always
    /// returned if there is one).
    pub max_bytes: Option<usize>,
    /// Wait up to this many ms for records when there are none (long poll,
    /// at most 300000).
    pub wait_ms: Option<u64>,
}

/// One fetched record in JSON (borrowing from the fetched batch).
#[derive(Debug, Serialize)]
struct JsonOut<'a> {
    offset: u64,
    timestamp: i64,
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_hex: Option<String>,
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_hex: Option<String>,
    headers: BTreeMap<&'a str, std::borrow::Cow<'a, str>>,
}

/// A JSON fetch answer.
#[derive(Debug, Serialize)]
struct FetchOut<'a> {
    records: Vec<JsonOut<'a>>,
    next_offset: u64,
    log_start_offset: u64,
    high_watermark: u64,
}

fn text_or_hex(b: Option<&Bytes>) -> (Option<&str>, Option<String>) {
    match b {
        None => (None, None),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => (Some(s), None),
            Err(_) => (None, Some(hex::encode(b))),
        },
    }
}

/// Reads records from a partition by offset or timestamp, waiting up to
/// `wait_ms` for new ones (long poll). JSON by default; the binary fetch
/// form with `Accept: application/vnd.minicloud.batch` (offsets in the
/// `X-Next-Offset`, `X-High-Watermark` and `X-Log-Start-Offset` headers).
/// An offset outside the retained range is a 422 naming the valid range.
#[utoipa::path(get, path = "/v1/topics/{topic}/partitions/{partition}/records", tag = "streams",
    params(("topic" = String, Path), ("partition" = u32, Path), FetchQuery),
    responses((status = 200, body = serde_json::Value, description = "`{records: [{offset, timestamp, key, value, headers}], next_offset, log_start_offset, high_watermark}`"),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "offset out of range (with the valid range)")))]
pub async fn fetch(
    State(st): State<AppState>,
    caller: Caller,
    Path((topic, partition)): Path<(String, u32)>,
    Query(q): Query<FetchQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let p = &caller.project.id;
    let max_records = q.max_records.unwrap_or(1000);
    if !(1..=100_000).contains(&max_records) {
        return Err(ApiError::invalid("max_records", "must be 1 to 100000"));
    }
    let max_bytes = q.max_bytes.unwrap_or(1 << 20);
    if !(1..=64 << 20).contains(&max_bytes) {
        return Err(ApiError::invalid("max_bytes", "must be 1 to 67108864"));
    }
    let wait_ms = q.wait_ms.unwrap_or(0);
    if wait_ms > MAX_WAIT_MS {
        return Err(ApiError::invalid("wait_ms", "must be at most 300000"));
    }
    let offset = match (q.offset, q.timestamp) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "timestamp",
                "give offset or timestamp, not both",
            ));
        }
        (Some(o), None) => o,
        (None, Some(ts)) => st
            .streams
            .offset_for_time(p, &topic, partition, ts)
            .map_err(stream_error)?,
        (None, None) => {
            let info = st.streams.describe_topic(p, &topic).map_err(stream_error)?;
            match info.partitions.get(partition as usize) {
                Some(pi) => pi.first_offset,
                None => 0,
            }
        }
    };
    let opts = FetchOptions {
        max_records,
        max_bytes,
    };
    let r = if wait_ms == 0 {
        st.streams.fetch(p, &topic, partition, offset, opts)
    } else {
        st.streams
            .fetch_wait(
                p,
                &topic,
                partition,
                offset,
                opts,
                Duration::from_millis(wait_ms),
            )
            .await
    }
    .map_err(stream_error)?;
    if is_batch_type(headers.get(header::ACCEPT)) {
        let body = streams::binary::encode_fetch(&r.records);
        return Ok((
            [
                (header::CONTENT_TYPE, BATCH_TYPE.to_string()),
                (
                    header::HeaderName::from_static("x-next-offset"),
                    r.next_offset.to_string(),
                ),
                (
                    header::HeaderName::from_static("x-high-watermark"),
                    r.high_watermark.to_string(),
                ),
                (
                    header::HeaderName::from_static("x-log-start-offset"),
                    r.log_start_offset.to_string(),
                ),
            ],
            body,
        )
            .into_response());
    }
    let records: Vec<JsonOut> = r
        .records
        .iter()
        .map(|rec| {
            let (key, key_hex) = text_or_hex(rec.key.as_ref());
            let (value, value_hex) = text_or_hex(rec.value.as_ref());
            JsonOut {
                offset: rec.offset,
                timestamp: rec.timestamp,
                key,
                key_hex,
                value,
                value_hex,
                headers: rec
                    .headers
                    .iter()
                    .map(|h| (h.name.as_str(), String::from_utf8_lossy(&h.value)))
                    .collect(),
            }
        })
        .collect();
    Ok(Json(FetchOut {
        records,
        next_offset: r.next_offset,
        log_start_offset: r.log_start_offset,
        high_watermark: r.high_watermark,
    })
    .into_response())
}

// ------------------------------------------------------------------ groups

/// A member joins (or rejoins) a consumer group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The member's id (the client picks it).
    pub member_id: String,
    /// Topics it reads.
    pub topics: Vec<String>,
    /// `range` (default) or `round_robin`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub strategy: Option<AssignmentStrategy>,
    /// Removed after this long without a heartbeat (ms, default 10 s).
    #[serde(default)]
    pub session_timeout_ms: Option<u64>,
}

/// A member's heartbeat or leave.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    /// The member's id.
    pub member_id: String,
}

/// One offset to commit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetEntry {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The next offset to read.
    pub offset: u64,
}

/// Commits offsets.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// The committing member (with `generation`: refused unless current
    /// and the partitions are its own).
    #[serde(default)]
    pub member_id: Option<String>,
    /// The member's generation.
    #[serde(default)]
    pub generation: Option<u64>,
    /// The offsets.
    pub offsets: Vec<OffsetEntry>,
}

/// Joins a consumer group; answers the member's partitions and generation.
#[utoipa::path(post, path = "/v1/groups/{group}/join", tag = "streams", params(("group" = String, Path)),
    request_body = JoinRequest,
    responses((status = 200, body = serde_json::Value, description = "`{generation, member_id, partitions}`"),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn join_group(
    State(st): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    ValidJson(req): ValidJson<JoinRequest>,
) -> ApiResult<Json<streams::Assignment>> {
    let mut j = JoinGroup::new(req.member_id, &[]);
    j.topics = req.topics;
    if let Some(s) = req.strategy {
        j.strategy = s;
    }
    if let Some(t) = req.session_timeout_ms {
        if !(100..=3_600_000).contains(&t) {
            return Err(ApiError::invalid(
                "session_timeout_ms",
                "must be 100 to 3600000",
            ));
        }
        j.session_timeout_ms = t;
    }
    st.streams
        .join_group(&caller.project.id, &group, j)
        .map(Json)
        .map_err(stream_error)
}

/// A member's heartbeat; answers its current assignment (a new generation
/// means the group rebalanced).
#[utoipa::path(post, path = "/v1/groups/{group}/heartbeat", tag = "streams", params(("group" = String, Path)),
    request_body = MemberRequest,
    responses((status = 200, body = serde_json::Value), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "not a member (any more): join again")))]
pub async fn heartbeat(
    State(st): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    ValidJson(req): ValidJson<MemberRequest>,
) -> ApiResult<Json<streams::Assignment>> {
    st.streams
        .heartbeat(&caller.project.id, &group, &req.member_id)
        .map(Json)
        .map_err(stream_error)
}

/// A member leaves the group now.
#[utoipa::path(post, path = "/v1/groups/{group}/leave", tag = "streams", params(("group" = String, Path)),
    request_body = MemberRequest,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn leave_group(
    State(st): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    ValidJson(req): ValidJson<MemberRequest>,
) -> ApiResult<StatusCode> {
    st.streams
        .leave_group(&caller.project.id, &group, &req.member_id)
        .map_err(stream_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Commits offsets (each the next offset to read), durably.
#[utoipa::path(post, path = "/v1/groups/{group}/offsets", tag = "streams", params(("group" = String, Path)),
    request_body = CommitRequest,
    responses((status = 204), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "stale generation or not the member's partition")))]
pub async fn commit_offsets(
    State(st): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    ValidJson(req): ValidJson<CommitRequest>,
) -> ApiResult<StatusCode> {
    let member = match (&req.member_id, req.generation) {
        (Some(m), Some(g)) => Some((m.as_str(), g)),
        (None, None) => None,
        _ => {
            return Err(ApiError::invalid(
                "generation",
                "member_id and generation go together",
            ));
        }
    };
    let offsets: Vec<(TopicPartition, u64)> = req
        .offsets
        .into_iter()
        .map(|o| {
            (
                TopicPartition {
                    topic: o.topic,
                    partition: o.partition,
                },
                o.offset,
            )
        })
        .collect();
    st.streams
        .commit_offsets(&caller.project.id, &group, member, &offsets)
        .map_err(stream_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The group's committed offsets, with the high watermark and lag of each
/// partition.
#[utoipa::path(get, path = "/v1/groups/{group}/offsets", tag = "streams", params(("group" = String, Path)),
    responses((status = 200, body = serde_json::Value, description = "`{offsets: [{topic, partition, committed, high_watermark, lag}]}`"),
              (status = 404, body = ErrorBody)))]
pub async fn get_offsets(
    State(st): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
) -> ApiResult<Json<Value>> {
    let g = st
        .streams
        .describe_group(&caller.project.id, &group)
        .map_err(stream_error)?;
    Ok(Json(json!({ "group": g.group, "offsets": g.partitions })))
}

/// Lists the project's consumer groups.
#[utoipa::path(get, path = "/v1/groups", tag = "streams",
    responses((status = 200, body = serde_json::Value, description = "`{groups: [{group, generation, members, lag}]}`")))]
pub async fn list_groups(State(st): State<AppState>, caller: Caller) -> Json<Value> {
    let p = &caller.project.id;
    let groups: Vec<Value> = st
        .streams
        .list_groups(p)
        .iter()
        .filter_map(|g| st.streams.describe_group(p, g).ok())
        .map(|g| {
            let lag: u64 = g.partitions.iter().map(|p| p.lag).sum();
            json!({ "group": g.group, "generation": g.generation,
                    "members": g.members.len(), "lag": lag })
        })
        .collect();
    Json(json!({ "groups": groups }))
}

/// Describes a group: members, assignment, committed offsets and lag per
/// partition.
#[utoipa::path(get, path = "/v1/groups/{group}", tag = "streams", params(("group" = String, Path)),
    responses((status = 200, body = serde_json::Value), (status = 404, body = ErrorBody)))]
pub async fn describe_group(
    State(st): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
) -> ApiResult<Json<Value>> {
    let g = st
        .streams
        .describe_group(&caller.project.id, &group)
        .map_err(stream_error)?;
    let lag: u64 = g.partitions.iter().map(|p| p.lag).sum();
    let mut v = serde_json::to_value(&g).map_err(|e| ApiError::internal("encoding", e))?;
    v["lag"] = json!(lag);
    Ok(Json(v))
}
