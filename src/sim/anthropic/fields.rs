//! The members each request body may have, taken from the official SDK's request types
//! (`AgentCreateParams`, `SessionCreateParams`, `EventSendParams`, …): a member not listed is
//! refused with 400 `invalid_request_error` naming it by its path
//! (`tools.1.default_config.foo: Extra inputs are not permitted`), as the real API refuses it,
//! so a client that sends a misspelt or invented field fails against the simulator too.
//!
//! Only names are checked here; the handlers check values and types. Objects the simulator does
//! not model (`multiagent`, image and document `source`s, tool `configs` of the agent toolset)
//! are not looked into.

use serde_json::{Map, Value};

use crate::sim::error::AnthropicError;

const AGENT: &[&str] = &[
    "model",
    "name",
    "description",
    "execution_identity",
    "mcp_servers",
    "metadata",
    "multiagent",
    "skills",
    "system",
    "tools",
];
const MODEL: &[&str] = &["id", "effort", "inference_geo", "speed"];
const MCP_SERVER: &[&str] = &["type", "name", "url"];
const TOOL_CONFIG: &[&str] = &["enabled", "permission_policy"];
const MCP_TOOL_CONFIG: &[&str] = &["name", "enabled", "permission_policy"];
const SKILL: &[&str] = &["type", "skill_id", "version"];
const ENVIRONMENT: &[&str] = &["name", "config", "description", "metadata", "scope"];
const VAULT: &[&str] = &["display_name", "metadata"];
const CREDENTIAL: &[&str] = &["auth", "display_name", "metadata"];
const REFRESH: &[&str] =
    &["client_id", "refresh_token", "token_endpoint", "token_endpoint_auth", "resource", "scope"];
const SESSION: &[&str] = &[
    "agent",
    "environment_id",
    "budget",
    "initial_events",
    "metadata",
    "resources",
    "title",
    "vault_ids",
];
const SESSION_UPDATE: &[&str] = &["title", "metadata", "vault_ids"];

/// `POST /v1/agents`.
pub(super) fn agent_create(body: &Map<String, Value>) -> Result<(), AnthropicError> {
    only(body, "", AGENT)?;
    agent_parts(body, "")
}

/// `POST /v1/agents/{id}`: the create's members and the optimistic-concurrency `version`.
pub(super) fn agent_update(body: &Map<String, Value>) -> Result<(), AnthropicError> {
    if let Some(key) = body.keys().find(|key| *key != "version" && !AGENT.contains(&key.as_str())) {
        return Err(extra("", key));
    }
    agent_parts(body, "")
}

/// The nested objects of an agent (or of a session's agent overrides) under `at`.
fn agent_parts(agent: &Map<String, Value>, at: &str) -> Result<(), AnthropicError> {
    if let Some(Value::Object(model)) = agent.get("model") {
        only(model, &path(at, "model"), MODEL)?;
    }
    if let Some(Value::Object(identity)) = agent.get("execution_identity") {
        only(identity, &path(at, "execution_identity"), &["type", "role_arn"])?;
    }
    each(agent.get("mcp_servers"), &path(at, "mcp_servers"), |server, at| {
        only(server, at, MCP_SERVER)
    })?;
    each(agent.get("skills"), &path(at, "skills"), |skill, at| only(skill, at, SKILL))?;
    each(agent.get("tools"), &path(at, "tools"), tool)
}

fn tool(tool: &Map<String, Value>, at: &str) -> Result<(), AnthropicError> {
    let allowed: &[&str] = match tool.get("type").and_then(Value::as_str) {
        Some("agent_toolset_20260401") => &["type", "configs", "default_config"],
        Some("mcp_toolset") => &["type", "mcp_server_name", "configs", "default_config"],
        Some("custom") => &["type", "name", "description", "input_schema"],
        // An unknown type is the handler's 400.
        _ => return Ok(()),
    };
    only(tool, at, allowed)?;
    if let Some(Value::Object(config)) = tool.get("default_config") {
        let at = path(at, "default_config");
        only(config, &at, TOOL_CONFIG)?;
        policy(config, &at)?;
    }
    if tool.get("type").and_then(Value::as_str) == Some("mcp_toolset") {
        each(tool.get("configs"), &path(at, "configs"), |config, at| {
            only(config, at, MCP_TOOL_CONFIG)?;
            policy(config, at)
        })?;
    }
    Ok(())
}

fn policy(config: &Map<String, Value>, at: &str) -> Result<(), AnthropicError> {
    match config.get("permission_policy") {
        Some(Value::Object(policy)) => only(policy, &path(at, "permission_policy"), &["type"]),
        _ => Ok(()),
    }
}

/// `POST /v1/environments` and `POST /v1/environments/{id}`.
pub(super) fn environment(body: &Map<String, Value>) -> Result<(), AnthropicError> {
    only(body, "", ENVIRONMENT)?;
    let Some(Value::Object(config)) = body.get("config") else { return Ok(()) };
    if config.get("type").and_then(Value::as_str) == Some("self_hosted") {
        return only(config, "config", &["type"]);
    }
    only(config, "config", &["type", "networking", "packages"])?;
    if let Some(Value::Object(networking)) = config.get("networking") {
        let allowed: &[&str] = match networking.get("type").and_then(Value::as_str) {
            Some("limited") => {
                &["type", "allow_mcp_servers", "allow_package_managers", "allowed_hosts"]
            }
            _ => &["type"],
        };
        only(networking, "config.networking", allowed)?;
    }
    if let Some(Value::Object(packages)) = config.get("packages") {
        let allowed = ["type", "apt", "cargo", "gem", "go", "npm", "pip"];
        only(packages, "config.packages", &allowed)?;
    }
    Ok(())
}

/// `POST /v1/vaults` and `POST /v1/vaults/{id}`.
pub(super) fn vault(body: &Map<String, Value>) -> Result<(), AnthropicError> {
    only(body, "", VAULT)
}

/// `POST /v1/vaults/{id}/credentials`.
pub(super) fn credential_create(body: &Map<String, Value>) -> Result<(), AnthropicError> {
    only(body, "", CREDENTIAL)?;
    let Some(Value::Object(auth)) = body.get("auth") else { return Ok(()) };
    let allowed: &[&str] = match auth.get("type").and_then(Value::as_str) {
        Some("static_bearer") => &["type", "mcp_server_url", "token"],
        Some("mcp_oauth") => &["type", "mcp_server_url", "access_token", "expires_at", "refresh"],
        Some("environment_variable") => {
            &["type", "secret_name", "secret_value", "networking", "injection_location"]
        }
        _ => return Ok(()),
    };
    only(auth, "auth", allowed)?;
    credential_parts(auth, REFRESH)
}

/// `POST /v1/vaults/{id}/credentials/{id}`: the URL and the secret's name cannot change, so
/// they are not members of an update.
pub(super) fn credential_update(body: &Map<String, Value>) -> Result<(), AnthropicError> {
    only(body, "", CREDENTIAL)?;
    let Some(Value::Object(auth)) = body.get("auth") else { return Ok(()) };
    let allowed: &[&str] = match auth.get("type").and_then(Value::as_str) {
        Some("static_bearer") => &["type", "token"],
        Some("mcp_oauth") => &["type", "access_token", "expires_at", "refresh"],
        Some("environment_variable") => {
            &["type", "secret_value", "networking", "injection_location"]
        }
        _ => return Ok(()),
    };
    only(auth, "auth", allowed)?;
    credential_parts(auth, &["refresh_token", "scope", "token_endpoint_auth"])
}

fn credential_parts(auth: &Map<String, Value>, refresh: &[&str]) -> Result<(), AnthropicError> {
    if let Some(Value::Object(block)) = auth.get("refresh") {
        only(block, "auth.refresh", refresh)?;
        if let Some(Value::Object(endpoint_auth)) = block.get("token_endpoint_auth") {
            let at = "auth.refresh.token_endpoint_auth";
            only(endpoint_auth, at, &["type", "client_secret"])?;
        }
    }
    if let Some(Value::Object(networking)) = auth.get("networking") {
        only(networking, "auth.networking", &["type", "allowed_hosts"])?;
    }
    if let Some(Value::Object(location)) = auth.get("injection_location") {
        only(location, "auth.injection_location", &["header", "body"])?;
    }
    Ok(())
}

/// `POST /v1/sessions`: the agent reference or its overrides, and the initial events.
pub(super) fn session_create(body: &Map<String, Value>) -> Result<(), AnthropicError> {
    only(body, "", SESSION)?;
    if let Some(Value::Object(agent)) = body.get("agent") {
        if agent.get("type").and_then(Value::as_str) == Some("agent_with_overrides") {
            let allowed =
                ["type", "id", "version", "model", "system", "tools", "mcp_servers", "skills"];
            only(agent, "agent", &allowed)?;
            agent_parts(agent, "agent")?;
        } else {
            only(agent, "agent", &["type", "id", "version"])?;
        }
    }
    if let Some(Value::Object(budget)) = body.get("budget") {
        only(budget, "budget", &["type", "max_list_cost"])?;
        if let Some(Value::Object(cost)) = budget.get("max_list_cost") {
            only(cost, "budget.max_list_cost", &["amount", "currency"])?;
        }
    }
    each(body.get("initial_events"), "initial_events", event)
}

/// `POST /v1/sessions/{id}`.
pub(super) fn session_update(body: &Map<String, Value>) -> Result<(), AnthropicError> {
    only(body, "", SESSION_UPDATE)
}

/// `POST /v1/sessions/{id}/events`.
pub(super) fn events_send(body: &Map<String, Value>) -> Result<(), AnthropicError> {
    only(body, "", &["events"])?;
    each(body.get("events"), "events", event)
}

fn event(event: &Map<String, Value>, at: &str) -> Result<(), AnthropicError> {
    let allowed: &[&str] = match event.get("type").and_then(Value::as_str) {
        Some("user.message" | "system.message") => &["type", "content"],
        Some("user.interrupt") => &["type", "session_thread_id"],
        Some("user.tool_confirmation") => &["type", "tool_use_id", "result", "deny_message"],
        Some("user.custom_tool_result") => &["type", "custom_tool_use_id", "content", "is_error"],
        Some("user.tool_result") => &["type", "tool_use_id", "content", "is_error"],
        Some("user.define_outcome") => &["type", "description", "rubric", "max_iterations"],
        // An unknown type is the handler's 400.
        _ => return Ok(()),
    };
    only(event, at, allowed)?;
    each(event.get("content"), &path(at, "content"), block)
}

fn block(block: &Map<String, Value>, at: &str) -> Result<(), AnthropicError> {
    let allowed: &[&str] = match block.get("type").and_then(Value::as_str) {
        Some("text") => &["type", "text"],
        Some("image") => &["type", "source"],
        Some("document") => &["type", "source", "context", "title"],
        Some("redacted") => &["type"],
        Some("search_result") => &["type", "citations", "content", "source", "title"],
        _ => return Ok(()),
    };
    only(block, at, allowed)
}

/// Applies `check` to every object of the list `value` (`at.0`, `at.1`, …); anything that is
/// not a list of objects is left to the handler.
fn each(
    value: Option<&Value>,
    at: &str,
    check: impl Fn(&Map<String, Value>, &str) -> Result<(), AnthropicError>,
) -> Result<(), AnthropicError> {
    let Some(Value::Array(items)) = value else { return Ok(()) };
    items.iter().enumerate().try_for_each(|(index, item)| match item {
        Value::Object(object) => check(object, &path(at, &index.to_string())),
        _ => Ok(()),
    })
}

/// Refuses the first member of `object` that is not in `allowed`.
fn only(object: &Map<String, Value>, at: &str, allowed: &[&str]) -> Result<(), AnthropicError> {
    match object.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(extra(at, key)),
        None => Ok(()),
    }
}

/// The vendor's wording for a member it does not know (the API validates with pydantic).
fn extra(at: &str, key: &str) -> AnthropicError {
    let member = path(at, key);
    AnthropicError::invalid(format!("{member}: Extra inputs are not permitted"))
}

fn path(at: &str, member: &str) -> String {
    if at.is_empty() { member.to_owned() } else { format!("{at}.{member}") }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(
        f: fn(&Map<String, Value>) -> Result<(), AnthropicError>,
        body: Value,
    ) -> Result<(), String> {
        let Value::Object(body) = body else { panic!("not an object: {body}") };
        f(&body).map_err(|error| error.message().to_owned())
    }

    #[test]
    fn unknown_members_are_named_by_their_path() {
        let extra = |path: &str| Err(format!("{path}: Extra inputs are not permitted"));
        assert_eq!(check(vault, json!({"display_name": "v", "colour": 1})), extra("colour"));
        let tools = json!({"name": "a", "model": "m", "tools": [{"type": "agent_toolset_20260401"},
            {"type": "mcp_toolset", "mcp_server_name": "s", "default_config": {"enabled": true, "x": 1}}]});
        assert_eq!(check(agent_create, tools), extra("tools.1.default_config.x"));
        let events = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "t", "lang": "en"}]}]});
        assert_eq!(check(events_send, events), extra("events.0.content.0.lang"));
        let update =
            json!({"auth": {"type": "static_bearer", "token": "t", "mcp_server_url": "u"}});
        assert_eq!(check(credential_update, update), extra("auth.mcp_server_url"));
        let session =
            json!({"agent": {"type": "agent", "id": "a", "system": "s"}, "environment_id": "e"});
        assert_eq!(check(session_create, session), extra("agent.system"));
        assert_eq!(
            check(agent_create, json!({"name": "a", "workspace_id": "w"})),
            extra("workspace_id")
        );
    }

    #[test]
    fn what_the_sdk_sends_is_accepted() {
        let agent = json!({"model": {"id": "m", "speed": "fast"}, "name": "a", "system": "s",
            "mcp_servers": [{"type": "url", "name": "s", "url": "https://x"}],
            "tools": [{"type": "agent_toolset_20260401", "default_config": {"enabled": true}},
                      {"type": "mcp_toolset", "mcp_server_name": "s", "default_config": {"permission_policy": {"type": "always_allow"}}}],
            "metadata": {"k": "v"}, "description": null});
        assert_eq!(check(agent_create, agent.clone()), Ok(()));
        let mut update = agent;
        update["version"] = json!(1);
        assert_eq!(check(agent_update, update), Ok(()));
        let session = json!({"agent": "agent_1", "environment_id": "e", "title": "t", "vault_ids": ["v"], "metadata": {"user": "u"}});
        assert_eq!(check(session_create, session), Ok(()));
        let credential = json!({"auth": {"type": "static_bearer", "mcp_server_url": "u", "token": "t"}, "display_name": "d"});
        assert_eq!(check(credential_create, credential), Ok(()));
        let env = json!({"name": "e", "config": {"type": "cloud", "networking": {"type": "unrestricted"}}});
        assert_eq!(check(environment, env), Ok(()));
        let confirm = json!({"events": [{"type": "user.tool_confirmation", "tool_use_id": "t", "result": "deny", "deny_message": "no"}, {"type": "user.interrupt"}]});
        assert_eq!(check(events_send, confirm), Ok(()));
    }
}
