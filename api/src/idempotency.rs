//! `Idempotency-Key` on writes: the first answer to a key is stored and
//! replayed for retries; the same key with a different request is refused.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::json::MAX_BODY;
use crate::state::AppState;
use crate::store::{idempotency, tokens};

/// Header name.
pub const HEADER: &str = "idempotency-key";

/// The middleware.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let is_write = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let key = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (Some(key), true) = (key, is_write) else {
        return next.run(req).await;
    };
    if key.is_empty() || key.len() > 255 {
        return ApiError::invalid("Idempotency-Key", "must be 1 to 255 characters").into_response();
    }
    // Scope keys by the caller's project: an instance over its vsock, else
    // the token's; unauthenticated requests are answered by the route.
    let guest = req
        .extensions()
        .get::<crate::guest::GuestIdentity>()
        .map(|g| g.project_id.clone());
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let project = match (guest, token) {
        (Some(p), _) => p,
        (None, Some(token)) => match tokens::authenticate(&state.store.pool, &token).await {
            Ok(Some(p)) => p.id,
            _ => return next.run(req).await,
        },
        (None, None) => return next.run(req).await,
    };
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body over 1 MiB",
            )
            .into_response();
        }
    };
    let mut h = Sha256::new();
    h.update(parts.method.as_str());
    h.update([0]);
    h.update(parts.uri.path());
    h.update([0]);
    h.update(&bytes);
    let digest = hex::encode(h.finalize());
    match idempotency::get(&state.store.pool, &project, &key).await {
        Ok(Some(stored)) if stored.request_sha256 == digest => {
            let mut resp = Response::new(Body::from(stored.body));
            *resp.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
            resp.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            resp.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            return resp;
        }
        Ok(Some(_)) => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            )
            .into_response();
        }
        Ok(None) => {}
        Err(e) => return ApiError::from(e).into_response(),
    }
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = resp.status();
    // Only answers that did something are worth replaying; a 5xx may be
    // retried for real.
    if status.is_server_error() {
        return resp;
    }
    let (rparts, rbody) = resp.into_parts();
    let Ok(rbytes) = to_bytes(rbody, 16 * MAX_BODY).await else {
        return ApiError::internal("idempotency", "response too large to store").into_response();
    };
    if let Err(e) = idempotency::put(
        &state.store.pool,
        &project,
        &key,
        &method,
        &path,
        &digest,
        status.as_u16(),
        &rbytes,
    )
    .await
    {
        tracing::warn!(error = %e, "storing an idempotent answer failed");
    }
    Response::from_parts(rparts, Body::from(rbytes))
}
