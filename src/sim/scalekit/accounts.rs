//! Connected accounts and session tokens: the per-config account list (which, with
//! `include_auth_link`, creates missing accounts as `PENDING_AUTH` and returns a link for every
//! connection), session-token minting (400 unless every mapped connection is ACTIVE; in
//! `accounts/tokens.rs`), magic links, and account details.
//!
//! Decided here where Scalekit's documentation is unsure: a magic link also creates a missing
//! account as `PENDING_AUTH`; links point at `/_sim/connect/{id}` on this server (visiting one
//! makes the account ACTIVE, standing in for the user's OAuth consent) and do not expire; the
//! minting precondition failure is gRPC code 9 (`FAILED_PRECONDITION`, HTTP 400).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::configs::config_not_found;
use super::{check_identifier, reply};
use crate::sim::error::ScalekitError;
use crate::sim::fixtures::{self, CONNECTIONS};
use crate::sim::ids;
use crate::sim::query::{Params, scalekit_body};
use crate::sim::state::{Account, Link, SimState, Store};

mod tokens;

pub(super) use self::tokens::{mint_for_config, mint_for_connection};

type Shared = State<Arc<SimState>>;

#[derive(Debug, Default, Deserialize)]
struct ListBody {
    #[serde(default)]
    identifier: Option<String>,
    #[serde(default, alias = "includeAuthLink")]
    include_auth_link: Option<bool>,
}

/// `POST /api/v1/mcp/configs/{config_id}/connected_accounts`.
pub(super) async fn list_for_config(
    State(state): Shared,
    Path(config_id): Path<String>,
    body: Bytes,
) -> Result<Response, ScalekitError> {
    let body: ListBody = scalekit_body(&body)?;
    let identifier = body.identifier.unwrap_or_default();
    check_identifier(&identifier, 255)?;
    let with_links = body.include_auth_link.unwrap_or(false);
    let mut store = state.store();
    let config =
        store.configs.get(&config_id).cloned().ok_or_else(|| config_not_found(&config_id))?;
    let mut entries = Vec::new();
    for mapping in &config.mappings {
        let connection = fixtures::connection(&mapping.connection_name);
        if with_links {
            ensure_account(&state, &mut store, &identifier, &mapping.connection_name);
        }
        let account = store
            .user(&state.config, &state.ids, &identifier)
            .accounts
            .get(&mapping.connection_name)
            .cloned();
        let link = if with_links {
            new_link(&state, &mut store, &identifier, &mapping.connection_name)
        } else {
            String::new()
        };
        entries.push(json!({
            "connection_id": connection.map(|c| c.id),
            "connection_name": mapping.connection_name,
            "provider": connection.map(|c| c.provider),
            "connected_account_id": account.as_ref().map(|a| a.id.clone()),
            "connected_account_status": account.as_ref().map(|a| a.status.clone()),
            "authentication_link": link,
        }));
    }
    drop(store);
    Ok(reply(&state, StatusCode::OK, json!({"connected_accounts": entries})))
}

/// Creates the account as `PENDING_AUTH` when the user has none on `connection`.
fn ensure_account(state: &SimState, store: &mut Store, identifier: &str, connection: &str) {
    let user = store.user(&state.config, &state.ids, identifier);
    user.accounts.entry(connection.to_owned()).or_insert_with(|| Account {
        id: state.ids.scalekit("ca"),
        status: "PENDING_AUTH".to_owned(),
        updated_at: ids::now(),
    });
}

fn new_link(state: &SimState, store: &mut Store, identifier: &str, connection: &str) -> String {
    let link_id = uuid::Uuid::new_v4().simple().to_string();
    store.links.insert(
        link_id.clone(),
        Link { identifier: identifier.to_owned(), connection: connection.to_owned() },
    );
    format!("{}/_sim/connect/{link_id}", state.base_url)
}

#[derive(Debug, Default, Deserialize)]
struct MagicLinkBody {
    #[serde(default)]
    connector: Option<String>,
    #[serde(default)]
    identifier: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default, alias = "userVerifyUrl")]
    user_verify_url: Option<String>,
}

/// `POST /api/v1/connected_accounts/magic_link`.
pub(super) async fn magic_link(
    State(state): Shared,
    body: Bytes,
) -> Result<Response, ScalekitError> {
    let body: MagicLinkBody = scalekit_body(&body)?;
    let (connector, identifier) = {
        let store = state.store();
        resolve_account_ref(&store, body.connector, body.identifier, body.id.as_deref())?
    };
    check_identifier(&identifier, 100)?;
    if connector.chars().count() > 400
        || !connector.chars().all(|c| c.is_ascii_alphanumeric() || "_: -".contains(c))
    {
        return Err(ScalekitError::invalid(
            "connector",
            "value does not match regex pattern `^[a-zA-Z0-9_: -]*$`",
        ));
    }
    if body.state.as_ref().is_some_and(|s| s.chars().count() > 512) {
        return Err(ScalekitError::invalid("state", "value length must be at most 512 characters"));
    }
    if body.user_verify_url.as_ref().is_some_and(|url| {
        !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://")
    }) {
        return Err(ScalekitError::invalid(
            "user_verify_url",
            "value does not match regex pattern `^$|^https?://`",
        ));
    }
    if fixtures::connection(&connector).is_none() {
        return Err(ScalekitError::not_found(format!("connection {connector} not found")));
    }
    let mut store = state.store();
    ensure_account(&state, &mut store, &identifier, &connector);
    let link = new_link(&state, &mut store, &identifier, &connector);
    drop(store);
    let expiry = ids::rfc3339_secs(Utc::now() + Duration::minutes(10));
    Ok(reply(&state, StatusCode::OK, json!({"link": link, "expiry": expiry})))
}

/// `(connector, identifier)` from the request, or from the account id `ca_…`.
fn resolve_account_ref(
    store: &Store,
    connector: Option<String>,
    identifier: Option<String>,
    id: Option<&str>,
) -> Result<(String, String), ScalekitError> {
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        return find_by_id(store, id)
            .ok_or_else(|| ScalekitError::not_found(format!("connected account {id} not found")));
    }
    let connector = connector.unwrap_or_default();
    if connector.is_empty() {
        return Err(ScalekitError::invalid("connector", "value is required"));
    }
    Ok((connector, identifier.unwrap_or_default()))
}

fn find_by_id(store: &Store, id: &str) -> Option<(String, String)> {
    store.users.iter().find_map(|(identifier, user)| {
        user.accounts
            .iter()
            .find(|(_, account)| account.id == id)
            .map(|(connector, _)| (connector.clone(), identifier.clone()))
    })
}

/// `GET /api/v1/connected_accounts/details?connector=&identifier=` (or `?id=`).
pub(super) async fn details(
    State(state): Shared,
    params: Params,
) -> Result<Response, ScalekitError> {
    account_reply(&state, &params, false)
}

/// `GET /api/v1/connected_accounts/auth?…`: the same, with `authorization_details`.
pub(super) async fn auth_details(
    State(state): Shared,
    params: Params,
) -> Result<Response, ScalekitError> {
    account_reply(&state, &params, true)
}

fn account_reply(
    state: &SimState,
    params: &Params,
    with_auth: bool,
) -> Result<Response, ScalekitError> {
    let mut store = state.store();
    let (connector, identifier) = resolve_account_ref(
        &store,
        params.get("connector").map(str::to_owned),
        params.get("identifier").map(str::to_owned),
        params.get("id"),
    )?;
    check_identifier(&identifier, 255)?;
    let user = store.user(&state.config, &state.ids, &identifier);
    let account = user.accounts.get(&connector).ok_or_else(|| {
        ScalekitError::not_found(format!(
            "connected account for {connector} and {identifier} not found"
        ))
    })?;
    let mut wire = account_json(&identifier, &connector, account);
    if with_auth {
        wire["authorization_details"] = json!({"oauth_token": {
            "access_token": format!("sim-oauth-{}", account.id), "refresh_token": format!("sim-refresh-{}", account.id),
            "scopes": ["openid", "email"],
        }});
        wire["api_config"] = json!({});
    }
    drop(store);
    Ok(reply(state, StatusCode::OK, json!({"connected_account": wire})))
}

fn account_json(identifier: &str, connector: &str, account: &Account) -> Value {
    let connection = fixtures::connection(connector);
    json!({
        "id": account.id, "identifier": identifier, "provider": connection.map(|c| c.provider),
        "connector": connector, "connection_id": connection.map(|c| c.id), "status": account.status,
        "authorization_type": "OAUTH", "updated_at": account.updated_at,
        "token_expires_at": ids::rfc3339_secs(Utc::now() + Duration::hours(1)),
        "is_org_wide_credential": false,
    })
}

/// `GET /api/v1/connected_accounts?identifier=&connector=|connection_names=…&page_size=`.
pub(super) async fn list(State(state): Shared, params: Params) -> Result<Response, ScalekitError> {
    let names = params.all("connection_names");
    if names.len() > 20 {
        return Err(ScalekitError::invalid(
            "connection_names",
            "value must contain no more than 20 item(s)",
        ));
    }
    if !names.is_empty() && params.get("connector").is_some() {
        return Err(ScalekitError::invalid(
            "connector",
            "connector and connection_names are mutually exclusive",
        ));
    }
    let mut store = state.store();
    if let Some(identifier) = params.get("identifier") {
        store.user(&state.config, &state.ids, identifier);
    }
    let mut accounts = Vec::new();
    for (identifier, user) in &store.users {
        if params.get("identifier").is_some_and(|wanted| wanted != identifier) {
            continue;
        }
        for (connector, account) in &user.accounts {
            let wanted = params.get("connector").is_none_or(|c| c == connector)
                && (names.is_empty() || names.contains(&connector.as_str()));
            if wanted && CONNECTIONS.iter().any(|c| c.name == connector) {
                accounts.push(account_json(identifier, connector, account));
            }
        }
    }
    drop(store);
    let total = accounts.len();
    Ok(reply(
        &state,
        StatusCode::OK,
        json!({"connected_accounts": accounts, "total_size": total, "next_page_token": "", "prev_page_token": ""}),
    ))
}
