//! The simulated Anthropic API over HTTP: auth styles, resources and their errors, the SSE
//! stream's framing and no-replay rule, the scripted agent's full flow, and each audit violation
//! provoked on purpose.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::sim::{SimClient, spawn_sim};

fn types(frames: &[(String, Value)]) -> Vec<&str> {
    frames.iter().map(|(event, _)| event.as_str()).collect()
}

fn violations(audit: &Value, kind: &str) -> usize {
    audit["violations"].as_array().unwrap().iter().filter(|v| v["kind"] == kind).count()
}

#[tokio::test]
async fn both_auth_styles_work_and_errors_have_the_real_shape() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let get = |auth: Option<(&'static str, String)>, beta: bool| {
        let mut request = client
            .http
            .get(client.url("/v1/agents?beta=true"))
            .header("anthropic-version", "2026-10-21");
        if let Some((name, value)) = auth {
            request = request.header(name, value);
        }
        if beta {
            request = request.header("anthropic-beta", "other-beta, managed-agents-2026-04-01");
        }
        request.send()
    };
    assert_eq!(
        get(Some(("x-api-key", "sim-anthropic-key".into())), true).await.unwrap().status(),
        200
    );
    assert_eq!(
        get(Some(("authorization", "Bearer sim-anthropic-key".into())), true)
            .await
            .unwrap()
            .status(),
        200
    );
    for (auth, beta, status) in [
        (Some(("x-api-key", "wrong".to_owned())), true, 401),
        (None, true, 401),
        (Some(("x-api-key", "sim-anthropic-key".to_owned())), false, 400),
    ] {
        let response = get(auth, beta).await.unwrap();
        assert_eq!(response.status(), status);
        let request_id = response.headers()["request-id"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["request_id"], request_id.as_str());
        let kind = if status == 401 { "authentication_error" } else { "invalid_request_error" };
        assert_eq!(body["error"]["type"], kind);
    }
    let (status, body) =
        client.anthropic(Method::GET, "/v1/agents/agent_does_not_exist", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        body["error"],
        json!({"type": "not_found_error", "message": "agent agent_does_not_exist not found"})
    );
}

#[tokio::test]
async fn resources_round_trip_with_validation_and_pagination() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user("alice@example.com").await;
    let (_, agent) =
        client.anthropic(Method::GET, &format!("/v1/agents/{}", setup.agent_id), None).await;
    assert_eq!(agent["model"], json!({"id": "claude-haiku-4-5-20251001", "speed": "standard"}));
    assert_eq!(
        agent["tools"][1]["default_config"],
        json!({"enabled": true, "permission_policy": {"type": "always_allow"}})
    );
    assert_eq!(agent["tools"][0]["default_config"]["permission_policy"]["type"], "always_allow");
    let (status, _) =
        client.anthropic(Method::POST, "/v1/agents", Some(json!({"name": "x"}))).await;
    assert_eq!(status, 400, "model is required");
    let unreferenced = json!({"name": "x", "model": "m", "mcp_servers": [{"type": "url", "name": "s", "url": "http://x"}]});
    assert_eq!(client.anthropic(Method::POST, "/v1/agents", Some(unreferenced)).await.0, 400);
    let (status, updated) = client
        .anthropic(
            Method::POST,
            &format!("/v1/agents/{}", setup.agent_id),
            Some(json!({"version": 1, "description": "d"})),
        )
        .await;
    assert_eq!((status.as_u16(), updated["version"].as_u64()), (200, Some(2)));
    let (status, _) = client
        .anthropic(
            Method::POST,
            &format!("/v1/agents/{}", setup.agent_id),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, 409);

    // Credentials never echo their secret; the auth type cannot change.
    let path = format!("/v1/vaults/{}/credentials/{}", setup.vault_id, setup.credential_id);
    let (_, credential) = client.anthropic(Method::GET, &path, None).await;
    assert_eq!(
        credential["auth"],
        json!({"type": "static_bearer", "mcp_server_url": setup.server_url})
    );
    let (status, _) = client
        .anthropic(
            Method::POST,
            &path,
            Some(json!({"auth": {"type": "mcp_oauth", "access_token": "t"}})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = client
        .anthropic(
            Method::POST,
            &path,
            Some(json!({"auth": {"type": "static_bearer", "token": "t2"}})),
        )
        .await;
    assert_eq!(status, 200);
    let oauth = json!({"auth": {"type": "mcp_oauth", "mcp_server_url": "https://x", "access_token": "secret",
        "refresh": {"client_id": "c", "refresh_token": "r", "token_endpoint": "https://t", "token_endpoint_auth": {"type": "client_secret_post", "client_secret": "s"}}}});
    let (status, created) = client
        .anthropic(Method::POST, &format!("/v1/vaults/{}/credentials", setup.vault_id), Some(oauth))
        .await;
    assert_eq!(status, 200);
    assert!(
        !created.to_string().contains("secret\"")
            && created["auth"]["refresh"]["token_endpoint_auth"]
                == json!({"type": "client_secret_post"}),
        "{created}"
    );
    let (status, _) = client.anthropic(Method::GET, "/v1/vaults/vlt_nope/credentials", None).await;
    assert_eq!(status, 404);

    // Cursor pages: the next request repeats the query plus page=<next_page>.
    for _ in 0..2 {
        client.anthropic(Method::POST, "/v1/vaults", Some(json!({"display_name": "more"}))).await;
    }
    let (_, first) = client.anthropic(Method::GET, "/v1/vaults?limit=2", None).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    let next = first["next_page"].as_str().unwrap();
    let (_, second) =
        client.anthropic(Method::GET, &format!("/v1/vaults?limit=2&page={next}"), None).await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert!(second["next_page"].is_null());
    let (status, body) = client
        .anthropic(Method::DELETE, &format!("/v1/environments/{}", setup.environment_id), None)
        .await;
    assert_eq!((status.as_u16(), &body["type"]), (200, &json!("environment_deleted")));
}

/// The simulator refuses what the vendors refuse for a user's names, in the vendors' error
/// shapes: a vault or credential `display_name` over 255 characters (Anthropic), an identifier
/// over 100 characters in an authorization link (Scalekit).
#[tokio::test]
async fn names_over_the_vendors_limits_are_refused() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user("alice@example.com").await;
    let vault = |name: String| json!({"display_name": name});
    let (status, _) =
        client.anthropic(Method::POST, "/v1/vaults", Some(vault("é".repeat(255)))).await;
    assert_eq!(status, 200, "255 characters, whatever their bytes");
    let (status, body) =
        client.anthropic(Method::POST, "/v1/vaults", Some(vault("v".repeat(256)))).await;
    assert_eq!((status.as_u16(), &body["error"]["type"]), (400, &json!("invalid_request_error")));
    assert!(body["error"]["message"].as_str().unwrap().contains("display_name"), "{body}");
    let credentials = format!("/v1/vaults/{}/credentials", setup.vault_id);
    let auth = json!({"type": "static_bearer", "mcp_server_url": "https://other.example/mcp", "token": "t"});
    let long = json!({"auth": auth, "display_name": "c".repeat(256)});
    let (status, body) = client.anthropic(Method::POST, &credentials, Some(long)).await;
    assert_eq!((status.as_u16(), &body["error"]["type"]), (400, &json!("invalid_request_error")));
    let path = format!("{credentials}/{}", setup.credential_id);
    let rename = json!({"display_name": "c".repeat(256)});
    assert_eq!(client.anthropic(Method::POST, &path, Some(rename)).await.0, 400);

    let sk = client.scalekit_token().await;
    let link = |identifier: String| json!({"connector": "gmail", "identifier": identifier});
    let magic = "/api/v1/connected_accounts/magic_link";
    let (status, body) =
        client.scalekit(Method::POST, magic, &sk, Some(link("u".repeat(101)))).await;
    assert_eq!((status.as_u16(), body["code"].as_i64()), (400, Some(3)), "{body}");
    let (status, body) =
        client.scalekit(Method::POST, magic, &sk, Some(link("u".repeat(100)))).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_scripted_agent_runs_the_guide_and_the_stream_does_not_replay() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user("alice@example.com").await;
    let session = client.create_session(&setup, "alice@example.com").await;
    let frames = client.run_turn(&session).await;
    assert_eq!(
        types(&frames),
        [
            "user.message",
            "session.status_running",
            "span.model_request_start",
            "agent.mcp_tool_use",
            "agent.mcp_tool_result",
            "agent.mcp_tool_use",
            "agent.mcp_tool_result",
            "agent.message",
            "span.model_request_end",
            "session.status_idle"
        ]
    );
    assert!(frames.iter().all(|(_, data)| data["id"].as_str().unwrap().starts_with("sevt_011")
        && data["processed_at"].is_string()));
    assert_eq!(frames[3].1["name"], "gmail_fetch_mails");
    assert_eq!(frames[5].1["name"], "googlecalendar_create_event");
    assert_eq!(frames[6].1["is_error"], false);
    assert_eq!(frames[9].1["stop_reason"], json!({"type": "end_turn"}));
    let text = frames[7].1["content"][0]["text"].as_str().unwrap();
    let calendar = client.calendar("alice@example.com").await;
    assert_eq!(calendar.len(), 1);
    let title = calendar[0]["summary"].as_str().unwrap();
    assert!(title.starts_with("Action Required: ") && text.contains(title), "{text}");
    assert!(text.contains(calendar[0]["description"].as_str().unwrap()));

    // History: the list endpoint has every event; a stream opened now gets none of them.
    let (_, history) =
        client.anthropic(Method::GET, &format!("/v1/sessions/{session}/events"), None).await;
    assert_eq!(history["data"].as_array().unwrap().len(), frames.len());
    let (_, filtered) = client
        .anthropic(
            Method::GET,
            &format!("/v1/sessions/{session}/events?types%5B%5D=agent.message&limit=10"),
            None,
        )
        .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
    let (_, retrieved) =
        client.anthropic(Method::GET, &format!("/v1/sessions/{session}"), None).await;
    assert_eq!(retrieved["status"], "idle");
    let mut late = client.open_stream(&session).await;
    client
        .anthropic(
            Method::POST,
            &format!("/v1/sessions/{session}/events"),
            Some(json!({"events": [{"type": "user.interrupt"}]})),
        )
        .await;
    let (event, _) = late.next_frame().await.unwrap();
    assert_eq!(event, "user.interrupt", "the late stream starts after the history");
    let audit = client.audit().await;
    let entry = &audit["sessions"][0];
    assert_eq!(
        (entry["user"].as_str(), entry["user_messages"].as_u64()),
        (Some("alice@example.com"), Some(1))
    );
    assert_eq!(entry["token_subjects"], json!(["alice@example.com"]));
    assert_eq!(entry["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(audit["violations"], json!([]));
    assert_eq!(audit["requests"]["POST /v1/sessions/{session_id}/events"], 2);
}

#[tokio::test]
async fn audit_detects_each_violation_provoked_on_purpose() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user("alice@example.com").await;

    // A token of alice in a session of mallory.
    let session = client.create_session(&setup, "mallory@example.com").await;
    let frames = client.run_turn(&session).await;
    assert_eq!(frames[4].1["is_error"], false, "the MCP server serves the token's user");
    assert_eq!(violations(&client.audit().await, "token_user_mismatch"), 2);
    assert!(client.calendar("mallory@example.com").await.is_empty());

    // Two user.messages in one session.
    client.send_message(&session, "again").await;
    assert_eq!(violations(&client.audit().await, "multiple_user_messages"), 1);

    // An unknown vault: the real 404 and a violation.
    let body = json!({"agent": setup.agent_id, "environment_id": setup.environment_id, "vault_ids": ["vlt_unknown"]});
    let (status, error) = client.anthropic(Method::POST, "/v1/sessions", Some(body)).await;
    assert_eq!((status.as_u16(), &error["error"]["type"]), (404, &json!("not_found_error")));
    assert_eq!(violations(&client.audit().await, "unknown_vault"), 1);

    // An expired token: the tool call fails like an MCP server's 401 and the agent says so.
    let (_, minted) = client.control(Method::POST, "/tokens", Some(json!({"config_id": setup.config_id, "identifier": "alice@example.com", "expires_in": -5}))).await;
    let path = format!("/v1/vaults/{}/credentials/{}", setup.vault_id, setup.credential_id);
    client
        .anthropic(
            Method::POST,
            &path,
            Some(json!({"auth": {"type": "static_bearer", "token": minted["token"]}})),
        )
        .await;
    let session = client.create_session(&setup, "alice@example.com").await;
    let frames = client.run_turn(&session).await;
    assert_eq!(frames[4].1["is_error"], true);
    assert!(frames[4].1["content"][0]["text"].as_str().unwrap().contains("expired"));
    assert_eq!(types(&frames).iter().filter(|t| **t == "agent.mcp_tool_use").count(), 1);
    assert!(
        frames[5].1["content"][0]["text"].as_str().unwrap().contains("couldn't read your email")
    );
    assert_eq!(violations(&client.audit().await, "expired_token"), 1);

    // A forged token (signature broken) and a missing credential fail without a violation.
    let forged = minted["token"].as_str().unwrap().replace('.', ".x");
    client
        .anthropic(
            Method::POST,
            &path,
            Some(json!({"auth": {"type": "static_bearer", "token": forged}})),
        )
        .await;
    let session = client.create_session(&setup, "alice@example.com").await;
    let frames = client.run_turn(&session).await;
    assert!(frames[4].1["content"][0]["text"].as_str().unwrap().contains("invalid_token"));
    client.anthropic(Method::DELETE, &path, None).await;
    let session = client.create_session(&setup, "alice@example.com").await;
    let frames = client.run_turn(&session).await;
    assert!(frames[4].1["content"][0]["text"].as_str().unwrap().contains("no bearer token"));
    assert_eq!(violations(&client.audit().await, "expired_token"), 1);
}

#[tokio::test]
async fn inactive_connection_and_empty_inbox_are_reported_by_the_agent() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user("alice@example.com").await;
    client.set_connection("alice@example.com", "gmail", Some("EXPIRED")).await;
    let session = client.create_session(&setup, "alice@example.com").await;
    let frames = client.run_turn(&session).await;
    assert!(frames[4].1["content"][0]["text"].as_str().unwrap().contains("EXPIRED"));
    client.set_connection("alice@example.com", "gmail", Some("ACTIVE")).await;
    let (status, _) = client.control(Method::PUT, "/users/alice@example.com/mailbox", Some(json!({"messages": [
        {"id": "m1", "from": "Ann <ann@x.example>", "subject": "Old news", "body": "Already read this one.", "unread": false, "received_at": "2026-01-01T10:00:00Z"}]}))).await;
    assert_eq!(status, 200);
    let session = client.create_session(&setup, "alice@example.com").await;
    let frames = client.run_turn(&session).await;
    assert!(frames[5].1["content"][0]["text"].as_str().unwrap().contains("no unread email"));
    assert!(client.calendar("alice@example.com").await.is_empty());
}

/// Asserts the vendor's 400 `invalid_request_error` envelope, with a `request-id` header equal
/// to the body's, and returns its message.
async fn invalid_request(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 400);
    let request_id = response.headers()["request-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["type"].as_str(), body["request_id"].as_str()),
        (Some("error"), Some(&*request_id))
    );
    assert!(request_id.starts_with("req_"), "{request_id}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_request_without_anthropic_version_is_refused() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user("alice@example.com").await;
    let session_id = client.create_session(&setup, "alice@example.com").await;
    let calls = [
        (Method::GET, "/v1/agents".to_owned(), None),
        (Method::POST, "/v1/vaults".to_owned(), Some(json!({"display_name": "v"}))),
        (Method::GET, format!("/v1/sessions/{session_id}/events/stream"), None),
    ];
    for (method, path, body) in calls {
        let request = |version: Option<&str>| {
            let mut request = client
                .http
                .request(method.clone(), client.url(&path))
                .bearer_auth(&client.api_key)
                .header("anthropic-beta", "managed-agents-2026-04-01");
            if let Some(version) = version {
                request = request.header("anthropic-version", version);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            request.send()
        };
        for version in [None, Some(""), Some("  ")] {
            let message = invalid_request(request(version).await.unwrap()).await;
            assert!(message.contains("anthropic-version"), "{method} {path}: {message}");
        }
        // Any value is accepted, as the real API accepts both the docs' and the SDK's.
        assert_eq!(request(Some("2023-06-01")).await.unwrap().status(), 200, "{method} {path}");
    }
}

#[tokio::test]
async fn a_request_without_the_managed_agents_beta_is_refused() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    for beta in [None, Some("other-beta"), Some("managed-agents-2025-01-01")] {
        let mut request = client
            .http
            .post(client.url("/v1/vaults"))
            .bearer_auth(&client.api_key)
            .header("anthropic-version", "2026-10-21")
            .json(&json!({"display_name": "v"}));
        if let Some(beta) = beta {
            request = request.header("anthropic-beta", beta);
        }
        let message = invalid_request(request.send().await.unwrap()).await;
        assert!(message.contains("managed-agents-2026-04-01"), "{beta:?}: {message}");
    }
    let (_, vaults) = client.anthropic(Method::GET, "/v1/vaults", None).await;
    assert_eq!(vaults["data"], json!([]), "a refused create created nothing");
}

#[tokio::test]
async fn a_body_with_an_unknown_field_is_refused_naming_it() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user("alice@example.com").await;
    let session_id = client.create_session(&setup, "alice@example.com").await;
    let agent = format!("/v1/agents/{}", setup.agent_id);
    let credentials = format!("/v1/vaults/{}/credentials", setup.vault_id);
    let credential = format!("{credentials}/{}", setup.credential_id);
    let events = format!("/v1/sessions/{session_id}/events");
    let server = json!([{"type": "url", "name": "s", "url": setup.server_url}]);
    let text = json!([{"type": "text", "text": "hi"}]);
    let cases = [
        ("/v1/agents", json!({"name": "a", "model": "m", "temperature": 1}), "temperature"),
        (
            "/v1/agents",
            json!({"name": "a", "model": "m", "mcp_servers": server,
                   "tools": [{"type": "mcp_toolset", "mcp_server_name": "s", "default_config": {"allow": true}}]}),
            "tools.0.default_config.allow",
        ),
        (&agent, json!({"version": 1, "system": "s", "owner": "me"}), "owner"),
        (
            "/v1/environments",
            json!({"name": "e", "config": {"type": "cloud", "gpu": true}}),
            "config.gpu",
        ),
        ("/v1/vaults", json!({"display_name": "v", "workspace_id": "wrkspc_1"}), "workspace_id"),
        (
            &credentials,
            json!({"auth": {"type": "static_bearer", "mcp_server_url": setup.server_url, "token": "t", "expires_in": 60}}),
            "auth.expires_in",
        ),
        (
            &credential,
            json!({"auth": {"type": "static_bearer", "token": "t"}, "note": "n"}),
            "note",
        ),
        (
            "/v1/sessions",
            json!({"agent": setup.agent_id, "environment_id": setup.environment_id, "user": "alice"}),
            "user",
        ),
        (
            "/v1/sessions",
            json!({"agent": {"type": "agent", "id": setup.agent_id, "name": "x"}, "environment_id": setup.environment_id}),
            "agent.name",
        ),
        (
            &events,
            json!({"events": [{"type": "user.message", "content": text, "role": "user"}]}),
            "events.0.role",
        ),
        (
            &events,
            json!({"events": [{"type": "user.message", "content": text}], "stream": true}),
            "stream",
        ),
    ];
    for (path, body, field) in cases {
        let response = client
            .http
            .post(client.url(path))
            .bearer_auth(&client.api_key)
            .header("anthropic-version", "2026-10-21")
            .header("anthropic-beta", "managed-agents-2026-04-01")
            .json(&body)
            .send()
            .await
            .unwrap();
        let message = invalid_request(response).await;
        assert_eq!(message, format!("{field}: Extra inputs are not permitted"), "{path} {body}");
    }
    // Nothing refused took effect: no second agent version, no message reached the session.
    let (_, latest) = client.anthropic(Method::GET, &agent, None).await;
    assert_eq!(latest["version"], 1);
    let (_, history) = client.anthropic(Method::GET, &events, None).await;
    assert_eq!(history["data"], json!([]));
    assert_eq!(client.audit().await["violations"], json!([]));
}
