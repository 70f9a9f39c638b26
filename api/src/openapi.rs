//! The OpenAPI 3 document, generated from the handlers (utoipa) and served
//! at `/openapi.json`.

use axum::Json;
use utoipa::OpenApi;

use crate::routes::{
    billing, buckets, instances, jobs, poll, projects, queues, sinks, storage, streams, system,
};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "minicloud", description = "A cloud on one Linux machine: instances, projects, quotas."),
    paths(
        instances::launch, instances::list, instances::show, instances::start, instances::stop,
        instances::reboot, instances::pause, instances::resume, instances::delete, instances::console, instances::console_ws, instances::metrics, crate::guest::metadata::metadata,
        projects::create, projects::list, projects::show, projects::own, projects::set_quotas, projects::create_token,
        system::images, system::host, system::operation, system::events,
        streams::create_topic, streams::list_topics, streams::describe_topic, streams::delete_topic,
        streams::add_partitions, streams::produce, streams::fetch, streams::join_group, streams::heartbeat,
        streams::leave_group, poll::poll, sinks::create, sinks::list, sinks::show, sinks::delete,
        buckets::create, buckets::list, buckets::objects, buckets::get_object, streams::commit_offsets, streams::get_offsets, streams::list_groups,
        streams::describe_group, queues::create, queues::list, queues::show, queues::delete, queues::send,
        queues::receive, queues::delete_message, queues::change_visibility, jobs::create, jobs::list,
        jobs::show, jobs::stop, jobs::delete,
        billing::usage, billing::costs, billing::invoices, billing::invoice, billing::set_budget, billing::budget_events,
        storage::create_key, storage::list_keys, storage::delete_key,
        storage::create_volume, storage::list_volumes, storage::show_volume, storage::delete_volume,
        storage::resize_volume, storage::create_snapshot, storage::list_snapshots, storage::show_snapshot,
        storage::delete_snapshot,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
