//! The control API under `/_sim/` (plain JSON, no auth, no faults): per-user connection status,
//! mailbox fixtures and calendar, fault rules, the audit, authorization links, and reset.
//!
//! ```text
//! PUT    /_sim/users/{identifier}/connections/{connection}  {"status":"ACTIVE"|…|null}
//! GET    /_sim/users/{identifier}                           accounts, mailbox, calendar
//! PUT    /_sim/users/{identifier}/mailbox                   {"messages":[Mail…]}
//! GET    /_sim/users/{identifier}/mailbox | /calendar
//! POST   /_sim/faults  → {"id"}   GET /_sim/faults   DELETE /_sim/faults[/{id}]
//! GET    /_sim/audit   POST /_sim/reset   GET /_sim/info
//! POST   /_sim/scalekit/revoke          every issued Scalekit access token stops working
//! POST   /_sim/tokens {"config_id","identifier","expires_in"}   a session token with any
//!                                        lifetime (negative = already expired), for tests
//! GET    /_sim/connect/{link}           what an authorization link points at: makes it ACTIVE
//! GET    /_sim/                         this list, as JSON
//! ```

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::faults::FaultSpec;
use super::fixtures::{self, Mail};
use super::ids;
use super::state::{Account, STATUSES, SimState};

type Shared = State<Arc<SimState>>;

/// The largest mailbox the control API takes.
const MAX_MAILBOX_BYTES: usize = 32 * 1024 * 1024;

/// Every control route, for `GET /_sim/`: method, path, what it does.
const ROUTES: [(&str, &str, &str); 16] = [
    ("GET", "/_sim/", "this list"),
    ("GET", "/_sim/info", "the base URL, the credentials the simulator accepts, its defaults"),
    ("GET", "/_sim/users/{identifier}", "a user's connected accounts, mailbox and calendar"),
    (
        "PUT",
        "/_sim/users/{identifier}/connections/{connection}",
        "set a connection's status: {\"status\":\"ACTIVE\"|\"EXPIRED\"|…|null}",
    ),
    ("PUT", "/_sim/users/{identifier}/mailbox", "replace the mailbox: {\"messages\":[…]}"),
    ("GET", "/_sim/users/{identifier}/mailbox", "the mailbox"),
    ("GET", "/_sim/users/{identifier}/calendar", "the calendar, with the events the agent created"),
    ("POST", "/_sim/faults", "add a fault rule (see README, Faults); answers {\"id\"}"),
    ("GET", "/_sim/faults", "the fault rules"),
    ("DELETE", "/_sim/faults", "remove every fault rule"),
    ("DELETE", "/_sim/faults/{id}", "remove one fault rule"),
    ("GET", "/_sim/audit", "what each session did, requests per route, traceparents, violations"),
    ("POST", "/_sim/reset", "forget every user, session, fault and audit entry"),
    ("POST", "/_sim/scalekit/revoke", "every issued Scalekit access token stops working"),
    (
        "POST",
        "/_sim/tokens",
        "mint a session token of any lifetime: {\"config_id\",\"identifier\",\"expires_in\"}",
    ),
    ("GET", "/_sim/connect/{link}", "follow an authorization link: the connection becomes ACTIVE"),
];

/// The routes, to be nested under `/_sim`.
pub(crate) fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/", get(list_routes))
        .route("/users/{identifier}", get(user))
        .route("/users/{identifier}/connections/{connection}", put(set_connection))
        // A mailbox may hold a large email (the 2 MB event tests); axum's default is 2 MB.
        .route(
            "/users/{identifier}/mailbox",
            put(set_mailbox).get(mailbox).layer(DefaultBodyLimit::max(MAX_MAILBOX_BYTES)),
        )
        .route("/users/{identifier}/calendar", get(calendar))
        .route("/faults", post(add_fault).get(list_faults).delete(clear_faults))
        .route("/faults/{id}", delete(remove_fault))
        .route("/audit", get(audit))
        .route("/reset", post(reset))
        .route("/info", get(info))
        .route("/scalekit/revoke", post(revoke))
        .route("/connect/{link}", get(connect))
        .route("/tokens", post(token))
}

/// `GET /_sim/`: [`ROUTES`] as JSON.
pub(crate) async fn list_routes() -> Json<Value> {
    let routes: Vec<Value> = ROUTES
        .iter()
        .map(|(method, path, what)| json!({"method": method, "path": path, "what": what}))
        .collect();
    Json(json!({"routes": routes}))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// The body as `T`, or the 400 to answer (boxed: a `Response` is large).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("invalid body: {e}"))))
}

#[derive(Debug, Deserialize)]
struct ConnectionBody {
    status: Option<String>,
}

async fn set_connection(
    State(state): Shared,
    Path((identifier, connection)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body: ConnectionBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    if fixtures::connection(&connection).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown connection {connection}; known: gmail, googlecalendar"),
        );
    }
    if let Some(status) = body.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown status {status}; expected one of {STATUSES:?} or null"),
        );
    }
    let mut store = state.store();
    let user = store.user(&state.config, &state.ids, &identifier);
    match body.status {
        None => {
            user.accounts.remove(&connection);
        }
        Some(status) => {
            let account = user.accounts.entry(connection.clone()).or_insert_with(|| Account {
                id: state.ids.scalekit("ca"),
                status: String::new(),
                updated_at: String::new(),
            });
            account.status = status;
            account.updated_at = ids::now();
        }
    }
    Json(user_json(&identifier, user)).into_response()
}

fn user_json(identifier: &str, user: &super::state::User) -> Value {
    let accounts: serde_json::Map<String, Value> = user
        .accounts
        .iter()
        .map(|(name, account)| (name.clone(), json!({"id": account.id, "status": account.status, "updated_at": account.updated_at})))
        .collect();
    json!({"identifier": identifier, "connections": accounts, "mailbox": user.mailbox, "calendar": user.calendar})
}

async fn user(State(state): Shared, Path(identifier): Path<String>) -> Response {
    let mut store = state.store();
    let user = store.user(&state.config, &state.ids, &identifier);
    Json(user_json(&identifier, user)).into_response()
}

#[derive(Debug, Deserialize)]
struct MailboxBody {
    messages: Vec<Mail>,
}

async fn set_mailbox(
    State(state): Shared,
    Path(identifier): Path<String>,
    body: Bytes,
) -> Response {
    let body: MailboxBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    if let Some(bad) =
        body.messages.iter().find(|m| chrono::DateTime::parse_from_rfc3339(&m.received_at).is_err())
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("message {}: received_at must be RFC 3339", bad.id),
        );
    }
    let mut store = state.store();
    let user = store.user(&state.config, &state.ids, &identifier);
    user.mailbox = body.messages;
    Json(json!({"messages": user.mailbox})).into_response()
}

async fn mailbox(State(state): Shared, Path(identifier): Path<String>) -> Response {
    let mut store = state.store();
    let user = store.user(&state.config, &state.ids, &identifier);
    Json(json!({"messages": user.mailbox})).into_response()
}

async fn calendar(State(state): Shared, Path(identifier): Path<String>) -> Response {
    let mut store = state.store();
    let user = store.user(&state.config, &state.ids, &identifier);
    Json(json!({"events": user.calendar})).into_response()
}

async fn add_fault(State(state): Shared, body: Bytes) -> Response {
    let spec: FaultSpec = match parse(&body) {
        Ok(spec) => spec,
        Err(response) => return *response,
    };
    if let Err(message) = spec.validate() {
        return error(StatusCode::BAD_REQUEST, message);
    }
    (StatusCode::CREATED, Json(json!({"id": state.faults.add(spec)}))).into_response()
}

async fn list_faults(State(state): Shared) -> Json<Value> {
    Json(state.faults.list())
}

async fn clear_faults(State(state): Shared) -> StatusCode {
    state.faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(state): Shared, Path(id): Path<String>) -> Response {
    if state.faults.remove(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no fault {id}"))
    }
}

async fn audit(State(state): Shared) -> Json<Value> {
    let store = state.store();
    Json(state.audit.report(&store))
}

/// Forgets everything but the configuration: resources, users, faults, audit. Open streams end.
async fn reset(State(state): Shared) -> StatusCode {
    let old = std::mem::take(&mut *state.store());
    for session in old.sessions.values() {
        session.rt.close();
    }
    state.faults.clear();
    state.audit.reset();
    StatusCode::NO_CONTENT
}

async fn info(State(state): Shared) -> Json<Value> {
    let config = &state.config;
    Json(json!({
        "base_url": state.base_url,
        "scalekit": {"env_url": state.base_url, "client_id": config.scalekit_client_id, "client_secret": config.scalekit_client_secret},
        "anthropic": {"base_url": state.base_url, "api_key": config.anthropic_api_key},
        "seed": config.seed,
        "default_connection_status": config.default_connection_status,
    }))
}

async fn revoke(State(state): Shared) -> StatusCode {
    state.store().token_generation += 1;
    StatusCode::NO_CONTENT
}

async fn connect(State(state): Shared, Path(link): Path<String>) -> Response {
    let mut store = state.store();
    let Some(target) = store.links.get(&link).cloned() else {
        return error(StatusCode::NOT_FOUND, "unknown or used authorization link");
    };
    let user = store.user(&state.config, &state.ids, &target.identifier);
    let account = user.accounts.entry(target.connection.clone()).or_insert_with(|| Account {
        id: state.ids.scalekit("ca"),
        status: String::new(),
        updated_at: String::new(),
    });
    account.status = "ACTIVE".to_owned();
    account.updated_at = ids::now();
    let message = format!(
        "Connected {} for {}. You can close this window.\n",
        target.connection, target.identifier
    );
    (StatusCode::OK, message).into_response()
}

#[derive(Debug, Deserialize)]
struct TokenBody {
    config_id: String,
    identifier: String,
    expires_in: i64,
}

/// A session token as `/api/v1/mcp/configs/{id}/tokens` would mint it, but with any lifetime
/// and no connection check: how tests get an expired token without waiting a minute.
async fn token(State(state): Shared, body: Bytes) -> Response {
    let body: TokenBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let Some(config) = state.store().configs.get(&body.config_id).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("no mcp config {}", body.config_id));
    };
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": state.base_url, "sub": body.identifier, "aud": state.mcp_server_url(&config.server_uuid),
        "mcp_cfg": config.id, "ca_ids": [], "access_level": "FULL", "iat": now, "exp": now + body.expires_in,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    Json(json!({"token": state.key.sign(&claims)})).into_response()
}
