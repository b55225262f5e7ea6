//! The audit: what every session did (user messages, tool calls and the token subjects they
//! used, the model usage it reported, summed, and its last `agent.message` text), how often
//! each endpoint was called and when first and last, the W3C `traceparent` each request
//! carried (or that it carried none), in arrival order and per session, and the violations of
//! the invariants
//! agentcron promises — a token used for another user, an expired token used, more than one
//! `user.message` in a session, an unknown vault referenced.
//!
//! It observes and reports; it never changes an API response.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

use super::ids;
use super::state::{SimState, Store};

/// Kinds of violation.
pub(crate) const TOKEN_USER_MISMATCH: &str = "token_user_mismatch";
pub(crate) const EXPIRED_TOKEN: &str = "expired_token";
pub(crate) const MULTIPLE_USER_MESSAGES: &str = "multiple_user_messages";
pub(crate) const UNKNOWN_VAULT: &str = "unknown_vault";

#[derive(Debug, Clone)]
struct Violation {
    kind: &'static str,
    session_id: Option<String>,
    detail: String,
    at: String,
}

/// Request counts and violations. Each has its own std `Mutex`: updates are a map increment or
/// a push, never held across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct Audit {
    requests: Mutex<BTreeMap<String, u64>>,
    /// The trace context of every request, up to [`MAX_TRACED`], and per session.
    traced: Mutex<Traced>,
    /// When each endpoint was first and last called (arrival, before any fault's effect).
    times: Mutex<BTreeMap<String, (String, String)>>,
    violations: Mutex<Vec<Violation>>,
}

/// The most requests whose trace context the audit keeps in arrival order (a scale test's
/// hundred thousand requests would otherwise grow the simulator without bound); the
/// per-session lists are kept whole.
const MAX_TRACED: usize = 100_000;

/// One request as its trace context goes: what was called and the `traceparent` it carried.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    route: String,
    session_id: Option<String>,
    traceparent: Option<String>,
}

impl Seen {
    fn to_json(&self) -> Value {
        json!({"method": self.method, "route": self.route, "session_id": self.session_id,
            "traceparent": self.traceparent})
    }
}

#[derive(Debug, Default)]
struct Traced {
    requests: Vec<Seen>,
    by_session: BTreeMap<String, Vec<Seen>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Audit {
    pub(crate) fn count(&self, endpoint: String) {
        let now = ids::now();
        {
            let mut times = lock(&self.times);
            match times.get_mut(&endpoint) {
                Some((_, last)) => *last = now,
                None => {
                    times.insert(endpoint.clone(), (now.clone(), now));
                }
            }
        }
        *lock(&self.requests).entry(endpoint).or_default() += 1;
    }

    fn trace(&self, seen: Seen) {
        let mut traced = lock(&self.traced);
        if let Some(session_id) = &seen.session_id {
            traced.by_session.entry(session_id.clone()).or_default().push(seen.clone());
        }
        if traced.requests.len() < MAX_TRACED {
            traced.requests.push(seen);
        }
    }

    pub(crate) fn violation(&self, kind: &'static str, session_id: Option<&str>, detail: String) {
        tracing::debug!(message = "Simulator audit violation.", kind, session_id, detail);
        let violation =
            Violation { kind, session_id: session_id.map(str::to_owned), detail, at: ids::now() };
        lock(&self.violations).push(violation);
    }

    pub(crate) fn reset(&self) {
        lock(&self.requests).clear();
        *lock(&self.traced) = Traced::default();
        lock(&self.times).clear();
        lock(&self.violations).clear();
    }

    /// The `GET /_sim/audit` document.
    pub(crate) fn report(&self, store: &Store) -> Value {
        let traced = lock(&self.traced);
        let sessions: Vec<Value> = store
            .sessions
            .values()
            .map(|session| {
                let mut report = session_report(session);
                let seen = traced.by_session.get(&session.id).map_or(&[][..], Vec::as_slice);
                report["traceparents"] = seen.iter().map(Seen::to_json).collect();
                report
            })
            .collect();
        let traceparents: Vec<Value> = traced.requests.iter().map(Seen::to_json).collect();
        drop(traced);
        let n_tool_calls: usize =
            store.sessions.values().map(|s| s.rt.lock().audit.tool_calls.len()).sum();
        let n_user_messages: u64 =
            store.sessions.values().map(|s| u64::from(s.rt.lock().audit.user_messages)).sum();
        let n_calendar: usize = store.users.values().map(|user| user.calendar.len()).sum();
        let violations: Vec<Value> = lock(&self.violations)
            .iter()
            .map(|v| json!({"kind": v.kind, "session_id": v.session_id, "detail": v.detail, "at": v.at}))
            .collect();
        let times: BTreeMap<String, Value> = lock(&self.times)
            .iter()
            .map(|(endpoint, (first, last))| {
                (endpoint.clone(), json!({"first": first, "last": last}))
            })
            .collect();
        json!({
            "sessions": sessions,
            "requests": *lock(&self.requests),
            "request_times": times,
            "traceparents": traceparents,
            "violations": violations,
            "totals": {
                "sessions": store.sessions.len(),
                "user_messages": n_user_messages,
                "tool_calls": n_tool_calls,
                "calendar_events": n_calendar,
            },
        })
    }
}

fn session_report(session: &super::state::Session) -> Value {
    let live = session.rt.lock();
    let tool_calls: Vec<Value> = live
        .audit
        .tool_calls
        .iter()
        .map(|call| json!({"name": call.name, "subject": call.subject, "ok": call.error.is_none(), "error": call.error}))
        .collect();
    let usage = live.audit.usage;
    json!({
        "id": session.id,
        "agent_id": session.agent["id"],
        "vault_ids": session.vault_ids,
        "title": session.title,
        "run_id": session.run_id,
        "user": session.user,
        "token_subjects": live.audit.token_subjects,
        "user_messages": live.audit.user_messages,
        "tool_calls": tool_calls,
        "usage": {"model_requests": usage.model_requests, "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens},
        "final_text": live.audit.final_text,
        "model": session.agent["model"]["id"],
        "status": live.status,
        "archived": session.archived_at.is_some(),
        "deleted": live.closed,
    })
}

/// Middleware: counts each API request under `METHOD /route/{template}` and notes the trace
/// context it carried, before any fault answers it.
pub(crate) async fn count_requests(
    State(state): State<std::sync::Arc<SimState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |matched| matched.as_str().to_owned());
    let method = request.method().to_string();
    state.audit.count(format!("{method} {route}"));
    // `/v1/sessions/{session_id}/...`: the session is the path's fourth segment.
    let session_id = route
        .starts_with("/v1/sessions/{session_id}")
        .then(|| request.uri().path().split('/').nth(3).map(str::to_owned))
        .flatten();
    let traceparent = request
        .headers()
        .get("traceparent")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    state.audit.trace(Seen { method, route, session_id, traceparent });
    next.run(request).await
}
