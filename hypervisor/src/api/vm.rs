//! `GET /vm` (state, uptime, configuration) and `PATCH /vm` (pause,
//! resume).

use serde::Deserialize;

use super::http::{Request, Response};
use super::{control_error, method_not_allowed, parse_body};
use crate::control::VmControl;

/// `PATCH /vm` body.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VmPatch {
    /// The state wanted.
    pub state: WantedState,
}

/// States a client can ask for.
#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum WantedState {
    /// Park the vCPUs.
    Paused,
    /// Run them again.
    Resumed,
}

/// Serves `/vm`.
pub fn handle(req: &Request, control: &VmControl) -> Response {
    match req.method.as_str() {
        "GET" => match serde_json::to_value(control.info()) {
            Ok(v) => Response::json(v),
            Err(e) => Response::fault(500, e.to_string()),
        },
        "PATCH" => {
            let patch: VmPatch = match parse_body(req) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let r = match patch.state {
                WantedState::Paused => control.pause(),
                WantedState::Resumed => control.resume(),
            };
            match r {
                Ok(()) => Response::no_content(),
                Err(e) => control_error(&e),
            }
        }
        _ => method_not_allowed(req, "GET, PATCH"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_bodies_are_strict() {
        let ok: VmPatch = serde_json::from_str(r#"{"state":"paused"}"#).expect("ok");
        assert_eq!(ok.state, WantedState::Paused);
        for bad in [
            r#"{"state":"running"}"#,
            r#"{"state":"paused","x":1}"#,
            r#"{}"#,
        ] {
            assert!(serde_json::from_str::<VmPatch>(bad).is_err(), "{bad}");
        }
    }
}
