//! `agentcron setup` and `agentcron authorize` as an operator runs them: the real binary
//! against the simulator and a per-test Redis prefix.

use serde_json::Value;

use crate::common::sim::{SimClient, SimHandle, spawn_sim};
use crate::common::{TestRedis, agentcron, repo_root, text};

pub(crate) fn env<'a>(sim: &'a SimHandle, redis: &'a TestRedis) -> Vec<(&'a str, &'a str)> {
    vec![
        ("SCALEKIT_ENV_URL", sim.base_url()),
        ("ANTHROPIC_BASE_URL", sim.base_url()),
        ("SCALEKIT_CLIENT_ID", "sim-client-id"),
        ("SCALEKIT_CLIENT_SECRET", "sim-client-secret"),
        ("ANTHROPIC_API_KEY", "sim-anthropic-key"),
        ("REDIS_URL", redis.url.as_str()),
        ("AGENTCRON__REDIS__PREFIX", redis.prefix.as_str()),
    ]
}

/// Runs the binary off the async runtime's threads.
pub(crate) async fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let env: Vec<(String, String)> =
        env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        agentcron(&args, &env, &repo_root())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn setup_twice_creates_each_thing_once() {
    let sim = spawn_sim().await;
    let redis = TestRedis::new().await;
    let env = env(&sim, &redis);
    let first = run(&["setup", "--json"], &env).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first).1);
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(
        first["created"],
        serde_json::json!({"mcp_config": true, "agent": true, "environment": true, "changes": []})
    );
    let second = run(&["setup", "--json"], &env).await;
    let second: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(
        second["created"],
        serde_json::json!({"mcp_config": false, "agent": false, "environment": false, "changes": []})
    );
    assert_eq!(first["setup"], second["setup"]);

    let audit = SimClient::new(&sim).audit().await;
    let requests = &audit["requests"];
    assert_eq!(requests["POST /api/v1/mcp/configs"], 1, "{requests}");
    assert_eq!(requests["POST /v1/agents"], 1, "{requests}");
    assert_eq!(requests["POST /v1/environments"], 1, "{requests}");

    let table = run(&["setup"], &env).await;
    let (stdout, _) = text(&table);
    assert!(stdout.contains("agent") && stdout.contains("(found)"), "{stdout}");
}

/// After a change of model, system prompt, permission policy (tools) or MCP server, `setup
/// --check` exits 3 naming it and changes nothing; `setup` makes the agent a new version that
/// matches, after which the check passes. Before, `setup` reused the old agent as it was.
#[tokio::test]
async fn setup_check_names_each_change_and_setup_updates_the_agent() {
    let sim = spawn_sim().await;
    let redis = TestRedis::new().await;
    let base = env(&sim, &redis);
    let first = run(&["setup", "--json"], &base).await;
    let agent_id: Value = serde_json::from_slice(&first.stdout).unwrap();
    let agent_id = agent_id["setup"]["agent_id"].as_str().unwrap().to_owned();
    let check = run(&["setup", "--check"], &base).await;
    assert_eq!(check.status.code(), Some(0), "{}", text(&check).0);

    let changes = [
        (
            "AGENTCRON__ANTHROPIC__AGENT__MODEL",
            "claude-opus-4-6",
            "agent model: claude-haiku-4-5-20251001 → claude-opus-4-6",
        ),
        ("AGENTCRON__ANTHROPIC__AGENT__SYSTEM", "Be brief.", "agent system: "),
        ("AGENTCRON__ANTHROPIC__AGENT__PERMISSION_POLICY", "always_ask", "agent tools: "),
    ];
    let mut version = 1;
    for (var, value, named) in changes {
        let mut changed = base.clone();
        changed.push((var, value));
        let check = run(&["setup", "--check"], &changed).await;
        let (stdout, stderr) = text(&check);
        assert_eq!(check.status.code(), Some(3), "{var}: {stdout}{stderr}");
        assert!(stdout.contains(named), "{var}: {stdout}");
        let agent = SimClient::new(&sim)
            .anthropic(reqwest::Method::GET, &format!("/v1/agents/{agent_id}"), None)
            .await
            .1;
        assert_eq!(agent["version"], version, "--check changed nothing");

        let applied = run(&["setup"], &changed).await;
        let (stdout, _) = text(&applied);
        assert!(stdout.contains("(updated)") && stdout.contains(named), "{var}: {stdout}");
        version += 1;
        let agent = SimClient::new(&sim)
            .anthropic(reqwest::Method::GET, &format!("/v1/agents/{agent_id}"), None)
            .await
            .1;
        assert_eq!(agent["version"], version, "{var}: a new version");
        let check = run(&["setup", "--check"], &changed).await;
        assert_eq!(check.status.code(), Some(0), "{var}: {}", text(&check).0);
        // Back to the shipped definition for the next change.
        let restored = run(&["setup"], &base).await;
        assert_eq!(restored.status.code(), Some(0));
        version += 1;
    }

    // Another MCP config (another server URL): the check reports it missing, setup creates
    // it and points the agent at its URL.
    let mut moved = base.clone();
    moved.push(("AGENTCRON__SCALEKIT__MCP_CONFIG_NAME", "another-config"));
    let check = run(&["setup", "--check", "--json"], &moved).await;
    assert_eq!(check.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report["changes"][0]["object"], "mcp config");
    assert_eq!(report["changes"][0]["field"], "exists");
    let applied = run(&["setup"], &moved).await;
    assert!(text(&applied).0.contains("agent mcp_servers: "), "{}", text(&applied).0);
}

#[tokio::test]
async fn setup_without_credentials_names_them() {
    let sim = spawn_sim().await;
    let redis = TestRedis::new().await;
    let env: Vec<_> =
        env(&sim, &redis).into_iter().filter(|(k, _)| *k != "ANTHROPIC_API_KEY").collect();
    let output = run(&["setup"], &env).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).1.contains("ANTHROPIC_API_KEY"), "{}", text(&output).1);
}

#[tokio::test]
async fn authorize_prints_a_link_for_an_expired_connection() {
    let sim = spawn_sim().await;
    let redis = TestRedis::new().await;
    let env = env(&sim, &redis);
    assert_eq!(run(&["setup"], &env).await.status.code(), Some(0));
    SimClient::new(&sim).set_connection("kim@example.com", "googlecalendar", Some("EXPIRED")).await;

    let output = run(&["authorize", "kim@example.com"], &env).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("✓ gmail — ACTIVE"), "{stdout}");
    assert!(stdout.contains("✗ googlecalendar — EXPIRED; needs auth: http"), "{stdout}");

    let output = run(&["authorize", "kim@example.com", "--json"], &env).await;
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let connections = report["connections"].as_array().unwrap();
    let calendar = connections.iter().find(|c| c["connection"] == "googlecalendar").unwrap();
    assert_eq!(calendar["status"], "EXPIRED");
    assert!(calendar["auth_link"].as_str().unwrap().starts_with("http"));

    let output = run(&["authorize", "kim@example.com", "--wait", "--timeout", "1s"], &env).await;
    assert_eq!(
        output.status.code(),
        Some(4),
        "--wait times out while the connection stays expired"
    );

    // Following the link activates the account; --wait then succeeds.
    let link = calendar["auth_link"].as_str().unwrap().to_owned();
    let control = SimClient::new(&sim);
    control.http.get(&link).send().await.unwrap();
    let output = run(&["authorize", "kim@example.com", "--wait", "--timeout", "10s"], &env).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output).0);
}
