//! Session-token minting: `POST /api/v1/mcp/configs/{id}/tokens` for a config's MCP server and
//! `POST /api/v1/mcp/connections/{key}/tokens` for one connection's, each signed by the
//! simulator's key and refused with a 400 unless every connection it covers has an ACTIVE
//! account for the user.
//!
//! `expiry` is a protojson `Duration` string (`"3600s"`, what the SDK sends); a JSON number is
//! refused with code 3 (`INVALID_ARGUMENT`, HTTP 400), as protojson refuses it.
//! The precondition failure is gRPC code 9 (`FAILED_PRECONDITION`, HTTP 400). This module must
//! not create or change accounts; it only reads them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::configs::config_not_found;
use super::super::{check_identifier, reply};
use super::Shared;
use crate::sim::error::ScalekitError;
use crate::sim::fixtures;
use crate::sim::ids;
use crate::sim::query::scalekit_body;
use crate::sim::state::{SimState, Store};

#[derive(Debug, Default, Deserialize)]
struct TokenBody {
    #[serde(default)]
    identifier: Option<String>,
    #[serde(default)]
    expiry: Option<Value>,
    #[serde(default, alias = "accessLevel")]
    access_level: Option<String>,
}

/// `POST /api/v1/mcp/configs/{mcp_config_id}/tokens`.
pub(in crate::sim::scalekit) async fn mint_for_config(
    State(state): Shared,
    Path(config_id): Path<String>,
    body: Bytes,
) -> Result<Response, ScalekitError> {
    let body: TokenBody = scalekit_body(&body)?;
    let request = check_token_body(body)?;
    let mut store = state.store();
    let config =
        store.configs.get(&config_id).cloned().ok_or_else(|| config_not_found(&config_id))?;
    if config.mappings.is_empty() {
        return Err(ScalekitError::failed_precondition(format!(
            "mcp config {config_id} has no connections"
        )));
    }
    let names: Vec<String> = config.mappings.iter().map(|m| m.connection_name.clone()).collect();
    let ca_ids = active_accounts(&state, &mut store, &request.identifier, &names)?;
    drop(store);
    let audience = state.mcp_server_url(&config.server_uuid);
    let extra = json!({"mcp_cfg": config.id});
    Ok(reply(&state, StatusCode::OK, sign(&state, &request, &audience, extra, &ca_ids)))
}

/// `POST /api/v1/mcp/connections/{key_id}/tokens`: a token for one connection's MCP server.
pub(in crate::sim::scalekit) async fn mint_for_connection(
    State(state): Shared,
    Path(key_id): Path<String>,
    body: Bytes,
) -> Result<Response, ScalekitError> {
    let body: TokenBody = scalekit_body(&body)?;
    let request = check_token_body(body)?;
    let connection = fixtures::connection(&key_id)
        .ok_or_else(|| ScalekitError::not_found(format!("connection {key_id} not found")))?;
    let mut store = state.store();
    let ca_ids =
        active_accounts(&state, &mut store, &request.identifier, std::slice::from_ref(&key_id))?;
    drop(store);
    let audience = format!("{}/mcp/v3/connections/{key_id}", state.base_url);
    let extra = json!({"conn_id": connection.id});
    Ok(reply(&state, StatusCode::OK, sign(&state, &request, &audience, extra, &ca_ids)))
}

struct TokenRequest {
    identifier: String,
    expiry_secs: i64,
    access_level: String,
}

fn check_token_body(body: TokenBody) -> Result<TokenRequest, ScalekitError> {
    let identifier = body.identifier.unwrap_or_default();
    check_identifier(&identifier, 255)?;
    let expiry_secs = match body.expiry {
        None | Some(Value::Null) => 3600,
        Some(value) => parse_duration(&value).ok_or_else(|| {
            ScalekitError::invalid(
                "expiry",
                format!("invalid google.protobuf.Duration value {value}"),
            )
        })?,
    };
    if !(60..=86_400).contains(&expiry_secs) {
        return Err(ScalekitError::invalid("expiry", "value must be inside range [60s, 86400s]"));
    }
    let access_level = body.access_level.unwrap_or_default();
    if !matches!(access_level.as_str(), "" | "FULL" | "READ_ONLY") {
        return Err(ScalekitError::invalid("access_level", "value must be one of FULL, READ_ONLY"));
    }
    let access_level = if access_level.is_empty() { "FULL".to_owned() } else { access_level };
    Ok(TokenRequest { identifier, expiry_secs, access_level })
}

/// A protojson `Duration`: a string of seconds with up to nine decimals and an `s` (`"3600s"`,
/// `"3600.5s"`), truncated to whole seconds. A JSON number is not one: protojson refuses it, so
/// a client that sends `3600` fails here as it would against Scalekit.
fn parse_duration(value: &Value) -> Option<i64> {
    let Value::String(text) = value else { return None };
    let number = text.strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = whole.strip_prefix('-').unwrap_or(whole);
    let is_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if digits.is_empty() || !is_digits(digits) || fraction.len() > 9 || !is_digits(fraction) {
        return None;
    }
    whole.parse().ok()
}

/// The account ids of `connections` for the user, or 400 naming the first one not ACTIVE.
fn active_accounts(
    state: &SimState,
    store: &mut Store,
    identifier: &str,
    connections: &[String],
) -> Result<Vec<String>, ScalekitError> {
    let user = store.user(&state.config, &state.ids, identifier);
    connections
        .iter()
        .map(|name| match user.accounts.get(name) {
            Some(account) if account.status == "ACTIVE" => Ok(account.id.clone()),
            Some(account) => Err(ScalekitError::failed_precondition(format!(
                "connected account for connection {name} and identifier {identifier} is {}, not ACTIVE",
                account.status
            ))),
            None => Err(ScalekitError::failed_precondition(format!(
                "no connected account for connection {name} and identifier {identifier}"
            ))),
        })
        .collect()
}

fn sign(
    state: &SimState,
    request: &TokenRequest,
    audience: &str,
    extra: Value,
    ca_ids: &[String],
) -> Value {
    let now = Utc::now();
    let expires_at = now + Duration::seconds(request.expiry_secs);
    let mut claims = json!({
        "iss": state.base_url, "sub": request.identifier, "aud": audience, "ca_ids": ca_ids,
        "access_level": request.access_level, "iat": now.timestamp(), "exp": expires_at.timestamp(),
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    json!({"token": state.key.sign(&claims), "expires_at": ids::rfc3339_secs(expires_at)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_protojson_duration_strings_are_durations() {
        for (value, seconds) in
            [(json!("3600s"), Some(3600)), (json!("120.9s"), Some(120)), (json!("-5s"), Some(-5))]
        {
            assert_eq!(parse_duration(&value), seconds, "{value}");
        }
        for value in [json!(3600), json!(3600.0), json!("3600"), json!("1e3s"), json!("+5s")] {
            assert_eq!(parse_duration(&value), None, "{value}");
        }
        assert_eq!(parse_duration(&json!("s")), None);
        assert_eq!(parse_duration(&json!("1.0000000001s")), None);
    }
}
