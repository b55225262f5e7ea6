//! The simulated Scalekit AgentKit REST API (grpc-gateway over `scalekit.v1`): the
//! client-credentials token endpoint, bearer authentication, and the routes of the MCP-config and
//! connected-account services, in the wire format of Scalekit's AgentKit REST API.
//!
//! Responses omit empty values as proto3 JSON does, unless the simulator runs with
//! `emit_unpopulated`. Decided here where Scalekit's documentation is unsure: `/oauth/token` errors use the
//! OAuth 2.0 shape (`{"error":"invalid_client","error_description":…}`, 401; 400 for a bad
//! grant), and the access token is a simulator-signed JWT valid for `scalekit_token_ttl`.

mod accounts;
mod configs;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use super::error::ScalekitError;
use super::state::SimState;

type Shared = State<Arc<SimState>>;

/// The Scalekit routes: `/oauth/token` (open) and `/api/v1/...` (bearer token required).
pub(crate) fn routes(state: Arc<SimState>) -> Router<Arc<SimState>> {
    let api = Router::new()
        .route("/api/v1/mcp/configs", post(configs::create).get(configs::list))
        .route("/api/v1/mcp/configs/{config_id}", get(configs::get).delete(configs::delete))
        .route(
            "/api/v1/mcp/configs/{config_id}/connected_accounts",
            post(accounts::list_for_config),
        )
        .route("/api/v1/mcp/configs/{config_id}/tokens", post(accounts::mint_for_config))
        .route("/api/v1/mcp/connections/{key_id}/tokens", post(accounts::mint_for_connection))
        .route("/api/v1/connected_accounts", get(accounts::list))
        .route("/api/v1/connected_accounts/magic_link", post(accounts::magic_link))
        .route("/api/v1/connected_accounts/details", get(accounts::details))
        .route("/api/v1/connected_accounts/auth", get(accounts::auth_details))
        .route_layer(from_fn_with_state(state, authenticate));
    Router::new().route("/oauth/token", post(token)).merge(api)
}

/// A 2xx JSON reply with proto3's omission of empty values (unless `emit_unpopulated`).
pub(crate) fn reply(state: &SimState, status: StatusCode, mut body: Value) -> Response {
    if !state.config.emit_unpopulated {
        prune(&mut body);
    }
    (status, axum::Json(body)).into_response()
}

/// Removes `""`, `[]`, `{}`, `0`, `false` and `null` members, recursively.
fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(prune);
            map.retain(|_, member| !is_empty(member));
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
    }
}

/// `POST /oauth/token`: client credentials in the form body (`client_secret_post`, what the SDK
/// sends) or in HTTP Basic auth.
async fn token(State(state): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field =
        |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    if field("grant_type").as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    let (client_id, client_secret) = match (field("client_id"), field("client_secret")) {
        (Some(id), Some(secret)) => (id, secret),
        _ => basic_credentials(&headers).unwrap_or_default(),
    };
    let config = &state.config;
    if client_id != config.scalekit_client_id || client_secret != config.scalekit_client_secret {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let ttl = config.scalekit_token_ttl.as_secs();
    let generation = state.store().token_generation;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": state.base_url, "sub": client_id, "aud": ["scalekit"], "iat": now,
        "exp": now + ttl as i64, "gen": generation, "scope": "openid",
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    let body = json!({"access_token": state.key.sign(&claims), "token_type": "Bearer", "expires_in": ttl, "scope": "openid"});
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

/// Middleware: requires `Authorization: Bearer <token issued by /oauth/token>`, as every
/// Scalekit API route does.
async fn authenticate(State(state): Shared, request: Request, next: Next) -> Response {
    match check_bearer(&state, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

fn check_bearer(state: &SimState, headers: &HeaderMap) -> Result<(), ScalekitError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ScalekitError::unauthenticated("Token empty"))?;
    let claims =
        state.key.verify(token).map_err(|_| ScalekitError::unauthenticated("Invalid token"))?;
    if claims["sub"].as_str() != Some(state.config.scalekit_client_id.as_str()) {
        return Err(ScalekitError::unauthenticated("Invalid token"));
    }
    if claims["exp"].as_i64().is_none_or(|exp| exp <= chrono::Utc::now().timestamp()) {
        return Err(ScalekitError::unauthenticated("Token expired"));
    }
    if claims["gen"].as_u64() != Some(state.store().token_generation) {
        return Err(ScalekitError::unauthenticated("Token revoked"));
    }
    Ok(())
}

/// Checks a user identifier: required, at most `max` characters.
pub(crate) fn check_identifier(identifier: &str, max: usize) -> Result<(), ScalekitError> {
    if identifier.trim().is_empty() {
        return Err(ScalekitError::invalid("identifier", "value is required"));
    }
    if identifier.chars().count() > max {
        return Err(ScalekitError::invalid(
            "identifier",
            format!("value length must be at most {max} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_drops_proto3_defaults_only() {
        let mut value = json!({"a": "", "b": [], "c": {"d": 0, "e": false}, "f": "x", "g": [{"h": ""}], "i": 2});
        prune(&mut value);
        assert_eq!(value, json!({"f": "x", "g": [{}], "i": 2}));
    }
}
