//! The scripted agent under the MCP toolset's permission policy, over real HTTP: `always_ask`
//! pauses each tool use with `requires_action` until a `user.tool_confirmation`, `allow` runs the
//! tool for real, `deny` skips its effect, a confirmation of anything else is a 400, and
//! `always_allow` runs straight through.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::sim::{Setup, SimClient, SseReader, spawn_sim};

const USER: &str = "ada@example.com";

fn types(frames: &[(String, Value)]) -> Vec<&str> {
    frames.iter().map(|(event, _)| event.as_str()).collect()
}

/// The frames of type `kind`.
fn of_kind<'a>(frames: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    frames.iter().filter(|(event, _)| event == kind).map(|(_, data)| data).collect()
}

/// The last frame must be idle with `requires_action` naming exactly the one `ask` tool use of
/// `frames`, which must be `tool`; returns that tool use's id.
fn paused_on(frames: &[(String, Value)], tool: &str) -> String {
    let asked: Vec<&Value> = of_kind(frames, "agent.mcp_tool_use")
        .into_iter()
        .filter(|data| data["evaluated_permission"] == "ask")
        .collect();
    assert_eq!(asked.len(), 1, "one tool use awaits confirmation: {frames:?}");
    let tool_use = asked[0];
    assert_eq!(tool_use["name"], tool);
    assert_eq!(tool_use["evaluation"], json!({"type": "always_ask"}));
    assert_eq!(tool_use["mcp_server_name"], "email-calendar-mcp");
    let (_, idle) = frames.last().unwrap();
    assert_eq!(idle["type"], "session.status_idle");
    let id = tool_use["id"].as_str().unwrap().to_owned();
    assert_eq!(idle["stop_reason"], json!({"type": "requires_action", "event_ids": [id]}));
    let results = of_kind(frames, "agent.mcp_tool_result");
    assert!(results.iter().all(|r| r["mcp_tool_use_id"] != id.as_str()), "not run yet: {frames:?}");
    id
}

fn ended_turn(frames: &[(String, Value)]) {
    let (_, idle) = frames.last().unwrap();
    assert_eq!(idle["stop_reason"], json!({"type": "end_turn"}), "{frames:?}");
}

async fn session_status(client: &SimClient, session_id: &str) -> Value {
    let (status, session) =
        client.anthropic(Method::GET, &format!("/v1/sessions/{session_id}"), None).await;
    assert_eq!(status, 200, "{session}");
    session["status"].clone()
}

fn session_audit<'a>(audit: &'a Value, session_id: &str) -> &'a Value {
    audit["sessions"].as_array().unwrap().iter().find(|s| s["id"] == session_id).unwrap()
}

/// A session of an agent whose MCP toolset has `toolset`, with its stream open and the guide's
/// message sent; returns the session id, the stream and the frames up to the first idle.
async fn start(
    client: &SimClient,
    setup: &Setup,
    toolset: Value,
) -> (String, SseReader, Vec<(String, Value)>) {
    let agent_id = client.create_agent_with_toolset(setup, toolset).await;
    let setup = Setup { agent_id, ..setup.clone() };
    let session_id = client.create_session(&setup, USER).await;
    let mut stream = client.open_stream(&session_id).await;
    let (status, body) = client.send_message(&session_id, "Triage my inbox.").await;
    assert_eq!(status, 200, "{body}");
    let frames = stream.until_idle().await;
    (session_id, stream, frames)
}

/// Confirms `tool_use_id` and returns the frames up to the next idle.
async fn answer(
    client: &SimClient,
    stream: &mut SseReader,
    session_id: &str,
    tool_use_id: &str,
    result: &str,
    deny_message: Option<&str>,
) -> Vec<(String, Value)> {
    let (status, body) = client.confirm_tool(session_id, tool_use_id, result, deny_message).await;
    assert_eq!(status, 200, "{body}");
    let echo = &body["data"][0];
    assert_eq!(echo["type"], "user.tool_confirmation");
    assert_eq!(echo["tool_use_id"], tool_use_id);
    assert!(echo["id"].as_str().unwrap().starts_with("sevt_"), "{echo}");
    assert!(echo["processed_at"].is_null(), "{echo}");
    let frames = stream.until_idle().await;
    assert_eq!(frames[0].0, "user.tool_confirmation", "the stream echoes it: {frames:?}");
    assert_eq!(frames[1].0, "session.status_running", "{frames:?}");
    frames
}

fn tool_result_of<'a>(frames: &'a [(String, Value)], tool_use_id: &str) -> &'a Value {
    let results = of_kind(frames, "agent.mcp_tool_result");
    results.into_iter().find(|r| r["mcp_tool_use_id"] == tool_use_id).unwrap()
}

#[tokio::test]
async fn always_ask_pauses_each_tool_use_until_allowed() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user(USER).await;
    let ask = json!({"default_config": {"permission_policy": {"type": "always_ask"}}});
    let (session_id, mut stream, frames) = start(&client, &setup, ask).await;

    assert_eq!(
        types(&frames),
        [
            "user.message",
            "session.status_running",
            "span.model_request_start",
            "agent.mcp_tool_use",
            "span.model_request_end",
            "session.status_idle"
        ]
    );
    let fetch_id = paused_on(&frames, "gmail_fetch_mails");
    assert_eq!(session_status(&client, &session_id).await, "idle");
    let audit = client.audit().await;
    assert_eq!(session_audit(&audit, &session_id)["tool_calls"], json!([]), "nothing ran yet");

    let frames = answer(&client, &mut stream, &session_id, &fetch_id, "allow", None).await;
    assert_eq!(
        types(&frames)[2..],
        [
            "agent.mcp_tool_result",
            "span.model_request_start",
            "agent.mcp_tool_use",
            "span.model_request_end",
            "session.status_idle"
        ]
    );
    let fetched = tool_result_of(&frames, &fetch_id);
    assert_eq!(fetched["is_error"], false, "{fetched}");
    let create_id = paused_on(&frames, "googlecalendar_create_event");
    assert!(client.calendar(USER).await.is_empty(), "not created before it is allowed");

    let frames = answer(&client, &mut stream, &session_id, &create_id, "allow", None).await;
    assert_eq!(
        types(&frames)[2..],
        [
            "agent.mcp_tool_result",
            "span.model_request_start",
            "agent.message",
            "span.model_request_end",
            "session.status_idle"
        ]
    );
    ended_turn(&frames);
    assert_eq!(tool_result_of(&frames, &create_id)["is_error"], false);
    let message = of_kind(&frames, "agent.message")[0]["content"][0]["text"].as_str().unwrap();
    assert!(message.contains("I created the calendar event"), "{message}");
    let calendar = client.calendar(USER).await;
    assert_eq!(calendar.len(), 1, "{calendar:?}");
    assert!(calendar[0]["summary"].as_str().unwrap().starts_with("Action Required: "));
    assert_eq!(session_status(&client, &session_id).await, "idle");

    let audit = client.audit().await;
    let session = session_audit(&audit, &session_id);
    assert_eq!(session["user_messages"], 1, "a confirmation is not a user.message");
    let calls: Vec<&Value> = session["tool_calls"].as_array().unwrap().iter().collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.iter().all(|call| call["ok"] == true && call["subject"] == USER), "{calls:?}");
    assert_eq!(audit["violations"], json!([]));
}

#[tokio::test]
async fn denying_the_calendar_tool_creates_no_event_and_ends_the_turn() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user(USER).await;
    // Only the calendar tool asks: a per-tool `configs[]` entry overrides the default.
    let toolset = json!({"default_config": {"permission_policy": {"type": "always_allow"}},
        "configs": [{"name": "googlecalendar_create_event", "permission_policy": {"type": "always_ask"}}]});
    let (session_id, mut stream, frames) = start(&client, &setup, toolset).await;

    let uses = of_kind(&frames, "agent.mcp_tool_use");
    assert_eq!(uses[0]["name"], "gmail_fetch_mails");
    assert_eq!(uses[0]["evaluated_permission"], "allow", "the default still allows it");
    assert_eq!(tool_result_of(&frames, uses[0]["id"].as_str().unwrap())["is_error"], false);
    let create_id = paused_on(&frames, "googlecalendar_create_event");

    let frames =
        answer(&client, &mut stream, &session_id, &create_id, "deny", Some("Not today")).await;
    assert_eq!(
        types(&frames)[2..],
        [
            "agent.mcp_tool_result",
            "span.model_request_start",
            "agent.message",
            "span.model_request_end",
            "session.status_idle"
        ]
    );
    ended_turn(&frames);
    let denied = tool_result_of(&frames, &create_id);
    assert_eq!(denied["is_error"], true, "{denied}");
    let text = denied["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("denied") && text.contains("Not today"), "{text}");
    let message = of_kind(&frames, "agent.message")[0]["content"][0]["text"].as_str().unwrap();
    assert!(message.contains("did not create the calendar event"), "{message}");
    assert!(client.calendar(USER).await.is_empty(), "a denied tool has no effect");

    let audit = client.audit().await;
    let session = session_audit(&audit, &session_id);
    let calls = session["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "only the performed call counts: {calls:?}");
    assert_eq!(calls[0]["name"], "gmail_fetch_mails");
    assert_eq!(session["user_messages"], 1);
    assert_eq!(audit["totals"]["calendar_events"], 0);
}

#[tokio::test]
async fn a_confirmation_must_name_the_awaited_tool_use() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user(USER).await;
    let ask = json!({"default_config": {"permission_policy": {"type": "always_ask"}}});
    let (session_id, mut stream, frames) = start(&client, &setup, ask).await;
    let fetch_id = paused_on(&frames, "gmail_fetch_mails");
    let n_events = events(&client, &session_id).await.len();

    let message_id = frames[0].1["id"].as_str().unwrap().to_owned();
    for bad in ["sevt_011unknown", message_id.as_str()] {
        let (status, body) = client.confirm_tool(&session_id, bad, "allow", None).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(bad), "{body}");
        assert!(body["request_id"].is_string(), "{body}");
    }
    let (status, body) = client.confirm_tool(&session_id, &fetch_id, "maybe", None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(
        events(&client, &session_id).await.len(),
        n_events,
        "a rejected event is not stored"
    );

    // The paused turn is unharmed; a second answer to the same tool use is rejected.
    let frames = answer(&client, &mut stream, &session_id, &fetch_id, "allow", None).await;
    let create_id = paused_on(&frames, "googlecalendar_create_event");
    let (status, body) = client.confirm_tool(&session_id, &fetch_id, "allow", None).await;
    assert_eq!(status, 400, "already answered: {body}");
    let frames = answer(&client, &mut stream, &session_id, &create_id, "allow", None).await;
    ended_turn(&frames);
    let (status, body) = client.confirm_tool(&session_id, &create_id, "deny", None).await;
    assert_eq!(status, 400, "nothing awaits once the turn ended: {body}");
    assert_eq!(client.calendar(USER).await.len(), 1);
}

#[tokio::test]
async fn always_allow_runs_straight_through() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user(USER).await;
    let session_id = client.create_session(&setup, USER).await;
    let frames = client.run_turn(&session_id).await;

    ended_turn(&frames);
    assert_eq!(of_kind(&frames, "session.status_idle").len(), 1, "{frames:?}");
    let uses = of_kind(&frames, "agent.mcp_tool_use");
    assert_eq!(uses.len(), 2, "{frames:?}");
    for tool_use in &uses {
        assert_eq!(tool_use["evaluated_permission"], "allow", "{tool_use}");
        assert_eq!(tool_use["evaluation"], json!({"type": "always_allow"}), "{tool_use}");
        let result = tool_result_of(&frames, tool_use["id"].as_str().unwrap());
        assert_eq!(result["is_error"], false, "{result}");
    }
    assert_eq!(client.calendar(USER).await.len(), 1);
    let (status, body) =
        client.confirm_tool(&session_id, uses[1]["id"].as_str().unwrap(), "allow", None).await;
    assert_eq!(status, 400, "an allowed tool use awaits nothing: {body}");
}

async fn events(client: &SimClient, session_id: &str) -> Vec<Value> {
    let (status, body) =
        client.anthropic(Method::GET, &format!("/v1/sessions/{session_id}/events"), None).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_mcp_default_asks_and_a_denied_fetch_calls_nothing() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user(USER).await;
    // No permission_policy: the documented MCP toolset default, always_ask, applies.
    let (session_id, mut stream, frames) = start(&client, &setup, json!({})).await;
    let fetch_id = paused_on(&frames, "gmail_fetch_mails");

    let frames = answer(&client, &mut stream, &session_id, &fetch_id, "deny", None).await;
    ended_turn(&frames);
    let denied = tool_result_of(&frames, &fetch_id);
    assert_eq!(denied["is_error"], true, "{denied}");
    assert_eq!(
        denied["content"][0]["text"],
        "The user denied permission to call gmail_fetch_mails."
    );
    assert!(of_kind(&frames, "agent.mcp_tool_use").is_empty(), "no further tool use: {frames:?}");
    let audit = client.audit().await;
    assert_eq!(session_audit(&audit, &session_id)["tool_calls"], json!([]));
    assert!(client.calendar(USER).await.is_empty());
}
