//! The gateway's typed errors: every 4xx/5xx answer is `{"error": {"code", "message"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Serialize, serde::Deserialize, ToSchema, Debug)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

/// What went wrong: a stable machine-readable `code` and a sentence for people.
#[derive(Serialize, serde::Deserialize, ToSchema, Debug)]
pub struct ErrorInfo {
    /// Stable identifier, e.g. `unauthorized`, `insufficient_funds`, `invalid_json`.
    pub code: String,
    pub message: String,
}

/// An error a handler returns; turned into the typed JSON body with its status.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("authentication required: log in (POST /api/v1/auth/login) and send the token as `Authorization: Bearer …`")]
    Unauthorized,
    #[error("{0}")]
    BadCredentials(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{1}")]
    Conflict(&'static str, String),
    #[error("request body too large (the gateway's --max-body limit, 64 KiB by default)")]
    TooLarge,
    #[error("{1}")]
    Unprocessable(&'static str, String),
    #[error("send the body as JSON with `Content-Type: application/json`")]
    UnsupportedMedia,
    #[error("too many failed logins; retry in {0} s")]
    Throttled(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn bad(code: &'static str, msg: impl Into<String>) -> AppError {
        AppError::BadRequest(code, msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> AppError {
        AppError::Forbidden(msg.into())
    }
    pub fn internal(e: impl std::fmt::Display) -> AppError {
        AppError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(..) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized | AppError::BadCredentials(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(..) => StatusCode::CONFLICT,
            AppError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unprocessable(..) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::UnsupportedMedia => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(c, _)
            | AppError::Conflict(c, _)
            | AppError::Unprocessable(c, _) => c,
            AppError::Unauthorized => "unauthorized",
            AppError::BadCredentials(_) => "bad_credentials",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::TooLarge => "body_too_large",
            AppError::UnsupportedMedia => "unsupported_media_type",
            AppError::Throttled(_) => "throttled",
            AppError::Unavailable(_) => "unavailable",
            AppError::Timeout(_) => "timeout",
            AppError::Internal(_) => "internal",
        }
    }
}

/// The typed body for `status` with `code` and `message`.
pub fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorBody {
        error: ErrorInfo {
            code: code.to_string(),
            message,
        },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Internal(m) = &self {
            tracing::error!("internal error: {m}");
        }
        let mut r = error_response(self.status(), self.code(), self.to_string());
        if let AppError::Throttled(s) = self {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Internal(format!("database: {e}"))
    }
}

/// The code used for a bare status that a layer below the handlers produced (404 of an unknown
/// route, 405 of a method a route lacks, 413 of the body limit).
pub fn code_for_status(s: StatusCode) -> &'static str {
    match s.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        413 => "body_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "throttled",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "error",
    }
}
