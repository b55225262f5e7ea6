//! The Anthropic Managed Agents client: agents, environments, vaults and credentials, sessions,
//! session events (send, list, SSE stream, resume). Headers and bodies are the official SDK
//! 2.x's (`tests/golden/`): the key as `Authorization: Bearer`, `Accept: application/json` (on
//! the stream too), `anthropic-version` and the beta. It must not decide what a run does.

mod credentials;
pub mod events;
mod frames;
mod sse;
mod streaming;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

pub use self::events::{EventKind, ModelUsage, SessionEvent, StopReason};
pub use self::types::*;
use super::pace::{self, Pacer};
use super::stream::Streams;
use super::{Api, ApiError, decode_json, observe, path_segment, retry, route, with_retries};
use crate::backoff::RetryPolicy;
use crate::config::HttpConfig;

const API: Api = Api::Anthropic;
/// The version the official SDK 2.x sends.
pub const ANTHROPIC_VERSION: &str = "2026-10-21";
/// The beta every Managed Agents call needs.
pub const ANTHROPIC_BETA: &str = "managed-agents-2026-04-01";
/// Streams may last as long as a run; idleness is detected per frame instead.
const STREAM_REQUEST_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// One Anthropic API key against one base URL.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// `Bearer <key>`, built once.
    authorization: SecretString,
    policy: RetryPolicy,
    streaming: streaming::Limits,
    streams: Streams,
    pacer: Option<Arc<dyn Pacer>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("anthropic::Client").field("base", &self.base).finish_non_exhaustive()
    }
}

/// A request body: none (GET), empty (body-less POST such as archive), or JSON.
enum Body<'a> {
    None,
    Empty,
    Json(&'a (dyn erased::Json + Sync)),
}

/// Lets bodies of different types go through one `call`.
mod erased {
    pub(super) trait Json {
        fn to_value(&self) -> serde_json::Result<serde_json::Value>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_value(&self) -> serde_json::Result<serde_json::Value> {
            serde_json::to_value(self)
        }
    }
}

impl Client {
    /// A client for `base_url` (`https://api.anthropic.com` or the simulator). Event streams
    /// use their own lean connections unless the environment's proxy variables apply to
    /// `base_url` ([`Streams::for_url`]). The key is kept only as the header that carries it.
    pub fn new(
        http: reqwest::Client,
        base_url: &Url,
        api_key: &SecretString,
        policy: RetryPolicy,
        config: &HttpConfig,
    ) -> Self {
        let base = base_url.as_str().trim_end_matches('/').to_owned();
        let proxies = hyper_util::client::proxy::matcher::Matcher::from_system();
        let streams = Streams::for_url(base_url, &proxies, config);
        let streaming = streaming::Limits::from(config);
        let authorization = SecretString::from(format!("Bearer {}", api_key.expose_secret()));
        Self { http, base, authorization, policy, streaming, streams, pacer: None }
    }

    /// The same client waiting on `pacer` before every request (each attempt of each call).
    #[must_use]
    pub fn with_pacer(self, pacer: Arc<dyn Pacer>) -> Self {
        Self { pacer: Some(pacer), ..self }
    }

    /// The same client with event streams opened another way.
    #[must_use]
    pub fn with_streams(self, streams: Streams) -> Self {
        Self { streams, ..self }
    }

    /// The same client with another retry policy, for calls that must not be repeated blindly.
    #[must_use]
    pub fn with_policy(&self, policy: RetryPolicy) -> Self {
        Self { policy, ..self.clone() }
    }

    /// `agents.create`.
    ///
    /// # Errors
    /// [`ApiError`] after retries (the same for every method below).
    pub async fn create_agent(&self, agent: &AgentCreate) -> Result<Agent, ApiError> {
        self.call("agents.create", Method::POST, "/v1/agents", &[], Body::Json(agent)).await
    }

    /// `agents.update`: a new version of the agent.
    ///
    /// # Errors
    /// [`ApiError`]; 409 when the agent changed since `update.version`.
    pub async fn update_agent(
        &self,
        agent_id: &str,
        update: &AgentUpdate,
    ) -> Result<Agent, ApiError> {
        let path = format!("/v1/agents/{}", path_segment(agent_id));
        self.call("agents.update", Method::POST, &path, &[], Body::Json(update)).await
    }

    /// `agents.retrieve`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn get_agent(&self, agent_id: &str) -> Result<Agent, ApiError> {
        let path = format!("/v1/agents/{}", path_segment(agent_id));
        self.call("agents.retrieve", Method::GET, &path, &[], Body::None).await
    }

    /// `agents.list`, one page.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn list_agents(&self, page: Option<&str>) -> Result<Page<Agent>, ApiError> {
        let query = page_query(page);
        self.call("agents.list", Method::GET, "/v1/agents", &query, Body::None).await
    }

    /// The first unarchived agent called `name`, paging through all agents.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn find_agent_by_name(&self, name: &str) -> Result<Option<Agent>, ApiError> {
        let mut page = None;
        loop {
            let agents = self.list_agents(page.as_deref()).await?;
            let found = agents.data.into_iter().find(|a| a.name == name && a.archived_at.is_none());
            if found.is_some() || agents.next_page.is_none() {
                return Ok(found);
            }
            page = agents.next_page;
        }
    }

    /// `environments.create`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn create_environment(
        &self,
        env: &EnvironmentCreate,
    ) -> Result<Environment, ApiError> {
        self.call("environments.create", Method::POST, "/v1/environments", &[], Body::Json(env))
            .await
    }

    /// `environments.retrieve`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn get_environment(&self, environment_id: &str) -> Result<Environment, ApiError> {
        let path = format!("/v1/environments/{}", path_segment(environment_id));
        self.call("environments.retrieve", Method::GET, &path, &[], Body::None).await
    }

    /// `environments.list`, one page.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn list_environments(
        &self,
        page: Option<&str>,
    ) -> Result<Page<Environment>, ApiError> {
        let query = page_query(page);
        self.call("environments.list", Method::GET, "/v1/environments", &query, Body::None).await
    }

    /// `sessions.create`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn create_session(&self, session: &SessionCreate) -> Result<Session, ApiError> {
        self.call("sessions.create", Method::POST, "/v1/sessions", &[], Body::Json(session)).await
    }

    /// `sessions.retrieve`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn get_session(&self, session_id: &str) -> Result<Session, ApiError> {
        let path = format!("/v1/sessions/{}", path_segment(session_id));
        self.call("sessions.retrieve", Method::GET, &path, &[], Body::None).await
    }

    /// `sessions.list` for one agent, newest first, one page.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn list_sessions(
        &self,
        agent_id: &str,
        page: Option<&str>,
    ) -> Result<Page<Session>, ApiError> {
        let mut query = vec![("agent_id", agent_id), ("order", "desc")];
        query.extend(page_query(page));
        self.call("sessions.list", Method::GET, "/v1/sessions", &query, Body::None).await
    }

    /// `sessions.archive`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn archive_session(&self, session_id: &str) -> Result<Session, ApiError> {
        let path = format!("/v1/sessions/{}/archive", path_segment(session_id));
        self.call("sessions.archive", Method::POST, &path, &[], Body::Empty).await
    }

    /// `sessions.events.send`; returns the echoed events with their ids.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn send_events(
        &self,
        session_id: &str,
        events: &[OutgoingEvent],
    ) -> Result<Vec<SessionEvent>, ApiError> {
        let path = format!("/v1/sessions/{}/events", path_segment(session_id));
        let body = json!({"events": events});
        let echoed: Page<Value> =
            self.call("sessions.events.send", Method::POST, &path, &[], Body::Json(&body)).await?;
        Ok(echoed.data.into_iter().map(SessionEvent::from_json).collect())
    }

    /// `sessions.events.list`, one page, oldest first.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn list_events(
        &self,
        session_id: &str,
        page: Option<&str>,
    ) -> Result<Page<SessionEvent>, ApiError> {
        let path = format!("/v1/sessions/{}/events", path_segment(session_id));
        let query = page_query(page);
        let raw: Page<Value> =
            self.call("sessions.events.list", Method::GET, &path, &query, Body::None).await?;
        let data = raw.data.into_iter().map(SessionEvent::from_json).collect();
        Ok(Page { data, next_page: raw.next_page })
    }

    /// Every event of the session so far, oldest first.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn list_all_events(&self, session_id: &str) -> Result<Vec<SessionEvent>, ApiError> {
        let mut events = Vec::new();
        let mut page = None;
        loop {
            let batch = self.list_events(session_id, page.as_deref()).await?;
            events.extend(batch.data);
            match batch.next_page {
                Some(next) if !next.is_empty() => page = Some(next),
                _ => return Ok(events),
            }
        }
    }

    /// The headers of every request, the event stream's included, as the official SDK 2.x
    /// sends them: it asks for JSON even on the stream, and the server answers with SSE anyway.
    fn common_headers(&self) -> [(&'static str, &str); 4] {
        [
            ("authorization", self.authorization.expose_secret()),
            ("accept", "application/json"),
            ("anthropic-version", ANTHROPIC_VERSION),
            ("anthropic-beta", ANTHROPIC_BETA),
        ]
    }

    /// The common headers and the current call's trace context.
    fn headers(&self, request: RequestBuilder) -> RequestBuilder {
        let request = route::traced(request);
        self.common_headers().into_iter().fold(request, |request, (name, value)| {
            match HeaderValue::from_str(value) {
                // Sensitive: no debug output of the request shows the key.
                Ok(mut value) => {
                    value.set_sensitive(name == "authorization");
                    request.header(name, value)
                }
                // reqwest refuses the value when the request is sent, without repeating it.
                Err(_) => request.header(name, value),
            }
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let body = match body {
            Body::Json(body) => {
                let value = body.to_value().map_err(|e| ApiError::decode(API, endpoint, &e))?;
                Some(serde_json::to_vec(&value).map_err(|e| ApiError::decode(API, endpoint, &e))?)
            }
            Body::Empty => Some(Vec::new()),
            Body::None => None,
        };
        with_retries(API, endpoint, &self.base, self.policy, || async {
            self.wait_turn(endpoint).await?;
            let mut request = self.headers(self.http.request(method.clone(), &url));
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = &body {
                request = request.header(CONTENT_TYPE, "application/json").body(body.clone());
            }
            let response = check(endpoint, request.send().await).await;
            pace::note_refusal(self.pacer.as_deref(), endpoint, &response).await;
            decode_json(API, endpoint, response?).await
        })
        .await
    }
}

/// A 2xx response, or the classified error.
async fn check(
    endpoint: &'static str,
    response: Result<Response, reqwest::Error>,
) -> Result<Response, ApiError> {
    let response = observe(API, endpoint, response)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Err(status_error(endpoint, status, &headers, &text))
}

/// An error status, classified from its headers and Anthropic's error body.
fn status_error(
    endpoint: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    text: &str,
) -> ApiError {
    let retry_after = retry::retry_after(headers);
    let should_retry = headers
        .get("x-should-retry")
        .and_then(|value| value.to_str().ok())
        .map(|value| value.eq_ignore_ascii_case("true"));
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let field = |key: &str| body.pointer(key).and_then(Value::as_str).map(str::to_owned);
    let message = field("/error/message").unwrap_or_else(|| text.chars().take(300).collect());
    let class = retry::classify_status(status, None, should_retry, true);
    let code = field("/error/type");
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

fn page_query(page: Option<&str>) -> Vec<(&str, &str)> {
    page.map(|page| vec![("page", page)]).unwrap_or_default()
}
