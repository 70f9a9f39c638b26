//! `/v1/sinks`: object-storage sinks (a topic into a bucket of the same
//! project as newline-delimited JSON; see [`crate::sinks`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::buckets::s3_error;
use super::streams::stream_error;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ValidJson;
use crate::sinks::{SinkSpec, group_of, store};
use crate::state::AppState;
use crate::store::now_ms;

/// A sink to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSink {
    /// Name (1-64 of A-Z a-z 0-9 . _ -), unique in the project.
    pub name: String,
    /// Topic to read (from its first retained record).
    pub topic: String,
    /// Bucket to write (the project's own).
    pub bucket: String,
    /// Key prefix of the objects (default empty).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Records per object at most (1-100000, default 1000).
    #[serde(default)]
    pub max_records: Option<i64>,
    /// Longest a record waits for its object (10-3600000 ms, default 5000).
    #[serde(default)]
    pub flush_ms: Option<i64>,
}

fn check_name(name: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            "1 to 64 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

/// A sink with its progress: counters since the daemon started it and its
/// consumer group's committed offsets and lag.
fn status(st: &AppState, s: &SinkSpec) -> Value {
    let group = st
        .streams
        .describe_group(&s.project_id, &group_of(&s.name))
        .ok();
    json!({
        "name": s.name,
        "topic": s.topic,
        "bucket": s.bucket,
        "prefix": s.prefix,
        "max_records": s.max_records,
        "flush_ms": s.flush_ms,
        "created_at": s.created_at,
        "group": group_of(&s.name),
        "stats": st.sinks.stats(&s.project_id, &s.name),
        "progress": group,
    })
}

/// Creates a sink and starts it.
#[utoipa::path(post, path = "/v1/sinks", tag = "streams", request_body = CreateSink,
    responses((status = 201, body = serde_json::Value), (status = 404, body = ErrorBody, description = "unknown topic or bucket"),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(req): ValidJson<CreateSink>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let p = &caller.project.id;
    check_name(&req.name)?;
    let prefix = req.prefix.unwrap_or_default();
    if prefix.len() > 512 || prefix.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "prefix",
            "at most 512 bytes, no control characters",
        ));
    }
    let max_records = req.max_records.unwrap_or(1000);
    if !(1..=100_000).contains(&max_records) {
        return Err(ApiError::invalid("max_records", "must be 1 to 100000"));
    }
    let flush_ms = req.flush_ms.unwrap_or(5000);
    if !(10..=3_600_000).contains(&flush_ms) {
        return Err(ApiError::invalid("flush_ms", "must be 10 to 3600000"));
    }
    st.streams
        .describe_topic(p, &req.topic)
        .map_err(stream_error)?;
    st.objects
        .objects_of(p, &req.bucket, "", None, 1)
        .await
        .map_err(s3_error)?;
    let spec = SinkSpec {
        project_id: p.clone(),
        name: req.name,
        topic: req.topic,
        bucket: req.bucket,
        prefix,
        max_records,
        flush_ms,
        created_at: now_ms(),
    };
    if !store::insert(&st.store.pool, &spec).await? {
        return Err(ApiError::conflict(
            "already_exists",
            format!("a sink named {} exists", spec.name),
        ));
    }
    st.sinks.start(spec.clone());
    Ok((StatusCode::CREATED, Json(status(&st, &spec))))
}

/// The project's sinks.
#[utoipa::path(get, path = "/v1/sinks", tag = "streams",
    responses((status = 200, body = serde_json::Value, description = "`{sinks: [...]}`")))]
pub async fn list(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let all = store::list(&st.store.pool, &caller.project.id).await?;
    let sinks: Vec<Value> = all.iter().map(|s| status(&st, s)).collect();
    Ok(Json(json!({ "sinks": sinks })))
}

/// One sink with its progress.
#[utoipa::path(get, path = "/v1/sinks/{name}", tag = "streams", params(("name" = String, Path)),
    responses((status = 200, body = serde_json::Value), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = store::get(&st.store.pool, &caller.project.id, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("sink", &name))?;
    Ok(Json(status(&st, &s)))
}

/// Stops and removes a sink (its objects stay in the bucket).
#[utoipa::path(delete, path = "/v1/sinks/{name}", tag = "streams", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if !store::delete(&st.store.pool, &caller.project.id, &name).await? {
        return Err(ApiError::not_found("sink", &name));
    }
    st.sinks.stop(&caller.project.id, &name).await;
    Ok(StatusCode::NO_CONTENT)
}
