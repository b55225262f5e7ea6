//! Clients of the two remote APIs: Scalekit AgentKit (REST) and Anthropic Managed Agents
//! (REST + SSE), with one retry policy that classifies every failure.
//!
//! Owns wire types, headers, authentication, retries and the spans of remote calls (`route.rs`:
//! one client span per attempt, its `traceparent` sent with the request). It must not know about runs, Redis or
//! schedules: callers pass plain arguments and get typed results or an [`ApiError`] that says
//! how it should be handled ([`ErrorClass`]).

pub mod anthropic;
mod attempts;
pub mod pace;
pub mod retry;
mod route;
pub mod scalekit;
pub mod stream;
pub mod wait;

use std::fmt;
use std::sync::Once;
use std::time::Duration;

pub(crate) use self::attempts::with_retries;
use crate::config::HttpConfig;
use crate::outcome::ErrorClass;
use crate::telemetry::metrics;

/// Which remote API a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// Scalekit AgentKit.
    Scalekit,
    /// Anthropic Managed Agents.
    Anthropic,
}

impl Api {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scalekit => "scalekit",
            Self::Anthropic => "anthropic",
        }
    }

    /// The vendor's name, for people.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scalekit => "Scalekit",
            Self::Anthropic => "Anthropic",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed remote call, classified. Messages come from the remote body and never include
/// request headers, so they carry no credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The API answered with an error status.
    #[error("{api} {endpoint}: HTTP {status} ({class}){}: {message}", code_suffix(.code))]
    Status {
        /// Which API.
        api: Api,
        /// Which call, such as `sessions.create`.
        endpoint: &'static str,
        /// The HTTP status.
        status: u16,
        /// Anthropic's `error.type` or Scalekit's `error_code` / gRPC code.
        code: Option<String>,
        /// The remote message.
        message: String,
        /// How to handle it.
        class: ErrorClass,
        /// The delay the response asked for.
        retry_after: Option<Duration>,
    },
    /// No usable response: connect error, timeout, reset, truncated stream.
    #[error("{api} {endpoint}: {message} ({class})")]
    Transport {
        /// Which API.
        api: Api,
        /// Which call.
        endpoint: &'static str,
        /// What went wrong.
        message: String,
        /// How to handle it (transient unless the request could not be built).
        class: ErrorClass,
    },
    /// A 2xx response whose body does not have the expected shape.
    #[error("{api} {endpoint}: unexpected response body: {message}")]
    Decode {
        /// Which API.
        api: Api,
        /// Which call.
        endpoint: &'static str,
        /// The decoder's complaint.
        message: String,
    },
    /// An `event: error` frame on an event stream.
    #[error("{api} {endpoint}: error event {error_type}: {message}")]
    StreamError {
        /// Which API.
        api: Api,
        /// Which call.
        endpoint: &'static str,
        /// `error.type` of the frame, such as `overloaded_error`.
        error_type: String,
        /// `error.message` of the frame.
        message: String,
    },
    /// A call with a time budget (`RetryPolicy::budget`, an interactive command's) that kept
    /// failing transiently until the budget or its attempts ran out.
    #[error(
        "cannot reach {} at {origin} after {:.1} s ({attempts} attempt{}); last error: {last}",
        api.name(),
        elapsed.as_secs_f64(),
        if *attempts == 1 { "" } else { "s" }
    )]
    Unreachable {
        /// Which API.
        api: Api,
        /// Where it was sought: scheme, host and port of the base URL, nothing else.
        origin: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent, attempts and pauses included.
        elapsed: Duration,
        /// The last attempt's failure.
        last: Box<Self>,
    },
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_ref().map(|code| format!(" {code}")).unwrap_or_default()
}

impl ApiError {
    /// How the failure should be handled.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Status { class, .. } | Self::Transport { class, .. } => *class,
            Self::Decode { .. } => retry::classify_decode(),
            Self::StreamError { error_type, .. } => retry::classify_stream_error(error_type),
            Self::Unreachable { last, .. } => last.class(),
        }
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, for errors that had one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Unreachable { last, .. } => last.status(),
            _ => None,
        }
    }

    /// Whether Scalekit refused because a connection of the user lapsed (an account no longer
    /// active when a token was minted): the run needs the user, not another attempt.
    pub fn is_lapsed_connection(&self) -> bool {
        matches!(self, Self::Status { api: Api::Scalekit, status, code, .. }
            if retry::is_lapsed_connection(*status, code.as_deref()))
    }

    pub(crate) fn transport(api: Api, endpoint: &'static str, error: reqwest::Error) -> Self {
        // Without the URL: it is ours, not news, and keeps the message short.
        let error = error.without_url();
        let kind = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "connection failed"
        } else {
            "transport error"
        };
        let message = format!("{kind}: {}", error_chain(&error));
        Self::Transport { api, endpoint, message, class: retry::classify_transport(&error) }
    }

    /// A failure of the event streams' own client ([`stream`]): permanent when the request
    /// cannot be made as given ([`stream::is_unusable`]), else the network's and transient.
    pub(crate) fn io(api: Api, endpoint: &'static str, error: &std::io::Error) -> Self {
        let (kind, class) = retry::classify_io(error, stream::is_unusable(error));
        Self::Transport { api, endpoint, message: format!("{kind}: {}", error_chain(error)), class }
    }

    pub(crate) fn decode(api: Api, endpoint: &'static str, error: &dyn fmt::Display) -> Self {
        Self::Decode { api, endpoint, message: error.to_string() }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What both HTTP clients send as `User-Agent`.
pub(crate) const USER_AGENT: &str = concat!("agentcron/", env!("CARGO_PKG_VERSION"));

/// Idle connections kept per host. Unbounded, a burst of runs leaves one idle connection
/// (about 27 KB of hyper's buffers and channel, measured with heaptrack) per run that made a
/// request, for the idle timeout: far more than the requests still to come need.
const POOL_MAX_IDLE_PER_HOST: usize = 32;

/// The one way this crate builds an HTTP client: rustls (ring), the configured timeouts,
/// HTTP/1.1 only.
///
/// Not HTTP/2: a client keeps one HTTP/2 connection per host and does not open another when
/// the server's limit of concurrent streams (100 is common) is reached (RFC 9113, section 9.1;
/// hyperium/hyper#3623). Every session's event stream stays open for its whole turn, so a
/// worker with more sessions than that would leave further streams and requests waiting on
/// the ones before. On HTTP/1.1 each stream has its own connection.
///
/// Streaming calls override the whole-request timeout per request.
///
/// # Errors
/// [`ApiError::Transport`] when the TLS stack cannot be initialised.
pub fn http_client(config: &HttpConfig) -> Result<reqwest::Client, ApiError> {
    static PROVIDER: Once = Once::new();
    // A provider installed by someone else first is just as good, so that error is ignored.
    PROVIDER.call_once(|| {
        if rustls::crypto::ring::default_provider().install_default().is_err() {
            tracing::debug!(message = "A TLS crypto provider was already installed.");
        }
    });
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .http1_only()
        .user_agent(USER_AGENT)
        .build()
        .map_err(|error| ApiError::transport(Api::Anthropic, "client.build", error))
}

/// Counts one attempt in `agentcron_api_requests_total` and turns a transport failure into
/// an [`ApiError`]; any HTTP response, error status included, is returned as is.
pub(crate) fn observe(
    api: Api,
    endpoint: &'static str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<reqwest::Response, ApiError> {
    match response {
        Ok(response) => {
            metrics::api_request(api.as_str(), endpoint, response.status().as_str());
            route::record_status(response.status().as_u16());
            Ok(response)
        }
        Err(error) => {
            metrics::api_request(api.as_str(), endpoint, "transport");
            Err(ApiError::transport(api, endpoint, error))
        }
    }
}

/// Reads a 2xx body as JSON; an empty body reads as `{}` (delete and archive answer that way).
pub(crate) async fn decode_json<T: serde::de::DeserializeOwned>(
    api: Api,
    endpoint: &'static str,
    response: reqwest::Response,
) -> Result<T, ApiError> {
    let bytes = response.bytes().await.map_err(|e| ApiError::transport(api, endpoint, e))?;
    let bytes = if bytes.is_empty() { &b"{}"[..] } else { &bytes[..] };
    serde_json::from_slice(bytes).map_err(|e| ApiError::decode(api, endpoint, &e))
}

/// Percent-encodes one path segment, as the official SDKs do.
pub(crate) fn path_segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>().replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn a_stream_client_error_is_permanent_only_when_the_request_cannot_be_made() {
        let class = |error: io::Error| ApiError::io(Api::Anthropic, "e", &error).class();
        assert_eq!(class(stream::unusable("bad header value")), ErrorClass::Permanent);
        for kind in [
            io::ErrorKind::TimedOut,
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::UnexpectedEof,
            io::ErrorKind::InvalidData,
            // tokio's "could not resolve to any address": the network's, not ours.
            io::ErrorKind::InvalidInput,
        ] {
            assert_eq!(class(io::Error::new(kind, "x")), ErrorClass::Transient, "{kind:?}");
        }
        let error =
            ApiError::io(Api::Anthropic, "e", &io::Error::new(io::ErrorKind::TimedOut, "t"));
        assert_eq!(error.to_string(), "anthropic e: timed out: t (transient)");
    }
}
