//! `/v1/projects` (admin) and `/v1/project` (the caller's own).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ValidJson;
use crate::state::AppState;
use crate::store::instances;
use crate::store::projects::{self, Project, Quotas};
use crate::store::tokens;

/// Creates a project.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Unique name: 1-63 of a-z, 0-9, -.
    pub name: String,
    /// Quotas (defaults when absent).
    #[serde(default)]
    pub quotas: Option<Quotas>,
}

/// A new project and its first token (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedProject {
    /// The project.
    pub project: Project,
    /// Its first API token. Store it: it is not shown again.
    pub token: String,
}

/// A new token.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token. Store it: it is not shown again.
    pub token: String,
}

/// A project with what it uses.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    /// The project.
    pub project: Project,
    /// Current use against the quotas.
    pub usage: Usage,
}

/// Use counted against quotas.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    /// Instances.
    pub instances: i64,
    /// vCPUs.
    pub vcpus: i64,
    /// Memory, MiB.
    pub memory_mib: i64,
}

/// A list of projects.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectList {
    /// The projects.
    pub projects: Vec<Project>,
}

fn check_quotas(q: &Quotas) -> ApiResult<()> {
    for (name, v) in [
        ("quotas.max_instances", q.max_instances),
        ("quotas.max_vcpus", q.max_vcpus),
        ("quotas.max_memory_mib", q.max_memory_mib),
        ("quotas.max_volumes", q.max_volumes),
        ("quotas.max_buckets", q.max_buckets),
        ("quotas.max_topics", q.max_topics),
    ] {
        if !(0..=1_000_000_000).contains(&v) {
            return Err(ApiError::invalid(name, "must be 0 to 1000000000"));
        }
    }
    Ok(())
}

/// Creates a project (admin).
#[utoipa::path(post, path = "/v1/projects", request_body = CreateProject, tag = "projects",
    responses((status = 201, body = CreatedProject), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(req): ValidJson<CreateProject>,
) -> ApiResult<(StatusCode, Json<CreatedProject>)> {
    caller.require_admin()?;
    let n = &req.name;
    if n.is_empty()
        || n.len() > 63
        || !n
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ApiError::invalid(
            "name",
            "1-63 characters of a-z, 0-9 and -",
        ));
    }
    let quotas = req.quotas.unwrap_or_default();
    check_quotas(&quotas)?;
    if projects::by_name(&st.store.pool, n).await?.is_some() {
        return Err(ApiError::conflict(
            "name_taken",
            format!("a project named {n:?} exists"),
        ));
    }
    let mut tx = st.store.write().await?;
    let project = projects::create(&mut tx, n, false, quotas).await?;
    let token = tokens::create(&mut tx, &project.id, "initial").await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(CreatedProject { project, token })))
}

/// Lists projects (admin).
#[utoipa::path(get, path = "/v1/projects", tag = "projects", responses((status = 200, body = ProjectList)))]
pub async fn list(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<ProjectList>> {
    caller.require_admin()?;
    Ok(Json(ProjectList {
        projects: projects::list(&st.store.pool).await?,
    }))
}

async fn view(st: &AppState, project: Project) -> ApiResult<ProjectView> {
    let mut conn = st.store.pool.acquire().await?;
    let (i, v, m) = instances::usage(&mut conn, &project.id).await?;
    Ok(ProjectView {
        project,
        usage: Usage {
            instances: i,
            vcpus: v,
            memory_mib: m,
        },
    })
}

/// Shows a project (admin).
#[utoipa::path(get, path = "/v1/projects/{id}", tag = "projects", params(("id" = String, Path)),
    responses((status = 200, body = ProjectView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ProjectView>> {
    caller.require_admin()?;
    let p = match projects::get(&st.store.pool, &id).await? {
        Some(p) => p,
        None => projects::by_name(&st.store.pool, &id)
            .await?
            .ok_or_else(|| ApiError::not_found("project", &id))?,
    };
    Ok(Json(view(&st, p).await?))
}

/// The caller's own project and its use.
#[utoipa::path(get, path = "/v1/project", tag = "projects", responses((status = 200, body = ProjectView)))]
pub async fn own(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<ProjectView>> {
    Ok(Json(view(&st, caller.project).await?))
}

/// Replaces a project's quotas (admin).
#[utoipa::path(put, path = "/v1/projects/{id}/quotas", request_body = Quotas, tag = "projects", params(("id" = String, Path)),
    responses((status = 200, body = ProjectView), (status = 404, body = ErrorBody)))]
pub async fn set_quotas(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ValidJson(q): ValidJson<Quotas>,
) -> ApiResult<Json<ProjectView>> {
    caller.require_admin()?;
    check_quotas(&q)?;
    let p = match projects::get(&st.store.pool, &id).await? {
        Some(p) => p,
        None => projects::by_name(&st.store.pool, &id)
            .await?
            .ok_or_else(|| ApiError::not_found("project", &id))?,
    };
    projects::set_quotas(&st.store.pool, &p.id, q).await?;
    let p = projects::get(&st.store.pool, &p.id)
        .await?
        .ok_or_else(|| ApiError::not_found("project", &id))?;
    Ok(Json(view(&st, p).await?))
}

/// Issues another token for a project (admin).
#[utoipa::path(post, path = "/v1/projects/{id}/tokens", tag = "projects", params(("id" = String, Path)),
    responses((status = 201, body = CreatedToken), (status = 404, body = ErrorBody)))]
pub async fn create_token(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    caller.require_admin()?;
    let p = match projects::get(&st.store.pool, &id).await? {
        Some(p) => p,
        None => projects::by_name(&st.store.pool, &id)
            .await?
            .ok_or_else(|| ApiError::not_found("project", &id))?,
    };
    let mut conn = st.store.pool.acquire().await?;
    let token = tokens::create(&mut conn, &p.id, "api").await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token })))
}
