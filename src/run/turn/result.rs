//! What a run produced and used, read from its recorded events once the turn has ended: the
//! agent's final `agent.message` text (cut to `transcripts.result_max_kb`), the last
//! `stop_reason`, the tool calls by tool, the errors, and the `model_usage` of every model
//! request summed, with a cost estimate (`cost.rs`). Written on the run record, the token sums
//! as counters that only rise (`records::tally`), whose rises feed the metrics.
//!
//! It is summed from the transcript, where each event is recorded once whatever the attempts
//! (events are deduplicated by id), so a resumed attempt recomputes the same figures instead of
//! adding to them. The summary is pure; only `record` reads and writes Redis.

use std::collections::BTreeMap;

use crate::config::RedisConn;
use chrono::{TimeZone, Utc};
use serde_json::Value;

use super::super::{Context, Run, RunError, fence};
use crate::api::anthropic::{EventKind, ModelUsage, SessionEvent, StopReason};
use crate::records::{tally, transcript};
use crate::telemetry::metrics::{self, ScheduleLabel};

mod cost;

pub use self::cost::{Price, price_of};

/// What a turn produced and used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnResult {
    /// The last `agent.message`'s text, whole.
    pub text: Option<String>,
    /// The last idle's `stop_reason` (`end_turn`, `requires_action`, …), or `terminated`.
    pub stop_reason: Option<String>,
    /// Tool uses by tool name.
    pub tool_calls: BTreeMap<String, u64>,
    /// Tool results that were errors.
    pub tool_errors: u64,
    /// `session.error` events, retried ones included.
    pub session_errors: u64,
    /// Model requests ended.
    pub model_requests: u64,
    /// Their `model_usage`, summed.
    pub usage: ModelUsage,
}

impl TurnResult {
    /// Sums `events` (the run's, in order).
    pub fn of<'a>(events: impl IntoIterator<Item = &'a SessionEvent>) -> Self {
        let mut res = Self::default();
        for event in events {
            match &event.kind {
                EventKind::AgentMessage { text } => res.text = Some(text.clone()),
                EventKind::ToolUse { name, .. } => {
                    *res.tool_calls.entry(name.clone()).or_default() += 1;
                }
                EventKind::ToolResult { is_error: true } => res.tool_errors += 1,
                EventKind::Error { .. } => res.session_errors += 1,
                EventKind::Idle { stop_reason } => {
                    res.stop_reason = Some(
                        match stop_reason {
                            StopReason::EndTurn => "end_turn",
                            StopReason::RequiresAction { .. } => "requires_action",
                            StopReason::Other(reason) => reason.as_str(),
                        }
                        .to_owned(),
                    );
                }
                EventKind::Terminated => res.stop_reason = Some("terminated".to_owned()),
                EventKind::ModelRequestEnd { usage } => {
                    res.model_requests += 1;
                    res.usage.input_tokens += usage.input_tokens;
                    res.usage.output_tokens += usage.output_tokens;
                    res.usage.cache_creation_input_tokens += usage.cache_creation_input_tokens;
                    res.usage.cache_read_input_tokens += usage.cache_read_input_tokens;
                }
                _ => {}
            }
        }
        res
    }

    /// The record's fields other than the counters: the text cut to `max_bytes` at a
    /// character boundary, the cost at `price` (none when the model has no price).
    pub fn fields(
        &self,
        model: &str,
        price: Option<Price>,
        max_bytes: usize,
    ) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("model", model.to_owned()),
            ("tool_calls", serde_json::to_string(&self.tool_calls).unwrap_or_default()),
            ("n_tool_calls", self.tool_calls.values().sum::<u64>().to_string()),
            ("n_tool_errors", self.tool_errors.to_string()),
            ("n_session_errors", self.session_errors.to_string()),
        ];
        if let Some(price) = price {
            fields.push(("cost_usd", format!("{:.6}", price.cost(&self.usage))));
        }
        if let Some(reason) = &self.stop_reason {
            fields.push(("stop_reason", reason.clone()));
        }
        if let Some(text) = &self.text {
            let cut = cut(text, max_bytes);
            fields.push(("result_truncated", (cut.len() < text.len()).to_string()));
            fields.push(("result_bytes", text.len().to_string()));
            fields.push(("result_text", cut.to_owned()));
        }
        fields
    }

    /// The counters, named as on the record and, but `model_requests`, as the metric's
    /// `kind` after `tokens_`.
    pub fn counts(&self) -> [(&'static str, u64); 6] {
        [
            ("tokens_input", self.usage.input_tokens),
            ("tokens_output", self.usage.output_tokens),
            ("tokens_cache_write", self.usage.cache_creation_input_tokens),
            ("tokens_cache_read", self.usage.cache_read_input_tokens),
            ("model_requests", self.model_requests),
            // Rises once, the first time: the run is counted in the day's aggregate.
            ("usage_counted", 1),
        ]
    }
}

/// The longest prefix of `text` of at most `max_bytes` that ends at a character boundary.
fn cut(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Sums the run's recorded events and writes the result on its record (only while the
/// attempt's fence is current); what the token counters rose by is added to the metrics and
/// to the aggregate of the day the run was created, so each token is counted once per run.
///
/// # Errors
/// [`RunError`] when Redis fails or a later attempt of the run started.
pub(crate) async fn record(ctx: &Context, conn: &mut RedisConn, run: &Run) -> Result<(), RunError> {
    let lines = transcript::lines(conn, &ctx.keys, &run.id).await?;
    let events: Vec<SessionEvent> = lines
        .into_iter()
        .filter_map(|mut line| match line.get_mut("data").map(Value::take) {
            Some(data @ Value::Object(_)) => Some(SessionEvent::from_json(data)),
            _ => None,
        })
        .collect();
    let res = TurnResult::of(&events);
    let max_bytes = ctx.config.transcripts.result_max_kb * 1024;
    let model = &ctx.config.anthropic.agent.model;
    let price = price_of(&ctx.config.prices, model);
    let fields = res.fields(model, price, max_bytes);
    let counts = res.counts();
    let Some(rises) =
        tally::set_run_counts(conn, &ctx.keys, &run.id, run.fence, &fields, &counts).await?
    else {
        return Err(fence::fenced(run, None));
    };
    let rise = |i: usize| rises.get(i).copied().unwrap_or(0);
    let added = ModelUsage {
        input_tokens: rise(0),
        output_tokens: rise(1),
        cache_creation_input_tokens: rise(2),
        cache_read_input_tokens: rise(3),
    };
    let configured = ctx.config.schedules.iter().map(|schedule| schedule.name.as_str());
    let schedule = ScheduleLabel::of(run.schedule.as_deref(), configured);
    let cost = price.map_or(0.0, |price| price.cost(&added));
    let tokens = [
        ("input", added.input_tokens),
        ("output", added.output_tokens),
        ("cache_write", added.cache_creation_input_tokens),
        ("cache_read", added.cache_read_input_tokens),
    ];
    metrics::tokens_used(schedule, tokens, cost);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    // A cost is positive and small.
    let cost_micro_usd = (cost * 1_000_000.0).round() as u64;
    let rises = [
        tokens[0],
        tokens[1],
        tokens[2],
        tokens[3],
        ("cost_micro_usd", cost_micro_usd),
        ("runs", rise(5)),
    ];
    if rises.iter().any(|(_, rise)| *rise > 0) {
        let created = run.created_at_ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single());
        let day = created.unwrap_or_else(Utc::now).format("%Y-%m-%d").to_string();
        let schedule = run.schedule.as_deref().unwrap_or(ScheduleLabel::ADHOC.as_str());
        let ttl = ctx.config.retention.usage.as_secs();
        let at = (day.as_str(), &run.user, schedule);
        // A failure here loses the day's share of this run, never fails the run: its record
        // and the metrics already hold it.
        if let Err(error) = tally::add_to_day(conn, &ctx.keys, at, &rises, ttl).await {
            tracing::warn!(message = "Adding the run's usage to the day's aggregate failed.", %error, run_id = %run.id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sums_the_turn_and_cuts_the_text_at_a_character() {
        let events: Vec<SessionEvent> = [
            json!({"type": "agent.mcp_tool_use", "name": "a"}),
            json!({"type": "agent.mcp_tool_result", "is_error": true}),
            json!({"type": "agent.mcp_tool_use", "name": "a"}),
            json!({"type": "span.model_request_end", "model_usage": {"input_tokens": 5,
                "output_tokens": 1, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 0}}),
            json!({"type": "agent.message", "content": [{"type": "text", "text": "first"}]}),
            json!({"type": "agent.message", "content": [{"type": "text", "text": "héllo"}]}),
            json!({"type": "span.model_request_end", "model_usage": {"input_tokens": 7,
                "output_tokens": 3, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4}}),
            json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}}),
        ]
        .into_iter()
        .map(SessionEvent::from_json)
        .collect();
        let res = TurnResult::of(&events);
        assert_eq!(res.text.as_deref(), Some("héllo"));
        assert_eq!(res.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(res.tool_calls, BTreeMap::from([("a".to_owned(), 2)]));
        assert_eq!((res.tool_errors, res.model_requests), (1, 2));
        assert_eq!(
            res.usage,
            ModelUsage {
                input_tokens: 12,
                output_tokens: 4,
                cache_creation_input_tokens: 2,
                cache_read_input_tokens: 4
            }
        );
        assert_eq!(res.counts()[0], ("tokens_input", 12));
        let fields: BTreeMap<_, _> = res.fields("unknown-model", None, 2).into_iter().collect();
        assert_eq!(fields["result_text"], "h");
        assert_eq!(fields["result_truncated"], "true");
        assert!(!fields.contains_key("cost_usd"));
    }
}
