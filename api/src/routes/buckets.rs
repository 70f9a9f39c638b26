//! `/v1/buckets`: the project's object-storage buckets through the
//! control plane (create, list, list objects, read small objects), the
//! same store the S3 endpoint serves. Buckets of other projects are 404.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ValidJson;
use crate::state::AppState;

/// Objects this API reads whole at most (larger ones: use S3).
const MAX_GET: u64 = 64 << 20;

/// An S3 backend error as the REST API's error shape.
pub fn s3_error(e: s3s::S3Error) -> ApiError {
    use s3s::S3ErrorCode as C;
    let msg = e
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| e.code().as_str().to_string());
    match e.code() {
        C::NoSuchBucket | C::AccessDenied => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such bucket in this project",
        ),
        C::NoSuchKey => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such object"),
        C::BucketAlreadyExists | C::BucketAlreadyOwnedByYou => {
            ApiError::conflict("already_exists", "a bucket with this name exists")
        }
        C::TooManyBuckets => ApiError::conflict("quota_exceeded", msg),
        C::InvalidBucketName => ApiError::invalid("name", msg),
        C::KeyTooLongError | C::InvalidArgument => ApiError::invalid("key", msg),
        C::InvalidRange => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg),
        _ => ApiError::internal("object storage", msg),
    }
}

/// A bucket to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBucket {
    /// S3 bucket name (3-63 of a-z, 0-9, '.', '-'; unique on this cloud).
    pub name: String,
}

/// Creates a bucket in the caller's project (bucket quota applies).
#[utoipa::path(post, path = "/v1/buckets", tag = "storage", request_body = CreateBucket,
    responses((status = 201, body = serde_json::Value), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(req): ValidJson<CreateBucket>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    st.objects
        .create_bucket_for(&caller.project.id, &req.name)
        .await
        .map_err(s3_error)?;
    Ok((StatusCode::CREATED, Json(json!({ "name": req.name }))))
}

/// The project's buckets with object counts and bytes.
#[utoipa::path(get, path = "/v1/buckets", tag = "storage",
    responses((status = 200, body = serde_json::Value, description = "`{buckets: [{name, created_at, objects, bytes}]}`")))]
pub async fn list(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let b = st
        .objects
        .buckets_of(&caller.project.id)
        .await
        .map_err(s3_error)?;
    Ok(Json(json!({ "buckets": b })))
}

/// Which objects to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Only keys after this one (paging).
    #[serde(default)]
    pub after: Option<String>,
    /// Most objects (1-10000, default 1000).
    #[serde(default)]
    pub max: Option<usize>,
}

/// Lists a bucket's objects in key order.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/objects", tag = "storage",
    params(("bucket" = String, Path), ListQuery),
    responses((status = 200, body = serde_json::Value, description = "`{objects: [{key, size, etag, modified_ms}], truncated}`"),
              (status = 404, body = ErrorBody)))]
pub async fn objects(
    State(st): State<AppState>,
    caller: Caller,
    Path(bucket): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let max = q.max.unwrap_or(1000);
    if !(1..=10_000).contains(&max) {
        return Err(ApiError::invalid("max", "must be 1 to 10000"));
    }
    let (objects, truncated) = st
        .objects
        .objects_of(
            &caller.project.id,
            &bucket,
            q.prefix.as_deref().unwrap_or(""),
            q.after.as_deref(),
            max,
        )
        .await
        .map_err(s3_error)?;
    Ok(Json(json!({ "objects": objects, "truncated": truncated })))
}

/// Reads one object (at most 64 MiB; larger ones through S3).
#[utoipa::path(get, path = "/v1/buckets/{bucket}/objects/{key}", tag = "storage",
    params(("bucket" = String, Path), ("key" = String, Path)),
    responses((status = 200, description = "the object's bytes"), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub async fn get_object(
    State(st): State<AppState>,
    caller: Caller,
    Path((bucket, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let bytes = st
        .objects
        .get_bytes(&caller.project.id, &bucket, &key, MAX_GET)
        .await
        .map_err(s3_error)?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from(bytes),
    )
        .into_response())
}
