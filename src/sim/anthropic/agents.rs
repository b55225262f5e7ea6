//! Agents: create, retrieve (optionally a `version`), update (a new version; `version` is an
//! optimistic-concurrency check, 409 on mismatch), list, archive and versions.
//! Responses are fully expanded as the SDK's strict mode requires: `model` is an object and every
//! toolset has `default_config.{enabled,permission_policy}` and `configs`. Defaults from the
//! docs: `agent_toolset` → `always_allow`, `mcp_toolset` → `always_ask`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Map, Value, json};

use super::{
    Page, Shared, archive_object, fields, metadata, object_body, patch_metadata, required_str,
    visible,
};
use crate::sim::error::AnthropicError;
use crate::sim::ids;
use crate::sim::query::Params;
use crate::sim::state::{Agent, SimState};

/// `POST /v1/agents`.
pub(super) async fn create(
    State(state): Shared,
    body: Bytes,
) -> Result<Json<Value>, AnthropicError> {
    let body = object_body(&body)?;
    fields::agent_create(&body)?;
    let name = required_str(&body, "name")?;
    let model = expand_model(
        body.get("model").ok_or_else(|| AnthropicError::invalid("model: Field required"))?,
    )?;
    let mcp_servers = check_mcp_servers(body.get("mcp_servers"))?;
    let tools = expand_tools(body.get("tools"), &mcp_servers)?;
    let now = ids::now();
    let agent = json!({
        "type": "agent", "id": state.ids.anthropic("agent"), "name": name,
        "description": body.get("description").cloned().unwrap_or(Value::Null),
        "model": model, "system": body.get("system").cloned().unwrap_or(Value::Null),
        "mcp_servers": mcp_servers, "tools": tools,
        "skills": body.get("skills").cloned().unwrap_or_else(|| json!([])),
        "metadata": metadata(&body)?,
        "execution_identity": body.get("execution_identity").cloned().filter(|v| !v.is_null()).unwrap_or_else(|| json!({"type": "service_account"})),
        "multiagent": body.get("multiagent").cloned().unwrap_or(Value::Null),
        "version": 1, "created_at": now, "updated_at": now, "archived_at": null,
    });
    let id = agent["id"].as_str().unwrap_or_default().to_owned();
    state.store().agents.insert(id, Agent { versions: vec![Arc::new(agent.clone())] });
    Ok(Json(agent))
}

fn expand_model(model: &Value) -> Result<Value, AnthropicError> {
    match model {
        Value::String(id) if !id.is_empty() => Ok(json!({"id": id, "speed": "standard"})),
        Value::Object(map) if map.get("id").is_some_and(Value::is_string) => {
            let mut model = model.clone();
            if model.get("speed").is_none_or(Value::is_null) {
                model["speed"] = json!("standard");
            }
            Ok(model)
        }
        _ => Err(AnthropicError::invalid("model: must be a model id or an object with an id")),
    }
}

fn check_mcp_servers(servers: Option<&Value>) -> Result<Value, AnthropicError> {
    let servers = match servers {
        None | Some(Value::Null) => return Ok(json!([])),
        Some(Value::Array(servers)) => servers,
        Some(_) => return Err(AnthropicError::invalid("mcp_servers: must be a list")),
    };
    if servers.len() > 20 {
        return Err(AnthropicError::invalid("mcp_servers: at most 20 servers"));
    }
    let mut names = Vec::new();
    for server in servers {
        let (Some("url"), Some(name), Some(url)) =
            (server["type"].as_str(), server["name"].as_str(), server["url"].as_str())
        else {
            return Err(AnthropicError::invalid(
                "mcp_servers: each server needs type \"url\", name and url",
            ));
        };
        if names.contains(&name) {
            return Err(AnthropicError::invalid(format!(
                "mcp_servers: duplicate server name {name}"
            )));
        }
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(AnthropicError::invalid(format!(
                "mcp_servers: {url} is not an http(s) URL"
            )));
        }
        names.push(name);
    }
    Ok(Value::Array(servers.clone()))
}

fn expand_tools(tools: Option<&Value>, mcp_servers: &Value) -> Result<Value, AnthropicError> {
    let tools = match tools {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools.clone(),
        Some(_) => return Err(AnthropicError::invalid("tools: must be a list")),
    };
    let server_names: Vec<&str> =
        mcp_servers.as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    let mut referenced = Vec::new();
    let expanded = tools
        .into_iter()
        .map(|tool| {
            let policy = match tool["type"].as_str() {
                Some("agent_toolset_20260401") => "always_allow",
                Some("mcp_toolset") => {
                    let name = tool["mcp_server_name"].as_str().unwrap_or_default();
                    if !server_names.contains(&name) {
                        return Err(AnthropicError::invalid(format!(
                            "tools: mcp_toolset references unknown MCP server {name:?}"
                        )));
                    }
                    referenced.push(name.to_owned());
                    "always_ask"
                }
                Some("custom") => return Ok(tool),
                _ => return Err(AnthropicError::invalid("tools: unknown tool type")),
            };
            Ok(expand_toolset(tool, policy))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(unused) = server_names.iter().find(|name| !referenced.iter().any(|r| r == *name)) {
        return Err(AnthropicError::invalid(format!(
            "mcp_servers: server {unused} is not referenced by any mcp_toolset"
        )));
    }
    Ok(Value::Array(expanded))
}

fn expand_toolset(mut tool: Value, default_policy: &str) -> Value {
    let mut config =
        tool.get("default_config").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    if config.get("enabled").is_none_or(Value::is_null) {
        config["enabled"] = json!(true);
    }
    if config.get("permission_policy").is_none_or(Value::is_null) {
        config["permission_policy"] = json!({"type": default_policy});
    }
    tool["default_config"] = config;
    if tool.get("configs").is_none_or(Value::is_null) {
        tool["configs"] = json!([]);
    }
    tool
}

/// The agent `agent_id` (a given version, or the latest).
pub(crate) fn find(
    state: &SimState,
    agent_id: &str,
    version: Option<u64>,
) -> Result<Arc<Value>, AnthropicError> {
    let store = state.store();
    let agent =
        store.agents.get(agent_id).ok_or_else(|| AnthropicError::not_found("agent", agent_id))?;
    match version {
        None => Ok(agent.latest().clone()),
        Some(version) => agent
            .versions
            .iter()
            .find(|v| v["version"].as_u64() == Some(version))
            .cloned()
            .ok_or_else(|| {
                AnthropicError::not_found("agent version", &format!("{agent_id}@{version}"))
            }),
    }
}

/// `GET /v1/agents/{agent_id}?version=`.
pub(super) async fn retrieve(
    State(state): Shared,
    Path(agent_id): Path<String>,
    params: Params,
) -> Result<Json<Value>, AnthropicError> {
    let version = params
        .get("version")
        .map(str::parse::<u64>)
        .transpose()
        .map_err(|_| AnthropicError::invalid("version: must be an integer"))?;
    Ok(Json(find(&state, &agent_id, version)?.as_ref().clone()))
}

/// `POST /v1/agents/{agent_id}`: omitted fields are kept; lists are replaced; metadata patched.
pub(super) async fn update(
    State(state): Shared,
    Path(agent_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, AnthropicError> {
    let body = object_body(&body)?;
    fields::agent_update(&body)?;
    let mut store = state.store();
    let agent = store
        .agents
        .get_mut(&agent_id)
        .ok_or_else(|| AnthropicError::not_found("agent", &agent_id))?;
    let mut next = agent.latest().as_ref().clone();
    let current = next["version"].as_u64().unwrap_or(1);
    if let Some(version) = body.get("version").and_then(Value::as_u64)
        && version != current
    {
        return Err(AnthropicError::conflict(format!(
            "agent {agent_id} is at version {current}, not {version}"
        )));
    }
    apply_update(&mut next, &body)?;
    next["version"] = json!(current + 1);
    next["updated_at"] = json!(ids::now());
    agent.versions.push(Arc::new(next.clone()));
    Ok(Json(next))
}

fn apply_update(agent: &mut Value, body: &Map<String, Value>) -> Result<(), AnthropicError> {
    if body.contains_key("name") {
        agent["name"] = json!(required_str(body, "name")?);
    }
    if let Some(model) = body.get("model") {
        agent["model"] = expand_model(model)?;
    }
    for field in ["description", "system", "skills", "multiagent", "execution_identity"] {
        if let Some(value) = body.get(field) {
            agent[field] = value.clone();
        }
    }
    let servers = match body.get("mcp_servers") {
        Some(servers) => check_mcp_servers(Some(servers))?,
        None => agent["mcp_servers"].clone(),
    };
    if body.contains_key("tools") || body.contains_key("mcp_servers") {
        let tools = body.get("tools").cloned().unwrap_or_else(|| agent["tools"].clone());
        agent["tools"] = expand_tools(Some(&tools), &servers)?;
        agent["mcp_servers"] = servers;
    }
    patch_metadata(&mut agent["metadata"], body.get("metadata"))
}

/// `GET /v1/agents`.
pub(super) async fn list(
    State(state): Shared,
    params: Params,
) -> Result<Json<Value>, AnthropicError> {
    let page = Page::from(&params, 20, 100, false)?;
    let items: Vec<Value> = state
        .store()
        .agents
        .values()
        .map(|agent| agent.latest().as_ref().clone())
        .filter(|agent| visible(agent, &params))
        .collect();
    Ok(page.reply(items, false))
}

/// `GET /v1/agents/{agent_id}/versions`.
pub(super) async fn versions(
    State(state): Shared,
    Path(agent_id): Path<String>,
    params: Params,
) -> Result<Json<Value>, AnthropicError> {
    let page = Page::from(&params, 20, 100, false)?;
    let store = state.store();
    let agent =
        store.agents.get(&agent_id).ok_or_else(|| AnthropicError::not_found("agent", &agent_id))?;
    let items: Vec<Value> =
        agent.versions.iter().rev().map(|version| version.as_ref().clone()).collect();
    Ok(page.reply(items, false))
}

/// `POST /v1/agents/{agent_id}/archive`.
pub(super) async fn archive(
    State(state): Shared,
    Path(agent_id): Path<String>,
) -> Result<Json<Value>, AnthropicError> {
    let mut store = state.store();
    let agent = store
        .agents
        .get_mut(&agent_id)
        .ok_or_else(|| AnthropicError::not_found("agent", &agent_id))?;
    let mut latest = agent.latest().as_ref().clone();
    archive_object(&mut latest);
    let last = agent.versions.len() - 1;
    agent.versions[last] = Arc::new(latest.clone());
    Ok(Json(latest))
}
