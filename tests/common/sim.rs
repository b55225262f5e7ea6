//! Simulator helpers for the integration tests: start one in-process on port 0 and talk to it
//! over real HTTP — both APIs, the SSE stream and the `/_sim/` control API.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub use agentcron::sim::{SimConfig, SimHandle};

/// A simulator with the default configuration on a free port.
pub async fn spawn_sim() -> SimHandle {
    spawn_sim_with(SimConfig::default()).await
}

/// A simulator with `config` (its port is forced to 0).
pub async fn spawn_sim_with(config: SimConfig) -> SimHandle {
    agentcron::sim::serve(SimConfig { port: 0, ..config }).await.expect("the simulator starts")
}

/// The ids the guide's build and vault phases produce for one user.
#[derive(Debug, Clone)]
pub struct Setup {
    pub config_id: String,
    pub server_url: String,
    pub agent_id: String,
    pub environment_id: String,
    pub vault_id: String,
    pub credential_id: String,
}

/// A typed HTTP client for the simulator.
#[derive(Debug, Clone)]
pub struct SimClient {
    pub http: reqwest::Client,
    pub base: String,
    pub api_key: String,
}

impl SimClient {
    pub fn new(sim: &SimHandle) -> Self {
        // reqwest is built without a default TLS provider; plain HTTP still needs one installed.
        // An error only means another test installed it first.
        rustls::crypto::ring::default_provider().install_default().ok();
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        Self {
            http,
            base: sim.base_url().to_owned(),
            api_key: sim.config().anthropic_api_key.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn json(response: reqwest::Response) -> (StatusCode, Value) {
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// An Anthropic request with the key, version and beta headers, for the caller to finish.
    pub fn anthropic_request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "managed-agents-2026-04-01")
    }

    /// An Anthropic call with the key and beta header the SDK sends.
    pub async fn anthropic(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.anthropic_request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::json(request.send().await.unwrap()).await
    }

    /// A Scalekit access token for the default credentials.
    pub async fn scalekit_token(&self) -> String {
        let form =
            "grant_type=client_credentials&client_id=sim-client-id&client_secret=sim-client-secret";
        let response = self
            .http
            .post(self.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        let (status, body) = Self::json(response).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A Scalekit REST call with a bearer token.
    pub async fn scalekit(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::json(request.send().await.unwrap()).await
    }

    /// A control-API call.
    pub async fn control(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(&format!("/_sim{path}")));
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::json(request.send().await.unwrap()).await
    }

    pub async fn set_connection(&self, user: &str, connection: &str, status: Option<&str>) {
        let (code, body) = self
            .control(
                Method::PUT,
                &format!("/users/{user}/connections/{connection}"),
                Some(json!({"status": status})),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }

    pub async fn calendar(&self, user: &str) -> Vec<Value> {
        let (_, body) = self.control(Method::GET, &format!("/users/{user}/calendar"), None).await;
        body["events"].as_array().cloned().unwrap_or_default()
    }

    pub async fn add_fault(&self, fault: Value) -> String {
        let (code, body) = self.control(Method::POST, "/faults", Some(fault)).await;
        assert_eq!(code, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn audit(&self) -> Value {
        self.control(Method::GET, "/audit", None).await.1
    }

    /// The guide's build phase plus a vault holding `user`'s session token.
    pub async fn setup_user(&self, user: &str) -> Setup {
        let sk = self.scalekit_token().await;
        let name = format!("cfg-{}", uuid::Uuid::new_v4().simple());
        let mappings = json!([{"connection_name": "gmail", "tools": ["gmail_fetch_mails"]},
                              {"connection_name": "googlecalendar", "tools": ["googlecalendar_create_event"]}]);
        let (status, config) = self
            .scalekit(
                Method::POST,
                "/api/v1/mcp/configs",
                &sk,
                Some(json!({"name": name, "connection_tool_mappings": mappings})),
            )
            .await;
        assert_eq!(status, 201, "{config}");
        let config_id = config["config"]["id"].as_str().unwrap().to_owned();
        let server_url = config["config"]["mcp_server_url"].as_str().unwrap().to_owned();
        let agent = json!({"name": "Email Meeting Manager", "model": "claude-haiku-4-5-20251001",
            "mcp_servers": [{"type": "url", "name": "email-calendar-mcp", "url": server_url}],
            "tools": [{"type": "agent_toolset_20260401"}, {"type": "mcp_toolset", "mcp_server_name": "email-calendar-mcp",
                       "default_config": {"permission_policy": {"type": "always_allow"}}}]});
        let (status, agent) = self.anthropic(Method::POST, "/v1/agents", Some(agent)).await;
        assert_eq!(status, 200, "{agent}");
        let (_, environment) =
            self.anthropic(Method::POST, "/v1/environments", Some(json!({"name": "env"}))).await;
        let (_, vault) =
            self.anthropic(Method::POST, "/v1/vaults", Some(json!({"display_name": "v"}))).await;
        let vault_id = vault["id"].as_str().unwrap().to_owned();
        let token = self.mint(&sk, &config_id, user, 3600).await;
        let auth = json!({"type": "static_bearer", "mcp_server_url": server_url, "token": token});
        let (status, credential) = self
            .anthropic(
                Method::POST,
                &format!("/v1/vaults/{vault_id}/credentials"),
                Some(json!({"auth": auth})),
            )
            .await;
        assert_eq!(status, 200, "{credential}");
        Setup {
            config_id,
            server_url,
            agent_id: agent["id"].as_str().unwrap().to_owned(),
            environment_id: environment["id"].as_str().unwrap().to_owned(),
            vault_id,
            credential_id: credential["id"].as_str().unwrap().to_owned(),
        }
    }

    /// An agent like the guide's whose `mcp_toolset` on `setup`'s server has `toolset`'s fields
    /// (`default_config`, `configs`) merged in; returns its id.
    pub async fn create_agent_with_toolset(&self, setup: &Setup, toolset: Value) -> String {
        let mut mcp = json!({"type": "mcp_toolset", "mcp_server_name": "email-calendar-mcp"});
        for (key, value) in toolset.as_object().unwrap() {
            mcp[key] = value.clone();
        }
        let agent = json!({"name": "Email Meeting Manager", "model": "claude-haiku-4-5-20251001",
            "mcp_servers": [{"type": "url", "name": "email-calendar-mcp", "url": setup.server_url}],
            "tools": [{"type": "agent_toolset_20260401"}, mcp]});
        let (status, agent) = self.anthropic(Method::POST, "/v1/agents", Some(agent)).await;
        assert_eq!(status, 200, "{agent}");
        agent["id"].as_str().unwrap().to_owned()
    }

    /// Sends a `user.tool_confirmation` (`result` is `allow` or `deny`).
    pub async fn confirm_tool(
        &self,
        session_id: &str,
        tool_use_id: &str,
        result: &str,
        deny_message: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut event =
            json!({"type": "user.tool_confirmation", "tool_use_id": tool_use_id, "result": result});
        if let Some(message) = deny_message {
            event["deny_message"] = json!(message);
        }
        let body = json!({"events": [event]});
        self.anthropic(Method::POST, &format!("/v1/sessions/{session_id}/events"), Some(body)).await
    }

    /// A session token for `user` on `config_id`.
    pub async fn mint(&self, sk: &str, config_id: &str, user: &str, expiry_secs: u64) -> String {
        let body = json!({"identifier": user, "expiry": format!("{expiry_secs}s")});
        let (status, token) = self
            .scalekit(
                Method::POST,
                &format!("/api/v1/mcp/configs/{config_id}/tokens"),
                sk,
                Some(body),
            )
            .await;
        assert_eq!(status, 200, "{token}");
        token["token"].as_str().unwrap().to_owned()
    }

    /// A session of `setup`'s agent with its vault, for `user` (in metadata).
    pub async fn create_session(&self, setup: &Setup, user: &str) -> String {
        let body = json!({"agent": setup.agent_id, "environment_id": setup.environment_id, "vault_ids": [setup.vault_id],
                          "metadata": {"user": user, "run_id": format!("test:{user}:1")}});
        let (status, session) = self.anthropic(Method::POST, "/v1/sessions", Some(body)).await;
        assert_eq!(status, 200, "{session}");
        session["id"].as_str().unwrap().to_owned()
    }

    pub async fn send_message(&self, session_id: &str, text: &str) -> (StatusCode, Value) {
        let events = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]});
        self.anthropic(Method::POST, &format!("/v1/sessions/{session_id}/events"), Some(events))
            .await
    }

    pub async fn open_stream(&self, session_id: &str) -> SseReader {
        let response = self
            .http
            .get(self.url(&format!("/v1/sessions/{session_id}/events/stream")))
            .header("authorization", format!("Bearer {}", self.api_key))
            .header("anthropic-version", "2026-10-21")
            .header("anthropic-beta", "managed-agents-2026-04-01")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader { response, buffer: String::new() }
    }

    /// Runs one guide turn (stream first, then send) and returns the frames up to idle.
    pub async fn run_turn(&self, session_id: &str) -> Vec<(String, Value)> {
        let mut stream = self.open_stream(session_id).await;
        let (status, body) = self.send_message(session_id, "Triage my inbox.").await;
        assert_eq!(status, 200, "{body}");
        stream.until_idle().await
    }
}

/// Reads SSE frames off a stream response.
#[derive(Debug)]
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// The next frame as (event name, data JSON); comments are skipped; `None` at end of stream.
    pub async fn next_frame(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut event = None;
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        event = Some(value.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push_str(value);
                    }
                }
                match event {
                    Some(event) => return Some((event, serde_json::from_str(&data).unwrap())),
                    None => continue,
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("a frame within 30 s")
                .ok()??;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Frames until `session.status_idle` (included).
    pub async fn until_idle(&mut self) -> Vec<(String, Value)> {
        let mut frames = Vec::new();
        while let Some((event, data)) = self.next_frame().await {
            assert_eq!(event, data["type"], "the event name is the data's type");
            let idle = event == "session.status_idle";
            frames.push((event, data));
            if idle {
                return frames;
            }
        }
        panic!("the stream ended before session.status_idle: {frames:?}");
    }
}
