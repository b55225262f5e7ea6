//! A setup object gone at the vendor (the environment deleted, the agent archived) while
//! workers run: the first run that meets it reports it once (the `<prefix>:setup:missing`
//! mark, which makes `/readyz` not ready), and the runs wait, queued, without burning their
//! attempts, until `setup` stores the ids again; with `setup.auto` the worker recreates it
//! itself. Before, every new run died at once, permanently, and `/readyz` said ready.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::common::app::{TestApp, spawn_app};
use crate::common::poll::poll_until;
use crate::common::procs::{child_env, set_env, spawn_worker, wait_for};

async fn mark(app: &TestApp) -> Option<Value> {
    let mut conn = app.conn.clone();
    let mark: Option<String> =
        redis::cmd("GET").arg(app.ctx.keys.setup_missing()).query_async(&mut conn).await.unwrap();
    mark.map(|mark| serde_json::from_str(&mark).unwrap())
}

async fn anthropic(app: &TestApp, method: Method, path: &str) {
    let (status, body) = app.sim_client.anthropic(method, path, None).await;
    assert!(status.is_success(), "{path}: {status} {body}");
}

const RUNS: [(&str, &str); 3] = [
    ("r-gone-1", "gone1@example.com"),
    ("r-gone-2", "gone2@example.com"),
    ("r-gone-3", "gone3@example.com"),
];

#[tokio::test]
async fn a_deleted_environment_defers_runs_until_setup_runs_again() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let mut worker = spawn_worker(&child_env(&app, dir.path()), &log);
    let environment = app.ctx.setup.get().environment_id.clone();
    anthropic(&app, Method::DELETE, &format!("/v1/environments/{environment}")).await;
    app.enqueue(&RUNS).await;

    let reported =
        poll_until("the missing environment reported", Duration::from_secs(20), || async {
            mark(&app).await
        })
        .await;
    assert_eq!(reported["object"], "environment", "{reported}");
    let mut conn = app.conn.clone();
    let status =
        agentcron::ops::report::status(&mut conn, &app.ctx.keys, &app.config).await.unwrap();
    assert_eq!(status.setup_missing.unwrap()["object"], "environment", "the status screen says so");
    // Each run is deferred again and again (its next attempt moves), never failed.
    let seen: Mutex<HashMap<&str, Vec<String>>> = Mutex::default();
    poll_until("every run deferred twice", Duration::from_secs(30), || {
        let (seen, app) = (&seen, &app);
        async move {
            for (run_id, _) in RUNS {
                let record = app.record(run_id).await;
                let state = record.get("state");
                // Picked up now and then to look whether the setup is back, never failed.
                assert!(matches!(state, Some("queued" | "running")), "{run_id}: {record:?}");
                if state == Some("running") {
                    continue;
                }
                assert_eq!(
                    record.get("attempts").unwrap_or("0"),
                    "0",
                    "{run_id}: no attempt spent"
                );
                let next = record.get("next_attempt_at_ms").unwrap_or_default().to_owned();
                let mut seen = seen.lock().unwrap();
                let times = seen.entry(run_id).or_default();
                if times.last() != Some(&next) {
                    times.push(next);
                }
            }
            seen.lock().unwrap().values().all(|times| times.len() >= 3)
        }
    })
    .await;
    let reports = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        reports.matches("A setup object is missing at the vendor").count(),
        1,
        "reported once"
    );
    let creates = app.audit().await["requests"]["POST /v1/sessions"].as_u64().unwrap();
    assert!(creates <= 3, "runs in flight met it once each; none tried again: {creates}");

    // The operator runs setup: a new environment, the mark cleared, the runs go on.
    let (scalekit, anthropic_client, _) = agentcron::run::clients(&app.config).unwrap();
    let mut conn = app.conn.clone();
    let (ids, created) = agentcron::setup::ensure(
        &app.config,
        &scalekit,
        &anthropic_client,
        &mut conn,
        &app.ctx.keys,
    )
    .await
    .unwrap();
    assert!(created.environment && ids.environment_id != environment);
    for (run_id, _) in RUNS {
        wait_for(&app, run_id, &log, |(state, _)| state.as_deref() == Some("succeeded")).await;
        assert_eq!(app.record(run_id).await.get("attempts"), Some("1"));
        assert_eq!(app.sessions_of(run_id).await.len(), 1);
    }
    assert_eq!(mark(&app).await, None);
    worker.kill().unwrap();
    worker.wait().unwrap();
}

#[tokio::test]
async fn with_setup_auto_the_worker_recreates_an_archived_agent() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let mut env = child_env(&app, dir.path());
    set_env(&mut env, "AGENTCRON__SETUP__AUTO", "true");
    let mut worker = spawn_worker(&env, &log);
    let agent = app.ctx.setup.get().agent_id.clone();
    anthropic(&app, Method::POST, &format!("/v1/agents/{agent}/archive")).await;
    app.enqueue(&RUNS[..2]).await;
    for (run_id, _) in &RUNS[..2] {
        wait_for(&app, run_id, &log, |(state, _)| state.as_deref() == Some("succeeded")).await;
        assert_eq!(app.record(run_id).await.get("attempts"), Some("1"));
    }
    let mut conn = app.conn.clone();
    let stored = agentcron::setup::load(&mut conn, &app.ctx.keys).await.unwrap();
    assert_ne!(stored.agent_id, agent, "a new agent");
    let sessions = app.sessions_of(RUNS[0].0).await;
    assert_eq!(sessions[0]["agent_id"], stored.agent_id.as_str());
    assert_eq!(mark(&app).await, None, "ready again");
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("Recreated the missing setup objects"), "{logs}");
    worker.kill().unwrap();
    worker.wait().unwrap();
}

/// Redis lost the setup ids (or setup never ran for the prefix): a worker starting then does
/// not exit (a crash loop under a supervisor); it marks the setup missing and its runs wait
/// until `setup` stores the ids. Before, it exited 1 with "setup has not run".
#[tokio::test]
async fn a_worker_without_setup_ids_waits_instead_of_exiting() {
    let app = spawn_app().await;
    let mut conn = app.conn.clone();
    redis::cmd("DEL").arg(app.ctx.keys.setup()).query_async::<()>(&mut conn).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let mut worker = spawn_worker(&child_env(&app, dir.path()), &log);
    let reported = poll_until("the missing setup reported", Duration::from_secs(20), || async {
        mark(&app).await
    })
    .await;
    assert_eq!(reported["object"], "setup", "{reported}");
    app.enqueue(&RUNS[..1]).await;
    poll_until("the run deferred", Duration::from_secs(20), || async {
        app.record(RUNS[0].0).await.get("next_attempt_at_ms").is_some()
    })
    .await;
    assert!(worker.try_wait().unwrap().is_none(), "the worker is still running");

    let (scalekit, anthropic_client, _) = agentcron::run::clients(&app.config).unwrap();
    agentcron::setup::ensure(&app.config, &scalekit, &anthropic_client, &mut conn, &app.ctx.keys)
        .await
        .unwrap();
    wait_for(&app, RUNS[0].0, &log, |(state, _)| state.as_deref() == Some("succeeded")).await;
    assert_eq!(app.record(RUNS[0].0).await.get("attempts"), Some("1"));
    worker.kill().unwrap();
    worker.wait().unwrap();
}
