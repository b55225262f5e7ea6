//! Environments: create, retrieve, update, list, delete, archive. A cloud `config`
//! is expanded with `networking` and all six `packages` lists, and `description` defaults to
//! `""` (not null) so every SDK version's strict mode accepts it. Delete answers 200
//! `{"id","type":"environment_deleted"}` (the SDK's type) rather than the 204 one reference shows.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::{
    Page, Shared, archive_object, fields, metadata, object_body, patch_metadata, required_str,
    visible,
};
use crate::sim::error::AnthropicError;
use crate::sim::ids;
use crate::sim::query::Params;

fn expand_config(config: Option<&Value>) -> Result<Value, AnthropicError> {
    let mut config = match config {
        None | Some(Value::Null) => json!({"type": "cloud"}),
        Some(config @ Value::Object(_)) => config.clone(),
        Some(_) => return Err(AnthropicError::invalid("config: must be an object")),
    };
    match config["type"].as_str() {
        Some("self_hosted") => return Ok(config),
        Some("cloud") => {}
        _ => return Err(AnthropicError::invalid("config.type: must be cloud or self_hosted")),
    }
    let networking = &mut config["networking"];
    match networking["type"].as_str() {
        None => *networking = json!({"type": "unrestricted"}),
        Some("unrestricted") => {}
        Some("limited") => {
            for (field, default) in [
                ("allow_mcp_servers", json!(false)),
                ("allow_package_managers", json!(false)),
                ("allowed_hosts", json!([])),
            ] {
                if networking.get(field).is_none_or(Value::is_null) {
                    networking[field] = default;
                }
            }
        }
        Some(_) => {
            return Err(AnthropicError::invalid(
                "config.networking.type: must be unrestricted or limited",
            ));
        }
    }
    let packages = &mut config["packages"];
    if !packages.is_object() {
        *packages = json!({});
    }
    packages["type"] = json!("packages");
    for manager in ["apt", "cargo", "gem", "go", "npm", "pip"] {
        if packages.get(manager).is_none_or(Value::is_null) {
            packages[manager] = json!([]);
        }
    }
    Ok(config)
}

/// `POST /v1/environments`.
pub(super) async fn create(
    State(state): Shared,
    body: Bytes,
) -> Result<Json<Value>, AnthropicError> {
    let body = object_body(&body)?;
    fields::environment(&body)?;
    let now = ids::now();
    let environment = json!({
        "type": "environment", "id": state.ids.anthropic("env"), "name": required_str(&body, "name")?,
        "description": body.get("description").and_then(Value::as_str).unwrap_or_default(),
        "config": expand_config(body.get("config"))?, "metadata": metadata(&body)?,
        "scope": body.get("scope").and_then(Value::as_str).unwrap_or("organization"),
        "created_at": now, "updated_at": now, "archived_at": null,
    });
    let id = environment["id"].as_str().unwrap_or_default().to_owned();
    state.store().environments.insert(id, environment.clone());
    Ok(Json(environment))
}

/// `GET /v1/environments/{environment_id}`.
pub(super) async fn retrieve(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, AnthropicError> {
    let store = state.store();
    store
        .environments
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| AnthropicError::not_found("environment", &id))
}

/// `POST /v1/environments/{environment_id}`.
pub(super) async fn update(
    State(state): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, AnthropicError> {
    let body = object_body(&body)?;
    fields::environment(&body)?;
    let mut store = state.store();
    let environment = store
        .environments
        .get_mut(&id)
        .ok_or_else(|| AnthropicError::not_found("environment", &id))?;
    if body.contains_key("name") {
        environment["name"] = json!(required_str(&body, "name")?);
    }
    if let Some(config) = body.get("config") {
        environment["config"] = expand_config(Some(config))?;
    }
    for field in ["description", "scope"] {
        if let Some(value) = body.get(field) {
            environment[field] = value.clone();
        }
    }
    patch_metadata(&mut environment["metadata"], body.get("metadata"))?;
    environment["updated_at"] = json!(ids::now());
    Ok(Json(environment.clone()))
}

/// `GET /v1/environments`.
pub(super) async fn list(
    State(state): Shared,
    params: Params,
) -> Result<Json<Value>, AnthropicError> {
    let page = Page::from(&params, 20, 100, false)?;
    let items =
        state.store().environments.values().filter(|e| visible(e, &params)).cloned().collect();
    Ok(page.reply(items, false))
}

/// `DELETE /v1/environments/{environment_id}`.
pub(super) async fn delete(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, AnthropicError> {
    state
        .store()
        .environments
        .remove(&id)
        .ok_or_else(|| AnthropicError::not_found("environment", &id))?;
    Ok(Json(json!({"id": id, "type": "environment_deleted"})))
}

/// `POST /v1/environments/{environment_id}/archive`.
pub(super) async fn archive(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, AnthropicError> {
    let mut store = state.store();
    let environment = store
        .environments
        .get_mut(&id)
        .ok_or_else(|| AnthropicError::not_found("environment", &id))?;
    archive_object(environment);
    Ok(Json(environment.clone()))
}
