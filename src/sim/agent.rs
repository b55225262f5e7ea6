//! The scripted agent: for each `user.message` it does what the guide's system prompt asks,
//! for real, against the simulated tools — fetch the most recent unread email with
//! `gmail_fetch_mails`, summarise it in 2–3 deterministic sentences, and create a calendar event
//! `Action Required: <subject>` with `googlecalendar_create_event` — emitting the event sequence
//! the Managed Agents API sends for a turn: `session.status_running`,
//! `span.model_request_start`, `agent.mcp_tool_use` / `agent.mcp_tool_result` per call,
//! `agent.message`, `span.model_request_end`, `session.status_idle` (`end_turn`). A failed tool
//! call is reported in the message.
//!
//! The MCP toolset's permission policy is honoured as the API applies it: a tool whose policy
//! (its `configs[]` entry, else `default_config`) is `always_ask` is emitted with
//! `evaluated_permission: "ask"`, the model request ends, and the session goes idle with
//! `requires_action` naming the tool use. A `user.tool_confirmation` resumes the turn from the
//! session's state: `session.status_running`, then the tool's result (the real call on `allow`,
//! an `is_error` result on `deny`, with no effect), a new `span.model_request_start`, and the
//! rest of the script (which may pause again).
//!
//! One tokio task per session, alive only while it has turns to run or resume; a paused turn has
//! no task. Events are produced one at a time (with the `event_delay_ms` fault's pause between
//! them), never precomputed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::session::{Answer, Awaiting, Live, SessionRt, Usage};
use super::state::SimState;
use super::tools::{self, Caller};

mod plan;

use self::plan::{
    FETCH, Next, Outcome, Toolset, after, evaluation, known_tool, policy, reason, toolset,
};

const NO_TOOLS: &str =
    "I don't have any email or calendar tools connected, so I couldn't check your inbox.";

/// What a turn needs to know about its session (copied out of the store at send time).
#[derive(Debug)]
pub(crate) struct Turn {
    pub(crate) session_id: String,
    pub(crate) rt: Arc<SessionRt>,
    pub(crate) agent: Arc<Value>,
    pub(crate) vault_ids: Vec<String>,
    pub(crate) user: Option<String>,
    pub(crate) faults: TurnFaults,
}

/// The faults a send asked of the turns it starts.
#[derive(Debug, Clone, Default)]
pub(crate) struct TurnFaults {
    /// `event_delay_ms`: the pause after each event.
    pub(crate) delay: Option<Duration>,
    /// `session_error`: the turn reports this error type instead of working, then idles.
    pub(crate) session_error: Option<String>,
}

/// Why a turn stopped early.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// Shutdown, or the session was deleted: emit nothing more.
    Gone,
    /// `user.interrupt`: go idle now.
    Interrupted,
}

/// What the agent task does next.
#[derive(Debug)]
enum Work {
    /// Answer a queued `user.message`.
    Fresh,
    /// Resume the turn paused on this tool use, with the user's answer.
    Resume(Box<str>, Answer),
}

/// Runs queued turns and confirmed resumptions until none is left.
pub(crate) async fn run(state: Arc<SimState>, turn: Turn) {
    while let Some(work) = next_work(&state, &turn) {
        let result = match work {
            Work::Fresh => one_turn(&state, &turn).await,
            Work::Resume(tool_use_id, answer) => resume(&state, &turn, &tool_use_id, answer).await,
        };
        match result {
            Ok(()) => {}
            Err(Stop::Interrupted) => go_idle(&state, &turn),
            Err(Stop::Gone) => {
                turn.rt.lock().agent_running = false;
                return;
            }
        }
    }
}

/// Takes the next piece of work off the session, or releases it (the check and the flag share
/// the session lock, so a request that queues work either sees the task or starts one).
fn next_work(state: &SimState, turn: &Turn) -> Option<Work> {
    let mut live = turn.rt.lock();
    if live.closed || state.cancel.is_cancelled() {
        live.agent_running = false;
        return None;
    }
    if let Some(Awaiting { tool_use_id, answer: Some(answer) }) =
        live.awaiting.take_if(|awaiting| awaiting.answer.is_some())
    {
        live.interrupted = false;
        return Some(Work::Resume(tool_use_id, answer));
    }
    if live.pending_turns > 0 {
        live.pending_turns -= 1;
        live.interrupted = false;
        // A new message supersedes a tool use still waiting for its confirmation.
        live.awaiting = None;
        return Some(Work::Fresh);
    }
    live.agent_running = false;
    None
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
    emit_then(state, turn, event, |_, _| {}).await
}

/// [`emit`], recording `then` on the session under the lock that appends the event.
async fn emit_then(
    state: &SimState,
    turn: &Turn,
    event: Value,
    then: impl FnOnce(&mut Live, &str),
) -> Result<String, Stop> {
    {
        let live = turn.rt.lock();
        if live.closed || state.cancel.is_cancelled() {
            return Err(Stop::Gone);
        }
        if live.interrupted {
            return Err(Stop::Interrupted);
        }
    }
    let id = turn.rt.append_then(&state.ids, event, then);
    match turn.faults.delay {
        Some(delay) => tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = state.cancel.cancelled() => return Err(Stop::Gone),
        },
        None => tokio::task::yield_now().await,
    }
    Ok(id)
}

async fn start_running(state: &SimState, turn: &Turn) -> Result<(), Stop> {
    turn.rt.set_status("running");
    emit(state, turn, json!({"type": "session.status_running"})).await?;
    Ok(())
}

async fn start_span(state: &SimState, turn: &Turn) -> Result<String, Stop> {
    emit(state, turn, json!({"type": "span.model_request_start"})).await
}

/// Ends the model request `span` with its usage (see [`Usage::of_request`]), summed into the
/// session's audit under the lock that appends the event.
async fn end_span(state: &SimState, turn: &Turn, span: &str) -> Result<(), Stop> {
    let index = turn.rt.lock().audit.usage.model_requests;
    let usage = Usage::of_request(seed(&turn.session_id), index);
    let event = json!({"type": "span.model_request_end", "model_request_start_id": span,
        "model_usage": usage.to_json(), "is_error": false});
    emit_then(state, turn, event, |live, _| live.audit.usage.add(usage)).await?;
    Ok(())
}

/// FNV-1a of the session id: what makes one session's usage differ from another's.
fn seed(session_id: &str) -> u64 {
    session_id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

async fn one_turn(state: &SimState, turn: &Turn) -> Result<(), Stop> {
    start_running(state, turn).await?;
    let span = start_span(state, turn).await?;
    if let Some(error_type) = &turn.faults.session_error {
        return fail(state, turn, &span, error_type).await;
    }
    let next = match toolset(&turn.agent) {
        Some(_) => Next::Call(FETCH, json!({"query": "is:unread", "max_results": 1})),
        None => Next::Say(NO_TOOLS.to_owned()),
    };
    drive(state, turn, &span, next).await
}

/// Resumes the turn paused on `tool_use_id`: the answered tool's result, then the script.
async fn resume(
    state: &SimState,
    turn: &Turn,
    tool_use_id: &str,
    answer: Answer,
) -> Result<(), Stop> {
    start_running(state, turn).await?;
    // The log is append-only and the tool use was validated when confirmed, so both are found;
    // if not, the turn still ends cleanly.
    let paused = turn.rt.find_event("agent.mcp_tool_use", tool_use_id);
    let tool = paused.as_ref().and_then(|event| known_tool(event["name"].as_str()?));
    let (Some(toolset), Some(event), Some(name)) = (toolset(&turn.agent), &paused, tool) else {
        let span = start_span(state, turn).await?;
        return finish(state, turn, &span, NO_TOOLS.to_owned()).await;
    };
    let input = &event["input"];
    let outcome = match answer {
        Answer::Allow => perform(state, turn, toolset, tool_use_id, name, input).await?,
        Answer::Deny(message) => deny(state, turn, tool_use_id, name, message).await?,
    };
    let span = start_span(state, turn).await?;
    drive(state, turn, &span, after(name, input, outcome)).await
}

/// Runs the script from `next` until the final message or a tool use that needs confirmation.
async fn drive(state: &SimState, turn: &Turn, span: &str, mut next: Next) -> Result<(), Stop> {
    let toolset = toolset(&turn.agent);
    loop {
        let (name, input, toolset) = match (next, toolset) {
            (Next::Say(text), _) => return finish(state, turn, span, text).await,
            (Next::Call(..), None) => return finish(state, turn, span, NO_TOOLS.to_owned()).await,
            (Next::Call(name, input), Some(toolset)) => (name, input, toolset),
        };
        let policy = policy(toolset.tool, name);
        if policy == "always_ask" {
            return pause(state, turn, toolset, span, name, input).await;
        }
        let tool_use = json!({"type": "agent.mcp_tool_use", "name": name, "mcp_server_name": toolset.server,
            "input": input, "evaluated_permission": "allow", "evaluation": evaluation(policy)});
        let use_id = emit(state, turn, tool_use).await?;
        let outcome = perform(state, turn, toolset, &use_id, name, &input).await?;
        next = after(name, &input, outcome);
    }
}

/// The final message, the end of the model request, and idle with `end_turn`.
async fn finish(state: &SimState, turn: &Turn, span: &str, text: String) -> Result<(), Stop> {
    let message = json!({"type": "agent.message", "content": [{"type": "text", "text": text}]});
    emit_then(state, turn, message, |live, _| live.audit.final_text = Some(text)).await?;
    end_span(state, turn, span).await?;
    turn.rt.set_status("idle");
    emit(state, turn, json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}}))
        .await?;
    Ok(())
}

/// The `session_error` fault: the error, as the API reports one it will not retry (a model
/// error as `exhausted`, any other as `terminal`), the end of the model request, and idle with
/// `end_turn` — the stop reason that reads as success to a client ignoring the error.
async fn fail(state: &SimState, turn: &Turn, span: &str, error_type: &str) -> Result<(), Stop> {
    let retry_status = if error_type.starts_with("model_") { "exhausted" } else { "terminal" };
    let mut error = json!({"type": error_type, "message": format!("simulated {error_type}"),
        "retry_status": {"type": retry_status}});
    if error_type.starts_with("mcp_") {
        let server = toolset(&turn.agent).map_or("mcp", |toolset| toolset.server);
        error["mcp_server_name"] = json!(server);
    }
    emit(state, turn, json!({"type": "session.error", "error": error})).await?;
    end_span(state, turn, span).await?;
    turn.rt.set_status("idle");
    emit(state, turn, json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}}))
        .await?;
    Ok(())
}

/// Emits the tool use with `ask` (recorded as awaiting under the same lock, so an immediate
/// confirmation finds it), ends the model request and goes idle with `requires_action`.
async fn pause(
    state: &SimState,
    turn: &Turn,
    toolset: Toolset<'_>,
    span: &str,
    name: &str,
    input: Value,
) -> Result<(), Stop> {
    let tool_use = json!({"type": "agent.mcp_tool_use", "name": name, "mcp_server_name": toolset.server,
        "input": input, "evaluated_permission": "ask", "evaluation": {"type": "always_ask"}});
    let use_id = emit_then(state, turn, tool_use, |live, id| {
        live.awaiting = Some(Awaiting { tool_use_id: id.into(), answer: None });
    })
    .await?;
    end_span(state, turn, span).await?;
    turn.rt.set_status("idle");
    let stop_reason = json!({"type": "requires_action", "event_ids": [use_id]});
    emit(state, turn, json!({"type": "session.status_idle", "stop_reason": stop_reason})).await?;
    Ok(())
}

/// Calls the tool for real and emits its result.
async fn perform(
    state: &SimState,
    turn: &Turn,
    toolset: Toolset<'_>,
    use_id: &str,
    name: &'static str,
    input: &Value,
) -> Result<Outcome, Stop> {
    let caller = Caller {
        session_id: &turn.session_id,
        vault_ids: &turn.vault_ids,
        user: turn.user.as_deref(),
        rt: &turn.rt,
    };
    let result = tools::call(state, &caller, toolset.url, name, input);
    let (text, is_error) = match &result {
        Ok(value) => (value.to_string(), false),
        Err(error) => (error.clone(), true),
    };
    emit(state, turn, tool_result(use_id, &text, is_error)).await?;
    Ok(match result {
        Ok(value) => Outcome::Done(value),
        Err(error) => Outcome::Failed(error),
    })
}

/// Emits the error result of a denied tool use; the tool is not called.
async fn deny(
    state: &SimState,
    turn: &Turn,
    use_id: &str,
    name: &str,
    message: Option<Box<str>>,
) -> Result<Outcome, Stop> {
    let text = format!("The user denied permission to call {name}{}", reason(message.as_deref()));
    emit(state, turn, tool_result(use_id, &text, true)).await?;
    Ok(Outcome::Denied(message))
}

fn tool_result(use_id: &str, text: &str, is_error: bool) -> Value {
    json!({"type": "agent.mcp_tool_result", "mcp_tool_use_id": use_id, "content": [{"type": "text", "text": text}], "is_error": is_error})
}
