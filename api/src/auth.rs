//! Who is calling: a bearer token resolves to its project; a request that
//! came in over an instance's vsock acts as that instance, within its
//! project and never as an admin (see [`crate::guest`]).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::guest::GuestIdentity;
use crate::state::AppState;
use crate::store::projects::{self, Project};
use crate::store::tokens;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The project the token belongs to; everything it does is scoped to it.
    pub project: Project,
    /// The instance calling from inside over its vsock (instance identity,
    /// as cloud instance roles give), or `None` for a token.
    pub instance: Option<String>,
}

impl Caller {
    /// Refuses non-admin callers.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.project.is_admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("this route needs an admin token"))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(g) = parts.extensions.get::<GuestIdentity>() {
            // The vsock listener of one instance inserted this; no header
            // the guest sends can change who it is.
            let mut project = projects::get(&state.store.pool, &g.project_id)
                .await?
                .ok_or_else(|| ApiError::unauthenticated("the instance's project is gone"))?;
            project.is_admin = false;
            return Ok(Caller {
                project,
                instance: Some(g.instance_id.clone()),
            });
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthenticated("missing Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| ApiError::unauthenticated("malformed Authorization header"))?;
        let project = tokens::authenticate(&state.store.pool, token)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("unknown token"))?;
        Ok(Caller {
            project,
            instance: None,
        })
    }
}
