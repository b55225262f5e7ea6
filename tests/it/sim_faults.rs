//! Every fault kind of the simulator takes effect: status with count and rate, Retry-After,
//! latency, hang, a lost response, stream cut and event delay.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::sim::{SimClient, spawn_sim};

#[tokio::test]
async fn status_faults_use_each_api_shape_and_count_down() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    client.add_fault(json!({"method": "GET", "path": "/v1/agents", "status": 429, "count": 2, "retry_after": 1.5})).await;
    for _ in 0..2 {
        let response = client.anthropic_request(Method::GET, "/v1/agents").send().await.unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(response.headers()["retry-after-ms"], "1500");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_error");
    }
    assert_eq!(
        client.anthropic(Method::GET, "/v1/agents", None).await.0,
        200,
        "the count is used up"
    );

    client.add_fault(json!({"path": "/api/v1/mcp/*", "status": 503, "count": 1})).await;
    let sk = client.scalekit_token().await;
    let (status, body) = client.scalekit(Method::GET, "/api/v1/mcp/configs", &sk, None).await;
    assert_eq!((status.as_u16(), body["code"].as_i64()), (503, Some(14)));
    assert_eq!(client.scalekit(Method::GET, "/api/v1/mcp/configs", &sk, None).await.0, 200);
    let (status, _) =
        client.control(Method::POST, "/faults", Some(json!({"path": "/v1", "status": 200}))).await;
    assert_eq!(status, 400, "a fault must be an error");
}

#[tokio::test]
async fn rate_faults_hit_some_requests_and_delete_clears_them() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    client.add_fault(json!({"path": "/v1/vaults", "status": 500, "rate": 0.5})).await;
    let mut failures = 0;
    for _ in 0..60 {
        if client.anthropic(Method::GET, "/v1/vaults", None).await.0 == 500 {
            failures += 1;
        }
    }
    assert!((10..=50).contains(&failures), "{failures} of 60 failed at rate 0.5");
    let (_, listed) = client.control(Method::GET, "/faults", None).await;
    assert_eq!(listed["faults"][0]["hits"], failures);
    assert_eq!(client.control(Method::DELETE, "/faults", None).await.0, 204);
    assert_eq!(client.anthropic(Method::GET, "/v1/vaults", None).await.0, 200);
}

#[tokio::test]
async fn latency_and_hang_delay_or_withhold_the_answer() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let environments = |timeout: Duration| {
        client.anthropic_request(Method::GET, "/v1/environments").timeout(timeout).send()
    };
    // A short latency delays the answer but still gives it.
    client.add_fault(json!({"path": "/v1/environments", "latency_ms": 300, "count": 1})).await;
    let delayed = environments(Duration::from_secs(30)).await.unwrap();
    assert_eq!(delayed.status(), 200, "a latency fault answers normally in the end");
    // A latency far beyond the client's timeout: that one answer is cut by the timeout, and
    // the next request (the count is used up) is answered.
    client.add_fault(json!({"path": "/v1/environments", "latency_ms": 600_000, "count": 1})).await;
    let cut = environments(Duration::from_millis(300)).await.unwrap_err();
    assert!(cut.is_timeout(), "the delayed answer was cut by the client timeout: {cut:?}");
    assert_eq!(environments(Duration::from_secs(30)).await.unwrap().status(), 200);

    client.add_fault(json!({"path": "/oauth/token", "hang": true, "count": 1})).await;
    let result = client
        .http
        .post(client.url("/oauth/token"))
        .timeout(Duration::from_millis(300))
        .body("grant_type=client_credentials")
        .send()
        .await;
    let hung = result.unwrap_err();
    assert!(hung.is_timeout(), "a hung request ends only by the client's timeout: {hung:?}");
    // The hang was used up: the next token request is answered (`scalekit_token` asserts 200).
    assert!(!client.scalekit_token().await.is_empty());

    let (_, listed) = client.control(Method::GET, "/faults", None).await;
    assert_eq!(listed["faults"], json!([]), "every counted fault was used up");
    let requests = &client.audit().await["requests"];
    assert_eq!(requests["GET /v1/environments"], 3, "{requests}");
    assert_eq!(requests["POST /oauth/token"], 2, "the hung request and the answered one");
}

#[tokio::test]
async fn stream_cut_and_event_delay_shape_the_stream() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user("alice@example.com").await;
    let session = client.create_session(&setup, "alice@example.com").await;
    client
        .add_fault(
            json!({"path": "/v1/sessions/*/events/stream", "stream_cut_after": 3, "count": 1}),
        )
        .await;
    let mut stream = client.open_stream(&session).await;
    client.send_message(&session, "go").await;
    let mut n_frames = 0;
    while stream.next_frame().await.is_some() {
        n_frames += 1;
    }
    assert_eq!(n_frames, 3, "the stream closes after 3 events");

    // An event delay holds back every agent event after the first one: with a delay far longer
    // than the test, the turn stops after its first event and the session stays running.
    let held = client.create_session(&setup, "alice@example.com").await;
    client
        .add_fault(
            json!({"method": "POST", "path": "/v1/sessions/", "event_delay_ms": 600_000, "count": 1}),
        )
        .await;
    let mut stream = client.open_stream(&held).await;
    let (status, body) = client.send_message(&held, "Triage my inbox.").await;
    assert_eq!(status, 200, "{body}");
    let first = stream.next_frame().await.unwrap();
    let second = stream.next_frame().await.unwrap();
    assert_eq!((first.0.as_str(), second.0.as_str()), ("user.message", "session.status_running"));
    let (_, history) =
        client.anthropic(Method::GET, &format!("/v1/sessions/{held}/events"), None).await;
    let types: Vec<&Value> =
        history["data"].as_array().unwrap().iter().map(|e| &e["type"]).collect();
    assert_eq!(types, ["user.message", "session.status_running"], "nothing after the delay");
    let (_, retrieved) = client.anthropic(Method::GET, &format!("/v1/sessions/{held}"), None).await;
    assert_eq!(retrieved["status"], "running");

    // A short delay slows the turn but loses nothing: all 10 frames, up to idle.
    let session = client.create_session(&setup, "alice@example.com").await;
    client
        .add_fault(
            json!({"method": "POST", "path": "/v1/sessions/", "event_delay_ms": 40, "count": 1}),
        )
        .await;
    let frames = client.run_turn(&session).await;
    assert_eq!(frames.len(), 10);
    let (_, listed) = client.control(Method::GET, "/faults", None).await;
    assert_eq!(listed["faults"], json!([]), "every counted fault was used up");
}

/// `lose_response`: the request is carried out, then the connection closes with no answer.
#[tokio::test]
async fn a_lost_response_is_carried_out_but_never_answered() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    client
        .add_fault(
            json!({"method": "POST", "path": "/v1/vaults", "lose_response": true, "count": 1}),
        )
        .await;
    let body = json!({"display_name": "lost", "metadata": {"run_id": "r-lost"}});
    let lost = client.anthropic_request(Method::POST, "/v1/vaults").json(&body).send().await;
    let error = lost.expect_err("no answer to a lost response");
    assert!(!error.is_status() && !error.is_timeout(), "the connection closed: {error:?}");
    // It was carried out all the same, and the fault was used up.
    let (status, vaults) = client.anthropic(Method::GET, "/v1/vaults", None).await;
    assert_eq!(status, 200, "{vaults}");
    let names: Vec<&str> = vaults["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["display_name"].as_str())
        .collect();
    assert_eq!(names, ["lost"], "{vaults}");
    let (status, _) = client.anthropic(Method::POST, "/v1/vaults", Some(body)).await;
    assert_eq!(status, 200, "the next request is answered");
    let (_, faults) = client.control(Method::GET, "/faults", None).await;
    assert_eq!(faults["faults"], json!([]), "the fault was used up");
}

/// `GET /_sim/` lists the control API, and every route it lists without a parameter answers.
#[tokio::test]
async fn the_control_api_lists_its_routes() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let (status, body) = client.control(Method::GET, "/", None).await;
    assert_eq!(status, 200, "{body}");
    let routes = body["routes"].as_array().unwrap();
    let listed: Vec<String> = routes
        .iter()
        .map(|r| format!("{} {}", r["method"].as_str().unwrap(), r["path"].as_str().unwrap()))
        .collect();
    for expected in ["GET /_sim/audit", "POST /_sim/faults", "PUT /_sim/users/{identifier}/mailbox"]
    {
        assert!(listed.iter().any(|l| l == expected), "{expected} in {listed:?}");
    }
    for route in routes.iter().filter(|r| r["method"] == "GET") {
        let path = route["path"].as_str().unwrap();
        if path.contains('{') {
            continue;
        }
        let (status, _) = client.control(Method::GET, path.trim_start_matches("/_sim"), None).await;
        assert_eq!(status, 200, "{path}");
    }
}
