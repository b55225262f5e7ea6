//! The spans of remote calls: each attempt of a call is one client span named after its
//! method and route template (`GET /v1/sessions/{session_id}/events/stream`), with its
//! status and how many times it was sent before, and each request carries the span's W3C
//! trace context (`traceparent`).
//!
//! Owns the table of routes by endpoint name and the spans' fields. It must not read request
//! bodies or headers into a span (they carry credentials), and makes nothing when traces are
//! off ([`crate::telemetry::trace::enabled`]).
//!
//! See: <https://opentelemetry.io/docs/specs/semconv/http/http-spans/>

use reqwest::RequestBuilder;
use tracing::Span;
use tracing::field::Empty;

use super::Api;
use crate::telemetry::trace;

/// The method and route template of `endpoint`, in the vendors' path syntax. An endpoint
/// missing here is named by itself, so a new call is traced before it is added.
pub(crate) fn route(endpoint: &str) -> (&'static str, &'static str) {
    match endpoint {
        "oauth.token" => ("POST", "/oauth/token"),
        "mcp.list_configs" => ("GET", "/api/v1/mcp/configs"),
        "mcp.create_config" => ("POST", "/api/v1/mcp/configs"),
        "mcp.list_connected_accounts" => {
            ("POST", "/api/v1/mcp/configs/{config_id}/connected_accounts")
        }
        "mcp.create_session_token" => ("POST", "/api/v1/mcp/configs/{config_id}/tokens"),
        "connected_accounts.magic_link" => ("POST", "/api/v1/connected_accounts/magic_link"),
        "connected_accounts.details" => ("GET", "/api/v1/connected_accounts/details"),
        "agents.create" => ("POST", "/v1/agents"),
        "agents.list" => ("GET", "/v1/agents"),
        "agents.update" => ("POST", "/v1/agents/{agent_id}"),
        "agents.retrieve" => ("GET", "/v1/agents/{agent_id}"),
        "environments.create" => ("POST", "/v1/environments"),
        "environments.list" => ("GET", "/v1/environments"),
        "environments.retrieve" => ("GET", "/v1/environments/{environment_id}"),
        "sessions.create" => ("POST", "/v1/sessions"),
        "sessions.list" => ("GET", "/v1/sessions"),
        "sessions.retrieve" => ("GET", "/v1/sessions/{session_id}"),
        "sessions.archive" => ("POST", "/v1/sessions/{session_id}/archive"),
        "sessions.events.send" => ("POST", "/v1/sessions/{session_id}/events"),
        "sessions.events.list" => ("GET", "/v1/sessions/{session_id}/events"),
        "sessions.events.stream" => ("GET", "/v1/sessions/{session_id}/events/stream"),
        "vaults.create" => ("POST", "/v1/vaults"),
        "vaults.list" => ("GET", "/v1/vaults"),
        "vaults.retrieve" => ("GET", "/v1/vaults/{vault_id}"),
        "vaults.delete" => ("DELETE", "/v1/vaults/{vault_id}"),
        "vaults.credentials.create" => ("POST", "/v1/vaults/{vault_id}/credentials"),
        "vaults.credentials.list" => ("GET", "/v1/vaults/{vault_id}/credentials"),
        "vaults.credentials.update" => {
            ("POST", "/v1/vaults/{vault_id}/credentials/{credential_id}")
        }
        "vaults.credentials.retrieve" => {
            ("GET", "/v1/vaults/{vault_id}/credentials/{credential_id}")
        }
        "vaults.credentials.delete" => {
            ("DELETE", "/v1/vaults/{vault_id}/credentials/{credential_id}")
        }
        _ => ("_OTHER", "unknown"),
    }
}

/// The span of one attempt of `endpoint`, sent `resends` times before; a disabled span when
/// traces are off.
pub(crate) fn span(api: Api, endpoint: &'static str, resends: u32) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let (method, template) = route(endpoint);
    tracing::info_span!(
        "remote call",
        otel.name = format!("{method} {template}"),
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = method,
        url.template = template,
        // As i64: the exporter writes smaller unsigned integers as text.
        http.request.resend_count = i64::from(resends),
        http.response.status_code = Empty,
        agentcron.api = api.as_str(),
        agentcron.endpoint = endpoint,
    )
}

/// Notes the response's status on the current call's span; a status of 500 and above marks it
/// failed (a client span's 4xx is the caller's business, per the conventions).
pub(crate) fn record_status(status: u16) {
    let span = Span::current();
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// Marks the current call's span failed: no response, or one that ended the call.
pub(crate) fn record_failure(span: &Span) {
    span.record("otel.status_code", "ERROR");
}

/// `request` with the current span's trace context headers, when traces are on.
pub(crate) fn traced(request: RequestBuilder) -> RequestBuilder {
    trace::context_headers()
        .into_iter()
        .fold(request, |request, (name, value)| request.header(name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every endpoint the clients call has a route, in the path syntax of the vendors' docs.
    #[test]
    fn every_endpoint_has_a_route() {
        let sources = [
            include_str!("scalekit.rs"),
            include_str!("anthropic.rs"),
            include_str!("anthropic/credentials.rs"),
            include_str!("anthropic/events.rs"),
        ];
        // The endpoint names as the clients pass them: `call("…"`, `send("…"`, constants.
        let quoted = regex::Regex::new(
            r#"(?:call(?:::<\w+>)?\(\s*|send\(|endpoint = |ENDPOINT: &str = )"([a-z_.]+)""#,
        )
        .unwrap();
        let mut n_checked = 0;
        for source in sources {
            for found in quoted.captures_iter(source) {
                let endpoint = &found[1];
                let (method, template) = route(endpoint);
                assert_ne!(method, "_OTHER", "{endpoint} has no route");
                assert!(template.starts_with('/'), "{endpoint}: {template}");
                n_checked += 1;
            }
        }
        assert!(n_checked > 20, "only {n_checked} endpoints found");
    }
}
