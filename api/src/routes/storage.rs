//! S3 access keys (the `storage` crate): `POST /v1/s3-keys` creates one for
//! the caller's project and shows its secret once; `GET` lists them
//! (without secrets); `DELETE /v1/s3-keys/{id}` revokes one. The S3
//! endpoint itself listens on its own port (`minicloud serve --s3-listen`).
//!
//! Block volumes: `/v1/volumes` (create, list, show, resize, delete,
//! snapshot) and `/v1/snapshots` (list, show, delete).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use storage::volumes::{Snapshot, Source, Volume, VolumeError};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ValidJson;
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

/// Maps a volume error to the API's error (404, 409 name_taken or
/// volume_attached, 422, 500); the launch path can reuse it.
pub fn volume_error(e: VolumeError) -> ApiError {
    match e {
        VolumeError::NotFound(kind, id) => ApiError::not_found(kind, &id),
        VolumeError::Exists(kind, name) => ApiError::conflict(
            "name_taken",
            format!("a {kind} named {name:?} already exists in this project"),
        ),
        VolumeError::Attached(v, i) => {
            ApiError::conflict("volume_attached", format!("volume {v} is attached to {i}"))
        }
        VolumeError::Invalid(m) => ApiError::invalid("volume", m),
        e => ApiError::internal("volumes", e),
    }
}

/// A volume.
#[derive(Debug, Serialize, ToSchema)]
pub struct VolumeView {
    /// `vol-…`.
    pub id: String,
    /// Unique in the project.
    pub name: String,
    /// Provisioned size in bytes.
    pub size_bytes: i64,
    /// `available` or `attached`.
    pub state: String,
    /// The instance it is attached to.
    pub attached_to: Option<String>,
    /// What it was made from (`snapshot:ID`, `image:PATH`).
    pub source: Option<String>,
    /// Creation time (unix ms).
    pub created_at: i64,
}

impl From<Volume> for VolumeView {
    fn from(v: Volume) -> Self {
        VolumeView {
            state: if v.attached_to.is_some() {
                "attached"
            } else {
                "available"
            }
            .into(),
            id: v.id,
            name: v.name,
            size_bytes: v.size_bytes,
            attached_to: v.attached_to,
            source: v.source,
            created_at: v.created_at,
        }
    }
}

/// A snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotView {
    /// `snap-…`.
    pub id: String,
    /// Unique in the project.
    pub name: String,
    /// The volume it was taken from.
    pub volume_id: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// `reflink` (copy-on-write) or `sparse-copy`.
    pub method: String,
    /// Creation time (unix ms).
    pub created_at: i64,
}

impl From<Snapshot> for SnapshotView {
    fn from(s: Snapshot) -> Self {
        SnapshotView {
            id: s.id,
            name: s.name,
            volume_id: s.volume_id,
            size_bytes: s.size_bytes,
            method: s.method,
            created_at: s.created_at,
        }
    }
}

/// `POST /v1/volumes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    /// 1-63 of a-z, 0-9, -.
    pub name: String,
    /// Size in GiB (or give `size_mib`).
    #[serde(default)]
    pub size_gib: Option<i64>,
    /// Size in MiB.
    #[serde(default)]
    pub size_mib: Option<i64>,
    /// Restore this snapshot (id or name) into the new volume.
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// `POST /v1/volumes/{id}/resize`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeVolume {
    /// New size in GiB (or `size_mib`); volumes only grow.
    #[serde(default)]
    pub size_gib: Option<i64>,
    /// New size in MiB.
    #[serde(default)]
    pub size_mib: Option<i64>,
}

/// `POST /v1/volumes/{id}/snapshots`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshot {
    /// 1-63 of a-z, 0-9, -.
    pub name: String,
}

/// Volumes of the project.
#[derive(Debug, Serialize, ToSchema)]
pub struct VolumeList {
    /// By name.
    pub volumes: Vec<VolumeView>,
}

/// Snapshots of the project.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotList {
    /// By name.
    pub snapshots: Vec<SnapshotView>,
}

fn size_bytes(gib: Option<i64>, mib: Option<i64>) -> ApiResult<i64> {
    let mib = match (gib, mib) {
        (Some(g), None) => g.checked_mul(1024),
        (None, Some(m)) => Some(m),
        _ => None,
    }
    .ok_or_else(|| ApiError::invalid("size_gib", "give one of size_gib or size_mib"))?;
    mib.checked_mul(1 << 20)
        .ok_or_else(|| ApiError::invalid("size_gib", "too large"))
}

/// Creates a volume (empty, or restored from a snapshot).
#[utoipa::path(post, path = "/v1/volumes", request_body = CreateVolume, tag = "storage",
    responses((status = 201, body = VolumeView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_volume(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(req): ValidJson<CreateVolume>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    let size = size_bytes(req.size_gib, req.size_mib)?;
    let project = &caller.project;
    let count = st.volumes.count(&project.id).await.map_err(volume_error)?;
    let max = project.quotas.max_volumes;
    if count + 1 > max {
        return Err(ApiError::forbidden(format!(
            "quota exceeded: volumes would be {}, the project's limit is {max}",
            count + 1
        ))
        .details(serde_json::json!({ "quota": "volumes", "requested": count + 1, "limit": max })));
    }
    let source = match req.snapshot {
        Some(s) => Source::Snapshot(s),
        None => Source::Empty,
    };
    let v = st
        .volumes
        .create(&project.id, &req.name, size, source)
        .await
        .map_err(volume_error)?;
    meter_gauge(
        &st,
        &project.id,
        &v.id,
        metering::meter::VOLUME_STORAGE,
        Some(v.size_bytes),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(v.into())))
}

/// Lists the project's volumes.
#[utoipa::path(get, path = "/v1/volumes", tag = "storage", responses((status = 200, body = VolumeList)))]
pub async fn list_volumes(
    State(st): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<VolumeList>> {
    let v = st
        .volumes
        .list(&caller.project.id)
        .await
        .map_err(volume_error)?;
    Ok(Json(VolumeList {
        volumes: v.into_iter().map(Into::into).collect(),
    }))
}

/// Shows a volume (id or name).
#[utoipa::path(get, path = "/v1/volumes/{id}", tag = "storage", params(("id" = String, Path)),
    responses((status = 200, body = VolumeView), (status = 404, body = ErrorBody)))]
pub async fn show_volume(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<VolumeView>> {
    let v = st
        .volumes
        .get(&caller.project.id, &id)
        .await
        .map_err(volume_error)?;
    Ok(Json(v.into()))
}

/// Grows a detached volume.
#[utoipa::path(post, path = "/v1/volumes/{id}/resize", request_body = ResizeVolume, tag = "storage",
    params(("id" = String, Path)),
    responses((status = 200, body = VolumeView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resize_volume(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<ResizeVolume>,
) -> ApiResult<Json<VolumeView>> {
    let size = size_bytes(req.size_gib, req.size_mib)?;
    let v = st
        .volumes
        .resize(&caller.project.id, &id, size)
        .await
        .map_err(volume_error)?;
    meter_gauge(
        &st,
        &caller.project.id,
        &v.id,
        metering::meter::VOLUME_STORAGE,
        Some(v.size_bytes),
    )
    .await?;
    Ok(Json(v.into()))
}

/// Deletes a detached volume.
#[utoipa::path(delete, path = "/v1/volumes/{id}", tag = "storage", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_volume(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let vid = st
        .volumes
        .get(&caller.project.id, &id)
        .await
        .map_err(volume_error)?
        .id;
    st.volumes
        .delete(&caller.project.id, &id)
        .await
        .map_err(volume_error)?;
    meter_gauge(
        &st,
        &caller.project.id,
        &vid,
        metering::meter::VOLUME_STORAGE,
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Bills provisioned storage (MiB-milliseconds): closes the resource's open
/// gauge now and, with a size, opens one for the new size.
async fn meter_gauge(
    st: &AppState,
    project: &str,
    resource: &str,
    meter: &str,
    size_bytes: Option<i64>,
) -> ApiResult<()> {
    let now = crate::store::now_ms();
    let mut tx = st.store.write().await?;
    metering::close_run(&mut tx, resource, now, metering::EndReason::Deleted)
        .await
        .map_err(|e| ApiError::internal("metering", e))?;
    if let Some(bytes) = size_bytes {
        let start = metering::GaugeStart {
            project: project.to_string(),
            resource_id: resource.to_string(),
            meter: meter.to_string(),
            amount: (bytes + (1 << 20) - 1) >> 20,
            started_at: now,
        };
        metering::open_gauge(&mut tx, &start)
            .await
            .map_err(|e| ApiError::internal("metering", e))?;
    }
    tx.commit().await?;
    Ok(())
}

/// Snapshots a detached volume.
#[utoipa::path(post, path = "/v1/volumes/{id}/snapshots", request_body = CreateSnapshot, tag = "storage",
    params(("id" = String, Path)),
    responses((status = 201, body = SnapshotView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_snapshot(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<CreateSnapshot>,
) -> ApiResult<(StatusCode, Json<SnapshotView>)> {
    let s = st
        .volumes
        .snapshot_volume(
            &caller.project.id,
            &id,
            &req.name,
            false,
            Box::new(|_, _| {}),
        )
        .await
        .map_err(volume_error)?;
    meter_gauge(
        &st,
        &caller.project.id,
        &s.id,
        metering::meter::VOLUME_SNAPSHOT,
        Some(s.size_bytes),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(s.into())))
}

/// Lists the project's snapshots.
#[utoipa::path(get, path = "/v1/snapshots", tag = "storage", responses((status = 200, body = SnapshotList)))]
pub async fn list_snapshots(
    State(st): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<SnapshotList>> {
    let s = st
        .volumes
        .snapshots(&caller.project.id)
        .await
        .map_err(volume_error)?;
    Ok(Json(SnapshotList {
        snapshots: s.into_iter().map(Into::into).collect(),
    }))
}

/// Shows a snapshot (id or name).
#[utoipa::path(get, path = "/v1/snapshots/{id}", tag = "storage", params(("id" = String, Path)),
    responses((status = 200, body = SnapshotView), (status = 404, body = ErrorBody)))]
pub async fn show_snapshot(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<SnapshotView>> {
    let s = st
        .volumes
        .snapshot(&caller.project.id, &id)
        .await
        .map_err(volume_error)?;
    Ok(Json(s.into()))
}

/// Deletes a snapshot.
#[utoipa::path(delete, path = "/v1/snapshots/{id}", tag = "storage", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_snapshot(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let sid = st
        .volumes
        .snapshot(&caller.project.id, &id)
        .await
        .map_err(volume_error)?
        .id;
    st.volumes
        .delete_snapshot(&caller.project.id, &id)
        .await
        .map_err(volume_error)?;
    meter_gauge(
        &st,
        &caller.project.id,
        &sid,
        metering::meter::VOLUME_SNAPSHOT,
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
