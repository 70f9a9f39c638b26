//! S3 access keys (the `storage` crate): `POST /v1/s3-keys` creates one for
//! the caller's project and shows its secret once; `GET` lists them
//! (without secrets); `DELETE /v1/s3-keys/{id}` revokes one. The S3
//! endpoint itself listens on its own port (`minicloud serve --s3-listen`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

/// A new access key, with its secret (shown only in this response).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedS3Key {
    /// The access key id (also the key's id in this API).
    pub access_key_id: String,
    /// The secret access key: not retrievable later.
    pub secret_access_key: String,
    /// The owning project.
    pub project_id: String,
    /// Creation time (unix ms).
    pub created_at: i64,
}

/// An access key as listed (no secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct S3Key {
    /// The access key id.
    pub access_key_id: String,
    /// The owning project.
    pub project_id: String,
    /// Creation time (unix ms).
    pub created_at: i64,
}

/// The project's access keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct S3KeyList {
    /// Oldest first.
    pub keys: Vec<S3Key>,
}

/// Creates an S3 access key for the caller's project.
#[utoipa::path(post, path = "/v1/s3-keys", tag = "storage",
    responses((status = 201, body = CreatedS3Key), (status = 401, body = ErrorBody)))]
pub async fn create_key(
    State(st): State<AppState>,
    caller: Caller,
) -> ApiResult<(StatusCode, Json<CreatedS3Key>)> {
    let k = storage::keys::create(&st.store.pool, &caller.project.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedS3Key {
            access_key_id: k.key.access_key_id,
            secret_access_key: k.secret_access_key,
            project_id: k.key.project_id,
            created_at: k.key.created_at,
        }),
    ))
}

/// Lists the caller's project's S3 access keys (no secrets).
#[utoipa::path(get, path = "/v1/s3-keys", tag = "storage", responses((status = 200, body = S3KeyList)))]
pub async fn list_keys(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<S3KeyList>> {
    let keys = storage::keys::list(&st.store.pool, &caller.project.id)
        .await?
        .into_iter()
        .map(|k| S3Key {
            access_key_id: k.access_key_id,
            project_id: k.project_id,
            created_at: k.created_at,
        })
        .collect();
    Ok(Json(S3KeyList { keys }))
}

/// Revokes one of the caller's project's S3 access keys.
#[utoipa::path(delete, path = "/v1/s3-keys/{id}", tag = "storage", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_key(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if storage::keys::delete(&st.store.pool, &caller.project.id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("s3 key", &id))
    }
}

/// The bucket quota hook of the S3 server: a project's `max_buckets`.
pub fn bucket_quota(pool: sqlx::SqlitePool) -> storage::s3::BucketQuota {
    std::sync::Arc::new(move |project: String| {
        let pool = pool.clone();
        Box::pin(async move {
            match crate::store::projects::get(&pool, &project).await {
                Ok(Some(p)) => u64::try_from(p.quotas.max_buckets).ok(),
                _ => None,
            }
        })
    })
}
