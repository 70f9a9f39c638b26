//! `/v1/queues`: SQS-style queues of the `streams` crate (create, list,
//! describe, delete, send, receive with long poll and visibility timeout,
//! delete by receipt handle, change visibility), scoped to the caller's
//! project.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use streams::{QueueConfig, RedrivePolicy, SendMessage};
use utoipa::ToSchema;

use super::streams::{MAX_WAIT_MS, check_topic_quota, stream_error};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ValidJson;
use crate::state::AppState;

/// A dead-letter redrive policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redrive {
    /// The dead-letter queue (must exist, same project).
    pub dead_letter_queue: String,
    /// Moved there on the receive after this many receives.
    pub max_receive_count: u32,
}

/// A queue creation request; unset fields take the defaults.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQueue {
    /// Name: 1-128 of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// Default visibility timeout in ms (default 30000).
    #[serde(default)]
    pub visibility_timeout_ms: Option<u64>,
    /// Default delivery delay in ms (default 0).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Retention in ms (default 4 days).
    #[serde(default)]
    pub retention_ms: Option<u64>,
    /// Largest body (default 256 KiB).
    #[serde(default)]
    pub max_message_bytes: Option<usize>,
    /// Dead-letter redrive.
    #[serde(default)]
    pub redrive: Option<Redrive>,
}

/// Messages to send: either `messages` or one message's fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Several messages.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub messages: Option<Vec<SendMessage>>,
    /// One message's body.
    #[serde(default)]
    pub body: Option<String>,
    /// One message's delay (ms).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// One message's attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A receive request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveRequest {
    /// Most messages (1-10000, default 1).
    #[serde(default)]
    pub max: Option<usize>,
    /// Hide the received messages for this long (ms; default: the queue's).
    #[serde(default)]
    pub visibility_ms: Option<u64>,
    /// Wait up to this long for a message (ms, long poll, at most 300000).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// A visibility change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisibilityRequest {
    /// New timeout from now (ms; 0 makes the message visible at once).
    pub timeout_ms: u64,
}

/// Creates a queue.
#[utoipa::path(post, path = "/v1/queues", request_body = CreateQueue, tag = "queues",
    responses((status = 201, body = serde_json::Value), (status = 403, body = ErrorBody, description = "quota exceeded"),
              (status = 404, body = ErrorBody, description = "unknown dead-letter queue"),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(req): ValidJson<CreateQueue>,
) -> ApiResult<(StatusCode, Json<streams::QueueInfo>)> {
    check_topic_quota(&st, &caller)?;
    let mut cfg = QueueConfig::default();
    if let Some(v) = req.visibility_timeout_ms {
        cfg.visibility_timeout_ms = v;
    }
    if let Some(v) = req.delay_ms {
        cfg.delay_ms = v;
    }
    if let Some(v) = req.retention_ms {
        cfg.retention_ms = v;
    }
    if let Some(v) = req.max_message_bytes {
        cfg.max_message_bytes = v;
    }
    cfg.redrive = req.redrive.map(|r| RedrivePolicy {
        dead_letter_queue: r.dead_letter_queue,
        max_receive_count: r.max_receive_count,
    });
    let info = st
        .streams
        .create_queue(&caller.project.id, &req.name, cfg)
        .map_err(stream_error)?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Lists the project's queues with their message counts.
#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses((status = 200, body = serde_json::Value, description = "`{queues: [queue]}`")))]
pub async fn list(State(st): State<AppState>, caller: Caller) -> Json<Value> {
    let p = &caller.project.id;
    let queues: Vec<streams::QueueInfo> = st
        .streams
        .list_queues(p)
        .iter()
        .filter_map(|q| st.streams.describe_queue(p, q).ok())
        .collect();
    Json(json!({ "queues": queues }))
}

/// Describes a queue: settings and visible, in-flight and delayed counts.
#[utoipa::path(get, path = "/v1/queues/{queue}", tag = "queues", params(("queue" = String, Path)),
    responses((status = 200, body = serde_json::Value), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path(queue): Path<String>,
) -> ApiResult<Json<streams::QueueInfo>> {
    st.streams
        .describe_queue(&caller.project.id, &queue)
        .map(Json)
        .map_err(stream_error)
}

/// Deletes a queue and its messages.
#[utoipa::path(delete, path = "/v1/queues/{queue}", tag = "queues", params(("queue" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path(queue): Path<String>,
) -> ApiResult<StatusCode> {
    st.streams
        .delete_queue(&caller.project.id, &queue)
        .map_err(stream_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends messages; answers their ids.
#[utoipa::path(post, path = "/v1/queues/{queue}/messages", tag = "queues", params(("queue" = String, Path)),
    request_body = SendRequest,
    responses((status = 200, body = serde_json::Value, description = "`{message_ids: [...]}`"),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn send(
    State(st): State<AppState>,
    caller: Caller,
    Path(queue): Path<String>,
    ValidJson(req): ValidJson<SendRequest>,
) -> ApiResult<Json<Value>> {
    let messages = match (req.messages, req.body) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("body", "give messages or body, not both"));
        }
        (Some(m), None) => m,
        (None, Some(body)) => vec![SendMessage {
            body,
            delay_ms: req.delay_ms,
            attributes: req.attributes,
        }],
        (None, None) => return Err(ApiError::invalid("body", "missing field")),
    };
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "at least one message is needed",
        ));
    }
    let ids = st
        .streams
        .send(&caller.project.id, &queue, &messages)
        .map_err(stream_error)?;
    Ok(Json(json!({ "message_ids": ids })))
}

/// Receives up to `max` messages, waiting up to `wait_ms` for one; they
/// stay hidden for the visibility timeout unless deleted. A message
/// received `max_receive_count` times moves to the dead-letter queue.
#[utoipa::path(post, path = "/v1/queues/{queue}/receive", tag = "queues", params(("queue" = String, Path)),
    request_body = ReceiveRequest,
    responses((status = 200, body = serde_json::Value, description = "`{messages: [{message_id, receipt_handle, body, attributes, receive_count, sent_ms}]}`"),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn receive(
    State(st): State<AppState>,
    caller: Caller,
    Path(queue): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: ReceiveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReceiveRequest::default()
    } else {
        crate::json::parse(&body)?
    };
    let max = req.max.unwrap_or(1);
    if !(1..=10_000).contains(&max) {
        return Err(ApiError::invalid("max", "must be 1 to 10000"));
    }
    let wait = req.wait_ms.unwrap_or(0);
    if wait > MAX_WAIT_MS {
        return Err(ApiError::invalid("wait_ms", "must be at most 300000"));
    }
    let got = st
        .streams
        .receive(
            &caller.project.id,
            &queue,
            max,
            req.visibility_ms,
            Duration::from_millis(wait),
        )
        .await
        .map_err(stream_error)?;
    Ok(Json(json!({ "messages": got })))
}

/// Deletes a received message by its receipt handle.
#[utoipa::path(delete, path = "/v1/queues/{queue}/messages/{receipt}", tag = "queues",
    params(("queue" = String, Path), ("receipt" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_message(
    State(st): State<AppState>,
    caller: Caller,
    Path((queue, receipt)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    st.streams
        .delete_message(&caller.project.id, &queue, &receipt)
        .map_err(stream_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes an in-flight message's visibility timeout.
#[utoipa::path(post, path = "/v1/queues/{queue}/messages/{receipt}/visibility", tag = "queues",
    params(("queue" = String, Path), ("receipt" = String, Path)), request_body = VisibilityRequest,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn change_visibility(
    State(st): State<AppState>,
    caller: Caller,
    Path((queue, receipt)): Path<(String, String)>,
    ValidJson(req): ValidJson<VisibilityRequest>,
) -> ApiResult<StatusCode> {
    st.streams
        .change_visibility(&caller.project.id, &queue, &receipt, req.timeout_ms)
        .map_err(stream_error)?;
    Ok(StatusCode::NO_CONTENT)
}
