//! The simulated Virtual MCP server's tools, as the scripted agent calls them: pick the bearer
//! token the platform would inject (a credential in the session's vaults whose
//! `mcp_server_url` equals the agent's MCP server URL), validate it as the MCP server would
//! (signature, expiry, audience = this server's URL, config), check the tool is exposed and the
//! user's connection is ACTIVE, then run `gmail_fetch_mails` or `googlecalendar_create_event` on
//! the token subject's mailbox and calendar. Failures read like a real MCP server's HTTP errors.
//!
//! Audit: every call is recorded on the session with the token's subject; a subject other than
//! the session's user, or an expired token, is a violation.

use chrono::{DateTime, Duration, Timelike, Utc};
use serde_json::{Value, json};

use super::audit;
use super::fixtures::{self, Mail};
use super::ids;
use super::session::{SessionRt, ToolCall};
use super::state::{SimState, Store};

/// Who is calling: the session's vaults and user, for token lookup and the audit.
#[derive(Debug)]
pub(crate) struct Caller<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) vault_ids: &'a [String],
    pub(crate) user: Option<&'a str>,
    pub(crate) rt: &'a SessionRt,
}

/// Calls `tool` on the MCP server at `url` and records the call for the audit.
pub(crate) fn call(
    state: &SimState,
    caller: &Caller<'_>,
    url: &str,
    tool: &'static str,
    input: &Value,
) -> Result<Value, String> {
    let mut store = state.store();
    let (subject, result) = authorize_and_run(state, &mut store, caller, url, tool, input);
    drop(store);
    let mut live = caller.rt.lock();
    if let Some(subject) = &subject
        && !live.audit.token_subjects.contains(subject)
    {
        live.audit.token_subjects.push(subject.clone());
    }
    live.audit.tool_calls.push(ToolCall {
        name: tool,
        subject,
        error: result.as_ref().err().cloned(),
    });
    result
}

fn authorize_and_run(
    state: &SimState,
    store: &mut Store,
    caller: &Caller<'_>,
    url: &str,
    tool: &str,
    input: &Value,
) -> (Option<String>, Result<Value, String>) {
    let Some(token) = find_token(store, caller.vault_ids, url) else {
        let message =
            "401 Unauthorized: no bearer token for this MCP server (no matching vault credential)";
        return (None, Err(message.to_owned()));
    };
    let prefix = format!("{}/mcp/v3/servers/", state.base_url);
    let Some(server_uuid) = normalize(url).strip_prefix(&prefix).map(str::to_owned) else {
        return (None, Err(format!("could not connect to MCP server {url}")));
    };
    let Some(config) = store.config_by_server(&server_uuid).cloned() else {
        return (None, Err(format!("404 Not Found: no MCP server at {url}")));
    };
    let claims = match state.key.verify(&token) {
        Ok(claims) => claims,
        Err(error) => return (None, Err(format!("401 Unauthorized: invalid_token ({error})"))),
    };
    let subject = claims["sub"].as_str().unwrap_or_default().to_owned();
    if claims["exp"].as_i64().is_none_or(|exp| exp <= Utc::now().timestamp()) {
        state.audit.violation(
            audit::EXPIRED_TOKEN,
            Some(caller.session_id),
            format!("expired token of {subject} used for {tool}"),
        );
        return (
            Some(subject),
            Err("401 Unauthorized: invalid_token (the token has expired)".to_owned()),
        );
    }
    if claims["aud"].as_str().map(normalize) != Some(normalize(url))
        || claims["mcp_cfg"].as_str() != Some(config.id.as_str())
    {
        return (
            Some(subject),
            Err("401 Unauthorized: invalid_token (the token was not issued for this MCP server)"
                .to_owned()),
        );
    }
    if let Some(user) = caller.user
        && user != subject
    {
        let detail = format!("token of {subject} used for {tool} in a session of {user}");
        state.audit.violation(audit::TOKEN_USER_MISMATCH, Some(caller.session_id), detail);
    }
    let result = run_tool(state, store, &config, &claims, &subject, tool, input);
    (Some(subject), result)
}

fn normalize(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// The secret of the newest active credential for `url` in the session's vaults.
fn find_token(store: &Store, vault_ids: &[String], url: &str) -> Option<String> {
    store
        .credentials
        .values()
        .filter(|c| vault_ids.contains(&c.vault_id) && c.view["archived_at"].is_null())
        .filter(|c| {
            store.vaults.get(&c.vault_id).is_some_and(|vault| vault["archived_at"].is_null())
        })
        .filter(|c| normalize(&c.mcp_server_url) == normalize(url))
        .max_by(|a, b| a.view["updated_at"].as_str().cmp(&b.view["updated_at"].as_str()))
        .and_then(|c| c.secret.clone())
}

fn run_tool(
    state: &SimState,
    store: &mut Store,
    config: &super::state::McpConfig,
    claims: &Value,
    subject: &str,
    tool: &str,
    input: &Value,
) -> Result<Value, String> {
    let Some(mapping) = config.mappings.iter().find(|m| {
        m.allows(tool)
            && fixtures::connection(&m.connection_name).is_some_and(|c| c.tools.contains(&tool))
    }) else {
        return Err(format!("404 Not Found: tool {tool} is not available on this MCP server"));
    };
    let user = store.user(&state.config, &state.ids, subject);
    let status = user
        .accounts
        .get(&mapping.connection_name)
        .map_or("NONE", |account| account.status.as_str());
    if status != "ACTIVE" {
        return Err(format!(
            "403 Forbidden: the {} connection of {subject} is {status}; the user must re-authorize it",
            mapping.connection_name
        ));
    }
    match tool {
        "gmail_fetch_mails" => Ok(fetch_mails(&user.mailbox, input)),
        "googlecalendar_create_event" if claims["access_level"] == "READ_ONLY" => {
            Err("403 Forbidden: the session token is read-only".to_owned())
        }
        "googlecalendar_create_event" => Ok(create_event(state, &mut user.calendar, input)),
        _ => Err(format!("501 Not Implemented: tool {tool} is not simulated")),
    }
}

fn fetch_mails(mailbox: &[Mail], input: &Value) -> Value {
    let max = input["max_results"].as_u64().unwrap_or(10).max(1) as usize;
    let unread_only = input["query"].as_str().is_some_and(|q| q.contains("is:unread"));
    let mut mails: Vec<&Mail> = mailbox.iter().filter(|mail| !unread_only || mail.unread).collect();
    mails.sort_by_key(|mail| std::cmp::Reverse(fixtures::received(mail)));
    let messages: Vec<&Mail> = mails.into_iter().take(max).collect();
    json!({"messages": messages, "result_size_estimate": messages.len()})
}

fn create_event(state: &SimState, calendar: &mut Vec<Value>, input: &Value) -> Value {
    let start = input["start_datetime"].as_str().unwrap_or_default().to_owned();
    let minutes = input["event_duration_minutes"].as_i64().unwrap_or(30);
    let end = DateTime::parse_from_rfc3339(&start)
        .map(|at| ids::rfc3339_secs(at.with_timezone(&Utc) + Duration::minutes(minutes)))
        .unwrap_or_default();
    let event = json!({
        "id": state.ids.anthropic("evt"), "status": "confirmed",
        "summary": input["summary"], "description": input["description"],
        "start": {"dateTime": start}, "end": {"dateTime": end},
        "calendar_id": input["calendar_id"].as_str().unwrap_or("primary"), "created": ids::now(),
    });
    calendar.push(event.clone());
    event
}

/// 09:00 UTC on the day after `received_at` (deterministic, unlike "now").
pub(crate) fn next_morning(received_at: &str) -> String {
    let day = DateTime::parse_from_rfc3339(received_at)
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_default()
        + Duration::days(1);
    let morning = day
        .with_hour(9)
        .and_then(|at| at.with_minute(0))
        .and_then(|at| at.with_second(0))
        .unwrap_or(day);
    ids::rfc3339_secs(morning)
}
