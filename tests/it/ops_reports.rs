//! The operator's reports and actions, as the binary prints them, against a Redis populated by
//! real runs: `status`, `runs`, `run`, `transcript`, `notices` (tables and `--json`), then
//! `requeue` and `cancel`.

use std::time::Duration;

use agentcron::queue::{NewRun, Queue};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::app::{TestApp, cli, spawn_app};
use crate::common::poll_until;

async fn json_of(app: &TestApp, args: &[&str]) -> Value {
    let (code, stdout, stderr) = cli(app, args).await;
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// Enqueues runs and works them in-process until each reaches a terminal state.
pub(crate) async fn work(app: &TestApp, runs: &[(&str, &str)]) {
    let queue = Queue::connect(&app.config.redis).await.unwrap();
    let new: Vec<NewRun> = runs
        .iter()
        .map(|(id, user)| NewRun {
            run_id: crate::common::run_id(id),
            ..NewRun::now(crate::common::user_id(user))
        })
        .collect();
    queue.enqueue(&new, "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn({
        let (config, ctx, shutdown) = (app.config.clone(), app.ctx.clone(), shutdown.clone());
        async move { agentcron::worker::run(&config, ctx, shutdown).await }
    });
    poll_until("every run reached its end", Duration::from_secs(30), || async {
        let mut open = Vec::new();
        for (id, _) in runs {
            let state = app.record(id).await.get("state").map(str::to_owned);
            if !matches!(state.as_deref(), Some("succeeded" | "needs_auth" | "dead")) {
                open.push((id, state));
            }
        }
        if open.is_empty() { Ok(()) } else { Err(open) }
    })
    .await;
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn reports_show_what_happened() {
    let app = spawn_app().await;
    app.sim_client.set_connection("carol@example.com", "googlecalendar", Some("EXPIRED")).await;
    app.sim_client
        .add_fault(json!({"method": "POST", "path": "/v1/sessions", "status": 400, "count": 1}))
        .await;
    // The first session creation fails permanently: that run is dead.
    work(&app, &[("r-dead", "dave@example.com")]).await;
    work(&app, &[("r-alice", "alice@example.com"), ("r-carol", "carol@example.com")]).await;

    let status = json_of(&app, &["status", "--json"]).await;
    assert_eq!(status["runs_last_hour"]["succeeded"], 1, "{status}");
    assert_eq!(status["runs_last_hour"]["needs_auth"], 1);
    assert_eq!(status["runs_last_hour"]["dead"], 1);
    assert_eq!(status["notices_open"], 1);
    assert_eq!(status["queue"]["dead"], 1);
    assert_eq!(status["recent_failures"][0]["run_id"], "r-dead");
    assert_eq!(status["recent_failures"][0]["error_class"], "permanent");
    let (code, table, _) = cli(&app, &["status"]).await;
    assert_eq!(code, 0);
    for heading in [
        "Workers",
        "Queue",
        "Runs by state",
        "Open notices: 1",
        "Latest failures",
        "r-dead",
        "Next ticks",
        "morning-triage",
    ] {
        assert!(table.contains(heading), "{heading} missing:\n{table}");
    }
    assert!(!table.contains("\x1b["), "no colour when stdout is not a terminal");

    let runs = json_of(&app, &["runs", "--json"]).await;
    assert_eq!(runs.as_array().unwrap().len(), 3);
    let needs_auth = json_of(&app, &["runs", "--state", "needs_auth", "--json"]).await;
    assert_eq!(needs_auth[0]["run_id"], "r-carol");
    let alice = json_of(&app, &["runs", "--user", "alice@example.com", "--json"]).await;
    assert_eq!(alice.as_array().unwrap().len(), 1);
    assert_eq!(alice[0]["state"], "succeeded");
    let (code, _, stderr) = cli(&app, &["runs", "--state", "weird"]).await;
    assert_eq!(code, 2, "{stderr}");
    let (_, table, _) = cli(&app, &["runs", "--since", "1h"]).await;
    assert!(
        table.starts_with("RUN") && table.contains("r-alice") && table.contains("succeeded"),
        "{table}"
    );

    let run = json_of(&app, &["run", "r-alice", "--json"]).await;
    assert_eq!(run["record"]["state"], "succeeded");
    let phases: Vec<&str> =
        run["timeline"].as_array().unwrap().iter().map(|s| s["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["checking", "minting", "vault", "session", "message", "streaming"]);
    assert!(
        run["timeline"].as_array().unwrap().iter().all(|s| s["duration_ms"].as_i64().is_some())
    );
    let (code, _, _) = cli(&app, &["run", "no-such-run"]).await;
    assert_eq!(code, 1);

    let (code, transcript, _) = cli(&app, &["transcript", "r-alice"]).await;
    assert_eq!(code, 0);
    assert!(
        transcript.contains("→ gmail_fetch_mails")
            && transcript.contains("→ googlecalendar_create_event"),
        "{transcript}"
    );
    let (_, lines, _) = cli(&app, &["transcript", "r-alice", "--json"]).await;
    assert!(lines.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()));

    let notices = json_of(&app, &["notices", "--json"]).await;
    assert_eq!(notices[0]["user"], "carol@example.com");
    assert_eq!(notices[0]["connection"], "googlecalendar");
    assert_eq!(notices[0]["fields"]["status"], "open");
    let (_, table, _) = cli(&app, &["notices"]).await;
    assert!(table.contains("carol@example.com") && table.contains("http"), "{table}");
}

#[tokio::test]
async fn requeue_and_cancel() {
    let app = spawn_app().await;
    app.sim_client
        .add_fault(json!({"method": "POST", "path": "/v1/sessions", "status": 400, "count": 1}))
        .await;
    work(&app, &[("r-requeue", "erin@example.com")]).await;
    assert_eq!(app.record("r-requeue").await.get("state"), Some("dead"));

    let action = json_of(&app, &["requeue", "r-requeue", "--json"]).await;
    assert_eq!(action, json!({"run_id": "r-requeue", "found": "dead", "applied": true}));
    assert_eq!(app.record("r-requeue").await.get("state"), Some("queued"));
    work(&app, &[("r-requeue", "erin@example.com")]).await;
    assert_eq!(
        app.record("r-requeue").await.get("state"),
        Some("succeeded"),
        "a requeued run runs again"
    );
    let (code, stdout, _) = cli(&app, &["requeue", "r-requeue"]).await;
    assert_eq!(code, 1, "a succeeded run is not requeued: {stdout}");

    let queue = Queue::connect(&app.config.redis).await.unwrap();
    queue
        .enqueue(
            &[NewRun {
                run_id: crate::common::run_id("r-cancel"),
                ..NewRun::now(crate::common::user_id("finn@example.com"))
            }],
            "test",
        )
        .await
        .unwrap();
    let (code, stdout, _) = cli(&app, &["cancel", "r-cancel"]).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("queued → cancelled"), "{stdout}");
    assert_eq!(app.record("r-cancel").await.get("state"), Some("cancelled"));
    let mut conn = app.conn.clone();
    let ready: Vec<String> = redis::cmd("LRANGE")
        .arg(app.ctx.keys.ready())
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!ready.contains(&"r-cancel".to_owned()));
    let (code, _, _) = cli(&app, &["cancel", "nope"]).await;
    assert_eq!(code, 1);
}

#[tokio::test]
async fn cancelling_a_running_run_stops_it_at_the_next_heartbeat() {
    let app = spawn_app().await;
    // Ten events 400 ms apart: a turn of about four seconds, cancelled well before its end.
    app.sim_client
        .add_fault(
            json!({"method": "POST", "path": "/v1/sessions/*/events", "event_delay_ms": 400}),
        )
        .await;
    let queue = Queue::connect(&app.config.redis).await.unwrap();
    let run = NewRun {
        run_id: crate::common::run_id("r-stop"),
        ..NewRun::now(crate::common::user_id("gina@example.com"))
    };
    queue.enqueue(&[run], "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn({
        let (config, ctx, shutdown) = (app.config.clone(), app.ctx.clone(), shutdown.clone());
        async move { agentcron::worker::run(&config, ctx, shutdown).await }
    });
    poll_until("r-stop streaming", Duration::from_secs(20), || async {
        let record = app.record("r-stop").await;
        if record.get("phase") == Some("streaming") { Ok(()) } else { Err(record) }
    })
    .await;
    let (code, stdout, stderr) = cli(&app, &["cancel", "r-stop"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    poll_until("r-stop cancelled", Duration::from_secs(20), || async {
        let record = app.record("r-stop").await;
        assert_ne!(record.get("state"), Some("succeeded"), "the cancel never reached the run");
        if record.get("state") == Some("cancelled") { Ok(()) } else { Err(record) }
    })
    .await;
    let record = app.record("r-stop").await;
    assert!(record.get("cancel_requested_at_ms").is_some(), "{record:?}");
    let lines = agentcron::records::transcript::lines(
        &mut app.conn.clone(),
        &app.ctx.keys,
        &crate::common::run_id("r-stop"),
    )
    .await
    .unwrap();
    assert!(lines.len() < 10, "the turn went on after the cancel: {} events", lines.len());
    // The cancel reached the agent: its turn was interrupted and the session archived.
    let sessions = app.sessions_of("r-stop").await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["archived"], true, "{sessions:?}");
    let session_id = sessions[0]["id"].as_str().unwrap();
    let (status, events) = app
        .sim_client
        .anthropic(
            reqwest::Method::GET,
            &format!("/v1/sessions/{session_id}/events?limit=1000"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{events}");
    let kinds: Vec<&str> =
        events["data"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"user.interrupt"), "no interrupt in the session: {kinds:?}");
    let mut conn = app.conn.clone();
    let pending: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:q:cancel:*", app.redis.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut left = Vec::new();
    for key in pending {
        let members: Vec<String> =
            redis::cmd("SMEMBERS").arg(&key).query_async(&mut conn).await.unwrap();
        left.extend(members);
    }
    assert!(left.is_empty(), "the heartbeat took the request: {left:?}");
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}

/// `status` shows the runs a worker holds as they are now (its processing lists), not as its
/// last heartbeat said: before, a worker that had just taken runs showed 0 for a heartbeat.
#[tokio::test]
async fn status_shows_the_runs_in_flight_at_once() {
    let redis = crate::common::TestRedis::new().await;
    let mut config = crate::common::worker::config(&redis);
    // No heartbeat in the test's window: only a live read can see the runs.
    config.worker.heartbeat = Duration::from_secs(60);
    config.worker.lease = Duration::from_secs(180);
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let worker = crate::common::worker::spawn(&config, crate::common::worker::gated(&gate));
    let ids = crate::common::worker::enqueue_n(&config, "inflight", 3).await;
    let conn = config.redis.connect(Default::default()).await.unwrap();
    let keys = config.redis.keys();
    let status = poll_until("three runs held", Duration::from_secs(20), || {
        let (mut conn, keys, config) = (conn.clone(), keys.clone(), config.clone());
        async move {
            let status = agentcron::ops::report::status(&mut conn, &keys, &config).await.unwrap();
            if status.queue.running == 3 { Ok(status) } else { Err(format!("{:?}", status.queue)) }
        }
    })
    .await;
    assert_eq!(status.workers.len(), 1, "{:?}", status.workers);
    assert_eq!(status.workers[0].in_flight, 3, "{:?}", status.workers[0]);
    assert_eq!(status.workers[0].heartbeat["in_flight"], 0, "the heartbeat is older");
    gate.add_permits(ids.len());
    worker.stop().await;
}
