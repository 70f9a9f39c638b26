//! The REST API: `fn app(state) -> Router` builds the whole service.

pub mod billing;
pub mod buckets;
pub mod instances;
pub mod jobs;
pub mod poll;
pub mod projects;
pub mod queues;
pub mod sinks;
pub mod storage;
pub mod streams;
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
        .route("/v1/instances/{id}/pause", post(instances::pause))
        .route("/v1/instances/{id}/resume", post(instances::resume))
        .route("/v1/instances/{id}/console", get(instances::console))
        .route("/v1/instances/{id}/console/ws", get(instances::console_ws))
        .route("/v1/instances/{id}/metrics", get(instances::metrics))
        .route("/v1/projects", post(projects::create).get(projects::list))
        .route("/v1/projects/{id}", get(projects::show))
        .route("/v1/projects/{id}/quotas", put(projects::set_quotas))
        .route("/v1/projects/{id}/tokens", post(projects::create_token))
        .route("/v1/project", get(projects::own))
        .route("/v1/billing/usage", get(billing::usage))
        .route("/v1/billing/costs", get(billing::costs))
        .route("/v1/billing/invoices", get(billing::invoices))
        .route("/v1/billing/invoices/{id}", get(billing::invoice))
        .route("/v1/billing/budget", put(billing::set_budget))
        .route("/v1/billing/budget-events", get(billing::budget_events))
        .route("/v1/images", get(system::images))
        .route("/v1/host", get(system::host))
        .route("/v1/metadata", get(crate::guest::metadata::metadata))
        .route("/v1/buckets", post(buckets::create).get(buckets::list))
        .route("/v1/buckets/{bucket}/objects", get(buckets::objects))
        .route(
            "/v1/buckets/{bucket}/objects/{*key}",
            get(buckets::get_object),
        )
        .route("/v1/sinks", post(sinks::create).get(sinks::list))
        .route("/v1/sinks/{name}", get(sinks::show).delete(sinks::delete))
        .route("/v1/operations/{id}", get(system::operation))
        .route("/v1/events", get(system::events))
        .merge(streams_routes())
        .route(
            "/v1/s3-keys",
            post(storage::create_key).get(storage::list_keys),
        )
        .route(
            "/v1/s3-keys/{id}",
            axum::routing::delete(storage::delete_key),
        )
        .route(
            "/v1/volumes",
            post(storage::create_volume).get(storage::list_volumes),
        )
        .route(
            "/v1/volumes/{id}",
            get(storage::show_volume).delete(storage::delete_volume),
        )
        .route("/v1/volumes/{id}/resize", post(storage::resize_volume))
        .route("/v1/volumes/{id}/snapshots", post(storage::create_snapshot))
        .route("/v1/snapshots", get(storage::list_snapshots))
        .route(
            "/v1/snapshots/{id}",
            get(storage::show_snapshot).delete(storage::delete_snapshot),
        )
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

/// Topics, consumer groups, queues and stream jobs (the `streams` crate).
fn streams_routes() -> Router<AppState> {
    use axum::routing::delete;
    Router::new()
        .route(
            "/v1/topics",
            post(streams::create_topic).get(streams::list_topics),
        )
        .route(
            "/v1/topics/{topic}",
            get(streams::describe_topic).delete(streams::delete_topic),
        )
        .route(
            "/v1/topics/{topic}/partitions",
            post(streams::add_partitions),
        )
        .route(
            "/v1/topics/{topic}/records",
            post(streams::produce).layer(DefaultBodyLimit::max(streams::MAX_PRODUCE_BODY)),
        )
        .route(
            "/v1/topics/{topic}/partitions/{partition}/records",
            get(streams::fetch),
        )
        .route("/v1/groups", get(streams::list_groups))
        .route("/v1/groups/{group}", get(streams::describe_group))
        .route("/v1/groups/{group}/join", post(streams::join_group))
        .route("/v1/groups/{group}/heartbeat", post(streams::heartbeat))
        .route("/v1/groups/{group}/leave", post(streams::leave_group))
        .route("/v1/groups/{group}/poll", post(poll::poll))
        .route(
            "/v1/groups/{group}/offsets",
            post(streams::commit_offsets).get(streams::get_offsets),
        )
        .route("/v1/queues", post(queues::create).get(queues::list))
        .route(
            "/v1/queues/{queue}",
            get(queues::show).delete(queues::delete),
        )
        .route("/v1/queues/{queue}/messages", post(queues::send))
        .route("/v1/queues/{queue}/receive", post(queues::receive))
        .route(
            "/v1/queues/{queue}/messages/{receipt}",
            delete(queues::delete_message),
        )
        .route(
            "/v1/queues/{queue}/messages/{receipt}/visibility",
            post(queues::change_visibility),
        )
        .route("/v1/stream-jobs", post(jobs::create).get(jobs::list))
        .route(
            "/v1/stream-jobs/{job}",
            get(jobs::show).delete(jobs::delete),
        )
        .route("/v1/stream-jobs/{job}/stop", post(jobs::stop))
}
