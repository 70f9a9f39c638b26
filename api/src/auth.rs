//! Who is calling: a bearer token resolves to its project.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::projects::Project;
use crate::store::tokens;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The project the token belongs to; everything it does is scoped to it.
    pub project: Project,
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
        Ok(Caller { project })
    }
}
