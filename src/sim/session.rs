//! The live part of one simulated Anthropic session: its event log, status, queued turns, the
//! tool use waiting for a `user.tool_confirmation`, and audit counters, plus the change signal
//! the SSE streams wait on.
//!
//! Concurrency: each session has its own std `Mutex` (never held across `.await`), so the hot
//! path — the agent appending events, streams reading them — never touches the global store
//! lock. A `watch` channel carries the event count: a stream subscribes *before* it reads the
//! count, so it cannot miss an append between the two (no lost wake-ups), and a watch keeps no
//! per-subscriber queue, so memory stays bounded however many streams are open.

use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::ids::{self, IdGen};

/// One persisted event: its type, when it was processed, and its JSON as sent on the wire.
/// Kept serialised (a few hundred bytes) rather than as a `Value` to keep sessions small.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub(crate) kind: Box<str>,
    pub(crate) processed_at: DateTime<Utc>,
    pub(crate) json: Box<str>,
}

/// One tool call the scripted agent made, for the audit.
#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    pub(crate) name: &'static str,
    pub(crate) subject: Option<String>,
    pub(crate) error: Option<String>,
}

/// What the audit keeps per session.
#[derive(Debug, Default, Clone)]
pub(crate) struct SessionAudit {
    pub(crate) user_messages: u32,
    pub(crate) tool_calls: Vec<ToolCall>,
    pub(crate) token_subjects: Vec<String>,
    /// The `model_usage` of every `span.model_request_end` sent, summed.
    pub(crate) usage: Usage,
    /// The text of the last `agent.message` sent.
    pub(crate) final_text: Option<String>,
}

/// Token counts as `model_usage` reports them, and how many model requests they sum.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) model_requests: u64,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cache_creation_input_tokens: u64,
    pub(crate) cache_read_input_tokens: u64,
}

impl Usage {
    /// The usage the scripted model reports for the `index`th model request (from 0) of the
    /// session whose id hashes to `seed`: deterministic, and different per request and per
    /// session, so sums prove something.
    pub(crate) fn of_request(seed: u64, index: u64) -> Self {
        Self {
            model_requests: 1,
            input_tokens: 900 + seed % 400 + 173 * index,
            output_tokens: 120 + seed % 61 + 37 * index,
            cache_creation_input_tokens: if index == 0 { 1500 + seed % 300 } else { 0 },
            cache_read_input_tokens: index * (1400 + seed % 200),
        }
    }

    /// Adds `other` to these sums.
    pub(crate) fn add(&mut self, other: Self) {
        self.model_requests += other.model_requests;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
    }

    /// The wire's `model_usage` object.
    pub(crate) fn to_json(self) -> Value {
        json!({"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens})
    }
}

/// The answer of a `user.tool_confirmation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Allow,
    /// With the optional `deny_message`.
    Deny(Option<Box<str>>),
}

/// A tool use of an `always_ask` toolset, paused until the user confirms it. Only its event id
/// is kept: the tool's name and input are read back from the log when the turn resumes, so a
/// paused session holds a few bytes and no task.
#[derive(Debug, Clone)]
pub(crate) struct Awaiting {
    /// The `agent.mcp_tool_use` event's id, which `tool_use_id` must name.
    pub(crate) tool_use_id: Box<str>,
    /// Set by the confirmation; the agent task takes it and resumes the turn.
    pub(crate) answer: Option<Answer>,
}

/// The mutable state of a session.
#[derive(Debug)]
pub(crate) struct Live {
    /// `idle`, `running` or `terminated`.
    pub(crate) status: &'static str,
    pub(crate) updated_at: String,
    pub(crate) events: Vec<StoredEvent>,
    /// `user.message`s not yet answered; the agent task drains them one turn each.
    pub(crate) pending_turns: u32,
    /// Whether an agent task owns this session now (at most one at a time).
    pub(crate) agent_running: bool,
    pub(crate) interrupted: bool,
    /// The tool use waiting for confirmation, if the turn is paused on one.
    pub(crate) awaiting: Option<Awaiting>,
    /// Deleted or reset: streams end and the API answers 404.
    pub(crate) closed: bool,
    pub(crate) audit: SessionAudit,
}

/// A session's live state and its change signal.
#[derive(Debug)]
pub(crate) struct SessionRt {
    live: Mutex<Live>,
    changed: watch::Sender<usize>,
}

impl SessionRt {
    pub(crate) fn new(now: &str) -> Self {
        let live = Live {
            status: "idle",
            updated_at: now.to_owned(),
            events: Vec::new(),
            pending_turns: 0,
            agent_running: false,
            interrupted: false,
            awaiting: None,
            closed: false,
            audit: SessionAudit::default(),
        };
        Self { live: Mutex::new(live), changed: watch::Sender::new(0) }
    }

    /// Locks the live state. A poisoned lock only means a panic elsewhere mid-update; the data
    /// is still the best we have, so keep serving it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends an event (adding `id` and `processed_at`), wakes the streams, returns the id.
    pub(crate) fn append(&self, ids: &IdGen, event: Value) -> String {
        self.append_then(ids, event, |_, _| {})
    }

    /// [`append`](Self::append), running `then` with the new id under the same lock, so no
    /// request sees the event without what `then` records about it.
    pub(crate) fn append_then(
        &self,
        ids: &IdGen,
        event: Value,
        then: impl FnOnce(&mut Live, &str),
    ) -> String {
        let id = {
            let mut live = self.lock();
            let id = push(&mut live, ids, event);
            then(&mut live, &id);
            id
        };
        self.notify();
        id
    }

    /// Wakes the streams after events were pushed under a held lock (see [`push`]).
    pub(crate) fn notify(&self) {
        let len = self.lock().events.len();
        self.changed.send_replace(len);
    }

    /// The stored event `id` as JSON, searched from the newest (the ones looked up are recent).
    pub(crate) fn find_event(&self, kind: &str, id: &str) -> Option<Value> {
        let live = self.lock();
        live.events
            .iter()
            .rev()
            .filter(|event| &*event.kind == kind)
            .filter_map(|event| serde_json::from_str::<Value>(&event.json).ok())
            .find(|event| event["id"] == id)
    }

    /// Sets the status; the caller emits the matching status event.
    pub(crate) fn set_status(&self, status: &'static str) {
        let mut live = self.lock();
        live.status = status;
        live.updated_at = ids::now();
    }

    /// Marks the session closed and wakes every stream so it ends.
    pub(crate) fn close(&self) {
        let len = {
            let mut live = self.lock();
            live.closed = true;
            live.events.len()
        };
        self.changed.send_replace(len);
    }

    /// A receiver that sees every append after this call.
    pub(crate) fn subscribe(&self) -> watch::Receiver<usize> {
        self.changed.subscribe()
    }

    /// The event at `index` as (type, JSON), or whether the session is closed.
    pub(crate) fn event_at(&self, index: usize) -> Result<Option<Frame>, Closed> {
        let live = self.lock();
        if let Some(event) = live.events.get(index) {
            return Ok(Some((event.kind.clone(), event.json.clone())));
        }
        if live.closed { Err(Closed) } else { Ok(None) }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().events.len()
    }
}

/// Pushes an event (adding `id` and `processed_at`) under a held lock and returns its id; the
/// caller must call [`SessionRt::notify`] once the lock is released.
pub(crate) fn push(live: &mut Live, ids: &IdGen, mut event: Value) -> String {
    let id = ids.anthropic("sevt");
    let processed_at = Utc::now();
    event["id"] = json!(id);
    event["processed_at"] = json!(ids::rfc3339(processed_at));
    let kind: Box<str> = event["type"].as_str().unwrap_or("unknown").into();
    live.events.push(StoredEvent { kind, processed_at, json: event.to_string().into() });
    id
}

/// An event as (type, JSON), ready to frame.
pub(crate) type Frame = (Box<str>, Box<str>);

/// The session was closed (deleted or reset).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Closed;
