//! The Scalekit AgentKit REST client: client-credentials token (cached, single-flight,
//! refreshed once on a 401), MCP configs, connected accounts, session tokens, magic links.
//!
//! Wire format: Scalekit's AgentKit REST API (grpc-gateway JSON). Responses are read leniently (missing
//! fields default, unknown fields ignored, statuses kept as strings and compared
//! case-insensitively). This module must not decide what a run does with an inactive account.

mod models;

use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::Instrument;
use url::Url;

use self::models::{
    AccountEnvelope, AccountList, ConfigEnvelope, ConfigList, ErrorBody, OauthToken, TokenWire,
};
pub use self::models::{
    ConnectedAccount, ConnectionState, MagicLink, McpConfig, NewMapping, SessionToken, ToolMapping,
};
use super::retry;
use super::{Api, ApiError, decode_json, observe, path_segment, route, with_retries};
use crate::backoff::RetryPolicy;

const API: Api = Api::Scalekit;
/// A cached access token is replaced this long before the server says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// One Scalekit environment, authenticated with client credentials.
pub struct Client {
    http: reqwest::Client,
    base: String,
    client_id: String,
    client_secret: SecretString,
    policy: RetryPolicy,
    /// The cached access token. A tokio mutex because it is held across the token request:
    /// that is what makes the refresh single-flight (concurrent callers wait for one fetch).
    token: tokio::sync::Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("scalekit::Client").field("base", &self.base).finish_non_exhaustive()
    }
}

struct AccessToken {
    value: SecretString,
    refresh_at: Instant,
}

impl Client {
    /// A client for `env_url` with the given credentials.
    pub fn new(
        http: reqwest::Client,
        env_url: &Url,
        client_id: String,
        client_secret: SecretString,
        policy: RetryPolicy,
    ) -> Self {
        let base = env_url.as_str().trim_end_matches('/').to_owned();
        Self { http, base, client_id, client_secret, policy, token: tokio::sync::Mutex::new(None) }
    }

    /// The same client retrying by `policy`, such as one with a time budget for an
    /// interactive command.
    #[must_use]
    pub fn with_policy(self, policy: RetryPolicy) -> Self {
        Self { policy, ..self }
    }

    /// Finds a config by exact name (`filter.name`).
    ///
    /// # Errors
    /// [`ApiError`] after retries.
    pub async fn find_config_by_name(&self, name: &str) -> Result<Option<McpConfig>, ApiError> {
        let list: ConfigList = self
            .call(
                "mcp.list_configs",
                Method::GET,
                "/api/v1/mcp/configs",
                &[("filter.name", name)],
                None,
            )
            .await?;
        Ok(list.configs.into_iter().find(|config| config.name.eq_ignore_ascii_case(name)))
    }

    /// Finds a config by id (`filter.id`).
    ///
    /// # Errors
    /// [`ApiError`] after retries.
    pub async fn find_config_by_id(&self, id: &str) -> Result<Option<McpConfig>, ApiError> {
        let list: ConfigList = self
            .call(
                "mcp.list_configs",
                Method::GET,
                "/api/v1/mcp/configs",
                &[("filter.id", id)],
                None,
            )
            .await?;
        Ok(list.configs.into_iter().find(|config| config.id == id))
    }

    /// Creates a config. The body is the bare config, as the gateway's `body: "config"` rule
    /// requires.
    ///
    /// # Errors
    /// [`ApiError`]; a duplicate name is a permanent 409.
    pub async fn create_config(
        &self,
        name: &str,
        mappings: &[NewMapping<'_>],
    ) -> Result<McpConfig, ApiError> {
        let body = json!({"name": name, "connection_tool_mappings": mappings});
        let created: ConfigEnvelope = self
            .call("mcp.create_config", Method::POST, "/api/v1/mcp/configs", &[], Some(&body))
            .await?;
        Ok(created.config)
    }

    /// The user's account on each connection of the config; with `include_auth_link` the
    /// server also creates missing accounts and returns a fresh link for every connection.
    ///
    /// # Errors
    /// [`ApiError`] after retries.
    pub async fn list_connected_accounts(
        &self,
        config_id: &str,
        identifier: &str,
        include_auth_link: bool,
    ) -> Result<Vec<ConnectionState>, ApiError> {
        let path = format!("/api/v1/mcp/configs/{}/connected_accounts", path_segment(config_id));
        let mut body = json!({"identifier": identifier});
        if include_auth_link {
            body["include_auth_link"] = json!(true);
        }
        let list: AccountList =
            self.call("mcp.list_connected_accounts", Method::POST, &path, &[], Some(&body)).await?;
        Ok(list.connected_accounts)
    }

    /// Mints a token scoped to `identifier` on the config's MCP server. Fails with a
    /// permanent 400 unless every mapped connection is ACTIVE.
    ///
    /// # Errors
    /// [`ApiError`] after retries.
    pub async fn create_session_token(
        &self,
        config_id: &str,
        identifier: &str,
        expiry: Duration,
    ) -> Result<SessionToken, ApiError> {
        let path = format!("/api/v1/mcp/configs/{}/tokens", path_segment(config_id));
        let body = json!({"identifier": identifier, "expiry": format!("{}s", expiry.as_secs())});
        let wire: TokenWire =
            self.call("mcp.create_session_token", Method::POST, &path, &[], Some(&body)).await?;
        if wire.token.is_empty() {
            return Err(ApiError::decode(API, "mcp.create_session_token", &"empty token"));
        }
        let expires_at = wire.expires_at.as_deref().and_then(|at| at.parse().ok());
        Ok(SessionToken { token: SecretString::from(wire.token), expires_at })
    }

    /// An authorization link for the user's account on `connection_name`.
    ///
    /// # Errors
    /// [`ApiError`] after retries.
    pub async fn magic_link(
        &self,
        identifier: &str,
        connection_name: &str,
    ) -> Result<MagicLink, ApiError> {
        let body = json!({"connector": connection_name, "identifier": identifier});
        let path = "/api/v1/connected_accounts/magic_link";
        self.call("connected_accounts.magic_link", Method::POST, path, &[], Some(&body)).await
    }

    /// The user's account on one connection, without credentials.
    ///
    /// # Errors
    /// [`ApiError`]; a missing account is a permanent 404.
    pub async fn connected_account_details(
        &self,
        identifier: &str,
        connection_name: &str,
    ) -> Result<ConnectedAccount, ApiError> {
        let query = [("connector", connection_name), ("identifier", identifier)];
        let path = "/api/v1/connected_accounts/details";
        let wire: AccountEnvelope =
            self.call("connected_accounts.details", Method::GET, path, &query, None).await?;
        Ok(wire.connected_account)
    }

    /// One call with retries; a 401 refreshes the token once within the attempt. Fetching the
    /// access token is part of each attempt, not a retry loop of its own: nested loops
    /// multiplied the attempts (8 × 8) and kept an unreachable Scalekit waited on for minutes.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let request = |token: &SecretString| {
            let builder = self.http.request(method.clone(), &url).query(query);
            let builder = route::traced(builder.bearer_auth(token.expose_secret()));
            match body {
                Some(body) => builder.json(body),
                None => builder,
            }
        };
        with_retries(API, endpoint, &self.base, self.policy, || async {
            let token = self.access_token().await?;
            match send(endpoint, request(&token)).await {
                Err(error) if error.class() == crate::outcome::ErrorClass::Auth => {
                    self.invalidate(&token).await;
                    let token = self.access_token().await?;
                    send(endpoint, request(&token)).await
                }
                res => res,
            }
        })
        .await
    }

    /// The cached token, or a fresh one from one request (the caller's loop retries).
    async fn access_token(&self) -> Result<SecretString, ApiError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|token| token.refresh_at > Instant::now()) {
            return Ok(token.value.clone());
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Forgets `stale` unless another task already replaced it.
    async fn invalidate(&self, stale: &SecretString) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| t.value.expose_secret() == stale.expose_secret()) {
            *cached = None;
        }
    }

    async fn fetch_token(&self) -> Result<AccessToken, ApiError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        let url = format!("{}/oauth/token", self.base);
        // A request of its own inside the call's attempt, so a span of its own.
        let span = route::span(API, "oauth.token", 0);
        let request = span.in_scope(|| route::traced(self.http.post(url).form(&form)));
        let sent: Result<OauthToken, _> =
            send("oauth.token", request).instrument(span.clone()).await;
        if sent.is_err() {
            route::record_failure(&span);
        }
        let wire = sent?;
        if wire.access_token.is_empty() {
            return Err(ApiError::decode(API, "oauth.token", &"empty access_token"));
        }
        let lifetime = Duration::from_secs(wire.expires_in.unwrap_or(3600));
        let refresh_at = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        Ok(AccessToken { value: SecretString::from(wire.access_token), refresh_at })
    }
}

/// Sends once and decodes a 2xx body as `T`, or classifies the error.
async fn send<T: DeserializeOwned>(
    endpoint: &'static str,
    request: RequestBuilder,
) -> Result<T, ApiError> {
    let response = observe(API, endpoint, request.send().await)?;
    if response.status().is_success() {
        return decode_json(API, endpoint, response).await;
    }
    Err(error_from(endpoint, response).await)
}

async fn error_from(endpoint: &'static str, response: Response) -> ApiError {
    let status = response.status();
    let retry_after = retry::retry_after(response.headers());
    let text = response.text().await.unwrap_or_default();
    let body: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
    let code = body.error_code().or(body.error.clone()).or(body.code.map(|code| code.to_string()));
    let message =
        body.message.or(body.error_description).unwrap_or_else(|| text.chars().take(300).collect());
    let class = retry::classify_status(status, body.code, None, false);
    ApiError::Status {
        api: API,
        endpoint,
        status: status.as_u16(),
        code,
        message,
        class,
        retry_after,
    }
}
