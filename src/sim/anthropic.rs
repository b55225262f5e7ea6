//! The simulated Anthropic Managed Agents API (beta `managed-agents-2026-04-01`): routes,
//! authentication and the helpers every resource shares (JSON bodies, cursor pages, metadata
//! patches), in the API's own wire format: the official Python SDK 2.14.0 works
//! against it unchanged (tests/conformance/).
//!
//! Accepted: `x-api-key: <key>` or `Authorization: Bearer <key>` (SDK 2.x), and a `beta` query
//! parameter (ignored). Required, as the real API requires them: an `anthropic-version` (any
//! value; without one, 400 `invalid_request_error`) and the beta name among the comma-separated
//! `anthropic-beta` values (without it, 400 `invalid_request_error`: the spec leaves the real
//! status open). A body member the API does not know is a 400 naming it (`anthropic/fields.rs`).
//! Every response carries a `request-id` header.

mod agents;
mod environments;
mod events;
mod fields;
mod sessions;
mod stream;
mod vaults;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::error::AnthropicError;
use super::ids;
use super::query::Params;
use super::state::SimState;

/// The beta every Managed Agents call carries.
const BETA: &str = "managed-agents-2026-04-01";

type Shared = State<Arc<SimState>>;

/// The `/v1/...` routes, behind authentication.
pub(crate) fn routes(state: Arc<SimState>) -> Router<Arc<SimState>> {
    Router::new()
        .route("/v1/agents", post(agents::create).get(agents::list))
        .route("/v1/agents/{agent_id}", get(agents::retrieve).post(agents::update))
        .route("/v1/agents/{agent_id}/archive", post(agents::archive))
        .route("/v1/agents/{agent_id}/versions", get(agents::versions))
        .route("/v1/environments", post(environments::create).get(environments::list))
        .route(
            "/v1/environments/{environment_id}",
            get(environments::retrieve).post(environments::update).delete(environments::delete),
        )
        .route("/v1/environments/{environment_id}/archive", post(environments::archive))
        .route("/v1/vaults", post(vaults::create).get(vaults::list))
        .route(
            "/v1/vaults/{vault_id}",
            get(vaults::retrieve).post(vaults::update).delete(vaults::delete),
        )
        .route("/v1/vaults/{vault_id}/archive", post(vaults::archive))
        .route(
            "/v1/vaults/{vault_id}/credentials",
            post(vaults::create_credential).get(vaults::list_credentials),
        )
        .route(
            "/v1/vaults/{vault_id}/credentials/{credential_id}",
            get(vaults::retrieve_credential)
                .post(vaults::update_credential)
                .delete(vaults::delete_credential),
        )
        .route(
            "/v1/vaults/{vault_id}/credentials/{credential_id}/archive",
            post(vaults::archive_credential),
        )
        .route("/v1/sessions", post(sessions::create).get(sessions::list))
        .route(
            "/v1/sessions/{session_id}",
            get(sessions::retrieve).post(sessions::update).delete(sessions::delete),
        )
        .route("/v1/sessions/{session_id}/archive", post(sessions::archive))
        .route("/v1/sessions/{session_id}/events", post(events::send).get(events::list))
        .route("/v1/sessions/{session_id}/events/stream", get(stream::open))
        .route_layer(from_fn_with_state(state, authenticate))
}

/// Middleware: API key and beta header checks, and the `request-id` response header.
async fn authenticate(State(state): Shared, request: Request, next: Next) -> Response {
    let mut response = match check(&state, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    };
    if !response.headers().contains_key("request-id")
        && let Ok(value) = HeaderValue::from_str(&ids::request_id())
    {
        response.headers_mut().insert("request-id", value);
    }
    response
}

fn check(state: &SimState, headers: &HeaderMap) -> Result<(), AnthropicError> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let key = header("x-api-key")
        .or_else(|| header("authorization").and_then(|value| value.strip_prefix("Bearer ")));
    match key.map(str::trim) {
        None | Some("") => {
            return Err(AnthropicError::authentication("x-api-key header is required"));
        }
        Some(key) if key != state.config.anthropic_api_key => {
            return Err(AnthropicError::authentication("invalid x-api-key"));
        }
        Some(_) => {}
    }
    // The real API refuses a request without a version rather than guessing one; a client that
    // forgot it must fail here, not in production.
    if header("anthropic-version").is_none_or(|version| version.trim().is_empty()) {
        return Err(AnthropicError::invalid("anthropic-version: header is required"));
    }
    let betas = headers.get_all("anthropic-beta").iter().filter_map(|value| value.to_str().ok());
    if !betas.flat_map(|value| value.split(',')).any(|beta| beta.trim() == BETA) {
        return Err(AnthropicError::invalid(format!(
            "this endpoint requires the anthropic-beta header {BETA}"
        )));
    }
    Ok(())
}

/// A JSON object body (an empty body is `{}`).
pub(crate) fn object_body(body: &[u8]) -> Result<Map<String, Value>, AnthropicError> {
    let value: Value = super::query::anthropic_body(body)?;
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        _ => Err(AnthropicError::invalid("request body must be a JSON object")),
    }
}

/// A required non-empty string field.
pub(crate) fn required_str(
    body: &Map<String, Value>,
    field: &str,
) -> Result<String, AnthropicError> {
    match body.get(field) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        Some(Value::String(_)) => {
            Err(AnthropicError::invalid(format!("{field}: must not be empty")))
        }
        Some(_) => Err(AnthropicError::invalid(format!("{field}: must be a string"))),
        None => Err(AnthropicError::invalid(format!("{field}: Field required"))),
    }
}

/// `metadata` of a create: a string→string object, `{}` when absent.
pub(crate) fn metadata(body: &Map<String, Value>) -> Result<Value, AnthropicError> {
    match body.get("metadata") {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::Object(map)) if map.values().all(Value::is_string) => {
            Ok(Value::Object(map.clone()))
        }
        Some(_) => Err(AnthropicError::invalid("metadata: must be an object of strings")),
    }
}

/// Applies a metadata patch: a `null` value deletes the key.
pub(crate) fn patch_metadata(
    target: &mut Value,
    patch: Option<&Value>,
) -> Result<(), AnthropicError> {
    let Some(patch) = patch else { return Ok(()) };
    let Value::Object(patch) = patch else {
        return if patch.is_null() {
            Ok(())
        } else {
            Err(AnthropicError::invalid("metadata: must be an object"))
        };
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (key, value) in patch {
        match value {
            Value::Null => {
                if let Some(map) = target.as_object_mut() {
                    map.remove(key);
                }
            }
            Value::String(_) => target[key] = value.clone(),
            _ => return Err(AnthropicError::invalid("metadata: values must be strings or null")),
        }
    }
    Ok(())
}

/// A cursor page request: `limit` and `page` (+ `order`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Page {
    limit: usize,
    offset: usize,
    pub(crate) descending: bool,
}

impl Page {
    /// Reads `limit` (default `default`, 1..=`max`), `order` and the `page` cursor.
    pub(crate) fn from(
        params: &Params,
        default: usize,
        max: usize,
        default_desc: bool,
    ) -> Result<Self, AnthropicError> {
        let limit = match params.get("limit") {
            None => default,
            Some(text) => match text.parse::<usize>() {
                Ok(limit) if (1..=max).contains(&limit) => limit,
                _ => {
                    return Err(AnthropicError::invalid(format!(
                        "limit: must be between 1 and {max}"
                    )));
                }
            },
        };
        let descending = match params.get("order") {
            None => default_desc,
            Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(AnthropicError::invalid("order: must be asc or desc")),
        };
        let offset = match params.get("page") {
            None => 0,
            Some(cursor) => decode_cursor(cursor, descending)?,
        };
        Ok(Self { limit, offset, descending })
    }

    /// `{"data": [...], "next_page": …}` (+ `prev_page` for bidirectional lists).
    pub(crate) fn reply(self, mut items: Vec<Value>, bidirectional: bool) -> axum::Json<Value> {
        if self.descending {
            items.reverse();
        }
        let total = items.len();
        let data: Vec<Value> = items.into_iter().skip(self.offset).take(self.limit).collect();
        let next =
            (self.offset + self.limit < total).then(|| self.cursor(self.offset + self.limit));
        let mut body = json!({"data": data, "next_page": next});
        if bidirectional {
            body["prev_page"] = json!(
                (self.offset > 0).then(|| self.cursor(self.offset.saturating_sub(self.limit)))
            );
        }
        axum::Json(body)
    }

    fn cursor(self, offset: usize) -> String {
        format!("page_{}{offset}", if self.descending { "d" } else { "a" })
    }
}

/// A cursor encodes its order; reusing it with the other order is a 400, as the real API
/// answers.
fn decode_cursor(cursor: &str, descending: bool) -> Result<usize, AnthropicError> {
    let invalid = || AnthropicError::invalid("page: invalid page cursor");
    let rest = cursor.strip_prefix("page_").ok_or_else(invalid)?;
    let (order, offset) = rest.split_at_checked(1).ok_or_else(invalid)?;
    if (order == "d") != descending {
        return Err(AnthropicError::invalid("page: the cursor was issued for a different order"));
    }
    offset.parse().map_err(|_| invalid())
}

/// Whether an archived object is listed: only with `include_archived=true`.
pub(crate) fn visible(object: &Value, params: &Params) -> bool {
    object["archived_at"].is_null() || params.flag("include_archived")
}

/// Sets `archived_at` and `updated_at` (idempotent: an archived object keeps its time).
pub(crate) fn archive_object(object: &mut Value) {
    if object["archived_at"].is_null() {
        let now = ids::now();
        object["archived_at"] = json!(now);
        object["updated_at"] = json!(now);
    }
}
