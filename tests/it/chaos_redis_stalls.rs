//! Chaos, Redis in trouble while runs are in flight, with real `agentcron worker` processes on
//! a test-owned `redis-server`: stalls longer than the lease (`DEBUG SLEEP`), connections
//! killed every second (`CLIENT KILL`), idle connections closed by the server (`timeout`), a
//! full memory under `noeviction`. None of it is the runs' fault, so each run succeeds on its
//! first attempt, with one session and one message, and each worker logs an outage once.
//! See: issue 23.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agentcron::keys::Keys;
use agentcron::ops::http::{self, OpsState};
use agentcron::queue::NewRun;
use agentcron::telemetry::Redactor;
use redis::AsyncCommands;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::chaos_redis::{
    assert_one_session_and_message_each, count, enqueue, runs, start_workers, wait_count,
};
use crate::common::app::{TestApp, spawn_app};
use crate::common::poll::poll_until;
use crate::common::private_redis::{Fleet, PrivateRedis, pause_writes, setup_on};
use crate::common::procs::kill9;

/// Two workers with a 2 s lease (beats every 300 ms) on `server`, each run slowed to `event_ms`
/// per agent event, so that runs are in flight while Redis is in trouble.
async fn workers(
    app: &TestApp,
    server: &PrivateRedis,
    dir: &Path,
    event_ms: u64,
) -> Vec<crate::common::procs::Worker> {
    let children = start_workers(app, server, dir, &[]).await;
    app.sim_client
        .add_fault(
            json!({"method": "POST", "path": "/v1/sessions/*/events", "event_delay_ms": event_ms}),
        )
        .await;
    children
}

/// One command on a connection that waits for its reply as long as `DEBUG SLEEP` takes.
async fn cmd(server: &PrivateRedis, args: &[&str]) {
    let patient = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection_with_config(&patient).await.unwrap();
    let () = redis::cmd(args[0]).arg(&args[1..]).query_async(&mut conn).await.unwrap();
}

/// Every run succeeded on its first attempt.
async fn assert_first_attempts(server: &PrivateRedis, prefix: &str, runs: &[NewRun]) {
    let mut conn = server.conn().await.unwrap();
    let keys = Keys::new(prefix);
    for run in runs {
        let (state, attempts): (Option<String>, Option<String>) =
            conn.hmget(keys.run(&run.run_id), &["state", "attempts"]).await.unwrap();
        assert_eq!(
            (state.as_deref(), attempts.as_deref()),
            (Some("succeeded"), Some("1")),
            "{}: Redis trouble cost the run an attempt",
            run.run_id
        );
    }
}

/// How many lines of the workers' log say `text`.
fn lines_saying(log: &Path, text: &str) -> usize {
    std::fs::read_to_string(log).unwrap().lines().filter(|line| line.contains(text)).count()
}

async fn wait_running(server: &PrivateRedis, prefix: &str, runs: &[NewRun], n: usize) {
    poll_until(&format!("{n} runs running"), Duration::from_secs(30), || async {
        count(server, prefix, runs, Some("running")).await >= n
    })
    .await;
}

/// Measured before: three `DEBUG SLEEP 6` with a 4 s lease made every worker reap its own
/// runs ("Lease lost" three times, `attempts=4` on a run that then succeeded). Now a gap in
/// Redis's serving is seen as Redis's stall and every lease gets a grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stalls_longer_than_the_lease_cost_no_attempt() {
    let Fleet { app, server, config, prefix, dir, log } = Fleet::start().await;
    let mut children = workers(&app, &server, dir.path(), 1_500).await;
    let batch = runs("stall", 6);
    enqueue(&config.redis, &batch).await;
    wait_running(&server, &prefix, &batch, batch.len()).await;
    for _ in 0..3 {
        // 3 s against a 2 s lease; the server answers nobody meanwhile.
        cmd(&server, &["DEBUG", "SLEEP", "3"]).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    wait_count(&server, &prefix, &batch, batch.len(), &log).await;
    for child in &mut children {
        kill9(child);
    }
    assert_first_attempts(&server, &prefix, &batch).await;
    assert_eq!(lines_saying(&log, "Lease lost"), 0, "no worker lost its lease");
    assert_one_session_and_message_each(&app.audit().await, &batch);
}

/// Measured before: `CLIENT KILL TYPE normal` every 2 s during 200 runs made 153 of them need
/// a second attempt (record writes inside a run were not retried; the heartbeat did not retry
/// within a beat, so workers reaped their own runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_every_second_cost_no_attempt() {
    let Fleet { app, server, config, prefix, dir, log } = Fleet::start().await;
    let mut children = workers(&app, &server, dir.path(), 100).await;
    let batch = runs("churn", 60);
    enqueue(&config.redis, &batch).await;
    let mut n_killed = 0;
    for _ in 0..12 {
        let mut conn = server.conn().await.unwrap();
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut conn)
            .await
            .unwrap();
        n_killed += killed;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    wait_count(&server, &prefix, &batch, batch.len(), &log).await;
    for child in &mut children {
        kill9(child);
    }
    println!("connections killed: {n_killed}");
    assert!(n_killed >= 12, "the workers' connections were killed: {n_killed}");
    assert_first_attempts(&server, &prefix, &batch).await;
    assert_one_session_and_message_each(&app.audit().await, &batch);
}

/// Measured before: with Redis closing idle clients after 3 s, one trial left a worker unable
/// to renew its lease for good, 150 runs waiting while `/readyz` said ready. Now idle
/// connections closed between two batches are reopened and the second batch runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_closed_by_the_server_strand_nothing() {
    let Fleet { app, server, config, prefix, dir, log } = Fleet::start().await;
    cmd(&server, &["CONFIG", "SET", "timeout", "1"]).await;
    let mut children = workers(&app, &server, dir.path(), 50).await;
    let first = runs("idle-a", 20);
    enqueue(&config.redis, &first).await;
    wait_count(&server, &prefix, &first, first.len(), &log).await;
    // Longer than the server's idle timeout, so that every connection not in use is closed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = runs("idle-b", 20);
    enqueue(&config.redis, &second).await;
    wait_count(&server, &prefix, &second, second.len(), &log).await;
    for child in &mut children {
        kill9(child);
    }
    assert_first_attempts(&server, &prefix, &first).await;
    assert_first_attempts(&server, &prefix, &second).await;
    assert_eq!(lines_saying(&log, "Lease lost"), 0, "no worker lost its lease");
}

/// The error a pipeline gets from the tests' Redis when its one command answers `reply` (a
/// script's `redis.error_reply`, which Redis sends as any command's error).
async fn pipeline_error(reply: &str) -> redis::RedisError {
    let mut conn = crate::common::TestRedis::new().await.conn.clone();
    let mut pipe = redis::pipe();
    let script = "return redis.error_reply(ARGV[1])";
    pipe.cmd("EVAL").arg(script).arg(0).arg(reply).ignore().cmd("PING");
    pipe.query_async::<(String,)>(&mut conn).await.unwrap_err()
}

/// Before, a pipeline refused under a full memory (redis-rs: `Pipeline failure: [(Index 0,
/// error: "OOM": …)]`, no `code()`) was not passing trouble, and a run whose pipelined write
/// met the full memory lost an attempt to it (the test below, one run in three).
#[tokio::test]
async fn a_pipeline_refused_for_memory_is_passing_trouble_and_one_with_a_bug_is_not() {
    let oom = pipeline_error("OOM command not allowed when used memory > 'maxmemory'.").await;
    assert!(oom.to_string().contains("Pipeline failure"), "{oom}");
    assert!(agentcron::transient::is_transient(&oom), "{oom}");
    let bug = pipeline_error("WRONGTYPE Operation against a key holding the wrong kind").await;
    assert!(!agentcron::transient::is_transient(&bug), "{bug}");
}

/// Measured before: under OOM (`noeviction`, memory full) every in-flight run lost an attempt
/// and the log flapped (18 "unavailable" and 19 "available" lines, 1,000 per-run warnings).
/// Now the runs wait out the full memory and resume; each worker logs the outage once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_memory_costs_no_attempt_and_is_logged_once() {
    let Fleet { app, server, config, prefix, dir, log } = Fleet::start().await;
    let mut children = workers(&app, &server, dir.path(), 400).await;
    let batch = runs("oom", 10);
    enqueue(&config.redis, &batch).await;
    wait_running(&server, &prefix, &batch, batch.len()).await;
    // 1 byte: every write is refused ("OOM command not allowed"), reads still pass.
    cmd(&server, &["CONFIG", "SET", "maxmemory", "1"]).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    cmd(&server, &["CONFIG", "SET", "maxmemory", "0"]).await;
    wait_count(&server, &prefix, &batch, batch.len(), &log).await;
    // The end of an outage is logged once calls have passed for 2 s without a failure, which
    // may be after the last run ended.
    poll_until("every outage ended in the log", Duration::from_secs(20), || async {
        lines_saying(&log, "Redis available again") >= lines_saying(&log, "Redis unavailable")
    })
    .await;
    for child in &mut children {
        kill9(child);
    }
    assert_first_attempts(&server, &prefix, &batch).await;
    let (down, up) =
        (lines_saying(&log, "Redis unavailable"), lines_saying(&log, "Redis available again"));
    println!("outage lines: {down} unavailable, {up} available again");
    assert!((1..=2).contains(&down) && up == down, "one outage per worker: {down} / {up}");
    assert_eq!(lines_saying(&log, "Run attempt failed"), 0, "no line per run");
    assert_eq!(lines_saying(&log, "Lease lost"), 0, "no worker lost its lease");
    assert_one_session_and_message_each(&app.audit().await, &batch);
}

/// `/readyz` of a worker whose heartbeat cannot renew its lease (writes paused past half of
/// it) answers 503 naming the lease, and 200 again once the heartbeat gets through: before,
/// a worker that could not renew said ready while its runs waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_the_lease_is_not_renewed() {
    let app = spawn_app().await;
    let server = PrivateRedis::start(false).await;
    let mut config = setup_on(&app, &server).await;
    config.worker.lease = Duration::from_secs(2);
    config.worker.heartbeat = Duration::from_millis(300);
    config.ops.bind = Some("127.0.0.1:0".parse().unwrap());
    let health = Arc::new(agentcron::queue::Health::default());
    let listener = http::bind(&config.ops).await.unwrap().unwrap();
    let url = format!("http://{}/readyz", listener.local_addr().unwrap());
    let config = Arc::new(config);
    let redactor = Redactor::new(config.secret_values());
    let state = OpsState::new(config.clone(), redactor).unwrap().beside_worker(health.clone());
    let stop = CancellationToken::new();
    let serving = tokio::spawn(http::serve(state, listener, stop.clone()));
    let (worker_config, ctx, token) = ((*config).clone(), app.ctx.clone(), stop.clone());
    let running = tokio::spawn(async move {
        agentcron::worker::run_watched(&worker_config, ctx, token, health).await
    });

    // reqwest is built without a default TLS provider; plain HTTP still needs one installed.
    rustls::crypto::ring::default_provider().install_default().ok();
    let readiness = || async {
        let response = reqwest::get(&url).await.unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        (status, body["checks"]["lease"].as_str().unwrap_or_default().to_owned())
    };
    poll_until("ready", Duration::from_secs(20), || async { readiness().await.0 == 200 }).await;
    let paused = pause_writes(&server, Duration::from_secs(4));
    let watched = poll_until("503 naming the lease", Duration::from_secs(20), || async {
        let (status, lease) = readiness().await;
        (status == 503 && lease.starts_with("not renewed for")).then_some(lease)
    });
    let ((), lease) = tokio::join!(paused, watched);
    println!("while writes were paused: lease {lease}");
    poll_until("ready again", Duration::from_secs(20), || async { readiness().await.0 == 200 })
        .await;
    stop.cancel();
    running.await.unwrap().unwrap();
    serving.await.unwrap().unwrap();
}
