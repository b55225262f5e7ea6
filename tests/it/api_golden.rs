//! Golden requests: for each call the guide makes, our Anthropic client's request (method,
//! path, query, the auth header with the key redacted as in the recording, `accept`,
//! `anthropic-version`, `anthropic-beta`, `content-type`, JSON body) equals the one the official
//! Python SDK 2.14.0 sent, as recorded in `tests/golden/anthropic-requests.json`.
//!
//! A recorder server stands in for the API and answers with the recorded ids, so the paths
//! match byte for byte.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentcron::api::anthropic::{
    self, AgentCreate, McpServer, OutgoingEvent, SessionCreate, Tool, ToolConfig, Typed,
};
use agentcron::api::http_client;
use agentcron::backoff::RetryPolicy;
use agentcron::config::HttpConfig;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};

/// The requests the official SDK sent, recorded once and kept in the repository.
const SPEC: &str = "tests/golden/anthropic-requests.json";

/// The key our client is given; the recording has `<redacted>` in its place.
const KEY: &str = "sim-anthropic-key";

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    query: String,
    /// `Bearer <redacted>`: the form of the auth header, without the key.
    authorization: Option<String>,
    /// Must stay absent: the SDK sends the key once, as a bearer token.
    x_api_key: Option<String>,
    accept: Option<String>,
    version: Option<String>,
    beta: Option<String>,
    content_type: Option<String>,
    json: Value,
}

fn golden() -> (Vec<Seen>, Value) {
    let path = crate::common::repo_root().join(SPEC);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec: Value = serde_json::from_str(&text).unwrap();
    let header = |r: &Value, name: &str| r["headers"][name].as_str().map(str::to_owned);
    let requests = spec["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Seen {
            method: r["method"].as_str().unwrap().to_owned(),
            path: r["path"].as_str().unwrap().to_owned(),
            query: r["raw_query"].as_str().unwrap().to_owned(),
            authorization: header(r, "authorization"),
            x_api_key: header(r, "x-api-key"),
            accept: header(r, "accept"),
            version: header(r, "anthropic-version"),
            beta: header(r, "anthropic-beta"),
            content_type: header(r, "content-type"),
            json: r["json"].clone(),
        })
        .collect();
    (requests, spec["runs"][0]["result"]["ids"].clone())
}

async fn recorder(ids: Value, seen: Arc<Mutex<Vec<Seen>>>) -> String {
    let app = axum::Router::new().fallback(move |request: Request| {
        let (ids, seen) = (ids.clone(), seen.clone());
        async move { record(request, &ids, &seen).await }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn record(request: Request, ids: &Value, seen: &Mutex<Vec<Seen>>) -> Response {
    let (parts, body) = request.into_parts();
    // Every value of the header, so a header sent twice (a default beside ours) shows.
    let header = |name: &str| {
        let values: Vec<&str> =
            parts.headers.get_all(name).iter().map(|v| v.to_str().unwrap()).collect();
        (!values.is_empty()).then(|| values.join(", "))
    };
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    let path = parts.uri.path().to_owned();
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        authorization: header("authorization").map(|value| value.replace(KEY, "<redacted>")),
        x_api_key: header("x-api-key").map(|value| value.replace(KEY, "<redacted>")),
        accept: header("accept"),
        version: header("anthropic-version"),
        beta: header("anthropic-beta"),
        content_type: header("content-type"),
        json,
    });
    if path.ends_with("/events/stream") {
        let frame = "event: session.status_idle\ndata: {\"type\":\"session.status_idle\",\"id\":\"sevt_1\",\"stop_reason\":{\"type\":\"end_turn\"}}\n\n";
        return ([("content-type", "text/event-stream")], frame).into_response();
    }
    let id = |key: &str| ids[key].as_str().unwrap().to_owned();
    let body = match path.as_str() {
        "/v1/agents" => json!({"id": id("agent"), "type": "agent"}),
        "/v1/environments" => json!({"id": id("environment"), "type": "environment"}),
        "/v1/vaults" => json!({"id": id("vault"), "type": "vault"}),
        "/v1/sessions" => json!({"id": id("session"), "type": "session", "status": "idle"}),
        p if p.ends_with("/events") => json!({"data": []}),
        p if p.contains("/credentials") => json!({"id": id("credential"), "vault_id": id("vault")}),
        _ => json!({}),
    };
    axum::Json(body).into_response()
}

#[tokio::test]
async fn our_requests_equal_the_official_sdks() {
    let (expected, ids) = golden();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = recorder(ids, seen.clone()).await;
    let http_config = HttpConfig {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        stream_idle_timeout: Duration::from_secs(10),
        max_event_bytes: 4 * 1024 * 1024,
    };
    let policy = RetryPolicy {
        initial: Duration::from_millis(10),
        max_interval: Duration::from_millis(10),
        max_elapsed: Duration::from_secs(1),
        multiplier: 2.0,
        jitter: true,
        max_attempts: 1,
        budget: None,
    };
    let client = anthropic::Client::new(
        http_client(&http_config).unwrap(),
        &base.parse().unwrap(),
        &SecretString::from(KEY),
        policy,
        &http_config,
    );

    // The seed flow, with the values the recording used.
    let agent = client
        .create_agent(&AgentCreate {
            model: "claude-sonnet-4-6".to_owned(),
            name: "scalekit-agent".to_owned(),
            mcp_servers: vec![McpServer {
                kind: "url".to_owned(),
                name: "scalekit".to_owned(),
                url: "https://mcp.scalekit.example/mcp".to_owned(),
            }],
            system: Some("You are a helpful assistant with access to Scalekit tools.".to_owned()),
            tools: vec![
                Tool {
                    kind: "agent_toolset_20260401".to_owned(),
                    mcp_server_name: None,
                    default_config: None,
                },
                Tool {
                    kind: "mcp_toolset".to_owned(),
                    mcp_server_name: Some("scalekit".to_owned()),
                    default_config: Some(ToolConfig {
                        enabled: None,
                        permission_policy: Some(Typed::new("always_allow")),
                    }),
                },
            ],
        })
        .await
        .unwrap();
    let env = client
        .create_environment(&anthropic::EnvironmentCreate {
            name: "scalekit-env".to_owned(),
            config: json!({"type": "cloud", "networking": {"type": "unrestricted"}}),
        })
        .await
        .unwrap();
    let vault = client.create_vault("scalekit-vault", None).await.unwrap();
    let url = "https://mcp.scalekit.example/mcp";
    let one = SecretString::from("sk_live_token_one");
    let credential = client.create_credential(&vault.id, "scalekit-mcp", url, &one).await.unwrap();
    let two = SecretString::from("sk_live_token_two");
    client.update_credential_token(&vault.id, &credential.id, &two).await.unwrap();
    let session = client
        .create_session(&SessionCreate {
            agent: agent.id.clone(),
            environment_id: env.id.clone(),
            title: Some("scalekit-session".to_owned()),
            metadata: None,
            vault_ids: vec![vault.id.clone()],
        })
        .await
        .unwrap();
    client
        .send_events(&session.id, &[OutgoingEvent::user_text("List my connected accounts")])
        .await
        .unwrap();
    let mut stream = Box::pin(client.stream_events(&session.id).await.unwrap());
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.is_turn_end());

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), expected.len(), "{seen:#?}");
    for (ours, theirs) in seen.iter().zip(&expected) {
        assert_eq!(ours, theirs);
    }
}
