//! The scripted agent: for each `user.message` it does what the guide's system prompt asks,
//! for real, against the simulated tools — fetch the most recent unread email with
//! `gmail_fetch_mails`, summarise it in 2–3 deterministic sentences, and create a calendar event
//! `Action Required: <subject>` with `googlecalendar_create_event` — emitting the event sequence
//! of spec §4.3: `session.status_running`, `span.model_request_start`, `agent.mcp_tool_use` /
//! `agent.mcp_tool_result` per call, `agent.message`, `span.model_request_end`,
//! `session.status_idle` (`end_turn`). A failed tool call is reported in the message.
//!
//! One tokio task per session, alive only while it has turns to run; events are produced one
//! at a time (with the `event_delay_ms` fault's pause between them), never precomputed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::fixtures::{self, Mail};
use super::session::SessionRt;
use super::state::SimState;
use super::tools::{self, Caller};

/// What a turn needs to know about its session (copied out of the store at send time).
#[derive(Debug)]
pub(crate) struct Turn {
    pub(crate) session_id: String,
    pub(crate) rt: Arc<SessionRt>,
    pub(crate) agent: Arc<Value>,
    pub(crate) vault_ids: Vec<String>,
    pub(crate) user: Option<String>,
    pub(crate) delay: Option<Duration>,
}

/// Why a turn stopped early.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// Shutdown, or the session was deleted: emit nothing more.
    Gone,
    /// `user.interrupt`: go idle now.
    Interrupted,
}

/// Runs queued turns until none is left.
pub(crate) async fn run(state: Arc<SimState>, turn: Turn) {
    loop {
        {
            let mut live = turn.rt.lock();
            if live.pending_turns == 0 || live.closed || state.cancel.is_cancelled() {
                live.agent_running = false;
                return;
            }
            live.pending_turns -= 1;
            live.interrupted = false;
        }
        match one_turn(&state, &turn).await {
            Ok(()) => {}
            Err(Stop::Interrupted) => go_idle(&state, &turn),
            Err(Stop::Gone) => {
                turn.rt.lock().agent_running = false;
                return;
            }
        }
    }
}

fn go_idle(state: &SimState, turn: &Turn) {
    turn.rt.set_status("idle");
    turn.rt.append(
        &state.ids,
        json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}}),
    );
}

/// Appends one event, then pauses (the `event_delay_ms` fault) or yields to other sessions.
async fn emit(state: &SimState, turn: &Turn, event: Value) -> Result<String, Stop> {
    {
        let live = turn.rt.lock();
        if live.closed || state.cancel.is_cancelled() {
            return Err(Stop::Gone);
        }
        if live.interrupted {
            return Err(Stop::Interrupted);
        }
    }
    let id = turn.rt.append(&state.ids, event);
    match turn.delay {
        Some(delay) => tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = state.cancel.cancelled() => return Err(Stop::Gone),
        },
        None => tokio::task::yield_now().await,
    }
    Ok(id)
}

async fn one_turn(state: &SimState, turn: &Turn) -> Result<(), Stop> {
    turn.rt.set_status("running");
    emit(state, turn, json!({"type": "session.status_running"})).await?;
    let span = emit(state, turn, json!({"type": "span.model_request_start"})).await?;
    let text = match mcp_server(&turn.agent) {
        Some((name, url)) => inbox_to_calendar(state, turn, &name, &url).await?,
        None => {
            "I don't have any email or calendar tools connected, so I couldn't check your inbox."
                .to_owned()
        }
    };
    emit(
        state,
        turn,
        json!({"type": "agent.message", "content": [{"type": "text", "text": text}]}),
    )
    .await?;
    let usage = json!({"input_tokens": 1200, "output_tokens": 180, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0});
    emit(state, turn, json!({"type": "span.model_request_end", "model_request_start_id": span, "model_usage": usage, "is_error": false})).await?;
    turn.rt.set_status("idle");
    emit(state, turn, json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}}))
        .await?;
    Ok(())
}

/// The first MCP server an enabled `mcp_toolset` uses: (name, url).
fn mcp_server(agent: &Value) -> Option<(String, String)> {
    let tools = agent["tools"].as_array()?;
    let servers = agent["mcp_servers"].as_array()?;
    tools
        .iter()
        .filter(|tool| tool["type"] == "mcp_toolset" && tool["default_config"]["enabled"] != false)
        .find_map(|tool| servers.iter().find(|server| server["name"] == tool["mcp_server_name"]))
        .and_then(|server| {
            Some((server["name"].as_str()?.to_owned(), server["url"].as_str()?.to_owned()))
        })
}

/// The guide's task: the newest unread email → summary → calendar event. Returns the text of
/// the agent's message.
async fn inbox_to_calendar(
    state: &SimState,
    turn: &Turn,
    server: &str,
    url: &str,
) -> Result<String, Stop> {
    let caller = Caller {
        session_id: &turn.session_id,
        vault_ids: &turn.vault_ids,
        user: turn.user.as_deref(),
        rt: &turn.rt,
    };
    let input = json!({"query": "is:unread", "max_results": 1});
    let fetched = call_tool(state, turn, &caller, server, url, "gmail_fetch_mails", input).await?;
    let mail = match fetched {
        Err(error) => return Ok(format!("I couldn't read your email: the MCP server rejected the gmail_fetch_mails call ({error}). Please reconnect your accounts and try again.")),
        Ok(result) => match result["messages"].get(0).cloned().map(serde_json::from_value::<Mail>) {
            Some(Ok(mail)) => mail,
            _ => return Ok("You have no unread email, so there was nothing to summarise and I did not create a calendar event.".to_owned()),
        },
    };
    let summary = fixtures::summarize(&mail);
    let title = format!("Action Required: {}", mail.subject);
    let input = json!({"calendar_id": "primary", "summary": title, "description": summary, "start_datetime": tools::next_morning(&mail.received_at), "event_duration_minutes": 30});
    let created =
        call_tool(state, turn, &caller, server, url, "googlecalendar_create_event", input).await?;
    Ok(match created {
        Ok(_) => {
            format!("{summary}\n\nI created the calendar event \"{title}\" with this summary.")
        }
        Err(error) => {
            format!("{summary}\n\nI could not create the calendar event \"{title}\": {error}.")
        }
    })
}

/// Emits the tool use, calls the tool, emits its result.
async fn call_tool(
    state: &SimState,
    turn: &Turn,
    caller: &Caller<'_>,
    server: &str,
    url: &str,
    name: &'static str,
    input: Value,
) -> Result<Result<Value, String>, Stop> {
    let tool_use = json!({"type": "agent.mcp_tool_use", "name": name, "mcp_server_name": server, "input": input,
        "evaluated_permission": "allow", "evaluation": {"type": "always_allow"}});
    let use_id = emit(state, turn, tool_use).await?;
    let result = tools::call(state, caller, url, name, &input);
    let (text, is_error) = match &result {
        Ok(value) => (value.to_string(), false),
        Err(error) => (error.clone(), true),
    };
    let event = json!({"type": "agent.mcp_tool_result", "mcp_tool_use_id": use_id, "content": [{"type": "text", "text": text}], "is_error": is_error});
    emit(state, turn, event).await?;
    Ok(result)
}
