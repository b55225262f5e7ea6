//! `McpService` config routes: create, list (with `filter.*`, `search`, paging), get, delete.
//! Create validates like protovalidate does:
//! name 1–100 chars of `^[a-z0-9_-]+$`, unique; at most 25 mappings, each naming a known
//! connection and only tools that connection has. A duplicate name is 409 `ALREADY_EXISTS`
//! (the spec's most likely reading). Create answers 201 as the OpenAPI documents.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::reply;
use crate::sim::error::ScalekitError;
use crate::sim::fixtures;
use crate::sim::query::{Params, scalekit_body};
use crate::sim::state::{Mapping, McpConfig, SimState};

type Shared = State<Arc<SimState>>;

/// The body of `CreateMcpConfig`: the bare `McpConfig` (HTTP rule `body: "config"`).
/// Accepts snake_case and lowerCamelCase, as protojson does.
#[derive(Debug, Default, Deserialize)]
struct ConfigBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, alias = "connectionToolMappings")]
    connection_tool_mappings: Option<Vec<MappingBody>>,
}

#[derive(Debug, Default, Deserialize)]
struct MappingBody {
    #[serde(default, alias = "connectionName")]
    connection_name: Option<String>,
    #[serde(default)]
    tools: Option<Vec<String>>,
}

/// The wire form of a config.
pub(crate) fn config_json(state: &SimState, config: &McpConfig) -> Value {
    let mappings: Vec<Value> = config
        .mappings
        .iter()
        .map(|mapping| {
            let connection = fixtures::connection(&mapping.connection_name);
            json!({
                "connection_id": connection.map(|c| c.id),
                "connection_name": mapping.connection_name,
                "provider": connection.map(|c| c.provider),
                "tools": mapping.tools,
            })
        })
        .collect();
    json!({
        "id": config.id,
        "name": config.name,
        "description": config.description,
        "connection_tool_mappings": mappings,
        "mcp_server_url": state.mcp_server_url(&config.server_uuid),
    })
}

/// `POST /api/v1/mcp/configs`.
pub(super) async fn create(State(state): Shared, body: Bytes) -> Result<Response, ScalekitError> {
    let body: ConfigBody = scalekit_body(&body)?;
    let name = body.name.unwrap_or_default();
    check_name(&name)?;
    let mappings = check_mappings(body.connection_tool_mappings.unwrap_or_default())?;
    let config = McpConfig {
        id: state.ids.scalekit("cfg"),
        name,
        description: body.description.unwrap_or_default(),
        mappings,
        server_uuid: uuid::Uuid::new_v4().to_string(),
    };
    let mut store = state.store();
    if store.configs.values().any(|existing| existing.name.eq_ignore_ascii_case(&config.name)) {
        return Err(ScalekitError::already_exists(format!(
            "mcp config with name {} already exists",
            config.name
        )));
    }
    let wire = config_json(&state, &config);
    store.configs.insert(config.id.clone(), config);
    drop(store);
    Ok(reply(&state, StatusCode::CREATED, json!({"config": wire})))
}

fn check_name(name: &str) -> Result<(), ScalekitError> {
    if name.is_empty() {
        return Err(ScalekitError::invalid("name", "value is required"));
    }
    if name.chars().count() > 100 {
        return Err(ScalekitError::invalid("name", "value length must be at most 100 characters"));
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        return Err(ScalekitError::invalid(
            "name",
            "value does not match regex pattern `^[a-z0-9_-]+$`",
        ));
    }
    Ok(())
}

fn check_mappings(bodies: Vec<MappingBody>) -> Result<Vec<Mapping>, ScalekitError> {
    if bodies.len() > 25 {
        return Err(ScalekitError::invalid(
            "connection_tool_mappings",
            "value must contain no more than 25 item(s)",
        ));
    }
    bodies
        .into_iter()
        .map(|body| {
            let name = body.connection_name.unwrap_or_default();
            if name.is_empty() {
                return Err(ScalekitError::invalid(
                    "connection_tool_mappings.connection_name",
                    "value is required",
                ));
            }
            let Some(connection) = fixtures::connection(&name) else {
                return Err(ScalekitError::invalid(
                    "connection_tool_mappings.connection_name",
                    format!("connection {name} not found"),
                ));
            };
            let tools = body.tools.unwrap_or_default();
            if let Some(unknown) =
                tools.iter().find(|tool| !connection.tools.contains(&tool.as_str()))
            {
                return Err(ScalekitError::invalid(
                    "connection_tool_mappings.tools",
                    format!("tool {unknown} not found in connection {name}"),
                ));
            }
            Ok(Mapping { connection_name: name, tools })
        })
        .collect()
}

/// `GET /api/v1/mcp/configs` with `filter.id`, `filter.name`, `filter.provider`,
/// `filter.mcp_server_url`, `search`, `page_size` (≤ 30) and `page_token`.
pub(super) async fn list(State(state): Shared, params: Params) -> Result<Response, ScalekitError> {
    let page_size = match params.get("page_size") {
        None => 30,
        Some(text) => match text.parse::<usize>() {
            Ok(size) if size <= 30 => {
                if size == 0 {
                    30
                } else {
                    size
                }
            }
            _ => {
                return Err(ScalekitError::invalid(
                    "page_size",
                    "value must be less than or equal to 30",
                ));
            }
        },
    };
    let offset = match params.get("page_token") {
        None => 0,
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| ScalekitError::invalid("page_token", "invalid page token"))?,
    };
    let store = state.store();
    let matching: Vec<&McpConfig> =
        store.configs.values().filter(|config| matches(config, &params)).collect();
    let total = matching.len();
    let configs: Vec<Value> =
        matching.iter().skip(offset).take(page_size).map(|c| config_json(&state, c)).collect();
    drop(store);
    let next =
        if offset + page_size < total { (offset + page_size).to_string() } else { String::new() };
    let prev =
        if offset > 0 { offset.saturating_sub(page_size).to_string() } else { String::new() };
    Ok(reply(
        &state,
        StatusCode::OK,
        json!({"configs": configs, "next_page_token": next, "prev_page_token": prev, "total_size": total}),
    ))
}

fn matches(config: &McpConfig, params: &Params) -> bool {
    let id_ok = params.get("filter.id").is_none_or(|id| id == config.id);
    let name_ok =
        params.get("filter.name").is_none_or(|name| name.eq_ignore_ascii_case(&config.name));
    let provider_ok = params.get("filter.provider").is_none_or(|provider| {
        config.mappings.iter().any(|m| {
            fixtures::connection(&m.connection_name)
                .is_some_and(|c| c.provider.eq_ignore_ascii_case(provider))
        })
    });
    // The real server compares only the UUID in the URL's last path segment.
    let url_ok = params.get("filter.mcp_server_url").is_none_or(|url| {
        url.trim_end_matches('/').rsplit('/').next() == Some(config.server_uuid.as_str())
    });
    let search_ok =
        params.get("search").is_none_or(|text| config.name.contains(&text.to_lowercase()));
    id_ok && name_ok && provider_ok && url_ok && search_ok
}

/// `GET /api/v1/mcp/configs/{config_id}`.
pub(super) async fn get(
    State(state): Shared,
    Path(config_id): Path<String>,
) -> Result<Response, ScalekitError> {
    let store = state.store();
    let config = store.configs.get(&config_id).ok_or_else(|| config_not_found(&config_id))?;
    let wire = config_json(&state, config);
    drop(store);
    Ok(reply(&state, StatusCode::OK, json!({"config": wire})))
}

/// `DELETE /api/v1/mcp/configs/{config_id}`.
pub(super) async fn delete(
    State(state): Shared,
    Path(config_id): Path<String>,
) -> Result<Response, ScalekitError> {
    if state.store().configs.remove(&config_id).is_none() {
        return Err(config_not_found(&config_id));
    }
    Ok(reply(&state, StatusCode::OK, json!({})))
}

pub(super) fn config_not_found(config_id: &str) -> ScalekitError {
    ScalekitError::not_found(format!("mcp config {config_id} not found"))
}
