//! `/v1/stream-jobs`: stream jobs of the `streams` crate (create, list,
//! show with per-task progress and lag, stop, delete), scoped to the
//! caller's project. The body of a create is [`streams::JobSpec`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::streams::stream_error;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

/// Creates a stream job and starts it (one task per input partition); the
/// output topic is created when missing. Body: `{name, input, output, key,
/// filter?, window: {type: tumbling|hopping|session, size_ms, advance_ms,
/// gap_ms, grace_ms, time: "append_time" | {"event_time": "/ptr"}},
/// aggregates: [{op, field?, name?}], start?: earliest|latest|{timestamp},
/// batch_records?}`.
#[utoipa::path(post, path = "/v1/stream-jobs", tag = "stream-jobs",
    request_body(content = serde_json::Value, description = "the job spec"),
    responses((status = 201, body = serde_json::Value, description = "the job's status"),
              (status = 404, body = ErrorBody, description = "unknown input topic"),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody, description = "bad spec or window")))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    crate::json::ValidJson(raw): crate::json::ValidJson<Value>,
) -> ApiResult<(StatusCode, Json<streams::JobStatus>)> {
    let bytes = Bytes::from(raw.to_string());
    let spec: streams::JobSpec = crate::json::parse(&bytes)?;
    // The job creates its output topic when missing, and its changelog
    // topic: both count against the project's topic quota.
    let p = &caller.project.id;
    let existing = st.streams.list_topics(p);
    let new_topics = [
        spec.output.clone(),
        streams::job::runner::changelog_topic(&spec.name),
    ]
    .iter()
    .filter(|t| !existing.iter().any(|e| e == *t))
    .count();
    super::streams::check_topic_quota_n(&st, &caller, new_topics)?;
    let status = st
        .streams
        .start_job(&caller.project.id, spec)
        .await
        .map_err(stream_error)?;
    Ok((StatusCode::CREATED, Json(status)))
}

/// Lists the project's jobs with their state, progress and lag.
#[utoipa::path(get, path = "/v1/stream-jobs", tag = "stream-jobs",
    responses((status = 200, body = serde_json::Value, description = "`{jobs: [status]}`")))]
pub async fn list(State(st): State<AppState>, caller: Caller) -> Json<Value> {
    let p = &caller.project.id;
    let jobs: Vec<streams::JobStatus> = st
        .streams
        .list_jobs(p)
        .iter()
        .filter_map(|j| st.streams.job_status(p, j).ok())
        .collect();
    Json(json!({ "jobs": jobs }))
}

/// A job's spec, state, and per-task progress (offsets, processed,
/// emitted) and lag.
#[utoipa::path(get, path = "/v1/stream-jobs/{job}", tag = "stream-jobs", params(("job" = String, Path)),
    responses((status = 200, body = serde_json::Value), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path(job): Path<String>,
) -> ApiResult<Json<streams::JobStatus>> {
    st.streams
        .job_status(&caller.project.id, &job)
        .map(Json)
        .map_err(stream_error)
}

/// Stops a job after its current batch; state and checkpoint stay.
#[utoipa::path(post, path = "/v1/stream-jobs/{job}/stop", tag = "stream-jobs", params(("job" = String, Path)),
    responses((status = 200, body = serde_json::Value), (status = 404, body = ErrorBody)))]
pub async fn stop(
    State(st): State<AppState>,
    caller: Caller,
    Path(job): Path<String>,
) -> ApiResult<Json<streams::JobStatus>> {
    st.streams
        .stop_job(&caller.project.id, &job)
        .await
        .map(Json)
        .map_err(stream_error)
}

/// Stops and forgets a job (its output and changelog topics stay).
#[utoipa::path(delete, path = "/v1/stream-jobs/{job}", tag = "stream-jobs", params(("job" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path(job): Path<String>,
) -> ApiResult<StatusCode> {
    st.streams
        .delete_job(&caller.project.id, &job)
        .await
        .map_err(stream_error)?;
    Ok(StatusCode::NO_CONTENT)
}
