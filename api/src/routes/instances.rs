//! `/v1/instances`: launch, list, show, start, stop, reboot, delete, the
//! console and metrics.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::compute::{DEFAULT_STOP_TIMEOUT, LaunchSpec};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ValidJson;
use crate::state::AppState;
use crate::store::instances::{self, Instance};
use crate::store::operations::Operation;

/// Longest a `?wait=` may block.
const MAX_WAIT: u64 = 300;

/// A launch request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    /// Name, unique in the project: 1-63 of `a-z 0-9 -`, starting with a
    /// letter or digit.
    pub name: String,
    /// Image: `mini` or `linux`.
    pub image: String,
    /// vCPUs (1-32).
    pub vcpus: u32,
    /// Memory in MiB (16 to 1,048,576).
    pub memory_mib: u64,
    /// Extra kernel command line.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// A command the guest runs, then powers off (mini: shell commands
    /// separated by `;`).
    #[serde(default)]
    pub run: Option<String>,
    /// Opaque data the guest can read from the metadata service.
    #[serde(default)]
    pub user_data: Option<String>,
    /// `shared` (default) or `dedicated` host cores.
    #[serde(default)]
    pub cpu_policy: Option<String>,
    /// Block volumes (names or ids) attached as more virtio-blk disks, in
    /// order (at most 8); each may be attached to one instance only.
    #[serde(default)]
    pub volumes: Option<Vec<String>>,
}

/// An accepted long operation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The instance as it is now.
    pub instance: Instance,
    /// The operation to poll.
    pub operation: Operation,
}

/// A list of instances.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceList {
    /// The instances.
    pub instances: Vec<Instance>,
}

/// `?wait=SECONDS`: block until the instance settles.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Seconds to wait for a settled state (running, stopped, failed).
    pub wait: Option<u64>,
}

/// `?timeout=SECONDS` for stop and reboot.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StopQuery {
    /// Seconds the guest gets to stop before its VMM is killed (default 10).
    pub timeout: Option<u64>,
}

impl StopQuery {
    /// The deadline asked for, capped, or the default.
    fn stop_timeout(&self) -> Duration {
        self.timeout.map_or(DEFAULT_STOP_TIMEOUT, |s| {
            Duration::from_secs(s.min(MAX_WAIT))
        })
    }
}

/// `?follow=true` for the console.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsoleQuery {
    /// Keep the response open and stream new output.
    pub follow: Option<bool>,
}

fn validate(req: &LaunchRequest) -> ApiResult<()> {
    let n = &req.name;
    let name_ok = !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-');
    if !name_ok {
        return Err(ApiError::invalid(
            "name",
            "1-63 characters of a-z, 0-9 and -, not starting with -",
        ));
    }
    if req.vcpus == 0 || req.vcpus > 32 {
        return Err(ApiError::invalid(
            "vcpus",
            format!("must be 1 to 32, got {}", req.vcpus),
        ));
    }
    if !(16..=1_048_576).contains(&req.memory_mib) {
        return Err(ApiError::invalid(
            "memory_mib",
            format!("must be 16 to 1048576, got {}", req.memory_mib),
        ));
    }
    if let Some(c) = &req.cmdline
        && (c.len() > 2048 || c.contains('\0') || c.contains('\n'))
    {
        return Err(ApiError::invalid("cmdline", "at most 2048 bytes, one line"));
    }
    if let Some(r) = &req.run
        && (r.is_empty() || r.len() > 1024 || r.contains(['"', '\0', '\n']))
    {
        return Err(ApiError::invalid(
            "run",
            "1-1024 bytes, one line, no double quotes",
        ));
    }
    if let Some(u) = &req.user_data
        && u.len() > 16384
    {
        return Err(ApiError::invalid("user_data", "at most 16 KiB"));
    }
    match req.cpu_policy.as_deref() {
        None | Some("shared") | Some("dedicated") => Ok(()),
        Some(other) => Err(ApiError::invalid(
            "cpu_policy",
            format!("shared or dedicated, not {other:?}"),
        )),
    }
}

/// Launches an instance.
#[utoipa::path(post, path = "/v1/instances", request_body = LaunchRequest, tag = "instances",
    responses((status = 202, body = Accepted), (status = 403, body = ErrorBody, description = "quota exceeded"),
              (status = 409, body = ErrorBody, description = "no host can take it, or the image cannot run here"),
              (status = 422, body = ErrorBody)))]
pub async fn launch(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(req): ValidJson<LaunchRequest>,
) -> ApiResult<(
    StatusCode,
    [(header::HeaderName, String); 1],
    Json<Accepted>,
)> {
    validate(&req)?;
    let id = format!("i-{}", uuid::Uuid::now_v7().simple());
    let names = req.volumes.clone().unwrap_or_default();
    if names.len() > 8 {
        return Err(ApiError::invalid("volumes", "at most 8 volumes"));
    }
    let mut volumes = Vec::new();
    for name in &names {
        match st.volumes.attach(&caller.project.id, name, &id).await {
            Ok(path) => {
                let vid = st
                    .volumes
                    .get(&caller.project.id, name)
                    .await
                    .map(|v| v.id)
                    .unwrap_or_else(|_| name.clone());
                volumes.push((vid, path));
            }
            Err(e) => {
                let _ = st.volumes.detach_all(&id).await;
                return Err(crate::routes::storage::volume_error(e));
            }
        }
    }
    let spec = LaunchSpec {
        id: Some(id.clone()),
        volumes,
        name: req.name,
        image: req.image,
        vcpus: req.vcpus,
        memory_mib: req.memory_mib,
        cmdline: req.cmdline.unwrap_or_default(),
        run: req.run,
        user_data: req.user_data,
        dedicated: req.cpu_policy.as_deref() == Some("dedicated"),
    };
    let (instance, operation) = match st.compute.launch(&caller.project, spec).await {
        Ok(x) => x,
        Err(e) => {
            let _ = st.volumes.detach_all(&id).await;
            return Err(e);
        }
    };
    let location = format!("/v1/instances/{}", instance.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(Accepted {
            instance,
            operation,
        }),
    ))
}

/// Lists the project's instances.
#[utoipa::path(get, path = "/v1/instances", tag = "instances", responses((status = 200, body = InstanceList)))]
pub async fn list(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<InstanceList>> {
    Ok(Json(InstanceList {
        instances: instances::list(&st.store.pool, &caller.project.id).await?,
    }))
}

async fn lookup(st: &AppState, caller: &Caller, id: &str) -> ApiResult<Instance> {
    instances::find(&st.store.pool, &caller.project.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance", id))
}

/// Shows an instance (by id or name); `?wait=S` blocks until it settles.
#[utoipa::path(get, path = "/v1/instances/{id}", tag = "instances", params(("id" = String, Path), WaitQuery),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Json<Instance>> {
    let inst = lookup(&st, &caller, &id).await?;
    match q.wait {
        Some(secs) if secs > 0 => {
            let settled = st
                .compute
                .wait_settled(&inst.id, Duration::from_secs(secs.min(MAX_WAIT)))
                .await?;
            if settled.deleted_at.is_some() {
                return Err(ApiError::not_found("instance", &id));
            }
            Ok(Json(settled))
        }
        _ => Ok(Json(inst)),
    }
}

/// Starts a stopped or failed instance.
#[utoipa::path(post, path = "/v1/instances/{id}/start", tag = "instances", params(("id" = String, Path)),
    responses((status = 202, body = Operation), (status = 409, body = ErrorBody)))]
pub async fn start(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Operation>)> {
    let inst = lookup(&st, &caller, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(st.compute.start(&inst).await?)))
}

/// Stops an instance: orderly, then killed after `timeout` seconds.
#[utoipa::path(post, path = "/v1/instances/{id}/stop", tag = "instances", params(("id" = String, Path), StopQuery),
    responses((status = 202, body = Operation), (status = 409, body = ErrorBody)))]
pub async fn stop(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
) -> ApiResult<(StatusCode, Json<Operation>)> {
    let inst = lookup(&st, &caller, &id).await?;
    let timeout = q.stop_timeout();
    Ok((
        StatusCode::ACCEPTED,
        Json(st.compute.stop(&inst, timeout, "stop").await?),
    ))
}

/// Pauses a running instance's vCPUs (its memory stays; billed as paused).
#[utoipa::path(post, path = "/v1/instances/{id}/pause", tag = "instances", params(("id" = String, Path)),
    responses((status = 200, body = Instance), (status = 409, body = ErrorBody)))]
pub async fn pause(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Instance>> {
    let inst = lookup(&st, &caller, &id).await?;
    Ok(Json(st.compute.pause(&inst, true).await?))
}

/// Resumes a paused instance.
#[utoipa::path(post, path = "/v1/instances/{id}/resume", tag = "instances", params(("id" = String, Path)),
    responses((status = 200, body = Instance), (status = 409, body = ErrorBody)))]
pub async fn resume(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Instance>> {
    let inst = lookup(&st, &caller, &id).await?;
    Ok(Json(st.compute.pause(&inst, false).await?))
}

/// Reboots an instance (orderly stop, then start).
#[utoipa::path(post, path = "/v1/instances/{id}/reboot", tag = "instances", params(("id" = String, Path), StopQuery),
    responses((status = 202, body = Operation), (status = 409, body = ErrorBody)))]
pub async fn reboot(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
) -> ApiResult<(StatusCode, Json<Operation>)> {
    let inst = lookup(&st, &caller, &id).await?;
    let timeout = q.stop_timeout();
    Ok((
        StatusCode::ACCEPTED,
        Json(st.compute.reboot(&inst, timeout).await?),
    ))
}

/// Deletes an instance (killing it if it runs).
#[utoipa::path(delete, path = "/v1/instances/{id}", tag = "instances", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let inst = lookup(&st, &caller, &id).await?;
    st.compute.delete(&inst).await?;
    st.volumes
        .detach_all(&inst.id)
        .await
        .map_err(crate::routes::storage::volume_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The console log; `?follow=true` keeps streaming new output.
#[utoipa::path(get, path = "/v1/instances/{id}/console", tag = "instances", params(("id" = String, Path), ConsoleQuery),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody)))]
pub async fn console(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ConsoleQuery>,
) -> ApiResult<Response> {
    let inst = lookup(&st, &caller, &id).await?;
    let path = st.compute.vm_dir(&inst.id).console_log();
    if !q.follow.unwrap_or(false) {
        let text = tokio::fs::read(&path).await.unwrap_or_default();
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    let compute = st.compute.clone();
    let pool = st.store.pool.clone();
    let id = inst.id.clone();
    let stream = async_stream_follow(path, move || {
        let pool = pool.clone();
        let id = id.clone();
        let _keep = compute.clone();
        async move {
            instances::get_any(&pool, &id)
                .await
                .ok()
                .flatten()
                .is_some_and(|i| {
                    i.deleted_at.is_none()
                        && crate::store::instances::state::ACTIVE.contains(&i.state.as_str())
                })
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Streams a growing file until `alive()` turns false and the file is
/// drained.
fn async_stream_follow<F, Fut>(
    path: std::path::PathBuf,
    alive: F,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    futures::stream::unfold((0u64, alive, false), move |(mut offset, alive, done)| {
        let path = path.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let mut buf = Vec::new();
                if let Ok(mut f) = tokio::fs::File::open(&path).await
                    && f.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
                {
                    let _ = f.read_to_end(&mut buf).await;
                }
                if !buf.is_empty() {
                    offset += buf.len() as u64;
                    return Some((Ok(buf), (offset, alive, false)));
                }
                if !alive().await {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
}

/// Attaches to the console over a WebSocket: binary/text frames in are
/// typed into the guest, guest output comes back as binary frames.
#[utoipa::path(get, path = "/v1/instances/{id}/console/ws", tag = "instances", params(("id" = String, Path)),
    responses((status = 101, description = "WebSocket upgrade"), (status = 404, body = ErrorBody)))]
pub async fn console_ws(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let inst = lookup(&st, &caller, &id).await?;
    let sock = st.compute.vm_dir(&inst.id).console_sock();
    let stream = tokio::net::UnixStream::connect(&sock).await.map_err(|e| {
        ApiError::conflict(
            "console_unavailable",
            format!("the instance's console is not reachable: {e}"),
        )
    })?;
    Ok(ws.on_upgrade(move |socket| bridge(socket, stream)))
}

async fn bridge(mut ws: WebSocket, stream: tokio::net::UnixStream) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => if ws.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() { break },
            },
            msg = ws.recv() => match msg {
                Some(Ok(Message::Binary(b))) => if wr.write_all(&b).await.is_err() { break },
                Some(Ok(Message::Text(t))) => if wr.write_all(t.as_bytes()).await.is_err() { break },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Process metrics of a running instance's VMM.
#[derive(Debug, Serialize, ToSchema)]
pub struct Metrics {
    /// Instance id.
    pub id: String,
    /// VMM pid.
    pub pid: i64,
    /// Resident memory of the VMM process (guest memory it touched included), KiB.
    pub rss_kib: u64,
    /// CPU time the VMM and its vCPUs used, milliseconds.
    pub cpu_ms: u64,
    /// Threads (one per vCPU plus device threads).
    pub threads: u64,
    /// Seconds since it reached running.
    pub uptime_s: f64,
    /// The VMM's own metrics from its control API (per vCPU exits and run
    /// time, per device bytes/operations/errors), when it answers.
    #[schema(value_type = Object)]
    pub vmm: Option<serde_json::Value>,
}

/// Metrics of a running instance.
#[utoipa::path(get, path = "/v1/instances/{id}/metrics", tag = "instances", params(("id" = String, Path)),
    responses((status = 200, body = Metrics), (status = 409, body = ErrorBody)))]
pub async fn metrics(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Metrics>> {
    let inst = lookup(&st, &caller, &id).await?;
    let pid = inst.pid.ok_or_else(|| {
        ApiError::conflict(
            "invalid_state",
            format!("instance {} is {}, not running", inst.id, inst.state),
        )
    })?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|_| ApiError::conflict("invalid_state", "the VMM process is gone"))?;
    let field = |k: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ticks: u64 = stat
        .rfind(')')
        .map(|i| &stat[i + 2..])
        .map(|rest| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let vmm = crate::compute::process::vmm_api_get(&st.compute.vm_dir(&inst.id), "/metrics")
        .await
        .ok();
    Ok(Json(Metrics {
        vmm,
        id: inst.id,
        pid,
        rss_kib: field("VmRSS:"),
        cpu_ms: ticks * 1000 / hz,
        threads: field("Threads:"),
        uptime_s: inst
            .started_at
            .map_or(0.0, |s| (crate::store::now_ms() - s) as f64 / 1000.0),
    }))
}
