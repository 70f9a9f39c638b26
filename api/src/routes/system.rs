//! Images, the host, operations and the lifecycle event stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::compute::images::Image;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::events;
use crate::store::operations::{self, Operation};

/// The images.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageList {
    /// Images and whether each runs here.
    pub images: Vec<Image>,
}

/// Lists images.
#[utoipa::path(get, path = "/v1/images", tag = "images", responses((status = 200, body = ImageList)))]
pub async fn images(State(st): State<AppState>, _caller: Caller) -> Json<ImageList> {
    Json(ImageList {
        images: st.compute.images(),
    })
}

/// This host.
#[derive(Debug, Serialize, ToSchema)]
pub struct HostInfo {
    /// Host id in the scheduler.
    pub id: String,
    /// What KVM can do here.
    #[schema(value_type = Object)]
    pub capability: hypervisor::probe::HostCapability,
    /// Capacity and allocations (scheduler view).
    #[schema(value_type = Object)]
    pub scheduler: serde_json::Value,
}

/// Shows the host.
#[utoipa::path(get, path = "/v1/host", tag = "host", responses((status = 200, body = HostInfo)))]
pub async fn host(State(st): State<AppState>, _caller: Caller) -> Json<HostInfo> {
    let c = &st.compute;
    Json(HostInfo {
        id: c.host_id().to_string(),
        capability: c.capability().clone(),
        scheduler: serde_json::to_value(c.scheduler().host(c.host_id())).unwrap_or_default(),
    })
}

/// `?wait=SECONDS`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OpQuery {
    /// Seconds to wait for the operation to finish.
    pub wait: Option<u64>,
}

/// Shows an operation.
#[utoipa::path(get, path = "/v1/operations/{id}", tag = "operations", params(("id" = String, Path), OpQuery),
    responses((status = 200, body = Operation), (status = 404, body = ErrorBody)))]
pub async fn operation(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<OpQuery>,
) -> ApiResult<Json<Operation>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(q.wait.unwrap_or(0).min(300));
    loop {
        let op = operations::get(&st.store.pool, Some(&caller.project.id), &id)
            .await?
            .ok_or_else(|| ApiError::not_found("operation", &id))?;
        if op.status != "running" || tokio::time::Instant::now() >= deadline {
            return Ok(Json(op));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `?since=SEQ` replays stored events first.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Replay events after this sequence number first.
    pub since: Option<i64>,
}

/// Streams lifecycle events (Server-Sent Events, one JSON event each).
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, content_type = "text/event-stream", body = String)))]
pub async fn events(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<EventQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let project = caller.project.id.clone();
    let rx = st.compute.subscribe();
    let past = match q.since {
        Some(seq) => events::since(&st.store.pool, Some(&project), seq, 10_000).await?,
        None => Vec::new(),
    };
    let last = past.last().map_or(i64::MIN, |e| e.seq);
    let to_event = |e: &events::LifecycleEvent| {
        Event::default()
            .event(e.kind.clone())
            .id(e.seq.to_string())
            .data(serde_json::to_string(e).unwrap_or_default())
    };
    let replay = futures::stream::iter(past.iter().map(to_event).collect::<Vec<_>>());
    let live = BroadcastStream::new(rx).filter_map(move |item| {
        let project = project.clone();
        async move {
            match item {
                Ok(e) if e.project_id == project && e.seq > last => Some(to_event(&e)),
                _ => None,
            }
        }
    });
    Ok(Sse::new(replay.chain(live).map(Ok)).keep_alive(KeepAlive::default()))
}
