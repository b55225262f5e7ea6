//! Session events: send (`POST …/events`, echoing each event with a new `sevt_` id and
//! `processed_at: null` while queued), list (`GET …/events`: the whole history, ascending by
//! default, `types[]` and `created_at[…]` filters on `processed_at`), and the hand-off to the
//! scripted agent. Every `user.message` queues one agent turn; a second one in a session is an
//! audit violation (agentcron promises exactly one per run) but is still answered, as the real
//! API would. Sending to an archived session is a 409.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::sessions::with_session;
use super::{Page, Shared, object_body};
use crate::sim::agent::{self, Turn};
use crate::sim::audit;
use crate::sim::error::AnthropicError;
use crate::sim::faults::Effects;
use crate::sim::query::Params;
use crate::sim::state::SimState;

/// Events a client may send.
const USER_EVENTS: [&str; 7] = [
    "user.message",
    "user.interrupt",
    "user.tool_confirmation",
    "user.custom_tool_result",
    "user.tool_result",
    "user.define_outcome",
    "system.message",
];

/// Where events come from: `events.send` or `sessions.create(initial_events=…)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventsOrigin {
    Send,
    Initial,
}

/// `POST /v1/sessions/{session_id}/events`.
pub(super) async fn send(
    State(state): Shared,
    Path(id): Path<String>,
    effects: Option<Extension<Effects>>,
    body: Bytes,
) -> Result<Json<Value>, AnthropicError> {
    let body = object_body(&body)?;
    let Some(Value::Array(events)) = body.get("events") else {
        return Err(AnthropicError::invalid("events: Field required"));
    };
    if events.is_empty() {
        return Err(AnthropicError::invalid("events: must not be empty"));
    }
    let delay = effects.and_then(|Extension(effects)| effects.event_delay);
    let echoed = send_events(&state, &id, events, EventsOrigin::Send, delay)?;
    Ok(Json(json!({"data": echoed})))
}

/// Validates, stores and echoes `events`, then starts the agent for any `user.message`.
pub(crate) fn send_events(
    state: &Arc<SimState>,
    session_id: &str,
    events: &[Value],
    origin: EventsOrigin,
    delay: Option<Duration>,
) -> Result<Vec<Value>, AnthropicError> {
    events.iter().try_for_each(check_event)?;
    let turn = with_session(state, session_id, |session| {
        if session.archived_at.is_some() && origin == EventsOrigin::Send {
            return Err(AnthropicError::conflict(format!("session {session_id} is archived")));
        }
        Ok(Turn {
            session_id: session.id.clone(),
            rt: session.rt.clone(),
            agent: session.agent.clone(),
            vault_ids: session.vault_ids.clone(),
            user: session.user.clone(),
            delay,
        })
    })?;
    let mut echoed = Vec::with_capacity(events.len());
    let mut n_messages = 0;
    for event in events {
        let kind = event["type"].as_str().unwrap_or_default();
        let id = turn.rt.append(&state.ids, event.clone());
        let mut echo = event.clone();
        echo["id"] = json!(id);
        // Results and outcomes are processed on receipt; the rest is queued (spec §4.1).
        let processed =
            matches!(kind, "user.custom_tool_result" | "user.tool_result" | "user.define_outcome");
        echo["processed_at"] = if processed { json!(crate::sim::ids::now()) } else { Value::Null };
        echoed.push(echo);
        match kind {
            "user.message" => n_messages += 1,
            "user.interrupt" => turn.rt.lock().interrupted = true,
            _ => {}
        }
    }
    if n_messages > 0 {
        count_messages(state, &turn, n_messages);
        start_turns(state, turn, n_messages);
    }
    Ok(echoed)
}

fn check_event(event: &Value) -> Result<(), AnthropicError> {
    let kind = event["type"].as_str().unwrap_or_default();
    if !USER_EVENTS.contains(&kind) {
        return Err(AnthropicError::invalid(format!("events: unsupported event type {kind:?}")));
    }
    if matches!(kind, "user.message" | "system.message") {
        let Some(blocks) = event["content"].as_array().filter(|blocks| !blocks.is_empty()) else {
            return Err(AnthropicError::invalid(format!(
                "{kind}.content: must be a non-empty list"
            )));
        };
        for block in blocks {
            match block["type"].as_str() {
                Some("text") if block["text"].is_string() => {}
                Some("image" | "document" | "redacted") => {}
                _ => {
                    return Err(AnthropicError::invalid(format!(
                        "{kind}.content: invalid content block"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Counts `user.message`s for the audit; more than one per session is a violation.
fn count_messages(state: &SimState, turn: &Turn, n_messages: u32) {
    let total = {
        let mut live = turn.rt.lock();
        live.audit.user_messages += n_messages;
        live.audit.user_messages
    };
    if total > 1 {
        state.audit.violation(
            audit::MULTIPLE_USER_MESSAGES,
            Some(&turn.session_id),
            format!("session received {total} user.message events"),
        );
    }
}

/// Queues `n_turns` agent turns, and starts the agent task unless one is already running (it
/// drains the queue before it exits; the check and the flag share the session lock).
pub(crate) fn start_turns(state: &Arc<SimState>, turn: Turn, n_turns: u32) {
    {
        let mut live = turn.rt.lock();
        live.pending_turns += n_turns;
        if live.agent_running {
            return;
        }
        live.agent_running = true;
    }
    state.tasks.spawn(agent::run(state.clone(), turn));
}

/// `GET /v1/sessions/{session_id}/events`.
pub(super) async fn list(
    State(state): Shared,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Value>, AnthropicError> {
    let page = Page::from(&params, 1000, 1000, false)?;
    let rt = with_session(&state, &id, |session| Ok(session.rt.clone()))?;
    let types = params.all("types[]");
    let bounds = time_bounds(&params)?;
    let items: Vec<Value> = rt
        .lock()
        .events
        .iter()
        .filter(|event| types.is_empty() || types.contains(&&*event.kind))
        .filter(|event| bounds.iter().all(|(op, at)| op(&event.processed_at, at)))
        .filter_map(|event| serde_json::from_str(&event.json).ok())
        .collect();
    Ok(page.reply(items, false))
}

/// Compares an event's `processed_at` with a bound.
type Compare = fn(&DateTime<Utc>, &DateTime<Utc>) -> bool;
type Bound = (Compare, DateTime<Utc>);

fn time_bounds(params: &Params) -> Result<Vec<Bound>, AnthropicError> {
    let ops: [(&str, Compare); 4] = [
        ("created_at[gt]", |a, b| a > b),
        ("created_at[gte]", |a, b| a >= b),
        ("created_at[lt]", |a, b| a < b),
        ("created_at[lte]", |a, b| a <= b),
    ];
    let mut bounds = Vec::new();
    for (key, op) in ops {
        if let Some(text) = params.get(key) {
            let at = DateTime::parse_from_rfc3339(text).map_err(|_| {
                AnthropicError::invalid(format!("{key}: must be an RFC 3339 timestamp"))
            })?;
            bounds.push((op, at.with_timezone(&Utc)));
        }
    }
    Ok(bounds)
}
