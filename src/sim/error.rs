//! The error responses of the two simulated APIs, each in its real wire shape, and the
//! simulator's own start-up error.
//!
//! - Scalekit (grpc-gateway `google.rpc.Status`): `{"code":<grpc>,"message",…,"details":[ErrorInfo]}`
//!   with the HTTP status grpc-gateway gives the gRPC code.
//! - Anthropic: `{"type":"error","error":{"type","message"},"request_id"}` plus a `request-id`
//!   header, as Anthropic's API answers every error.
//!
//! It must not decide *when* an error happens; handlers do.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ids;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The listening socket could not be bound.
    #[error("binding {addr}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is not valid.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
}

/// A Scalekit REST error.
#[derive(Debug, Clone)]
pub(crate) struct ScalekitError {
    status: StatusCode,
    code: i32,
    message: String,
    error_code: &'static str,
    violations: Vec<(String, String)>,
}

impl ScalekitError {
    fn new(code: i32, error_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: grpc_http_status(code),
            code,
            message: message.into(),
            error_code,
            violations: Vec::new(),
        }
    }

    /// 400 / code 3, with one field violation (protovalidate style).
    pub(crate) fn invalid(field: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        let mut error =
            Self::new(3, "INVALID_ARGUMENT", format!("validation error: {field}: {description}"));
        error.violations.push((field.to_owned(), description));
        error
    }

    /// 400 / code 9: the request is valid but the state forbids it.
    pub(crate) fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(9, "FAILED_PRECONDITION", message)
    }

    /// 401 / code 16.
    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(16, "UNAUTHENTICATED", message)
    }

    /// 404 / code 5.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(5, "RESOURCE_NOT_FOUND", message)
    }

    /// 409 / code 6.
    pub(crate) fn already_exists(message: impl Into<String>) -> Self {
        Self::new(6, "ALREADY_EXISTS", message)
    }

    /// An injected fault: the gRPC code whose HTTP mapping is `status`.
    pub(crate) fn from_status(status: StatusCode) -> Self {
        let code = grpc_code_for(status);
        let mut error = Self::new(code, "SIMULATED_FAULT", format!("simulated fault: {status}"));
        // Keep the exact status asked for even when no gRPC code maps to it.
        error.status = status;
        error
    }
}

impl IntoResponse for ScalekitError {
    fn into_response(self) -> Response {
        let mut info = json!({
            "@type": "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo",
            "error_code": self.error_code,
        });
        if !self.violations.is_empty() {
            let violations: Vec<Value> = self
                .violations
                .iter()
                .map(|(field, description)| json!({"field": field, "description": description}))
                .collect();
            info["validation_error_info"] = json!({"field_violations": violations});
        }
        let body = json!({"code": self.code, "message": self.message, "details": [info]});
        (self.status, axum::Json(body)).into_response()
    }
}

/// grpc-gateway's standard gRPC code → HTTP status mapping.
fn grpc_http_status(code: i32) -> StatusCode {
    match code {
        3 | 9 | 11 => StatusCode::BAD_REQUEST,
        16 => StatusCode::UNAUTHORIZED,
        7 => StatusCode::FORBIDDEN,
        5 => StatusCode::NOT_FOUND,
        6 | 10 => StatusCode::CONFLICT,
        8 => StatusCode::TOO_MANY_REQUESTS,
        12 => StatusCode::NOT_IMPLEMENTED,
        14 => StatusCode::SERVICE_UNAVAILABLE,
        4 => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The inverse of [`grpc_http_status`], for injected faults.
fn grpc_code_for(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        409 => 10,
        429 => 8,
        499 => 1,
        501 => 12,
        503 => 14,
        504 => 4,
        500 => 13,
        _ => 2,
    }
}

/// An Anthropic API error.
#[derive(Debug, Clone)]
pub(crate) struct AnthropicError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl AnthropicError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into() }
    }

    /// The message, for unit tests of the checks that build errors.
    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// 400 `invalid_request_error`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 401 `authentication_error`.
    pub(crate) fn authentication(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
    }

    /// 404 `not_found_error`, worded like the real one: `agent agent_x not found`.
    pub(crate) fn not_found(resource: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", format!("{resource} {id} not found"))
    }

    /// 409, which the docs pair with `invalid_request_error`.
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "invalid_request_error", message)
    }

    /// An injected fault with the `error.type` the docs pair with `status`.
    pub(crate) fn from_status(status: StatusCode) -> Self {
        let kind = match status.as_u16() {
            400 | 409 | 422 => "invalid_request_error",
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            408 | 504 => "timeout_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            _ => "api_error",
        };
        Self::new(status, kind, format!("simulated fault: {status}"))
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let request_id = ids::request_id();
        let body = json!({
            "type": "error",
            "error": {"type": self.kind, "message": self.message},
            "request_id": request_id,
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("request-id", value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_statuses_map_both_ways() {
        for status in [400u16, 401, 403, 404, 429, 500, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(grpc_http_status(grpc_code_for(status)), status);
        }
    }
}
