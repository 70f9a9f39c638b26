//! `GET /drives`, `GET /drives/{id}` and `PATCH /drives/{id}`: a drive's
//! rate limits (`{"rate_limiter": {"bandwidth": {"rate": B, "burst": B},
//! "ops": {"rate": N, "burst": N}}}`; a bucket left out or null is no
//! limit). `{id}` is `disk<i>` or the disk's serial. The same for network
//! interfaces under `/network-interfaces` (`{id}` is `net<i>` or the tap's
//! name; one limiter for both directions).

use serde::{Deserialize, Serialize};

use super::http::{Request, Response};
use super::{control_error, method_not_allowed, parse_body};
use crate::control::{Limited, VmControl};
use crate::rate_limiter::RateLimiterConfig;

/// `PATCH /drives/{id}` body and `GET /drives/{id}` answer.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DrivePatch {
    /// The new limits (all of them: a bucket left out is removed).
    pub rate_limiter: RateLimiterConfig,
}

/// Serves `/drives` or `/network-interfaces`.
pub fn handle_list(req: &Request, which: Limited, control: &VmControl) -> Response {
    if req.method != "GET" {
        return method_not_allowed(req, "GET");
    }
    let drives: Vec<serde_json::Value> = control
        .limited_ids(which)
        .into_iter()
        .filter_map(|id| {
            let rl = control.limits(which, &id).ok()?;
            Some(serde_json::json!({ "id": id, "rate_limiter": rl }))
        })
        .collect();
    Response::json(serde_json::Value::Array(drives))
}

/// Serves `/drives/{id}` or `/network-interfaces/{id}`.
pub fn handle(req: &Request, which: Limited, id: &str, control: &VmControl) -> Response {
    match req.method.as_str() {
        "GET" => match control.limits(which, id) {
            Ok(rl) => Response::json(serde_json::json!({ "id": id, "rate_limiter": rl })),
            Err(e) => control_error(&e),
        },
        "PATCH" => {
            let patch: DrivePatch = match parse_body(req) {
                Ok(p) => p,
                Err(r) => return r,
            };
            match control.set_limits(which, id, patch.rate_limiter) {
                Ok(()) => Response::no_content(),
                Err(e) => control_error(&e),
            }
        }
        _ => method_not_allowed(req, "GET, PATCH"),
    }
}
