//! Chaos, Redis trouble: real `agentcron worker` processes on a test-owned `redis-server` (a
//! spare port, its own directory, killed at the end) whose connections are killed with
//! `CLIENT KILL TYPE normal` mid-run and which is restarted: the workers reconnect and finish.
//! Without persistence a restart loses every run that was only in Redis (what the README
//! warns about); with `appendonly yes` + `appendfsync always` a SIGKILLed Redis loses nothing.
//! Writes paused past the workers' reply timeout (a slow failover) strand no run: the runs a
//! fetch moved after its caller gave up are handed back by the worker's reconciliation.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agentcron::config::RedisConfig;
use agentcron::keys::Keys;
use agentcron::queue::{NewRun, Queue};
use redis::AsyncCommands;
use serde_json::json;

use crate::common::app::{TestApp, spawn_app};
use crate::common::poll::{WithLog, poll_until};
use crate::common::private_redis::{Fleet, PrivateRedis, pause_writes, setup_on};
use crate::common::procs::{child_env_at, kill9, set_env, spawn_worker};

pub(crate) fn runs(tag: &str, n: usize) -> Vec<NewRun> {
    (0..n)
        .map(|i| NewRun {
            run_id: crate::common::run_id(&format!("{tag}-{i:02}")),
            ..NewRun::now(crate::common::user_id(&format!("{tag}{i}@redis.test")))
        })
        .collect()
}

pub(crate) async fn enqueue(config: &RedisConfig, runs: &[NewRun]) {
    Queue::connect(config).await.unwrap().enqueue(runs, "test").await.unwrap();
}

/// How many of `runs` have a record in `state` (`None`: any record at all).
pub(crate) async fn count(
    server: &PrivateRedis,
    prefix: &str,
    runs: &[NewRun],
    state: Option<&str>,
) -> usize {
    let Ok(mut conn) = server.conn().await else { return 0 };
    let keys = Keys::new(prefix);
    let mut n = 0;
    for run in runs {
        let Ok(value) = conn.hget::<_, _, Option<String>>(keys.run(&run.run_id), "state").await
        else {
            return 0;
        };
        n += usize::from(value.is_some_and(|value| state.is_none_or(|state| state == value)));
    }
    n
}

pub(crate) async fn wait_count(
    server: &PrivateRedis,
    prefix: &str,
    runs: &[NewRun],
    at_least: usize,
    log: &Path,
) {
    poll_until(&format!("{at_least} runs succeeded"), Duration::from_secs(60), || async {
        let n = count(server, prefix, runs, Some("succeeded")).await;
        if n >= at_least { Ok(()) } else { Err(WithLog(format!("{n} succeeded"), log)) }
    })
    .await;
}

/// Two workers on `server`, runs slowed to ~200 ms of agent events each; `settings` override
/// the workers' environment.
pub(crate) async fn start_workers(
    app: &TestApp,
    server: &PrivateRedis,
    dir: &Path,
    settings: &[(&str, &str)],
) -> Vec<crate::common::procs::Worker> {
    app.sim_client
        .add_fault(
            json!({"method": "POST", "path": "/v1/sessions/*/events", "event_delay_ms": 200}),
        )
        .await;
    let mut env = child_env_at(app, &server.url(), dir);
    for (name, value) in settings {
        set_env(&mut env, name, value);
    }
    let log = dir.join("workers.log");
    (0..2).map(|_| spawn_worker(&env, &log)).collect()
}

pub(crate) fn assert_one_session_and_message_each(audit: &serde_json::Value, runs: &[NewRun]) {
    assert_eq!(audit["violations"], json!([]));
    for run in runs {
        let sessions: Vec<_> = audit["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["run_id"] == run.run_id.as_str())
            .collect();
        assert_eq!(sessions.len(), 1, "{}: {sessions:?}", run.run_id);
        assert_eq!(sessions[0]["user_messages"], 1, "{}", run.run_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_client_kills_and_a_restart_without_persistence_loses_queued_runs() {
    let app = spawn_app().await;
    let mut server = PrivateRedis::start(false).await;
    let config = setup_on(&app, &server).await;
    let prefix = app.redis.prefix.clone();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("workers.log");
    let mut workers = start_workers(&app, &server, dir.path(), &[]).await;

    // Connections killed twice while batch A runs: the workers reconnect and finish it.
    let batch_a = runs("ra", 30);
    enqueue(&config.redis, &batch_a).await;
    wait_count(&server, &prefix, &batch_a, 3, &log).await;
    let killed_first = server.kill_clients().await;
    wait_count(&server, &prefix, &batch_a, 15, &log).await;
    let killed_second = server.kill_clients().await;
    wait_count(&server, &prefix, &batch_a, batch_a.len(), &log).await;
    assert!(killed_first >= 1 && killed_second >= 1, "{killed_first} {killed_second}");

    // Batch B waits (not_before in 10 minutes) when Redis restarts without persistence.
    let in_ten_minutes = chrono::Utc::now().timestamp_millis() + 600_000;
    let batch_b: Vec<NewRun> = runs("rb", 10)
        .into_iter()
        .map(|run| NewRun { not_before_ms: Some(in_ten_minutes), ..run })
        .collect();
    enqueue(&config.redis, &batch_b).await;
    assert_eq!(count(&server, &prefix, &batch_b, None).await, batch_b.len());
    server.shutdown_nosave().await;
    server.spawn().await;
    let after_restart = count(&server, &prefix, &batch_b, None).await;
    let a_after_restart = count(&server, &prefix, &batch_a, None).await;
    let setup_left: bool =
        server.conn().await.unwrap().exists(Keys::new(&*prefix).setup()).await.unwrap();
    println!(
        "redis restart without persistence: {after_restart}/{} queued runs, {a_after_restart}/{} \
         finished run records, setup kept: {setup_left}",
        batch_b.len(),
        batch_a.len()
    );
    // Documented loss: everything that lived only in Redis is gone.
    assert_eq!((after_restart, a_after_restart, setup_left), (0, 0, false));

    // The same workers reconnect to the restarted server and run new work.
    let batch_c = runs("rc", 20);
    enqueue(&config.redis, &batch_c).await;
    wait_count(&server, &prefix, &batch_c, batch_c.len(), &log).await;
    for worker in &mut workers {
        kill9(worker);
    }
    let audit = app.audit().await;
    assert_one_session_and_message_each(&audit, &batch_a);
    assert_one_session_and_message_each(&audit, &batch_c);
    assert!(audit["sessions"].as_array().unwrap().iter().all(|s| s["run_id"] != "rb-00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_aof_a_killed_redis_loses_no_run() {
    let app = spawn_app().await;
    let mut server = PrivateRedis::start(true).await;
    let config = setup_on(&app, &server).await;
    let prefix = app.redis.prefix.clone();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("workers.log");
    let mut workers = start_workers(&app, &server, dir.path(), &[]).await;

    let batch = runs("raof", 20);
    enqueue(&config.redis, &batch).await;
    wait_count(&server, &prefix, &batch, 3, &log).await;
    server.kill9();
    // Not a wait for a state: the outage deliberately lasts a while, so that the workers' calls
    // fail against a dead server before it comes back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.spawn().await;
    let kept = count(&server, &prefix, &batch, None).await;
    println!("redis SIGKILL with appendfsync always: {kept}/{} run records kept", batch.len());
    assert_eq!(kept, batch.len());
    wait_count(&server, &prefix, &batch, batch.len(), &log).await;
    for worker in &mut workers {
        kill9(worker);
    }
    assert_one_session_and_message_each(&app.audit().await, &batch);
}

/// Sends `signal` (`-STOP`, `-CONT`) to every child.
fn signal(children: &[crate::common::procs::Worker], signal: &str) {
    for child in children {
        let status = Command::new("kill").arg(signal).arg(child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill {signal} {}", child.id());
    }
}

/// A slow failover: writes paused for 15 s, past the workers' 10 s reply timeout, while the
/// workers fetch 30 runs. The fetches that gave up ran when writes resumed and moved runs to
/// processing lists nobody read; before reconciliation those runs stayed `running` (or
/// `queued`) forever (15 of 30 in the trial). Now every run succeeds, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_paused_past_the_reply_timeout_strand_no_run() {
    let Fleet { app, server, config, prefix, dir, log } = Fleet::start().await;
    // A lease longer than the pause, so that no lease is lost and only reconciliation (every
    // lease / 3) can recover the stranded runs.
    let settings = [("AGENTCRON__WORKER__LEASE", "30s"), ("AGENTCRON__WORKER__HEARTBEAT", "1s")];
    let mut workers = start_workers(&app, &server, dir.path(), &settings).await;
    poll_until("both workers registered", Duration::from_secs(20), || async {
        let Ok(mut conn) = server.conn().await else { return false };
        let workers: usize = conn.hlen(Keys::new(&*prefix).workers()).await.unwrap_or(0);
        workers == 2
    })
    .await;

    // The workers are frozen while the runs arrive, so each one's waiting `BLMOVE` takes a
    // run and the batch fetch that follows finds a full ready list, both under paused writes.
    let batch = runs("rp", 30);
    signal(&workers, "-STOP");
    enqueue(&config.redis, &batch).await;
    let thaw = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        signal(&workers, "-CONT");
    };
    tokio::join!(pause_writes(&server, Duration::from_secs(15)), thaw);

    poll_until("every run succeeded", Duration::from_secs(90), || async {
        let n = count(&server, &prefix, &batch, Some("succeeded")).await;
        if n == batch.len() { Ok(()) } else { Err(WithLog(format!("{n} succeeded"), &log)) }
    })
    .await;
    for worker in &mut workers {
        kill9(worker);
    }
    let logs = std::fs::read_to_string(&log).unwrap();
    // Whether a fetch that gave up ran late enough to find runs left depends on the order in
    // which the paused writes resume; the guarantee is that none stays stranded either way.
    let handed_back = logs.contains("Handed back runs this worker held but was not executing");
    println!("reconciliation handed back stranded runs: {handed_back}");
    assert!(!logs.contains("taken over by another worker"), "no worker lost its lease");
    assert_one_session_and_message_each(&app.audit().await, &batch);
}

/// A Redis whose `maxmemory-policy` can drop keys loses runs without a trace (measured: 989 of
/// 2,000 queued runs' records evicted, gone to the dead list as "missing"). A worker refuses
/// it at start, naming the policy and the setting that overrides; with the override it runs.
#[tokio::test]
async fn a_worker_refuses_a_redis_that_can_drop_keys() {
    let app = spawn_app().await;
    let server = PrivateRedis::start(false).await;
    let mut conn = server.conn().await.unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut conn)
        .await
        .unwrap();
    setup_on(&app, &server).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = child_env_at(&app, &server.url(), dir.path());
    let log = dir.path().join("refused.log");
    let mut refused = spawn_worker(&env, &log);
    let status = tokio::task::spawn_blocking(move || refused.wait().unwrap()).await.unwrap();
    assert_eq!(status.code(), Some(1), "the worker exits 1");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("maxmemory-policy is `allkeys-lru`") && said.contains("redis.allow_eviction"),
        "{said}"
    );

    // `config check --redis` says the same before a deploy, and accepts the override.
    let check = |env: &[(String, String)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_agentcron"));
        command.args(["config", "check", "--redis"]).current_dir(crate::common::repo_root());
        command.env_remove("AGENTCRON__REDIS__ALLOW_EVICTION");
        command.envs(env.iter().map(|(k, v)| (k, v))).output().unwrap()
    };
    let refused = check(&env);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("maxmemory-policy is `allkeys-lru`"), "{said}");
    set_env(&mut env, "AGENTCRON__REDIS__ALLOW_EVICTION", "true");
    assert_eq!(check(&env).status.code(), Some(0), "the override is accepted");

    let log = dir.path().join("allowed.log");
    let mut allowed = spawn_worker(&env, &log);
    let config = RedisConfig { url: server.url().parse().unwrap(), ..app.config.redis.clone() };
    let queue = Queue::connect(&config).await.unwrap();
    let run = NewRun::now(crate::common::user_id("evictable@example.com"));
    let run_id = run.run_id.clone();
    queue.enqueue(&[run], "test").await.unwrap();
    let keys = Keys::new(app.redis.prefix.clone());
    poll_until(&format!("run {run_id} succeeded"), Duration::from_secs(30), || {
        let mut conn = conn.clone();
        let key = keys.run(&run_id);
        async move {
            let state: Option<String> = conn.hget(&key, "state").await.unwrap();
            state.as_deref() == Some("succeeded")
        }
    })
    .await;
    kill9(&mut allowed);
}
