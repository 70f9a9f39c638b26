//! The instance API over vsock: every VM reaches the control plane's REST
//! API from inside, as itself.
//!
//! For each running VM the daemon listens on `<vm dir>/vsock.sock_80`,
//! the host side of the VM's hybrid vsock port 80 (a guest `connect` to
//! CID 2 port 80 arrives there, as in Firecracker). Each listener belongs
//! to exactly one instance, so a connection's origin *is* its identity:
//! requests carry a [`GuestIdentity`] extension that the [`Caller`]
//! extractor turns into the instance's project (never admin), with no
//! token inside the guest, the way cloud instance roles and the
//! 169.254.169.254 metadata service work. `GET /v1/metadata` answers the
//! instance's own facts and user data.
//!
//! A guest is untrusted input: each VM gets a cap on open connections, a
//! request rate (token bucket, 429 beyond it), a header read timeout and
//! the API's body limits; malformed HTTP is answered 400 by hyper and the
//! connection closed. Every refusal is logged with the instance id, at
//! most one line per kind per VM every 10 s (with the count), so a
//! flooding guest cannot flood the daemon's log either.
//!
//! [`Caller`]: crate::auth::Caller

mod limits;
pub mod metadata;

use std::collections::HashMap;
use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tower::ServiceExt;

pub use limits::GuestLimits;
use limits::{LogLimiter, TokenBucket};

use crate::error::ApiError;

/// The guest port of the instance API (HTTP, like the metadata service).
pub const GUEST_API_PORT: u32 = 80;

/// Who a request over an instance's vsock comes from (set by the
/// listener, never by the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestIdentity {
    /// The instance.
    pub instance_id: String,
    /// Its project.
    pub project_id: String,
}

/// The per-VM listeners of the instance API.
pub struct GuestApi {
    router: Arc<OnceLock<Router>>,
    listeners: Mutex<HashMap<String, JoinHandle<()>>>,
    limits: GuestLimits,
}

/// One VM's shared limit state.
struct VmLimits {
    ident: GuestIdentity,
    connections: Arc<Semaphore>,
    bucket: Option<Mutex<TokenBucket>>,
    log: LogLimiter,
}

impl GuestApi {
    /// No listeners yet; requests are answered once [`Self::set_router`]
    /// was called (503 before).
    pub fn new(limits: GuestLimits) -> Arc<Self> {
        Arc::new(GuestApi {
            router: Arc::new(OnceLock::new()),
            listeners: Mutex::new(HashMap::new()),
            limits,
        })
    }

    /// The API every listener serves (the same router as TCP).
    pub fn set_router(&self, router: Router) {
        let _ = self.router.set(router);
    }

    /// The limits applied to each VM.
    pub fn limits(&self) -> &GuestLimits {
        &self.limits
    }

    /// The host-side socket of an instance's guest port 80, given the
    /// VM's hybrid vsock base path.
    pub fn socket_path(vsock_uds: &Path) -> PathBuf {
        let mut s = vsock_uds.as_os_str().to_owned();
        s.push(format!("_{GUEST_API_PORT}"));
        PathBuf::from(s)
    }

    /// Starts serving `ident`'s instance on `path` (replacing a stale
    /// socket file and any earlier listener of the same instance).
    pub fn open(&self, ident: GuestIdentity, path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let std_listener = std::os::unix::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        std_listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(std_listener)?;
        let vm = Arc::new(VmLimits {
            ident: ident.clone(),
            connections: Arc::new(Semaphore::new(self.limits.max_connections)),
            bucket: self
                .limits
                .requests_per_sec
                .map(|r| Mutex::new(TokenBucket::new(r, self.limits.burst))),
            log: LogLimiter::default(),
        });
        let task = tokio::spawn(accept_loop(
            listener,
            vm,
            self.router.clone(),
            self.limits.header_timeout,
        ));
        tracing::debug!(instance = %ident.instance_id, path = %path.display(), "instance API listening");
        if let Ok(mut l) = self.listeners.lock()
            && let Some(old) = l.insert(ident.instance_id, task)
        {
            old.abort();
        }
        Ok(())
    }

    /// Stops serving an instance (its VM ended) and removes the socket.
    pub fn close(&self, instance_id: &str, path: &Path) {
        let task = self
            .listeners
            .lock()
            .ok()
            .and_then(|mut l| l.remove(instance_id));
        if let Some(t) = task {
            t.abort();
            let _ = std::fs::remove_file(path);
        }
    }

    /// How many instances are served now.
    pub fn open_count(&self) -> usize {
        self.listeners.lock().map(|l| l.len()).unwrap_or(0)
    }
}

async fn accept_loop(
    listener: UnixListener,
    vm: Arc<VmLimits>,
    router: Arc<OnceLock<Router>>,
    header_timeout: Duration,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(instance = %vm.ident.instance_id, error = %e, "instance API: accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = vm.connections.clone().try_acquire_owned() else {
            vm.log.warn("connections", |n| {
                tracing::warn!(
                    instance = %vm.ident.instance_id,
                    refused = n,
                    "instance API: guest is over its open connection limit; refused"
                )
            });
            drop(stream);
            continue;
        };
        let vm = vm.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let svc_vm = vm.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let vm = svc_vm.clone();
                let router = router.clone();
                async move { Ok::<_, Infallible>(handle(&vm, &router, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(256 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await
                && (e.is_parse() || e.is_parse_too_large() || e.is_timeout())
            {
                vm.log.warn("malformed", |n| {
                    tracing::warn!(
                        instance = %vm.ident.instance_id,
                        error = %e,
                        count = n,
                        "instance API: malformed or stalled request from the guest; connection closed"
                    )
                });
            }
            drop(permit);
        });
    }
}

async fn handle(
    vm: &VmLimits,
    router: &OnceLock<Router>,
    mut req: Request<hyper::body::Incoming>,
) -> axum::response::Response {
    if let Some(b) = &vm.bucket {
        let ok = b.lock().map(|mut b| b.take()).unwrap_or(false);
        if !ok {
            vm.log.warn("rate", |n| {
                tracing::warn!(
                    instance = %vm.ident.instance_id,
                    refused = n,
                    "instance API: guest is over its request rate; answered 429"
                )
            });
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "this instance is over its request rate to the instance API; retry later",
            )
            .into_response();
        }
    }
    let Some(router) = router.get() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the control plane is starting",
        )
        .into_response();
    };
    req.extensions_mut().insert(vm.ident.clone());
    match router.clone().oneshot(req.map(Body::new)).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}
