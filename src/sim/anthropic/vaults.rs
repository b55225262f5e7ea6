//! Vaults and their credentials: create, retrieve, update, list, delete, archive. Secrets (`token`, `access_token`,
//! `refresh_token`, `client_secret`, `secret_value`) are kept aside and never echoed. An update's
//! `auth.type` must equal the stored one (400 otherwise) and cannot change `mcp_server_url`
//! (an update has no such member: `fields.rs`).
//! Decided here: a vault may hold several credentials for one URL; the agent uses the most
//! recently updated active one.

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
use crate::sim::state::{Credential, Store};

/// `POST /v1/vaults`.
pub(super) async fn create(
    State(state): Shared,
    body: Bytes,
) -> Result<Json<Value>, AnthropicError> {
    let body = object_body(&body)?;
    fields::vault(&body)?;
    let display_name = display_name(&body)?;
    let now = ids::now();
    let vault = json!({
        "type": "vault", "id": state.ids.anthropic("vlt"), "display_name": display_name,
        "metadata": metadata(&body)?, "created_at": now, "updated_at": now, "archived_at": null,
    });
    let id = vault["id"].as_str().unwrap_or_default().to_owned();
    state.store().vaults.insert(id, vault.clone());
    Ok(Json(vault))
}

/// Anthropic's limit on a vault's or credential's `display_name`, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 255;

fn display_name(body: &Map<String, Value>) -> Result<String, AnthropicError> {
    let name = required_str(body, "display_name")?;
    check_display_name_length(&name)?;
    Ok(name)
}

fn check_display_name_length(name: &str) -> Result<(), AnthropicError> {
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(AnthropicError::invalid(format!(
            "display_name: at most {MAX_DISPLAY_NAME_CHARS} characters"
        )));
    }
    Ok(())
}

/// A credential's optional `display_name`: a string of at most 255 characters, or null.
fn credential_display_name(body: &Map<String, Value>) -> Result<Value, AnthropicError> {
    match body.get("display_name") {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::String(name)) => {
            check_display_name_length(name)?;
            Ok(Value::String(name.clone()))
        }
        Some(_) => Err(AnthropicError::invalid("display_name: must be a string")),
    }
}

fn vault_mut<'a>(store: &'a mut Store, id: &str) -> Result<&'a mut Value, AnthropicError> {
    store.vaults.get_mut(id).ok_or_else(|| AnthropicError::not_found("vault", id))
}

/// `GET /v1/vaults/{vault_id}`.
pub(super) async fn retrieve(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, AnthropicError> {
    Ok(Json(vault_mut(&mut state.store(), &id)?.clone()))
}

/// `POST /v1/vaults/{vault_id}`.
pub(super) async fn update(
    State(state): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, AnthropicError> {
    let body = object_body(&body)?;
    fields::vault(&body)?;
    let mut store = state.store();
    let vault = vault_mut(&mut store, &id)?;
    if body.contains_key("display_name") {
        vault["display_name"] = json!(display_name(&body)?);
    }
    patch_metadata(&mut vault["metadata"], body.get("metadata"))?;
    vault["updated_at"] = json!(ids::now());
    Ok(Json(vault.clone()))
}

/// `GET /v1/vaults`.
pub(super) async fn list(
    State(state): Shared,
    params: Params,
) -> Result<Json<Value>, AnthropicError> {
    let page = Page::from(&params, 20, 100, false)?;
    let items = state.store().vaults.values().filter(|v| visible(v, &params)).cloned().collect();
    Ok(page.reply(items, false))
}

/// `DELETE /v1/vaults/{vault_id}`: also deletes its credentials.
pub(super) async fn delete(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, AnthropicError> {
    let mut store = state.store();
    store.vaults.remove(&id).ok_or_else(|| AnthropicError::not_found("vault", &id))?;
    store.credentials.retain(|_, credential| credential.vault_id != id);
    Ok(Json(json!({"id": id, "type": "vault_deleted"})))
}

/// `POST /v1/vaults/{vault_id}/archive`.
pub(super) async fn archive(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, AnthropicError> {
    let mut store = state.store();
    let vault = vault_mut(&mut store, &id)?;
    archive_object(vault);
    Ok(Json(vault.clone()))
}

/// The stored auth: (response view without secrets, secret, URL).
fn create_auth(auth: Option<&Value>) -> Result<(Value, Option<String>, String), AnthropicError> {
    let Some(auth @ Value::Object(_)) = auth else {
        return Err(AnthropicError::invalid("auth: Field required"));
    };
    let text =
        |field: &str| auth[field].as_str().filter(|value| !value.is_empty()).map(str::to_owned);
    let need = |field: &str| {
        text(field).ok_or_else(|| AnthropicError::invalid(format!("auth.{field}: Field required")))
    };
    match auth["type"].as_str() {
        Some("static_bearer") => {
            let url = need("mcp_server_url")?;
            let token = need("token")?;
            Ok((json!({"type": "static_bearer", "mcp_server_url": url}), Some(token), url))
        }
        Some("mcp_oauth") => {
            let url = need("mcp_server_url")?;
            let token = need("access_token")?;
            let view = json!({"type": "mcp_oauth", "mcp_server_url": url, "expires_at": auth.get("expires_at").cloned().unwrap_or(Value::Null), "refresh": refresh_view(auth.get("refresh"))});
            Ok((view, Some(token), url))
        }
        Some("environment_variable") => {
            let name = need("secret_name")?;
            need("secret_value")?;
            let networking = auth
                .get("networking")
                .filter(|n| n.is_object())
                .cloned()
                .ok_or_else(|| AnthropicError::invalid("auth.networking: Field required"))?;
            let location = auth.get("injection_location").cloned().unwrap_or_else(|| json!({}));
            let location = json!({"header": location["header"].as_bool().unwrap_or(true), "body": location["body"].as_bool().unwrap_or(false)});
            Ok((
                json!({"type": "environment_variable", "secret_name": name, "networking": networking, "injection_location": location}),
                None,
                String::new(),
            ))
        }
        _ => Err(AnthropicError::invalid(
            "auth.type: must be static_bearer, mcp_oauth or environment_variable",
        )),
    }
}

/// The refresh block without `refresh_token` and `client_secret`.
fn refresh_view(refresh: Option<&Value>) -> Value {
    match refresh {
        Some(refresh @ Value::Object(_)) => json!({
            "client_id": refresh["client_id"], "token_endpoint": refresh["token_endpoint"],
            "token_endpoint_auth": {"type": refresh["token_endpoint_auth"]["type"]},
            "resource": refresh.get("resource").cloned().unwrap_or(Value::Null),
            "scope": refresh.get("scope").cloned().unwrap_or(Value::Null),
        }),
        _ => Value::Null,
    }
}

/// `POST /v1/vaults/{vault_id}/credentials`.
pub(super) async fn create_credential(
    State(state): Shared,
    Path(vault_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, AnthropicError> {
    let body = object_body(&body)?;
    fields::credential_create(&body)?;
    let (auth, secret, url) = create_auth(body.get("auth"))?;
    let display_name = credential_display_name(&body)?;
    let mut store = state.store();
    vault_mut(&mut store, &vault_id)?;
    let now = ids::now();
    let view = json!({
        "type": "vault_credential", "id": state.ids.anthropic("vcrd"), "vault_id": vault_id,
        "display_name": display_name, "auth": auth,
        "metadata": metadata(&body)?, "created_at": now, "updated_at": now, "archived_at": null,
    });
    let auth_type = view["auth"]["type"].as_str().unwrap_or_default().to_owned();
    let id = view["id"].as_str().unwrap_or_default().to_owned();
    store.credentials.insert(
        id,
        Credential { view: view.clone(), vault_id, auth_type, mcp_server_url: url, secret },
    );
    Ok(Json(view))
}

fn credential_mut<'a>(
    store: &'a mut Store,
    vault_id: &str,
    id: &str,
) -> Result<&'a mut Credential, AnthropicError> {
    vault_mut(store, vault_id)?;
    store
        .credentials
        .get_mut(id)
        .filter(|c| c.vault_id == vault_id)
        .ok_or_else(|| AnthropicError::not_found("credential", id))
}

/// `GET /v1/vaults/{vault_id}/credentials/{credential_id}`.
pub(super) async fn retrieve_credential(
    State(state): Shared,
    Path((vault_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, AnthropicError> {
    Ok(Json(credential_mut(&mut state.store(), &vault_id, &id)?.view.clone()))
}

/// `POST /v1/vaults/{vault_id}/credentials/{credential_id}`.
pub(super) async fn update_credential(
    State(state): Shared,
    Path((vault_id, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, AnthropicError> {
    let body = object_body(&body)?;
    fields::credential_update(&body)?;
    let display_name = credential_display_name(&body)?;
    let mut store = state.store();
    let credential = credential_mut(&mut store, &vault_id, &id)?;
    if let Some(auth) = body.get("auth") {
        update_auth(credential, auth)?;
    }
    if body.contains_key("display_name") {
        credential.view["display_name"] = display_name;
    }
    patch_metadata(&mut credential.view["metadata"], body.get("metadata"))?;
    credential.view["updated_at"] = json!(ids::now());
    Ok(Json(credential.view.clone()))
}

fn update_auth(credential: &mut Credential, auth: &Value) -> Result<(), AnthropicError> {
    let kind = auth["type"]
        .as_str()
        .ok_or_else(|| AnthropicError::invalid("auth.type: Field required"))?;
    if kind != credential.auth_type {
        return Err(AnthropicError::invalid(format!(
            "auth.type: cannot change a {} credential to {kind}",
            credential.auth_type
        )));
    }
    let secret_field = if kind == "static_bearer" { "token" } else { "access_token" };
    if let Some(secret) = auth[secret_field].as_str() {
        credential.secret = Some(secret.to_owned());
    }
    if kind == "mcp_oauth" {
        for field in ["expires_at", "refresh"] {
            if let Some(value) = auth.get(field) {
                credential.view["auth"][field] =
                    if field == "refresh" { refresh_view(Some(value)) } else { value.clone() };
            }
        }
    }
    Ok(())
}

/// `GET /v1/vaults/{vault_id}/credentials`.
pub(super) async fn list_credentials(
    State(state): Shared,
    Path(vault_id): Path<String>,
    params: Params,
) -> Result<Json<Value>, AnthropicError> {
    let page = Page::from(&params, 20, 100, false)?;
    let mut store = state.store();
    vault_mut(&mut store, &vault_id)?;
    let items = store
        .credentials
        .values()
        .filter(|c| c.vault_id == vault_id && visible(&c.view, &params))
        .map(|c| c.view.clone())
        .collect();
    Ok(page.reply(items, false))
}

/// `DELETE /v1/vaults/{vault_id}/credentials/{credential_id}`.
pub(super) async fn delete_credential(
    State(state): Shared,
    Path((vault_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, AnthropicError> {
    let mut store = state.store();
    credential_mut(&mut store, &vault_id, &id)?;
    store.credentials.remove(&id);
    Ok(Json(json!({"id": id, "type": "vault_credential_deleted"})))
}

/// `POST /v1/vaults/{vault_id}/credentials/{credential_id}/archive`.
pub(super) async fn archive_credential(
    State(state): Shared,
    Path((vault_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, AnthropicError> {
    let mut store = state.store();
    let credential = credential_mut(&mut store, &vault_id, &id)?;
    archive_object(&mut credential.view);
    Ok(Json(credential.view.clone()))
}
