//! The scripted agent's decisions: which tool to call next and what to say after each tool
//! use ends, which MCP toolset the agent has, and each tool's permission policy.
//!
//! These are pure functions of the agent's definition and the tools' results. They must not
//! emit events, touch the session or call a tool.

use serde_json::{Value, json};

use super::super::fixtures::{self, Mail};
use super::super::tools;

pub(super) const FETCH: &str = "gmail_fetch_mails";
const CREATE: &str = "googlecalendar_create_event";

/// What the scripted model decides after its last step.
#[derive(Debug)]
pub(super) enum Next {
    Call(&'static str, Value),
    Say(String),
}

/// How a tool use ended.
#[derive(Debug)]
pub(super) enum Outcome {
    Done(Value),
    Failed(String),
    /// Denied by the user, with the optional `deny_message`.
    Denied(Option<Box<str>>),
}

/// The agent's MCP toolset: its server's name and URL, and the toolset (for its policies).
#[derive(Debug, Clone, Copy)]
pub(super) struct Toolset<'a> {
    pub(super) server: &'a str,
    pub(super) url: &'a str,
    pub(super) tool: &'a Value,
}

/// `: <deny_message>.` or `.`.
pub(super) fn reason(message: Option<&str>) -> String {
    let message = message.map(|m| m.trim().trim_end_matches('.')).filter(|m| !m.is_empty());
    message.map_or_else(|| ".".to_owned(), |m| format!(": {m}."))
}

/// The script: what the agent does after `name` ended with `outcome`.
pub(super) fn after(name: &str, input: &Value, outcome: Outcome) -> Next {
    if name == FETCH { after_fetch(outcome) } else { after_create(input, outcome) }
}

fn after_fetch(outcome: Outcome) -> Next {
    let result = match outcome {
        Outcome::Done(result) => result,
        Outcome::Failed(error) => {
            return Next::Say(format!(
                "I couldn't read your email: the MCP server rejected the gmail_fetch_mails call ({error}). Please reconnect your accounts and try again."
            ));
        }
        Outcome::Denied(message) => {
            return Next::Say(format!(
                "I couldn't read your email because you denied the gmail_fetch_mails call{} I did not create a calendar event.",
                reason(message.as_deref())
            ));
        }
    };
    match result["messages"].get(0).cloned().map(serde_json::from_value::<Mail>) {
        Some(Ok(mail)) => Next::Call(CREATE, event_input(&mail)),
        _ => Next::Say("You have no unread email, so there was nothing to summarise and I did not create a calendar event.".to_owned()),
    }
}

/// The calendar event for `mail`: its title is the `summary`, the email's summary the
/// `description` (read back by [`after_create`], so a resumed turn needs nothing else).
fn event_input(mail: &Mail) -> Value {
    let summary = fixtures::summarize(mail);
    let title = format!("Action Required: {}", mail.subject);
    json!({"calendar_id": "primary", "summary": title, "description": summary, "start_datetime": tools::next_morning(&mail.received_at), "event_duration_minutes": 30})
}

fn after_create(input: &Value, outcome: Outcome) -> Next {
    let summary = input["description"].as_str().unwrap_or_default();
    let title = input["summary"].as_str().unwrap_or_default();
    Next::Say(match outcome {
        Outcome::Done(_) => {
            format!("{summary}\n\nI created the calendar event \"{title}\" with this summary.")
        }
        Outcome::Failed(error) => {
            format!("{summary}\n\nI could not create the calendar event \"{title}\": {error}.")
        }
        Outcome::Denied(message) => format!(
            "{summary}\n\nI did not create the calendar event \"{title}\" because you denied the googlecalendar_create_event call{}",
            reason(message.as_deref())
        ),
    })
}

/// The tool names the script uses, as the audit's `&'static str`.
pub(super) fn known_tool(name: &str) -> Option<&'static str> {
    [FETCH, CREATE].into_iter().find(|known| *known == name)
}

/// The first enabled `mcp_toolset` whose MCP server the agent declares.
pub(super) fn toolset(agent: &Value) -> Option<Toolset<'_>> {
    let servers = agent["mcp_servers"].as_array()?;
    agent["tools"]
        .as_array()?
        .iter()
        .filter(|tool| tool["type"] == "mcp_toolset" && tool["default_config"]["enabled"] != false)
        .find_map(|tool| {
            let server = servers.iter().find(|server| server["name"] == tool["mcp_server_name"])?;
            Some(Toolset { server: server["name"].as_str()?, url: server["url"].as_str()?, tool })
        })
}

/// The permission policy of `name` in `toolset`: its `configs[]` entry, else the default (the
/// documented MCP default, `always_ask`, when neither says).
pub(super) fn policy<'a>(toolset: &'a Value, name: &str) -> &'a str {
    toolset["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|config| config["name"] == name)
        .and_then(|config| config["permission_policy"]["type"].as_str())
        .or_else(|| toolset["default_config"]["permission_policy"]["type"].as_str())
        .unwrap_or("always_ask")
}

/// The `evaluation` of an allowed tool use under `policy`.
pub(super) fn evaluation(policy: &str) -> Value {
    match policy {
        "auto" => json!({"type": "auto", "evaluated_permission": {"type": "allow"}}),
        _ => json!({"type": "always_allow"}),
    }
}
