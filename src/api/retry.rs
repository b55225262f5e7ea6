//! How a failed remote call is classified: every HTTP status and transport failure of both
//! remote APIs becomes an [`ErrorClass`] here, and the delay a response asks for
//! (`Retry-After` / `retry-after-ms`) is read here.
//!
//! The retry loop is `attempts.rs`'s, paced by [`RetryPolicy`](crate::backoff::RetryPolicy).
//! This module must not know which call is being retried, nor what a run does with the class (that
//! is the outcome table's, `crate::outcome`).

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::outcome::ErrorClass;

/// gRPC codes that grpc-gateway puts in Scalekit error bodies (`{"code": N, …}`).
mod grpc {
    pub(super) const RESOURCE_EXHAUSTED: i64 = 8;
    pub(super) const DEADLINE_EXCEEDED: i64 = 4;
    pub(super) const ABORTED: i64 = 10;
    pub(super) const UNAVAILABLE: i64 = 14;
    pub(super) const UNAUTHENTICATED: i64 = 16;
}

/// Classifies an HTTP error status, refined by the gRPC code of a Scalekit body and by
/// Anthropic's `x-should-retry` header.
///
/// `conflict_is_transient`: Anthropic's 409 means "in progress, try again" (its SDK retries it);
/// Scalekit's 409 means ALREADY_EXISTS.
pub fn classify_status(
    status: StatusCode,
    grpc_code: Option<i64>,
    should_retry: Option<bool>,
    conflict_is_transient: bool,
) -> ErrorClass {
    if let Some(should_retry) = should_retry {
        return if should_retry { ErrorClass::Transient } else { ErrorClass::Permanent };
    }
    match grpc_code {
        Some(grpc::UNAUTHENTICATED) => return ErrorClass::Auth,
        Some(grpc::UNAVAILABLE | grpc::RESOURCE_EXHAUSTED | grpc::DEADLINE_EXCEEDED) => {
            return ErrorClass::Transient;
        }
        Some(grpc::ABORTED) => return ErrorClass::Transient,
        _ => {}
    }
    match status.as_u16() {
        401 => ErrorClass::Auth,
        408 | 429 => ErrorClass::Transient,
        409 if conflict_is_transient => ErrorClass::Transient,
        500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// Classifies a transport failure: every one of them (connect, timeout, reset, truncated body)
/// is transient, except a request that could not even be built.
pub fn classify_transport(error: &reqwest::Error) -> ErrorClass {
    if error.is_builder() { ErrorClass::Permanent } else { ErrorClass::Transient }
}

/// Classifies a failure of the event streams' own client: permanent when the request cannot be
/// made as given (`unusable`), else the network's and transient. Returns a short description
/// of the failure with its class.
pub fn classify_io(error: &std::io::Error, unusable: bool) -> (&'static str, ErrorClass) {
    use std::io::ErrorKind;
    match error.kind() {
        _ if unusable => ("invalid request", ErrorClass::Permanent),
        ErrorKind::TimedOut => ("timed out", ErrorClass::Transient),
        ErrorKind::ConnectionRefused
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::NotFound => ("connection failed", ErrorClass::Transient),
        _ => ("transport error", ErrorClass::Transient),
    }
}

/// Classifies an `error` frame of an event stream by its `error.type`: overload, rate limit,
/// timeout and internal errors are transient, every other type permanent.
pub fn classify_stream_error(error_type: &str) -> ErrorClass {
    match error_type {
        "overloaded_error" | "api_error" | "rate_limit_error" | "timeout_error" => {
            ErrorClass::Transient
        }
        _ => ErrorClass::Permanent,
    }
}

/// Classifies the `error.type` of a `session.error` that ended a turn (its `retry_status` not
/// `retrying`). The MCP server refusing the user's credentials needs the user (`auth`: the run
/// becomes `needs_auth`); an overloaded or rate-limited model, a failed model request, an MCP
/// server or credential host out of reach, and an unknown error may pass (`transient`: retried
/// in a fresh session); billing, limits reached and repository errors will not.
pub fn classify_session_error(error_type: &str) -> ErrorClass {
    match error_type {
        "mcp_authentication_failed_error" => ErrorClass::Auth,
        "model_overloaded_error"
        | "model_rate_limited_error"
        | "model_request_failed_error"
        | "mcp_connection_failed_error"
        | "credential_host_unreachable_error"
        | "unknown_error" => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// Whether a Scalekit refusal says a connection lapsed: gRPC `FAILED_PRECONDITION` (9, HTTP
/// 400), which minting a token answers when a connected account of the user is no longer
/// active. Such a run needs the user, not another attempt.
pub fn is_lapsed_connection(status: u16, code: Option<&str>) -> bool {
    status == 400 && matches!(code, Some("FAILED_PRECONDITION" | "9"))
}

/// Classifies an event stream that broke off mid-frame: the network's, transient.
pub fn classify_cut_stream() -> ErrorClass {
    ErrorClass::Transient
}

/// Classifies a response that could not be decoded: the same request would get the same
/// answer, so it is permanent.
pub fn classify_decode() -> ErrorClass {
    ErrorClass::Permanent
}

/// The delay a response asks for: `retry-after-ms` (milliseconds, Anthropic), else
/// `Retry-After` as seconds or an HTTP date. Capped at one hour.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(3600);
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let parsed =
        if let Some(ms) = header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
            Duration::try_from_secs_f64(ms / 1000.0).ok()
        } else {
            let value = header("retry-after")?.trim();
            match value.parse::<f64>() {
                Ok(seconds) => Duration::try_from_secs_f64(seconds).ok(),
                Err(_) => httpdate(value),
            }
        };
    parsed.map(|delay| delay.min(CAP))
}

fn httpdate(value: &str) -> Option<Duration> {
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at);
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn check(
        status: u16,
        grpc: Option<i64>,
        should: Option<bool>,
        conflict: bool,
        expect: ErrorClass,
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        assert_eq!(classify_status(status, grpc, should, conflict), expect, "{status} {grpc:?}");
    }

    #[test]
    fn classification() {
        use ErrorClass::*;
        check(400, None, None, false, Permanent);
        check(404, None, None, true, Permanent);
        check(401, None, None, false, Auth);
        check(401, Some(16), None, false, Auth);
        check(400, Some(16), None, false, Auth);
        check(408, None, None, false, Transient);
        check(409, None, None, true, Transient);
        check(409, Some(6), None, false, Permanent);
        check(429, None, None, false, Transient);
        check(429, Some(8), None, false, Transient);
        check(500, None, None, false, Transient);
        check(503, Some(14), None, false, Transient);
        check(529, None, None, false, Transient);
        check(400, Some(14), None, false, Transient);
        check(503, None, Some(false), false, Permanent);
        check(400, None, Some(true), false, Transient);
    }

    #[test]
    fn session_errors() {
        use ErrorClass::*;
        assert_eq!(classify_session_error("mcp_authentication_failed_error"), Auth);
        assert_eq!(classify_session_error("model_overloaded_error"), Transient);
        assert_eq!(classify_session_error("mcp_connection_failed_error"), Transient);
        assert_eq!(classify_session_error("billing_error"), Permanent);
        assert_eq!(classify_session_error("a_type_added_later_error"), Permanent);
        assert!(is_lapsed_connection(400, Some("FAILED_PRECONDITION")));
        assert!(is_lapsed_connection(400, Some("9")));
        assert!(!is_lapsed_connection(400, Some("INVALID_ARGUMENT")));
        assert!(!is_lapsed_connection(503, Some("9")));
    }

    #[test]
    fn retry_after_headers() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_str(value).unwrap());
            }
            map
        };
        assert_eq!(retry_after(&headers(&[("retry-after", "2")])), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1.5")])),
            Some(Duration::from_millis(1500))
        );
        let both = headers(&[("retry-after", "5"), ("retry-after-ms", "150")]);
        assert_eq!(retry_after(&both), Some(Duration::from_millis(150)), "ms wins, as in the SDK");
        assert_eq!(
            retry_after(&headers(&[("retry-after", "99999")])),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&headers(&[])), None);
        let past = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(retry_after(&past), Some(Duration::ZERO));
        let future = (chrono::Utc::now() + chrono::TimeDelta::seconds(30)).to_rfc2822();
        let delay = retry_after(&headers(&[("retry-after", &future)])).unwrap();
        assert!(delay > Duration::from_secs(25) && delay <= Duration::from_secs(30), "{delay:?}");
    }
}
