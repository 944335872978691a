//! `ApiError`: one variant per status the API answers with, each rendered as
//! `{"error": "<human message>"}`. Internal details are logged once here and never shown.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

/// An error answer.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed.
    BadRequest(String),
    /// 404: nothing known under that name.
    NotFound(String),
    /// 405: the route exists but not for this method.
    MethodNotAllowed,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 503: a dependency (credentials, database) is unavailable right now.
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route".to_owned(),
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with Content-Type: application/json".to_owned(),
            ),
            Self::Unavailable(detail) => {
                error!(error = %detail, "request failed on a dependency");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("temporarily unavailable: {detail}"),
                )
            }
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Unavailable(format!("database: {e}"))
    }
}

impl From<crate::urls::UrlError> for ApiError {
    fn from(e: crate::urls::UrlError) -> Self {
        Self::Unavailable(format!("cannot make a download URL: {e}"))
    }
}
