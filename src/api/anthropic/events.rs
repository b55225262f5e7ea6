//! Session events: typed where agentcron acts on them, raw JSON always kept (unknown types
//! included). Events are read by their JSON `type`, not the SSE `event:` name (`frames.rs`
//! turns the stream into events). This module must not decide how a run answers an event.

use serde_json::Value;

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
    /// `span.model_request_end`: what one model request used.
    ModelRequestEnd {
        /// Its `model_usage`.
        usage: ModelUsage,
    },
    /// Any other type, such as `span.model_request_start` or a type added later.
    Other,
}

/// The `model_usage` of a `span.model_request_end`: the tokens of one model request (a count
/// missing or malformed on the wire reads as 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelUsage {
    /// `input_tokens`.
    pub input_tokens: u64,
    /// `output_tokens`.
    pub output_tokens: u64,
    /// `cache_creation_input_tokens`: input written to the prompt cache.
    pub cache_creation_input_tokens: u64,
    /// `cache_read_input_tokens`: input read from the prompt cache.
    pub cache_read_input_tokens: u64,
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
        "span.model_request_end" => EventKind::ModelRequestEnd { usage: model_usage(raw) },
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

fn model_usage(raw: &Value) -> ModelUsage {
    let count = |name: &str| {
        raw.get("model_usage").and_then(|usage| usage.get(name)).and_then(Value::as_u64)
    };
    ModelUsage {
        input_tokens: count("input_tokens").unwrap_or(0),
        output_tokens: count("output_tokens").unwrap_or(0),
        cache_creation_input_tokens: count("cache_creation_input_tokens").unwrap_or(0),
        cache_read_input_tokens: count("cache_read_input_tokens").unwrap_or(0),
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
            json!({"type":"span.model_request_end","model_request_start_id":"sevt_1","is_error":false,
                "model_usage":{"input_tokens":10,"output_tokens":2,"cache_creation_input_tokens":3,"cache_read_input_tokens":4}}),
            &EventKind::ModelRequestEnd {
                usage: ModelUsage {
                    input_tokens: 10,
                    output_tokens: 2,
                    cache_creation_input_tokens: 3,
                    cache_read_input_tokens: 4,
                },
            },
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
}
