//! `GET /metrics`: per vCPU (exits by reason, time in the guest), per
//! device (operations and bytes read and written, errors, rate-limiter
//! waits, vsock connections) and the VMM's resident set size.

use super::http::{Request, Response};
use super::method_not_allowed;
use crate::control::VmControl;

/// Serves `/metrics`.
pub fn handle(req: &Request, control: &VmControl) -> Response {
    if req.method != "GET" {
        return method_not_allowed(req, "GET");
    }
    match serde_json::to_value(control.metrics()) {
        Ok(v) => Response::json(v),
        Err(e) => Response::fault(500, e.to_string()),
    }
}
