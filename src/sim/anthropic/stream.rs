//! The session event stream, `GET /v1/sessions/{id}/events/stream`: SSE frames
//! `event: <type>` + `data: <one-line JSON>` for every event appended *after* the stream
//! opened (no replay; `events.list` has the history), `:keep-alive` comments as heartbeats, and
//! with `event_deltas[]=agent.message` an `event_start` + `event_delta` preview before each
//! `agent.message`. Like the real server it stays open after `session.status_idle`; it ends when
//! the client leaves, the session is deleted, the simulator stops, or a `stream_cut_after` fault
//! says so.
//!
//! Memory per open stream is a cursor, a watch receiver and at most two queued preview frames:
//! events are read from the session log one at a time, never copied per subscriber.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Shared;
use super::sessions::with_session;
use crate::sim::error::AnthropicError;
use crate::sim::faults::Effects;
use crate::sim::query::Params;
use crate::sim::session::SessionRt;
use crate::sim::state::SimState;

/// `GET /v1/sessions/{session_id}/events/stream`.
pub(super) async fn open(
    State(state): Shared,
    Path(id): Path<String>,
    params: Params,
    effects: Option<Extension<Effects>>,
) -> Result<Response, AnthropicError> {
    let deltas = params.all("event_deltas[]");
    if deltas.len() > 100
        || deltas.iter().any(|kind| !matches!(*kind, "agent.message" | "agent.thinking"))
    {
        return Err(AnthropicError::invalid(
            "event_deltas: only agent.message and agent.thinking are supported",
        ));
    }
    let rt = with_session(&state, &id, |session| Ok(session.rt.clone()))?;
    // Subscribe before reading the length: an append in between still wakes us.
    let changed = rt.subscribe();
    let cursor = rt.len();
    let heartbeat = state.config.heartbeat;
    let reader = Reader {
        state,
        rt,
        changed,
        cursor,
        delivered: 0,
        cut_after: effects.as_ref().and_then(|Extension(effects)| effects.stream_cut_after),
        hold_until: effects
            .as_ref()
            .and_then(|Extension(effects)| effects.heartbeat)
            .map(|hold| tokio::time::Instant::now() + hold),
        garbage_line: effects.as_ref().is_some_and(|Extension(effects)| effects.garbage_line),
        message_deltas: deltas.contains(&"agent.message"),
        queued: VecDeque::new(),
    };
    let sse = Sse::new(frames(reader))
        .keep_alive(KeepAlive::new().interval(heartbeat).text("keep-alive"));
    Ok(sse.into_response())
}

/// One open stream's position in its session's log.
struct Reader {
    state: Arc<SimState>,
    rt: Arc<SessionRt>,
    changed: watch::Receiver<usize>,
    cursor: usize,
    delivered: u64,
    cut_after: Option<u64>,
    /// A `heartbeat_ms` fault: only comment lines until then.
    hold_until: Option<tokio::time::Instant>,
    /// A `garbage_line` fault not yet delivered.
    garbage_line: bool,
    message_deltas: bool,
    queued: VecDeque<Event>,
}

/// How often a `heartbeat_ms` fault sends a comment line while it holds the events back.
const HOLD_BEAT: std::time::Duration = std::time::Duration::from_millis(200);

fn frames(reader: Reader) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(reader, |mut reader| async move {
        let event = reader.next().await?;
        Some((Ok(event), reader))
    })
}

impl Reader {
    /// The next frame, or `None` when the stream should end.
    async fn next(&mut self) -> Option<Event> {
        if let Some(until) = self.hold_until {
            let now = tokio::time::Instant::now();
            if now < until {
                tokio::time::sleep(HOLD_BEAT.min(until - now)).await;
                return Some(Event::default().comment("heartbeat"));
            }
            self.hold_until = None;
        }
        loop {
            if let Some(frame) = self.queued.pop_front() {
                return Some(frame);
            }
            if self.cut_after.is_some_and(|cut| self.delivered >= cut) {
                return None;
            }
            match self.rt.event_at(self.cursor) {
                Ok(Some((kind, json))) => {
                    self.cursor += 1;
                    self.delivered += 1;
                    self.queue(&kind, &json);
                    if std::mem::take(&mut self.garbage_line) {
                        self.queued.push_back(Event::default().data("this line is not JSON {"));
                    }
                }
                Ok(None) => {
                    // Cancel safety: `changed()` and `cancelled()` lose nothing when dropped; the
                    // log is re-read from `cursor` on the next pass.
                    tokio::select! {
                        res = self.changed.changed() => res.ok()?,
                        () = self.state.cancel.cancelled() => return None,
                    }
                }
                Err(_closed) => return None,
            }
        }
    }

    fn queue(&mut self, kind: &str, json: &str) {
        if self.message_deltas && kind == "agent.message" {
            self.queue_preview(json);
        }
        self.queued.push_back(Event::default().event(kind).data(json));
    }

    /// `event_start` and one `event_delta` carrying the message text.
    fn queue_preview(&mut self, json: &str) {
        let Ok(message) = serde_json::from_str::<Value>(json) else { return };
        let id = &message["id"];
        let start = json!({"type": "event_start", "event": {"type": "agent.message", "id": id}});
        self.queued.push_back(Event::default().event("event_start").data(start.to_string()));
        let blocks = message["content"].as_array().cloned().unwrap_or_default();
        for (index, block) in blocks.iter().enumerate() {
            let delta = json!({"type": "event_delta", "event_id": id, "delta": {"type": "content_delta", "index": index, "content": block}});
            self.queued.push_back(Event::default().event("event_delta").data(delta.to_string()));
        }
    }
}
