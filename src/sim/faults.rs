//! Fault injection: rules posted to `/_sim/faults` that make matching API requests fail, slow
//! down, hang, cut their event stream, or slow the agent's events.
//!
//! A rule matches a request by method (absent or `*` = any) and path: a prefix, or a glob when
//! it contains `*` (which matches any run of characters, `/` included). A rule is only
//! *applicable* to requests it can affect: `status`, `hang`, `lose_response` (the request is
//! carried out, then the connection closes with no answer) and `latency_ms` to any request,
//! `stream_cut_after`, `heartbeat_ms` and `garbage_line` only to `GET …/events/stream`, `event_delay_ms` only to
//! `POST …/events` (the request that starts the agent's turn), and `idle_first` (an idle
//! status logged before the echo of the sent events) and `session_error` (the turn reports
//! that error, then idles) too. The first applicable rule wins.
//! With `count` it applies to the next `count` such requests; with `rate` to each with that
//! probability (seeded); with neither, to every one until deleted.
//!
//! It must not know any endpoint's semantics beyond those two path shapes.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{AnthropicError, ScalekitError};
use super::ids::Rng;
use super::state::SimState;

/// A rule as posted (and listed) on the control API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) method: Option<String>,
    pub(crate) path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate: Option<f64>,
    /// Seconds, sent as `Retry-After` (and `retry-after-ms` on the Anthropic API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stream_cut_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event_delay_ms: Option<u64>,
    /// Never answer (until the client gives up or the simulator stops).
    #[serde(default)]
    pub(crate) hang: bool,
    /// Carry the request out, then close the connection without an answer: the client cannot
    /// tell whether it was done (a reply lost in a failover, a proxy timing out).
    #[serde(default)]
    pub(crate) lose_response: bool,
    /// On `GET …/events/stream`: only SSE comment lines (heartbeats) for this long, then the
    /// events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) heartbeat_ms: Option<u64>,
    /// On `GET …/events/stream`: one `data:` line that is not JSON, after the first event.
    #[serde(default)]
    pub(crate) garbage_line: bool,
    /// On `POST …/events`: a `session.status_idle` is logged before the echo of the events.
    #[serde(default)]
    pub(crate) idle_first: bool,
    /// On `POST …/events`: the turn emits `session.error` of this type, then goes idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) session_error: Option<String>,
}

impl FaultSpec {
    /// Checks the values a client could get wrong.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.path.is_empty() {
            return Err("path is required".to_owned());
        }
        if let Some(status) = self.status
            && (StatusCode::from_u16(status).is_err() || status < 400)
        {
            return Err(format!("status {status} is not an error status"));
        }
        if let Some(rate) = self.rate
            && !(0.0..=1.0).contains(&rate)
        {
            return Err("rate must be between 0 and 1".to_owned());
        }
        if self.count.is_some() && self.rate.is_some() {
            return Err("give count or rate, not both".to_owned());
        }
        let effects = [
            self.status.is_some(),
            self.hang,
            self.latency_ms.is_some(),
            self.stream_cut_after.is_some(),
            self.event_delay_ms.is_some(),
            self.lose_response,
            self.heartbeat_ms.is_some(),
            self.garbage_line,
            self.idle_first,
            self.session_error.is_some(),
        ];
        if !effects.contains(&true) {
            return Err(
                "a fault needs an effect: status, hang, lose_response, latency_ms, stream_cut_after, heartbeat_ms, garbage_line, event_delay_ms, idle_first or session_error"
                    .to_owned(),
            );
        }
        Ok(())
    }

    fn applicable(&self, method: &str, path: &str) -> bool {
        let method_ok =
            self.method.as_deref().is_none_or(|m| m == "*" || m.eq_ignore_ascii_case(method));
        if !method_ok || !path_matches(&self.path, path) {
            return false;
        }
        let stream = method == "GET" && path.ends_with("/events/stream");
        let send = method == "POST" && path.ends_with("/events");
        self.status.is_some()
            || self.hang
            || self.lose_response
            || self.latency_ms.is_some()
            || (stream
                && (self.stream_cut_after.is_some()
                    || self.heartbeat_ms.is_some()
                    || self.garbage_line))
            || (send
                && (self.event_delay_ms.is_some()
                    || self.idle_first
                    || self.session_error.is_some()))
    }
}

/// Prefix match, or a `*` glob over the whole path.
fn path_matches(pattern: &str, path: &str) -> bool {
    if !pattern.contains('*') {
        return path.starts_with(pattern);
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !path.starts_with(first) || path.len() < first.len() + last.len() || !path.ends_with(last) {
        return false;
    }
    let mut rest = &path[first.len()..path.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// What a matching rule does to one request; handlers read it from the request extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Effects {
    pub(crate) status: Option<StatusCode>,
    pub(crate) retry_after: Option<f64>,
    pub(crate) latency: Option<Duration>,
    pub(crate) hang: bool,
    pub(crate) lose_response: bool,
    pub(crate) stream_cut_after: Option<u64>,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) garbage_line: bool,
    pub(crate) idle_first: bool,
    pub(crate) session_error: Option<String>,
    pub(crate) event_delay: Option<Duration>,
}

#[derive(Debug)]
struct Rule {
    id: String,
    spec: FaultSpec,
    hits: u64,
}

#[derive(Debug)]
struct Inner {
    rules: Vec<Rule>,
    rng: Rng,
    next_id: u64,
}

/// The fault rules. A std `Mutex`: matching is a short scan, never across an `.await`.
#[derive(Debug)]
pub(crate) struct Faults(Mutex<Inner>);

impl Faults {
    pub(crate) fn new(seed: u64) -> Self {
        Self(Mutex::new(Inner { rules: Vec::new(), rng: Rng::new(seed ^ 0xFA01_7000), next_id: 1 }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add(&self, spec: FaultSpec) -> String {
        let mut inner = self.lock();
        let id = format!("flt_{}", inner.next_id);
        inner.next_id += 1;
        inner.rules.push(Rule { id: id.clone(), spec, hits: 0 });
        id
    }

    pub(crate) fn remove(&self, id: &str) -> bool {
        let mut inner = self.lock();
        let before = inner.rules.len();
        inner.rules.retain(|rule| rule.id != id);
        inner.rules.len() != before
    }

    pub(crate) fn clear(&self) {
        self.lock().rules.clear();
    }

    /// The rules with how often each fired and how many applications remain.
    pub(crate) fn list(&self) -> serde_json::Value {
        let inner = self.lock();
        let rules: Vec<_> = inner
            .rules
            .iter()
            .map(|rule| serde_json::json!({"id": rule.id, "rule": rule.spec, "hits": rule.hits}))
            .collect();
        serde_json::json!({"faults": rules})
    }

    /// Picks the effects for one request, consuming a `count` or rolling a `rate`.
    pub(crate) fn pick(&self, method: &str, path: &str) -> Option<Effects> {
        let mut inner = self.lock();
        let Inner { rules, rng, .. } = &mut *inner;
        let rule = rules.iter_mut().find(|rule| rule.spec.applicable(method, path))?;
        if let Some(rate) = rule.spec.rate
            && rng.next_f64() >= rate
        {
            return None;
        }
        rule.hits += 1;
        let spec = rule.spec.clone();
        if let Some(count) = &mut rule.spec.count {
            *count = count.saturating_sub(1);
        }
        rules.retain(|rule| rule.spec.count != Some(0));
        Some(Effects {
            status: spec.status.and_then(|status| StatusCode::from_u16(status).ok()),
            retry_after: spec.retry_after,
            latency: spec.latency_ms.map(Duration::from_millis),
            hang: spec.hang,
            lose_response: spec.lose_response,
            stream_cut_after: spec.stream_cut_after,
            heartbeat: spec.heartbeat_ms.map(Duration::from_millis),
            garbage_line: spec.garbage_line,
            idle_first: spec.idle_first,
            session_error: spec.session_error,
            event_delay: spec.event_delay_ms.map(Duration::from_millis),
        })
    }
}

/// Middleware: applies the first applicable rule to an API request.
pub(crate) async fn inject(
    State(state): State<Arc<SimState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let Some(effects) = state.faults.pick(request.method().as_str(), &path) else {
        return next.run(request).await;
    };
    if let Some(latency) = effects.latency {
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            () = state.cancel.cancelled() => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    if effects.hang {
        // Only shutdown ends a hung request, so the simulator can still stop gracefully.
        state.cancel.cancelled().await;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Some(status) = effects.status {
        return error_response(&path, status, effects.retry_after);
    }
    let lose_response = effects.lose_response;
    request.extensions_mut().insert(effects);
    let response = next.run(request).await;
    if lose_response {
        // Unwinding out of the connection's task drops the socket before a byte of the answer
        // is written. `resume_unwind` skips the panic hook: nothing is printed.
        drop(response);
        std::panic::resume_unwind(Box::new("sim: response lost on purpose"));
    }
    response
}

/// The injected error in the shape of the API that owns `path`.
fn error_response(path: &str, status: StatusCode, retry_after: Option<f64>) -> Response {
    let anthropic = path.starts_with("/v1/");
    let mut response = if anthropic {
        AnthropicError::from_status(status).into_response()
    } else {
        ScalekitError::from_status(status).into_response()
    };
    if let Some(seconds) = retry_after {
        let headers = response.headers_mut();
        // Retry-After is whole seconds (RFC 9110); round up so a client never retries early.
        if let Ok(value) = HeaderValue::from_str(&(seconds.ceil() as u64).to_string()) {
            headers.insert("retry-after", value);
        }
        if anthropic
            && let Ok(value) =
                HeaderValue::from_str(&((seconds * 1000.0).round() as u64).to_string())
        {
            headers.insert("retry-after-ms", value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_by_prefix_or_glob() {
        assert!(path_matches("/v1/sessions", "/v1/sessions/sesn_1/events"));
        assert!(path_matches("/v1/sessions/*/events", "/v1/sessions/sesn_1/events"));
        assert!(!path_matches("/v1/sessions/*/events", "/v1/sessions/sesn_1/events/stream"));
        assert!(path_matches("*/stream", "/v1/sessions/x/events/stream"));
        assert!(!path_matches("/api", "/v1/agents"));
    }

    #[test]
    fn count_is_consumed_and_effects_apply_only_where_they_can() {
        let faults = Faults::new(1);
        faults.add(FaultSpec {
            path: "/v1/".into(),
            stream_cut_after: Some(2),
            count: Some(1),
            ..FaultSpec::default()
        });
        assert!(faults.pick("POST", "/v1/agents").is_none());
        assert_eq!(
            faults.pick("GET", "/v1/sessions/s/events/stream").unwrap().stream_cut_after,
            Some(2)
        );
        assert!(faults.pick("GET", "/v1/sessions/s/events/stream").is_none());
    }
}
