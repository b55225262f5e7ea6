//! The API clients against the simulator over real HTTP, with faults injected through
//! `/_sim/faults`: retries and their delays, token refresh, stream resumption, timeouts, and
//! no secret in any error.

use std::collections::HashSet;
use std::time::Duration;

use agentcron::api::anthropic::{self, EventKind, OutgoingEvent, SessionCreate};
use agentcron::api::http_client;
use agentcron::api::scalekit::{self, NewMapping};
use agentcron::backoff::RetryPolicy;
use agentcron::config::HttpConfig;
use agentcron::outcome::ErrorClass;
use agentcron::sim::{SimConfig, SimHandle};
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tracing::instrument::WithSubscriber;

pub(crate) const SECRET: &str = "SECRET-api-test-client-secret";
pub(crate) const KEY: &str = "SECRET-api-test-anthropic-key";

pub(crate) struct Fixture {
    pub(crate) sim: SimHandle,
    control: reqwest::Client,
}

impl Fixture {
    pub(crate) async fn start() -> Self {
        let config = SimConfig {
            scalekit_client_secret: SECRET.to_owned(),
            anthropic_api_key: KEY.to_owned(),
            ..SimConfig::default()
        };
        let sim = agentcron::sim::serve(config).await.unwrap();
        Self { sim, control: http(Duration::from_secs(30)) }
    }

    pub(crate) fn base(&self) -> url::Url {
        self.sim.base_url().parse().unwrap()
    }

    pub(crate) async fn fault(&self, fault: Value) {
        let url = format!("{}/_sim/faults", self.sim.base_url());
        let response = self.control.post(url).json(&fault).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.text().await.unwrap());
    }

    async fn audit(&self) -> Value {
        let url = format!("{}/_sim/audit", self.sim.base_url());
        self.control.get(url).send().await.unwrap().json().await.unwrap()
    }

    pub(crate) async fn requests(&self, key: &str) -> u64 {
        self.audit().await["requests"][key].as_u64().unwrap_or(0)
    }

    fn scalekit(&self, secret: &str, policy: RetryPolicy) -> scalekit::Client {
        scalekit::Client::new(
            http(Duration::from_secs(10)),
            &self.base(),
            "sim-client-id".to_owned(),
            SecretString::from(secret),
            policy,
        )
    }

    pub(crate) fn anthropic(
        &self,
        key: &str,
        policy: RetryPolicy,
        request_timeout: Duration,
    ) -> anthropic::Client {
        let config = http_config(request_timeout);
        anthropic::Client::new(
            http_client(&config).unwrap(),
            &self.base(),
            &SecretString::from(key),
            policy,
            &config,
        )
    }
}

pub(crate) fn http_config(request_timeout: Duration) -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(5),
        request_timeout,
        stream_idle_timeout: Duration::from_secs(30),
        max_event_bytes: 4 * 1024 * 1024,
    }
}

pub(crate) fn http(request_timeout: Duration) -> reqwest::Client {
    http_client(&http_config(request_timeout)).unwrap()
}

pub(crate) fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(20),
        max_interval: Duration::from_millis(100),
        max_elapsed: Duration::from_secs(30),
        multiplier: 2.0,
        jitter: true,
        max_attempts,
        budget: None,
    }
}

/// The guide's build and per-run calls, up to an open session; returns the session id.
pub(crate) async fn session_for(fx: &Fixture, user: &str) -> (anthropic::Client, String) {
    let sk = fx.scalekit(SECRET, policy(3));
    let tools = ["gmail_fetch_mails".to_owned()];
    let cal = ["googlecalendar_create_event".to_owned()];
    let mappings = [
        NewMapping { connection_name: "gmail", tools: &tools },
        NewMapping { connection_name: "googlecalendar", tools: &cal },
    ];
    let config = match sk.find_config_by_name("api-test").await.unwrap() {
        Some(config) => config,
        None => sk.create_config("api-test", &mappings).await.unwrap(),
    };
    let token = sk.create_session_token(&config.id, user, Duration::from_secs(3600)).await.unwrap();
    let client = fx.anthropic(KEY, policy(3), Duration::from_secs(10));
    let agent = client
        .create_agent(&anthropic::AgentCreate {
            model: "claude-haiku-4-5-20251001".to_owned(),
            name: "api-test".to_owned(),
            mcp_servers: vec![anthropic::McpServer {
                kind: "url".to_owned(),
                name: "mcp".to_owned(),
                url: config.mcp_server_url.clone(),
            }],
            system: Some("Triage.".to_owned()),
            tools: vec![anthropic::Tool {
                kind: "mcp_toolset".to_owned(),
                mcp_server_name: Some("mcp".to_owned()),
                default_config: Some(anthropic::ToolConfig {
                    enabled: Some(true),
                    permission_policy: Some(anthropic::Typed::new("always_allow")),
                }),
            }],
        })
        .await
        .unwrap();
    let env = client
        .create_environment(&anthropic::EnvironmentCreate {
            name: "e".to_owned(),
            config: json!({"type": "cloud", "networking": {"type": "unrestricted"}}),
        })
        .await
        .unwrap();
    let vault = client.create_vault(user, None).await.unwrap();
    client.create_credential(&vault.id, user, &config.mcp_server_url, &token.token).await.unwrap();
    let mut metadata = serde_json::Map::new();
    metadata.insert("user".to_owned(), json!(user));
    let session = client
        .create_session(&SessionCreate {
            agent: agent.id,
            environment_id: env.id,
            title: Some(format!("run for {user}")),
            metadata: Some(metadata),
            vault_ids: vec![vault.id],
        })
        .await
        .unwrap();
    (client, session.id)
}

#[tokio::test]
async fn the_guides_flow_end_to_end() {
    let fx = Fixture::start().await;
    let sk = fx.scalekit(SECRET, policy(3));
    let user = "flow@example.com";
    let (client, session_id) = session_for(&fx, user).await;
    let config = sk.find_config_by_name("api-test").await.unwrap().unwrap();
    let accounts = sk.list_connected_accounts(&config.id, user, false).await.unwrap();
    assert_eq!(accounts.len(), 2);
    assert!(accounts.iter().all(scalekit::ConnectionState::is_active));
    let link = sk.magic_link(user, "gmail").await.unwrap();
    assert!(link.link.starts_with("http"), "{link:?}");

    let mut stream = Box::pin(client.stream_events(&session_id).await.unwrap());
    let echoed = client.send_events(&session_id, &[OutgoingEvent::user_text("Go.")]).await.unwrap();
    assert_eq!(echoed.len(), 1);
    assert!(echoed[0].id().is_some_and(|id| id.starts_with("sevt_")));
    let mut kinds = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        let end = event.is_turn_end();
        kinds.push(event);
        if end {
            break;
        }
    }
    let tools: Vec<_> = kinds
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolUse { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(tools, ["gmail_fetch_mails", "googlecalendar_create_event"]);
    assert!(
        kinds
            .iter()
            .any(|e| matches!(&e.kind, EventKind::AgentMessage { text } if !text.is_empty()))
    );
    // Types we do not model still arrive, with their JSON intact.
    let span = kinds
        .iter()
        .find(|e| e.event_type() == "span.model_request_start")
        .expect("span events arrive");
    assert_eq!(span.kind, EventKind::Other);
    assert_eq!(span.raw["type"], "span.model_request_start");

    let history = client.list_all_events(&session_id).await.unwrap();
    assert!(history.len() >= kinds.len(), "the list returns the whole history");
    let session = client.get_session(&session_id).await.unwrap();
    assert_eq!(session.status, "idle");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fx = Fixture::start().await;
    fx.fault(
        json!({"method": "GET", "path": "/v1/agents", "status": 429, "retry_after": 2, "count": 1}),
    )
    .await;
    let client = fx.anthropic(KEY, policy(3), Duration::from_secs(10));
    let logs = crate::common::app::LogCapture::default();
    client.list_agents(None).with_subscriber(logs.subscriber()).await.unwrap();
    assert_eq!(fx.requests("GET /v1/agents").await, 2);
    // The retry was scheduled for the server's 2 s, not the policy's backoff (at most 100 ms).
    let delays: Vec<Value> = logs
        .text()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["fields"]["message"] == "Remote call failed; retrying.")
        .map(|line| line["fields"]["delay_ms"].clone())
        .collect();
    assert_eq!(delays, [json!(2000)], "{}", logs.text());
}

#[tokio::test]
async fn unavailable_twice_then_success() {
    let fx = Fixture::start().await;
    fx.fault(json!({"method": "POST", "path": "/v1/vaults", "status": 503, "count": 2})).await;
    let client = fx.anthropic(KEY, policy(5), Duration::from_secs(10));
    let vault = client.create_vault("v", None).await.unwrap();
    assert!(vault.id.starts_with("vlt_"));
    assert_eq!(fx.requests("POST /v1/vaults").await, 3);

    fx.fault(json!({"path": "/api/v1/mcp/configs", "status": 503, "count": 2})).await;
    let sk = fx.scalekit(SECRET, policy(5));
    assert!(sk.find_config_by_name("nothing-here").await.unwrap().is_none());
    assert_eq!(fx.requests("GET /api/v1/mcp/configs").await, 3);
}

#[tokio::test]
async fn bad_request_is_not_retried() {
    let fx = Fixture::start().await;
    fx.fault(json!({"method": "POST", "path": "/v1/vaults", "status": 400, "count": 1})).await;
    let client = fx.anthropic(KEY, policy(5), Duration::from_secs(10));
    let error = client.create_vault("v", None).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(error.status(), Some(400));
    assert_eq!(fx.requests("POST /v1/vaults").await, 1);
}

#[tokio::test]
async fn attempts_are_capped() {
    let fx = Fixture::start().await;
    fx.fault(json!({"method": "GET", "path": "/v1/agents", "status": 500})).await;
    let client = fx.anthropic(KEY, policy(3), Duration::from_secs(10));
    let error = client.list_agents(None).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_eq!(fx.requests("GET /v1/agents").await, 3);
}

#[tokio::test]
async fn scalekit_401_refreshes_the_token_once() {
    let fx = Fixture::start().await;
    let sk = fx.scalekit(SECRET, policy(3));
    sk.find_config_by_name("warm-up").await.unwrap();
    assert_eq!(fx.requests("POST /oauth/token").await, 1, "the token is cached");
    sk.find_config_by_name("again").await.unwrap();
    assert_eq!(fx.requests("POST /oauth/token").await, 1);

    fx.fault(json!({"path": "/api/v1/mcp/configs", "status": 401, "count": 1})).await;
    sk.find_config_by_name("after-401").await.unwrap();
    assert_eq!(fx.requests("POST /oauth/token").await, 2, "one refresh");
    assert_eq!(fx.requests("GET /api/v1/mcp/configs").await, 4);

    fx.fault(json!({"path": "/api/v1/mcp/configs", "status": 401, "count": 2})).await;
    let error = sk.find_config_by_name("twice").await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Auth, "a second 401 is not retried again");
}

#[tokio::test]
async fn concurrent_callers_share_one_token_fetch() {
    let fx = Fixture::start().await;
    let sk = std::sync::Arc::new(fx.scalekit(SECRET, policy(3)));
    let calls = (0..20).map(|i| {
        let sk = sk.clone();
        async move { sk.find_config_by_name(&format!("c{i}")).await }
    });
    for res in futures::future::join_all(calls).await {
        res.unwrap();
    }
    assert_eq!(fx.requests("POST /oauth/token").await, 1, "single flight");
}

#[tokio::test]
async fn a_hanging_request_times_out_as_transient() {
    let fx = Fixture::start().await;
    fx.fault(json!({"method": "GET", "path": "/v1/agents", "hang": true, "count": 1})).await;
    let client = fx.anthropic(KEY, policy(1), Duration::from_millis(300));
    let error = client.list_agents(None).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");

    fx.fault(json!({"method": "GET", "path": "/v1/agents", "hang": true, "count": 1})).await;
    let client = fx.anthropic(KEY, policy(3), Duration::from_millis(300));
    client.list_agents(None).await.unwrap();
}

#[tokio::test]
async fn a_cut_stream_resumes_without_loss_or_repeat() {
    let fx = Fixture::start().await;
    let (client, session_id) = session_for(&fx, "cut@example.com").await;
    fx.fault(json!({"method": "GET", "path": "/v1/sessions/*/events/stream", "stream_cut_after": 3, "count": 1})).await;
    fx.fault(json!({"method": "POST", "path": "/v1/sessions/*/events", "event_delay_ms": 20, "count": 1})).await;

    let mut seen = Vec::new();
    let mut stream = Box::pin(client.stream_events(&session_id).await.unwrap());
    client.send_events(&session_id, &[OutgoingEvent::user_text("Go.")]).await.unwrap();
    while let Some(Ok(event)) = stream.next().await {
        seen.push(event);
    }
    assert_eq!(seen.len(), 3, "the fault cut the stream after 3 events");
    let ids: HashSet<String> = seen.iter().filter_map(|e| e.id().map(str::to_owned)).collect();
    let mut resumed = Box::pin(client.resume_events(&session_id, ids).await.unwrap());
    while let Some(event) = resumed.next().await {
        let event = event.unwrap();
        let end = event.is_turn_end();
        seen.push(event);
        if end {
            break;
        }
    }
    let got: Vec<_> = seen.iter().filter_map(|e| e.id().map(str::to_owned)).collect();
    let history: Vec<_> = client
        .list_all_events(&session_id)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| e.id().map(str::to_owned))
        .collect();
    assert_eq!(got, history, "every event once, in order");
}

#[tokio::test]
async fn errors_never_carry_secrets() {
    let fx = Fixture::start().await;
    let wrong = "SECRET-wrong-client-secret";
    let error = fx.scalekit(wrong, policy(2)).find_config_by_name("x").await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Auth);
    let wrong_key = "SECRET-wrong-anthropic-key";
    let error2 = fx
        .anthropic(wrong_key, policy(2), Duration::from_secs(5))
        .list_agents(None)
        .await
        .unwrap_err();
    assert_eq!(error2.status(), Some(401));
    let client = fx.anthropic(KEY, policy(1), Duration::from_secs(5));
    let shown = format!(
        "{error} {error:?} {error2} {error2:?} {client:?} {:?}",
        fx.scalekit(SECRET, policy(1))
    );
    assert!(!shown.contains("SECRET"), "{shown}");

    let token = fx.scalekit(SECRET, policy(1));
    let config = token
        .create_config(
            "secret-test",
            &[NewMapping { connection_name: "gmail", tools: &["gmail_fetch_mails".to_owned()] }],
        )
        .await
        .unwrap();
    let minted = token
        .create_session_token(&config.id, "s@example.com", Duration::from_secs(600))
        .await
        .unwrap();
    let shown = format!("{minted:?}");
    assert!(!shown.contains(minted.token.expose_secret()), "{shown}");
}
