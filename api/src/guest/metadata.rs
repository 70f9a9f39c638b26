//! `GET /v1/metadata`: the calling instance's own facts and user data
//! (the 169.254.169.254 metadata service of other clouds), answered only
//! over the instance's vsock.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{instances, now_ms};

/// The calling instance's metadata.
#[utoipa::path(get, path = "/v1/metadata", tag = "instances",
    responses((status = 200, body = serde_json::Value,
               description = "`{instance_id, name, project_id, project, image, vcpus, memory_mib, user_data, created_at, now_ms}`"),
              (status = 404, body = crate::error::ErrorBody, description = "not called from inside an instance")))]
pub async fn metadata(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let Some(id) = caller.instance else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_an_instance",
            "the metadata service answers only from inside an instance (vsock port 80)",
        ));
    };
    let inst = instances::get_any(&st.store.pool, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance", &id))?;
    Ok(Json(json!({
        "instance_id": inst.id,
        "name": inst.name,
        "project_id": inst.project_id,
        "project": caller.project.name,
        "image": inst.image,
        "vcpus": inst.vcpus,
        "memory_mib": inst.memory_mib,
        "user_data": inst.user_data,
        "created_at": inst.created_at,
        "now_ms": now_ms(),
    })))
}
