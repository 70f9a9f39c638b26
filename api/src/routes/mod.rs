//! The REST API: `fn app(state) -> Router` builds the whole service.

pub mod instances;
pub mod projects;
pub mod system;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::json::MAX_BODY;
use crate::state::AppState;

/// The whole API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/instances",
            post(instances::launch).get(instances::list),
        )
        .route(
            "/v1/instances/{id}",
            get(instances::show).delete(instances::delete),
        )
        .route("/v1/instances/{id}/start", post(instances::start))
        .route("/v1/instances/{id}/stop", post(instances::stop))
        .route("/v1/instances/{id}/reboot", post(instances::reboot))
        .route("/v1/instances/{id}/console", get(instances::console))
        .route("/v1/instances/{id}/console/ws", get(instances::console_ws))
        .route("/v1/instances/{id}/metrics", get(instances::metrics))
        .route("/v1/projects", post(projects::create).get(projects::list))
        .route("/v1/projects/{id}", get(projects::show))
        .route("/v1/projects/{id}/quotas", put(projects::set_quotas))
        .route("/v1/projects/{id}/tokens", post(projects::create_token))
        .route("/v1/project", get(projects::own))
        .route("/v1/images", get(system::images))
        .route("/v1/host", get(system::host))
        .route("/v1/operations/{id}", get(system::operation))
        .route("/v1/events", get(system::events))
        .route("/openapi.json", get(crate::openapi::serve))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
            .into_response()
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::idempotency::layer,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
