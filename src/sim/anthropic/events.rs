//! Session events: send (`POST …/events`, echoing each event with a new `sevt_` id and
//! `processed_at: null` while queued), list (`GET …/events`: the whole history, ascending by
//! default, `types[]` and `created_at[…]` filters on `processed_at`), and the hand-off to the
//! scripted agent. Every `user.message` queues one agent turn; a second one in a session is an
//! audit violation (agentcron promises exactly one per run) but is still answered, as the real
//! API would. A `user.tool_confirmation` must name the tool use the session's paused turn waits
//! on (else 400); it resumes that turn, and is not a `user.message` for the audit. A
//! `user.interrupt` drops an unanswered tool use. Sending to an archived session is a 409.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::sessions::with_session;
use super::{Page, Shared, fields, object_body};
use crate::sim::agent::{self, Turn, TurnFaults};
use crate::sim::audit;
use crate::sim::error::AnthropicError;
use crate::sim::faults::Effects;
use crate::sim::query::Params;
use crate::sim::session::{self, Answer, Live};
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
    fields::events_send(&body)?;
    let Some(Value::Array(events)) = body.get("events") else {
        return Err(AnthropicError::invalid("events: Field required"));
    };
    if events.is_empty() {
        return Err(AnthropicError::invalid("events: must not be empty"));
    }
    let faults = TurnFaults {
        delay: effects.as_ref().and_then(|Extension(effects)| effects.event_delay),
        session_error: effects.as_ref().and_then(|Extension(e)| e.session_error.clone()),
    };
    if effects.is_some_and(|Extension(effects)| effects.idle_first) {
        // A stale idle from before this send, as a client may see one: the turn has not ended.
        let idle = json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}});
        with_session(&state, &id, |session| {
            let mut live = session.rt.lock();
            session::push(&mut live, &state.ids, idle);
            Ok(())
        })?;
    }
    let echoed = send_events(&state, &id, events, EventsOrigin::Send, faults)?;
    Ok(Json(json!({"data": echoed})))
}

/// Validates, stores and echoes `events`, then starts the agent for any `user.message`.
pub(crate) fn send_events(
    state: &Arc<SimState>,
    session_id: &str,
    events: &[Value],
    origin: EventsOrigin,
    faults: TurnFaults,
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
            faults,
        })
    })?;
    let (echoed, n_messages, confirmed) = {
        let mut live = turn.rt.lock();
        check_confirmations(&live, events)?;
        record(state, &mut live, events)
    };
    turn.rt.notify();
    if n_messages > 0 {
        count_messages(state, &turn, n_messages);
    }
    if n_messages > 0 || confirmed {
        start_turns(state, turn, n_messages);
    }
    Ok(echoed)
}

/// Appends `events` to the log under the session lock and applies them; returns the echoes,
/// the number of `user.message`s and whether a tool use was confirmed.
fn record(state: &SimState, live: &mut Live, events: &[Value]) -> (Vec<Value>, u32, bool) {
    let mut echoed = Vec::with_capacity(events.len());
    let mut n_messages = 0;
    let mut confirmed = false;
    for event in events {
        let kind = event["type"].as_str().unwrap_or_default();
        let id = session::push(live, &state.ids, event.clone());
        let mut echo = event.clone();
        echo["id"] = json!(id);
        // As the real API does, results and outcomes are processed on receipt (their
        // `processed_at` is set in the echo); the rest is queued and echoed with null.
        let processed =
            matches!(kind, "user.custom_tool_result" | "user.tool_result" | "user.define_outcome");
        echo["processed_at"] = if processed { json!(crate::sim::ids::now()) } else { Value::Null };
        echoed.push(echo);
        match kind {
            "user.message" => n_messages += 1,
            "user.interrupt" => interrupt(live),
            "user.tool_confirmation" => confirmed |= confirm(live, event),
            _ => {}
        }
    }
    (echoed, n_messages, confirmed)
}

/// Stops the running turn at its next event; a tool use still waiting is dropped.
fn interrupt(live: &mut Live) {
    live.interrupted = true;
    if live.awaiting.as_ref().is_some_and(|awaiting| awaiting.answer.is_none()) {
        live.awaiting = None;
    }
}

/// Records the answer on the awaited tool use; false if it is no longer awaited (an interrupt
/// earlier in the same batch).
fn confirm(live: &mut Live, event: &Value) -> bool {
    let answer = if event["result"] == "allow" {
        Answer::Allow
    } else {
        Answer::Deny(event["deny_message"].as_str().map(Box::from))
    };
    match live.awaiting.as_mut() {
        Some(awaiting) if *awaiting.tool_use_id == event["tool_use_id"] => {
            awaiting.answer = Some(answer);
            true
        }
        _ => false,
    }
}

/// Every `user.tool_confirmation` must name the tool use the session waits on, once.
fn check_confirmations(live: &Live, events: &[Value]) -> Result<(), AnthropicError> {
    let mut answered = live.awaiting.as_ref().is_some_and(|awaiting| awaiting.answer.is_some());
    for event in events.iter().filter(|event| event["type"] == "user.tool_confirmation") {
        let id = event["tool_use_id"].as_str().unwrap_or_default();
        let awaited = live.awaiting.as_ref().is_some_and(|awaiting| &*awaiting.tool_use_id == id);
        if !awaited || answered {
            return Err(AnthropicError::invalid(format!(
                "tool_use_id: {id} is not a tool use awaiting confirmation in this session"
            )));
        }
        answered = true;
    }
    Ok(())
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
    if kind == "user.tool_confirmation" {
        check_confirmation_fields(event)?;
    }
    Ok(())
}

fn check_confirmation_fields(event: &Value) -> Result<(), AnthropicError> {
    if event["tool_use_id"].as_str().is_none_or(str::is_empty) {
        return Err(AnthropicError::invalid("user.tool_confirmation.tool_use_id: Field required"));
    }
    if !matches!(event["result"].as_str(), Some("allow" | "deny")) {
        return Err(AnthropicError::invalid(
            "user.tool_confirmation.result: must be \"allow\" or \"deny\"",
        ));
    }
    if !(event["deny_message"].is_null() || event["deny_message"].is_string()) {
        return Err(AnthropicError::invalid(
            "user.tool_confirmation.deny_message: must be a string",
        ));
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

/// Queues `n_turns` agent turns (0 when only a confirmed tool use is to resume), and starts the
/// agent task unless one is already running (it drains the queue and resumes any confirmed
/// tool use before it exits; the check and the flag share the session lock).
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
