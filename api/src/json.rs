//! A JSON body extractor whose errors name the offending field
//! (`serde_path_to_error`) and use the API's error shape, instead of axum's
//! plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest request body the API reads (1 MiB).
pub const MAX_BODY: usize = 1 << 20;

/// `Json<T>` with field-naming errors.
pub struct ValidJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                e.body_text(),
            )
        })?;
        parse(&bytes).map(ValidJson)
    }
}

/// Parses a JSON body into `T`, naming the field on error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // A missing or unknown field is reported at its parent's path; name
        // the field itself.
        let text = inner.to_string();
        let named = ["missing field `", "unknown field `"].iter().find_map(|p| {
            text.split_once(p)
                .and_then(|(_, rest)| rest.split_once('`'))
                .map(|(f, _)| f.to_string())
        });
        let field = match (path.as_str(), named) {
            (".", Some(f)) => f,
            (".", None) => "body".to_string(),
            (p, Some(f)) => format!("{p}.{f}"),
            (p, None) => p.to_string(),
        };
        let status = if inner.is_syntax() || inner.is_eof() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        let code = if status == StatusCode::BAD_REQUEST {
            "invalid_json"
        } else {
            "validation_failed"
        };
        ApiError::new(status, code, format!("{field}: {inner}"))
            .details(serde_json::json!({ "field": field }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        vcpus: u32,
    }

    #[test]
    fn wrong_type_names_the_field() {
        let e = parse::<Body>(br#"{"name":"a","vcpus":"two"}"#).expect_err("must fail");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.details["field"], "vcpus");
    }

    #[test]
    fn unknown_field_is_refused() {
        let e = parse::<Body>(br#"{"name":"a","vcpus":1,"turbo":true}"#).expect_err("must fail");
        assert!(e.message.contains("unknown field `turbo`"), "{}", e.message);
    }

    #[test]
    fn broken_json_is_400() {
        let e = parse::<Body>(br#"{"name":"#).expect_err("must fail");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn huge_numbers_are_422() {
        let e = parse::<Body>(br#"{"name":"a","vcpus":99999999999999999999}"#).expect_err("x");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
