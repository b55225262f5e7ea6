//! Chaos, secrets and the ops listener. After real runs (and runs that failed, so that error
//! messages exist) by a real `agentcron worker` logging JSON at DEBUG, nothing anywhere holds
//! the Scalekit client secret, the Anthropic key, the ops token or any JWT (every token the
//! simulator mints is one): not the logs, not any Redis key or value, not the transcript files,
//! not `status`/`runs`/`run`/`transcript --json`. And `agentcron worker` refuses a
//! non-loopback ops bind without a token (exit 1 naming `ops.token`); with a token, requests
//! without it get 401.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use agentcron::queue::{NewRun, Queue};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::app::{API_KEY, CLIENT_SECRET, TestApp, dump_redis, spawn_app};
use crate::common::poll::{Text, poll_until};
use crate::common::procs::{child_env, kill9, set_env, spawn_worker, wait_for};

const OPS_TOKEN: &str = "SECRET-ops-token-5d1a";

fn is_terminal(state: Option<&str>) -> bool {
    matches!(state, Some("succeeded" | "dead" | "needs_auth" | "cancelled"))
}

async fn enqueue(app: &TestApp, run_id: &str, user: &str) {
    let run = NewRun {
        run_id: crate::common::run_id(run_id),
        ..NewRun::now(crate::common::user_id(user))
    };
    Queue::connect(&app.config.redis).await.unwrap().enqueue(&[run], "test").await.unwrap();
}

fn files_text(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push_str(&files_text(&path));
        } else {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn cli(env: &[(String, String)], args: &[&str]) -> String {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = crate::common::agentcron(args, &env, &crate::common::repo_root());
    let (stdout, stderr) = crate::common::text(&output);
    assert!(output.status.success() || args[0] == "transcript", "{args:?}: {stderr}");
    format!("{stdout}\n{stderr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_appears_in_logs_redis_transcripts_or_reports() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let transcripts = dir.path().join("transcripts");
    let mut env = child_env(&app, &transcripts);
    set_env(&mut env, "RUST_LOG", "debug");
    set_env(&mut env, "AGENTCRON__OPS__TOKEN", OPS_TOKEN);
    let log = dir.path().join("worker.log");
    let mut worker = spawn_worker(&env, &log);

    let ok = ["sec-1", "sec-2", "sec-3"];
    for (i, run_id) in ok.iter().enumerate() {
        enqueue(&app, run_id, &format!("secret{i}@example.com")).await;
    }
    for run_id in ok {
        wait_for(&app, run_id, &log, |(state, _)| state.as_deref() == Some("succeeded")).await;
    }
    // Failures at the token mint and at session creation leave error messages to scan.
    app.sim_client
        .add_fault(json!({"path": "/api/v1/mcp/configs/*/tokens", "status": 400, "count": 20}))
        .await;
    enqueue(&app, "sec-mint-fails", "fail1@example.com").await;
    wait_for(&app, "sec-mint-fails", &log, |(state, _)| is_terminal(state.as_deref())).await;
    app.sim_client.control(reqwest::Method::DELETE, "/faults", None).await;
    app.sim_client
        .add_fault(json!({"method": "POST", "path": "/v1/sessions", "status": 401, "count": 20}))
        .await;
    enqueue(&app, "sec-session-fails", "fail2@example.com").await;
    wait_for(&app, "sec-session-fails", &log, |(state, _)| is_terminal(state.as_deref())).await;
    kill9(&mut worker);

    let mut haystacks = vec![
        ("worker log", std::fs::read_to_string(&log).unwrap()),
        ("redis", dump_redis(&app.redis).await),
        ("transcript files", files_text(&transcripts)),
        ("status --json", cli(&env, &["status", "--json"])),
        ("runs --json", cli(&env, &["runs", "--json"])),
    ];
    for run_id in ["sec-1", "sec-2", "sec-3", "sec-mint-fails", "sec-session-fails"] {
        haystacks.push(("run --json", cli(&env, &["run", run_id, "--json"])));
        haystacks.push(("transcript --json", cli(&env, &["transcript", run_id, "--json"])));
    }
    let failed = app.record("sec-session-fails").await;
    let last_error = failed.get("last_error").unwrap_or_default().to_owned();
    assert!(!last_error.is_empty(), "the failed run has an error message: {failed:?}");
    haystacks.push(("last_error", last_error));
    let log_text = &haystacks[0].1;
    assert!(log_text.contains("\"level\":\"DEBUG\""), "DEBUG JSON logs were captured");
    assert!(haystacks[2].1.contains("sec-1"), "transcripts were written");

    for (name, text) in &haystacks {
        for needle in [CLIENT_SECRET, API_KEY, OPS_TOKEN, "eyJ"] {
            assert!(!text.contains(needle), "{needle} found in {name}:\n{text:.3000}");
        }
    }
}

/// Polls the child until it exits, failing after 30 s (and killing it then, so that no worker
/// is left behind).
async fn exit_code(child: &mut Child) -> Option<i32> {
    let child = KillIfPanicking(child);
    let status = poll_until("the worker to exit", Duration::from_secs(30), || {
        let exited = child.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    status.code()
}

/// Kills the child when dropped during a panic (a failed poll).
struct KillIfPanicking<'a>(&'a mut Child);

impl Drop for KillIfPanicking<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Best effort: a second panic here would abort the test binary.
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }
}

/// The ops port the worker logged for its `0.0.0.0` listener.
async fn logged_port(log: &Path) -> u16 {
    let pattern = regex::Regex::new(r"http://0\.0\.0\.0:(\d+)/").unwrap();
    poll_until("the worker to log its ops URL", Duration::from_secs(30), || async {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let port = pattern.captures(&text).map(|found| found[1].parse().unwrap());
        port.ok_or(Text(text))
    })
    .await
}

#[tokio::test]
async fn ops_on_a_public_address_needs_a_token_and_enforces_it() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = child_env(&app, dir.path());
    set_env(&mut env, "AGENTCRON__OPS__BIND", "0.0.0.0:9");
    set_env(&mut env, "AGENTCRON_LOG_FORMAT", "pretty");
    let refused_log = dir.path().join("refused.log");
    let mut refused = spawn_worker(&env, &refused_log);
    assert_eq!(exit_code(&mut refused).await, Some(1));
    let stderr = std::fs::read_to_string(&refused_log).unwrap();
    assert!(stderr.contains("ops.token"), "{stderr}");

    set_env(&mut env, "AGENTCRON__OPS__BIND", "0.0.0.0:0");
    set_env(&mut env, "AGENTCRON__OPS__TOKEN", OPS_TOKEN);
    let log = dir.path().join("guarded.log");
    let mut worker = spawn_worker(&env, &log);
    let base = format!("http://127.0.0.1:{}", logged_port(&log).await);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let get = |path: &str, token: Option<&str>| {
        let mut request = http.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(get("/healthz", None).await, StatusCode::OK, "liveness stays open");
    assert_eq!(get("/readyz", None).await, StatusCode::OK, "readiness stays open");
    for path in ["/api/status", "/api/runs", "/metrics"] {
        assert_eq!(get(path, None).await, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(get(path, Some("wrong-token")).await, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(get("/api/status", Some(OPS_TOKEN)).await, StatusCode::OK);
    kill9(&mut worker);
}
