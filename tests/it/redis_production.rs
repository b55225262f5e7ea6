//! Production Redis (issue 24, first part): TLS with a CA file and with mutual TLS, the clear
//! errors of a wrong CA and of a missing client certificate, an ACL user restricted to the
//! documented rules, and a Sentinel failover mid-run (the sentinels with a password of their
//! own), with real `redis-server` processes (built
//! with TLS) and real workers.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use agentcron::config::Config;
use agentcron::queue::{ACL_RULES, Queue};
use serde_json::json;

use super::chaos_redis::{
    assert_one_session_and_message_each, count, runs, start_workers, wait_count,
};
use crate::common::app::{TestApp, spawn_app};
use crate::common::poll::poll_until;
use crate::common::private_redis::{Pki, PrivateRedis, setup_on};
use crate::common::procs::{child_env_at, kill9, set_env};
use crate::common::sentinel::{self, SentinelGroup};

/// The `[redis.tls]` settings of a worker for `server`, as variables.
fn tls_settings(pki: &Pki, ca: &Path, client: bool) -> Vec<(&'static str, String)> {
    let mut settings = vec![("AGENTCRON__REDIS__TLS__CA_FILE", ca.display().to_string())];
    if client {
        settings.push(("AGENTCRON__REDIS__TLS__CERT_FILE", pki.client_cert.display().to_string()));
        settings.push(("AGENTCRON__REDIS__TLS__KEY_FILE", pki.client_key.display().to_string()));
    }
    settings
}

/// `config` with the same TLS settings, for the test's own queue handle.
fn with_tls(mut config: Config, pki: &Pki, client: bool) -> Config {
    config.redis.tls.ca_file = Some(pki.ca.clone());
    if !client {
        (config.redis.tls.cert_file, config.redis.tls.key_file) = (None, None);
    }
    config
}

/// Two workers on `server` with `settings`, ten runs, every one succeeded once.
async fn ten_runs(
    app: &TestApp,
    server: &PrivateRedis,
    config: &Config,
    settings: &[(&str, String)],
    tag: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut workers = start_workers(app, server, dir.path(), &settings).await;
    let batch = runs(tag, 10);
    Queue::connect(&config.redis).await.unwrap().enqueue(&batch, "test").await.unwrap();
    wait_count(server, &app.redis.prefix, &batch, batch.len(), &dir.path().join("workers.log"))
        .await;
    for worker in &mut workers {
        kill9(worker);
    }
    assert_one_session_and_message_each(&app.audit().await, &batch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_go_through_tls_with_a_ca_file_and_with_mutual_tls() {
    let app = spawn_app().await;
    let server = PrivateRedis::start_tls(Pki::new(), false).await;
    let config = with_tls(setup_on(&app, &server).await, server.pki(), false);
    ten_runs(&app, &server, &config, &tls_settings(server.pki(), &server.pki().ca, false), "tls")
        .await;

    let mutual = PrivateRedis::start_tls(Pki::new(), true).await;
    let config = with_tls(setup_on(&app, &mutual).await, mutual.pki(), true);
    ten_runs(&app, &mutual, &config, &tls_settings(mutual.pki(), &mutual.pki().ca, true), "mtls")
        .await;
}

/// `agentcron config check --redis` with `env` and `settings`.
fn check(env: &[(String, String)], settings: &[(&str, String)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_agentcron"));
    command.args(["config", "check", "--redis"]).current_dir(crate::common::repo_root());
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command.envs(settings.iter().map(|(k, v)| (k, v)));
    command.output().unwrap()
}

#[tokio::test]
async fn a_wrong_ca_or_a_missing_client_certificate_is_named_with_the_host() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let server = PrivateRedis::start_tls(Pki::new(), false).await;
    let host = server.url();
    let env = child_env_at(&app, &server.url(), dir.path());
    let good = check(&env, &tls_settings(server.pki(), &server.pki().ca, false));
    assert_eq!(good.status.code(), Some(0), "{}", String::from_utf8_lossy(&good.stderr));

    let wrong = check(&env, &tls_settings(server.pki(), &server.pki().other_ca, false));
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("cannot connect to Redis at {host}")), "{said}");
    assert!(said.contains("unknown issuer"), "{said}");

    let mutual = PrivateRedis::start_tls(Pki::new(), true).await;
    let host = mutual.url();
    let env = child_env_at(&app, &mutual.url(), dir.path());
    let without = check(&env, &tls_settings(mutual.pki(), &mutual.pki().ca, false));
    let said = String::from_utf8_lossy(&without.stderr);
    assert_eq!(without.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("Redis at {host}")), "{said}");
}

async fn acl_user(server: &PrivateRedis, user: &str, prefix: &str, rules: &str) {
    let mut conn = server.conn().await.unwrap();
    let mut acl = redis::cmd("ACL");
    acl.arg("SETUSER").arg(user).arg("reset").arg("on").arg(">s3cret-acl-password-7d1f");
    acl.arg(format!("~{prefix}:*")).arg(rules.split_whitespace().collect::<Vec<_>>());
    let () = acl.query_async(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_the_documented_rules_runs_the_pipeline() {
    let app = spawn_app().await;
    let server = PrivateRedis::start(false).await;
    let config = setup_on(&app, &server).await;
    let prefix = app.redis.prefix.clone();
    acl_user(&server, "agentcron", &prefix, ACL_RULES).await;
    let settings = [
        ("REDIS_USERNAME", "agentcron".to_owned()),
        ("REDIS_PASSWORD", "s3cret-acl-password-7d1f".to_owned()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let flat: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut workers = start_workers(&app, &server, dir.path(), &flat).await;
    let batch = runs("acl", 10);
    Queue::connect(&config.redis).await.unwrap().enqueue(&batch, "test").await.unwrap();
    let log = dir.path().join("workers.log");
    wait_count(&server, &prefix, &batch, batch.len(), &log).await;
    for worker in &mut workers {
        kill9(worker);
    }
    assert_one_session_and_message_each(&app.audit().await, &batch);
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.contains("s3cret-acl-password-7d1f"), "the password is never logged");
    assert!(!logs.contains("NOPERM"), "the rules are enough: {logs}");

    // Without the scripting rule, the worker stops at once and says what to grant.
    acl_user(&server, "no-scripts", &prefix, &ACL_RULES.replace("+@scripting", "")).await;
    let mut env = child_env_at(&app, &server.url(), dir.path());
    set_env(&mut env, "REDIS_USERNAME", "no-scripts");
    set_env(&mut env, "REDIS_PASSWORD", "s3cret-acl-password-7d1f");
    let refused_log = dir.path().join("refused.log");
    let mut refused = crate::common::procs::spawn_worker(&env, &refused_log);
    let status = tokio::task::spawn_blocking(move || refused.wait().unwrap()).await.unwrap();
    let said = std::fs::read_to_string(&refused_log).unwrap();
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains("the Redis user may not run the queue's scripts"), "{said}");
    assert!(said.contains("evalsha"), "names the command refused: {said}");
    assert!(!said.contains("s3cret-acl-password-7d1f"));
}

/// A Sentinel failover while 20 runs are in flight and 20 wait: the workers find the new master
/// through the sentinels and every run finishes once (one session, one message each, by the
/// simulator's audit), although the old master kept accepting writes for seconds after it.
/// Before it, the heartbeats ask the sentinels without opening a connection each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_loses_and_duplicates_nothing() {
    let app = spawn_app().await;
    let group = SentinelGroup::start().await;
    let mut config = setup_on(&app, &group.primary).await;
    config.redis.sentinel = Some(agentcron::config::RedisSentinel {
        master: sentinel::MASTER.to_owned(),
        nodes: group.nodes().split(',').map(str::to_owned).collect(),
        username: None,
        password: Some(sentinel::PASSWORD.to_owned().into()),
    });
    // Ten runs at a time per worker, so that runs still wait in the queue at the failover and
    // are taken while the old master still answers.
    let settings = [
        ("AGENTCRON__REDIS__SENTINEL__MASTER", sentinel::MASTER),
        ("AGENTCRON__REDIS__SENTINEL__NODES", &group.nodes()),
        // The sentinels have a password of their own (`requirepass`).
        ("AGENTCRON__REDIS__SENTINEL__PASSWORD", sentinel::PASSWORD),
        ("AGENTCRON__WORKER__CONCURRENCY", "10"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut workers = start_workers(&app, &group.primary, dir.path(), &settings).await;
    // Runs of about ten seconds, so that they are in flight across the failover.
    app.sim_client
        .add_fault(
            json!({"method": "POST", "path": "/v1/sessions/*/events", "event_delay_ms": 1_000}),
        )
        .await;
    let batch = runs("sentinel", 40);
    Queue::connect(&config.redis).await.unwrap().enqueue(&batch, "test").await.unwrap();
    let log = dir.path().join("workers.log");
    poll_until("runs in flight", Duration::from_secs(30), || async {
        count(&group.primary, &app.redis.prefix, &batch, Some("running")).await >= 20
    })
    .await;
    // Every heartbeat asks the sentinels where the master is, over a connection kept open:
    // ten beats each of two workers open no connection per beat (two of those counted are this
    // test's own questions; a connection a worker's component opens once may fall in between).
    let before = group.connections_received().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let opened = group.connections_received().await - before;
    assert!(opened <= 5, "{opened} connections to the sentinel in ten heartbeats of two workers");
    group.failover().await;
    let replica_port = group.replica.port();
    poll_until("the replica promoted", Duration::from_secs(30), || async {
        group.master_port().await == replica_port
    })
    .await;
    let in_flight =
        batch.len() - count(&group.replica, &app.redis.prefix, &batch, Some("succeeded")).await;
    println!("runs in flight at the failover: {in_flight}");
    wait_count(&group.replica, &app.redis.prefix, &batch, batch.len(), &log).await;
    for worker in &mut workers {
        kill9(worker);
    }
    assert!(in_flight > 0, "runs were in flight when the master moved");
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("Redis master moved"), "the workers followed the master");
    assert!(!logs.contains(sentinel::PASSWORD), "the sentinels' password is never logged");
    assert_one_session_and_message_each(&app.audit().await, &batch);
}
