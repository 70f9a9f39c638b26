//! `PUT /actions`: `{"action_type": "shutdown"}` (orderly: Ctrl-Alt-Del to
//! the guest, then the `--shutdown-timeout` deadline) or `"kill"` (now).

use serde::Deserialize;

use super::http::{Request, Response};
use super::{After, control_error, method_not_allowed, parse_body};
use crate::control::VmControl;

/// `PUT /actions` body.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// What to do.
    pub action_type: ActionType,
}

/// The actions.
#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum ActionType {
    /// Ask the guest to power off; stop it at the deadline.
    Shutdown,
    /// Stop the VM now.
    Kill,
}

/// Serves `/actions`.
pub fn handle(req: &Request, control: &VmControl) -> (Response, Option<After>) {
    if req.method != "PUT" {
        return (method_not_allowed(req, "PUT"), None);
    }
    let action: Action = match parse_body(req) {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    match action.action_type {
        ActionType::Shutdown => match control.shutdown() {
            Ok(()) => (Response::no_content(), None),
            Err(e) => (control_error(&e), None),
        },
        // Answer first: killing ends the process.
        ActionType::Kill => (Response::no_content(), Some(|c: &VmControl| c.kill())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_bodies_are_strict() {
        let a: Action = serde_json::from_str(r#"{"action_type":"kill"}"#).expect("ok");
        assert_eq!(a.action_type, ActionType::Kill);
        assert!(serde_json::from_str::<Action>(r#"{"action_type":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<Action>(r#"{"action_type":"kill","now":true}"#).is_err());
    }
}
