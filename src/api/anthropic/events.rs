//! Session events: typed where agentcron acts on them, raw JSON always kept (unknown types
//! included), and the SSE stream that delivers them.
//!
//! Frames are dispatched on the JSON `type`, not the `event:` name; `ping` frames, comments and
//! empty data are skipped; `event: error` becomes [`ApiError::StreamError`]. A stream silent
//! for longer than the idle timeout ends with a transient error so the caller reconnects. This
//! module must not decide how a run answers an event.

use std::collections::VecDeque;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use super::sse::{SseDecoder, SseFrame};

use crate::api::{Api, ApiError};

pub(super) const ENDPOINT: &str = "sessions.events.stream";

/// One session event: its raw JSON and what agentcron understands of it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    /// The event exactly as received.
    pub raw: Value,
    /// The parsed meaning.
    pub kind: EventKind,
}

/// What an event means to a run. Unknown types are [`EventKind::Other`], never dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// `user.message` (echoed).
    UserMessage,
    /// `agent.message`: the text blocks, joined.
    AgentMessage {
        /// Concatenated text.
        text: String,
    },
    /// `agent.mcp_tool_use` or `agent.tool_use`.
    ToolUse {
        /// Tool name.
        name: String,
        /// MCP server, for MCP tools.
        mcp_server_name: Option<String>,
        /// `allow`, `ask`, `deny`, when evaluated.
        evaluated_permission: Option<String>,
    },
    /// `agent.mcp_tool_result` or `agent.tool_result`.
    ToolResult {
        /// Whether the tool failed.
        is_error: bool,
    },
    /// `session.status_running`.
    Running,
    /// `session.status_idle`.
    Idle {
        /// Why the agent stopped.
        stop_reason: StopReason,
    },
    /// `session.status_terminated`.
    Terminated,
    /// `session.error`.
    Error {
        /// `error.type`.
        error_type: String,
        /// `error.message`.
        message: String,
        /// `error.retry_status.type`: `retrying` while the vendor retries on its own,
        /// `exhausted` or `terminal` when the turn has failed.
        retry_status: Option<String>,
    },
    /// Any other type, such as `span.model_request_start` or a type added later.
    Other,
}

/// `stop_reason` of `session.status_idle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The turn is complete.
    EndTurn,
    /// Tool uses wait for confirmation.
    RequiresAction {
        /// The events to answer.
        event_ids: Vec<String>,
    },
    /// Another reason, kept by name (`retries_exhausted`, `budget_reached`, `refusal`, …).
    Other(String),
}

impl SessionEvent {
    /// Parses one event; never fails, since unknown shapes are kept as [`EventKind::Other`].
    pub fn from_json(raw: Value) -> Self {
        let kind = kind_of(&raw);
        Self { raw, kind }
    }

    /// The event's `id` (`sevt_…`), if it has one.
    pub fn id(&self) -> Option<&str> {
        self.raw.get("id").and_then(Value::as_str)
    }

    /// The event's `type`.
    pub fn event_type(&self) -> &str {
        self.raw.get("type").and_then(Value::as_str).unwrap_or_default()
    }

    /// Whether the session will produce nothing more for this turn.
    pub fn is_turn_end(&self) -> bool {
        matches!(self.kind, EventKind::Idle { .. } | EventKind::Terminated)
    }
}

fn text_of(raw: &Value, key: &str) -> Option<String> {
    raw.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn kind_of(raw: &Value) -> EventKind {
    match raw.get("type").and_then(Value::as_str).unwrap_or_default() {
        "user.message" => EventKind::UserMessage,
        "agent.message" => EventKind::AgentMessage { text: joined_text(raw) },
        "agent.mcp_tool_use" | "agent.tool_use" | "agent.custom_tool_use" => EventKind::ToolUse {
            name: text_of(raw, "name").unwrap_or_default(),
            mcp_server_name: text_of(raw, "mcp_server_name"),
            evaluated_permission: text_of(raw, "evaluated_permission"),
        },
        "agent.mcp_tool_result" | "agent.tool_result" => EventKind::ToolResult {
            is_error: raw.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        },
        "session.status_running" => EventKind::Running,
        "session.status_idle" => EventKind::Idle { stop_reason: stop_reason(raw) },
        "session.status_terminated" => EventKind::Terminated,
        "session.error" => EventKind::Error {
            error_type: raw
                .pointer("/error/type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            message: raw
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            retry_status: raw
                .pointer("/error/retry_status/type")
                .and_then(Value::as_str)
                .map(str::to_owned),
        },
        _ => EventKind::Other,
    }
}

fn joined_text(raw: &Value) -> String {
    let blocks =
        raw.get("content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    blocks
        .iter()
        .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect()
}

fn stop_reason(raw: &Value) -> StopReason {
    let reason = raw.get("stop_reason");
    match reason.and_then(|r| r.get("type")).and_then(Value::as_str) {
        Some("end_turn") | None => StopReason::EndTurn,
        Some("requires_action") => StopReason::RequiresAction {
            event_ids: reason
                .and_then(|r| r.get("event_ids"))
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        },
        Some(other) => StopReason::Other(other.to_owned()),
    }
}

/// Turns an SSE response body into session events. The idle timeout runs between any bytes
/// of the body, comment lines (`:keep-alive`, heartbeats) included: a quiet agent that keeps
/// its stream alive is not cut off; only a silent connection is.
pub(crate) fn decode<B, E>(
    body: impl Stream<Item = Result<B, E>> + Send + 'static,
    idle_timeout: Duration,
    max_event_bytes: usize,
) -> impl Stream<Item = Result<SessionEvent, ApiError>> + Send + 'static
where
    B: AsRef<[u8]> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let state = (Box::pin(watched(body, idle_timeout)), SseDecoder::new(max_event_bytes));
    let frames = futures::stream::unfold(Some((state, VecDeque::new())), |state| async move {
        let ((mut body, mut decoder), mut ready) = state?;
        loop {
            if let Some(frame) = ready.pop_front() {
                return Some((Ok(frame), Some(((body, decoder), ready))));
            }
            match body.next().await {
                None => return None,
                Some(Err(error)) => return Some((Err(error), None)),
                Some(Ok(chunk)) => {
                    let mut out = Vec::new();
                    decoder.feed(chunk.as_ref(), &mut out);
                    ready.extend(out);
                }
            }
        }
    });
    futures::stream::unfold(Some(Box::pin(frames)), move |state| async move {
        let mut frames = state?;
        loop {
            let frame = match frames.next().await {
                None => return None,
                Some(Err(error)) => return Some((Err(transport(error.to_string())), None)),
                Some(Ok(frame)) => frame,
            };
            let decoded = match frame {
                SseFrame::Event { name, data } => frame_event(&name, &data),
                SseFrame::Oversize { name, bytes } => oversize(&name, bytes),
            };
            match decoded {
                Frame::Skip => continue,
                Frame::Event(event) => return Some((Ok(event), Some(frames))),
                Frame::Error(error) => return Some((Err(error), None)),
            }
        }
    })
}

/// An event whose data passed the limit: recorded as its name and size, so the transcript
/// says what was left out, and the turn goes on.
fn oversize(name: &str, bytes: usize) -> Frame {
    crate::telemetry::metrics::stream_frame_skipped("oversize");
    tracing::warn!(
        message = "An event-stream event over the size limit was left out.",
        event = name,
        bytes
    );
    let name = if name.is_empty() { "unknown" } else { name };
    Frame::Event(SessionEvent::from_json(
        json!({"type": name, "agentcron_truncated": {"bytes": bytes}}),
    ))
}

/// Why the body stopped.
#[derive(Debug)]
enum BodyError {
    /// No byte at all for the idle timeout.
    Idle(Duration),
    /// The body itself failed.
    Read(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Idle(timeout) => {
                write!(f, "no event or keep-alive for {}s", timeout.as_secs_f64())
            }
            Self::Read(error) => f.write_str(error),
        }
    }
}

/// `body` with the idle timeout between its chunks; ends after the first error.
fn watched<B, E>(
    body: impl Stream<Item = Result<B, E>> + Send + 'static,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<B, BodyError>> + Send + 'static
where
    B: AsRef<[u8]> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    futures::stream::unfold(Some(Box::pin(body)), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(idle_timeout, body.next()).await {
            Err(_) => Some((Err(BodyError::Idle(idle_timeout)), None)),
            Ok(None) => None,
            Ok(Some(Err(error))) => Some((Err(BodyError::Read(error.to_string())), None)),
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
        }
    })
}

enum Frame {
    Skip,
    Event(SessionEvent),
    Error(ApiError),
}

fn frame_event(name: &str, data: &str) -> Frame {
    if name == "ping" || data.trim().is_empty() {
        return Frame::Skip;
    }
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        // One bad frame must not end a healthy turn: counted, logged, skipped.
        crate::telemetry::metrics::stream_frame_skipped("not_json");
        tracing::warn!(
            message = "Skipped an event-stream frame whose data is not JSON.",
            event = name,
            bytes = data.len()
        );
        return Frame::Skip;
    };
    if name == "error" || value.get("type").and_then(Value::as_str) == Some("error") {
        let field =
            |key: &str| value.pointer(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        return Frame::Error(ApiError::StreamError {
            api: Api::Anthropic,
            endpoint: ENDPOINT,
            error_type: field("/error/type"),
            message: field("/error/message"),
        });
    }
    if value.get("type").and_then(Value::as_str) == Some("ping") {
        return Frame::Skip;
    }
    Frame::Event(SessionEvent::from_json(value))
}

fn transport(message: String) -> ApiError {
    ApiError::Transport {
        api: Api::Anthropic,
        endpoint: ENDPOINT,
        message,
        class: crate::api::retry::classify_cut_stream(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(raw: Value, expect: &EventKind) {
        let shown = raw.to_string();
        assert_eq!(&SessionEvent::from_json(raw).kind, expect, "{shown}");
    }

    #[test]
    fn kinds() {
        check(
            json!({"type":"agent.message","content":[{"type":"text","text":"Hi "},{"type":"redacted"},{"type":"text","text":"there"}]}),
            &EventKind::AgentMessage { text: "Hi there".to_owned() },
        );
        check(
            json!({"type":"agent.mcp_tool_use","name":"gmail_fetch_mails","mcp_server_name":"m","evaluated_permission":"allow"}),
            &EventKind::ToolUse {
                name: "gmail_fetch_mails".to_owned(),
                mcp_server_name: Some("m".to_owned()),
                evaluated_permission: Some("allow".to_owned()),
            },
        );
        check(
            json!({"type":"agent.mcp_tool_result","is_error":true}),
            &EventKind::ToolResult { is_error: true },
        );
        check(
            json!({"type":"session.status_idle","stop_reason":{"type":"end_turn"}}),
            &EventKind::Idle { stop_reason: StopReason::EndTurn },
        );
        check(
            json!({"type":"session.status_idle","stop_reason":{"type":"requires_action","event_ids":["sevt_1"]}}),
            &EventKind::Idle {
                stop_reason: StopReason::RequiresAction { event_ids: vec!["sevt_1".to_owned()] },
            },
        );
        check(
            json!({"type":"session.status_idle","stop_reason":{"type":"budget_reached"}}),
            &EventKind::Idle { stop_reason: StopReason::Other("budget_reached".to_owned()) },
        );
        check(
            json!({"type":"session.error","error":{"type":"mcp_authentication_failed_error","message":"no","retry_status":{"type":"terminal"}}}),
            &EventKind::Error {
                error_type: "mcp_authentication_failed_error".to_owned(),
                message: "no".to_owned(),
                retry_status: Some("terminal".to_owned()),
            },
        );
        check(json!({"type":"workflow_run.brand_new","x":1}), &EventKind::Other);
        check(json!({"no_type":true}), &EventKind::Other);
    }

    #[test]
    fn unknown_events_keep_their_raw_json() {
        let raw = json!({"type":"session.usage","id":"sevt_9","tokens":{"in":3}});
        let event = SessionEvent::from_json(raw.clone());
        assert_eq!(event.raw, raw);
        assert_eq!(event.id(), Some("sevt_9"));
        assert_eq!(event.event_type(), "session.usage");
    }

    #[test]
    fn frames() {
        assert!(matches!(frame_event("ping", r#"{"type":"ping"}"#), Frame::Skip));
        assert!(matches!(frame_event("message", ""), Frame::Skip));
        assert!(matches!(
            frame_event("agent.message", r#"{"type":"agent.message","content":[]}"#),
            Frame::Event(_)
        ));
        let Frame::Error(error) = frame_event(
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#,
        ) else {
            panic!("an error frame is an error")
        };
        assert_eq!(error.class(), crate::outcome::ErrorClass::Transient);
        assert!(
            matches!(frame_event("agent.message", "{not json"), Frame::Skip),
            "skipped, not fatal"
        );
    }

    /// Comment lines keep the stream alive: a quiet stretch longer than the idle timeout, made
    /// of heartbeats, is not a timeout; real silence is.
    #[tokio::test]
    async fn heartbeats_reset_the_idle_timer_and_silence_does_not() {
        let event = "data: {\"type\":\"session.status_idle\",\"id\":\"sevt_1\"}\n\n";
        let chunks = |pauses: Vec<(u64, &'static str)>| {
            futures::stream::iter(pauses).then(|(ms, chunk)| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, std::io::Error>(chunk.as_bytes().to_vec())
            })
        };
        let idle = Duration::from_millis(1_000);
        // 1.2 s with only comments, each 300 ms after the last: never 1 s without a byte.
        let beat = ":keep-alive\n\n";
        let beating = vec![(300, beat), (300, beat), (300, beat), (300, event)];
        let got: Vec<_> = decode(chunks(beating), idle, 1024).collect().await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].is_ok(), "heartbeats 300 ms apart, then the event: {got:?}");
        let silent = vec![(1_500, event)];
        let got: Vec<_> = decode(chunks(silent), idle, 1024).collect().await;
        assert!(matches!(got.as_slice(), [Err(_)]), "1.5 s of silence times out: {got:?}");
    }
}
