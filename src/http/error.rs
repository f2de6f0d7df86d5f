//! Every way an API request fails, mapped to its HTTP status in one place.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::Refusal;

/// Seconds a client is asked to wait when the server is overloaded.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Why a request failed; the status each kind maps to is in `into_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: malformed or invalid input.
    BadRequest(String),
    /// 401: no key, or a wrong one.
    Unauthorized(String),
    /// 403: a valid key of the wrong kind, or of another workspace.
    Forbidden(String),
    NotFound(String),
    /// 408: the request was not received and answered within `server.request_timeout`.
    RequestTimeout(String),
    /// 413: over a size limit.
    TooLarge(String),
    /// 429: over `max_events_per_second`; retry after this many seconds.
    RateLimited {
        message: String,
        retry_after: u64,
    },
    /// 503: the write-ahead log's queue is full; retry after a moment.
    Overloaded(String),
    /// 500: storage or the engine failed, not the caller.
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(self) -> String {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::RequestTimeout(m)
            | ApiError::TooLarge(m)
            | ApiError::Overloaded(m)
            | ApiError::Internal(m)
            | ApiError::RateLimited { message: m, .. } => m,
        }
    }

    /// Seconds to wait before retrying, for the answers that carry one.
    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Overloaded(_) => Some(u64::from(RETRY_AFTER_SECONDS)),
            ApiError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after();
        let mut response = (status, Json(json!({ "error": self.message() }))).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tripwire\""),
            );
        }
        response
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::Unauthorized(m) => ApiError::Unauthorized(m),
            Refusal::Forbidden(m) => ApiError::Forbidden(m),
            Refusal::Unknown(m) => ApiError::BadRequest(m),
        }
    }
}
