//! The control API: HTTP/1.1 on a Unix socket (`--api-sock PATH`), in the
//! manner of Firecracker's API socket, over [`crate::control::VmControl`].
//! The contract is `hypervisor/api.openapi.yaml`.
//!
//! One thread accepts; each connection gets a thread of its own (at most
//! [`MAX_CONNECTIONS`]), so a client that keeps a connection open does not
//! hold up another. Each resource has its parser and handler in one small
//! file: [`vm`], [`actions`], [`metrics`], [`drives`]. HTTP itself is in
//! [`http`] (request heads parsed by `httparse`, a zero-dependency parser:
//! a whole server crate would bring its own threads and more code than the
//! few lines the rest takes).
//!
//! Errors are `{"fault_message": "..."}` with 400 (bad JSON, unknown
//! fields, bad values), 404 (no such route or drive), 405 (wrong method),
//! 409 (the VM is stopping) or 500; the VMM keeps running after any of
//! them.

pub mod actions;
pub mod drives;
pub mod http;
pub mod metrics;
pub mod vm;

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::control::{ControlError, Limited, VmControl};
use http::{ReadError, Request, Response};

/// Most client connections served at once; more get a 503.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection idle this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Binds `path` (replacing a stale socket file) and serves the API on a
/// thread named `api`.
pub fn start(path: &Path, control: Arc<VmControl>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            // Connection threads inherit this filter.
            crate::seccomp::install_or_die(crate::seccomp::ThreadKind::Api);
            serve(listener, control)
        })?;
    Ok(())
}

/// Accepts connections forever.
pub fn serve(listener: UnixListener, control: Arc<VmControl>) {
    let live = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        if live.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            live.fetch_sub(1, Ordering::AcqRel);
            let busy = Response::fault(503, "too many API connections");
            let _ = http::write_response(&mut conn, &busy, true);
            continue;
        }
        let c = control.clone();
        let l = live.clone();
        let spawned = std::thread::Builder::new()
            .name("api-conn".into())
            .spawn(move || {
                serve_connection(conn, &c);
                l.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn serve_connection(mut conn: UnixStream, control: &VmControl) {
    let _ = conn.set_read_timeout(Some(IDLE_TIMEOUT));
    let mut buf = Vec::new();
    loop {
        let req = match http::read_request(&mut conn, &mut buf) {
            Ok(r) => r,
            Err(ReadError::Bad(resp)) => {
                let _ = http::write_response(&mut conn, &resp, true);
                return;
            }
            Err(ReadError::Closed) | Err(ReadError::Io(_)) => return,
        };
        let (resp, after) = route(&req, control);
        if http::write_response(&mut conn, &resp, req.close).is_err() {
            return;
        }
        if let Some(action) = after {
            action(control);
        }
        if req.close {
            return;
        }
    }
}

/// Something to do once the response is on its way (kill ends the process,
/// so the client must have its answer first).
pub type After = fn(&VmControl);

/// Routes one request.
pub fn route(req: &Request, control: &VmControl) -> (Response, Option<After>) {
    let path = req.path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["vm"] => (vm::handle(req, control), None),
        ["actions"] => actions::handle(req, control),
        ["metrics"] => (metrics::handle(req, control), None),
        ["drives"] => (drives::handle_list(req, Limited::Drives, control), None),
        ["drives", id] => (drives::handle(req, Limited::Drives, id, control), None),
        ["network-interfaces"] => (drives::handle_list(req, Limited::Nets, control), None),
        ["network-interfaces", id] => (drives::handle(req, Limited::Nets, id, control), None),
        _ => (
            Response::fault(404, format!("no route {} {}", req.method, req.path)),
            None,
        ),
    }
}

/// 405 with the methods a route allows.
pub fn method_not_allowed(req: &Request, allow: &str) -> Response {
    let mut r = Response::fault(
        405,
        format!(
            "{} is not allowed on {} (allowed: {allow})",
            req.method, req.path
        ),
    );
    r.headers.push(("Allow", allow.to_string()));
    r
}

/// Parses a JSON body strictly (unknown fields are errors).
pub fn parse_body<T: DeserializeOwned>(req: &Request) -> Result<T, Response> {
    if req.body.is_empty() {
        return Err(Response::fault(
            400,
            format!("{} {} needs a JSON body", req.method, req.path),
        ));
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        Response::fault(
            400,
            format!("invalid body for {} {}: {e}", req.method, req.path),
        )
    })
}

/// The response for a controller error.
pub fn control_error(e: &ControlError) -> Response {
    let status = match e {
        ControlError::Stopping => 409,
        ControlError::PauseTimeout { .. } => 500,
        ControlError::NoSuchDrive(_) => 404,
        ControlError::BadRateLimiter(_) => 400,
    };
    Response::fault(status, e.to_string())
}
