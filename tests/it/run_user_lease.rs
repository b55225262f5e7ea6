//! The per-user lease between runs of one user: a run that found the user busy starts as soon
//! as the holder releases the lease (it is woken), not when the lease would have expired; and
//! the list of waiting runs is bounded and expires. On one node, over shards, and on a cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agentcron::config::Config;
use agentcron::queue::{NewRun, Queue};
use agentcron::records::Phase;
use agentcron::run::{Context, FailPoint, LEASE_WAITERS_CAP, RunError};
use agentcron::telemetry::Redactor;
use redis::AsyncCommands;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::redis_cluster::setup_on_cluster;
use crate::common::app::{TestApp, spawn_app_with};
use crate::common::cluster::ClusterGroup;
use crate::common::{poll_until, run_id, user_id};

/// Works `runs` of one user with an in-process worker (the real pipeline, against the
/// simulator, whose agent pauses `event_delay_ms` after each event so that a turn takes
/// seconds) until all succeeded, and returns each run's (start, end) in unix ms, by end.
async fn work_one_user(app: &TestApp, runs: &[&str], user: &str) -> Vec<(String, i64, i64)> {
    work_one_user_on(app, (app.config.clone(), app.ctx.clone()), runs, user).await
}

/// [`work_one_user`] with `config` and its run context (another Redis than the app's).
async fn work_one_user_on(
    app: &TestApp,
    (config, ctx): (Arc<Config>, Context),
    runs: &[&str],
    user: &str,
) -> Vec<(String, i64, i64)> {
    let slow = json!({"method": "POST", "path": "/v1/sessions/*/events", "event_delay_ms": 400});
    app.sim_client.add_fault(slow).await;
    let new: Vec<NewRun> =
        runs.iter().map(|id| NewRun { run_id: run_id(id), ..NewRun::now(user_id(user)) }).collect();
    Queue::connect(&config.redis).await.unwrap().enqueue(&new, "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { agentcron::worker::run(&config, ctx, shutdown).await }
    });
    let conn = config.redis.connect(Default::default()).await.unwrap();
    let keys = config.redis.keys();
    // The old wait was the lease's remaining time (30 s) per run: three runs took about 60 s.
    let records = poll_until("every run of the user succeeded", Duration::from_secs(40), || {
        let (mut conn, keys) = (conn.clone(), keys.clone());
        async move {
            let mut records = Vec::new();
            for id in runs {
                let record: HashMap<String, String> =
                    conn.hgetall(keys.run(&run_id(id))).await.unwrap();
                records.push(((*id).to_owned(), record));
            }
            let done = |(_, record): &(String, HashMap<String, String>)| {
                record.get("state").is_some_and(|state| state == "succeeded")
            };
            if records.iter().all(done) { Ok(records) } else { Err(records) }
        }
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), worker).await.unwrap().unwrap().unwrap();
    let mut times: Vec<(String, i64, i64)> = records
        .into_iter()
        .map(|(id, record)| {
            let ms = |field: &str| record.get(field).unwrap().parse::<i64>().unwrap();
            (id, ms("started_at_ms"), ms("ended_at_ms"))
        })
        .collect();
    times.sort_by_key(|(_, _, ended)| *ended);
    times
}

/// Each run starts within 5 s of the previous one's end; the lease (30 s, the shipped value)
/// would have kept it waiting about 30 s. See: issue 25.
fn assert_each_starts_when_the_previous_ends(times: &[(String, i64, i64)]) {
    for pair in times.windows(2) {
        let ((previous, _, ended), (next, started, _)) = (&pair[0], &pair[1]);
        let gap = started - ended;
        assert!(gap < 5_000, "{next} started {gap} ms after {previous} ended: {times:?}");
    }
}

#[tokio::test]
async fn a_users_next_run_starts_when_the_previous_one_ends() {
    let app = spawn_app_with(|_| {}).await;
    let times =
        work_one_user(&app, &["r-next-1", "r-next-2", "r-next-3"], "next@example.com").await;
    assert_each_starts_when_the_previous_ends(&times);
}

/// With shards the lease and its waiters are in the control slot and the runs in theirs: the
/// wake is a call on each run's shard.
#[tokio::test]
async fn a_users_next_run_starts_when_the_previous_one_ends_with_shards() {
    let app = spawn_app_with(|config| config.redis.shards = 4).await;
    let runs = ["r-shard-next-1", "r-shard-next-2", "r-shard-next-3", "r-shard-next-4"];
    let keys = &app.ctx.keys;
    let shards: std::collections::BTreeSet<usize> =
        runs.iter().map(|id| keys.shard_of(&crate::common::run_id(id))).collect();
    assert!(shards.len() > 1, "the runs are spread over shards: {shards:?}");
    let times = work_one_user(&app, &runs, "shard-next@example.com").await;
    assert_each_starts_when_the_previous_ends(&times);
}

/// On Redis Cluster with 16 shards, each in its own slot: the lease and its waiters are in
/// the control slot, each run's keys in its shard's, and no script crosses slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_next_run_starts_when_the_previous_one_ends_on_a_cluster() {
    let app = spawn_app_with(|_| {}).await;
    let group = ClusterGroup::start().await;
    let config = Arc::new(setup_on_cluster(&app, &group).await);
    let ctx =
        Context::connect(config.clone(), Redactor::new(config.secret_values())).await.unwrap();
    let runs = ["r-cluster-next-1", "r-cluster-next-2", "r-cluster-next-3"];
    let times = work_one_user_on(&app, (config, ctx), &runs, "cluster-next@example.com").await;
    assert_each_starts_when_the_previous_ends(&times);
}

/// Runs that find the user busy are noted as waiters, at most `LEASE_WAITERS_CAP`, in a key
/// that expires with the lease: a holder that never releases (its worker died) leaves nothing
/// behind.
#[tokio::test]
async fn the_waiters_of_a_busy_user_are_bounded_and_expire() {
    let lease = Duration::from_secs(5);
    let app = spawn_app_with(|config| config.worker.lease = lease).await;
    let user = "crowd@example.com";
    app.create_run("r-holder", user).await;
    // A crash after taking the lease: it is held and never released.
    let crashing = agentcron::run::Context {
        fail_point: Some(FailPoint::Before(Phase::Streaming)),
        ..app.ctx.clone()
    };
    app.execute_with(&crashing, "r-holder").await.unwrap_err();
    let n_waiting = LEASE_WAITERS_CAP + 8;
    for i in 0..n_waiting {
        let run_id = format!("r-crowd-{i}");
        app.create_run(&run_id, user).await;
        let busy = app.execute(&run_id).await.unwrap_err();
        assert!(matches!(&busy, RunError::Busy { holder, .. } if holder == "r-holder"), "{busy}");
    }
    let waiters = app.ctx.keys.user_lock_waiters(&user_id(user));
    let mut conn = app.conn.clone();
    let noted: Vec<String> = conn.zrange(&waiters, 0, -1).await.unwrap();
    assert_eq!(noted.len(), LEASE_WAITERS_CAP, "{noted:?}");
    assert_eq!(noted.first().map(String::as_str), Some("r-crowd-0"), "oldest first: {noted:?}");
    let ttl_ms: i64 = conn.pttl(&waiters).await.unwrap();
    assert!(ttl_ms > 0 && ttl_ms <= 5_000, "expires with the lease: {ttl_ms} ms");
    poll_until("the waiters' key expired", Duration::from_secs(20), || async {
        let exists: bool = app.conn.clone().exists(&waiters).await.unwrap();
        (!exists).then_some(())
    })
    .await;
}

/// Releasing the lease hands over the waiters (oldest first) and empties the list; a later
/// holder meets none of them.
#[tokio::test]
async fn the_holders_release_takes_the_waiters() {
    let app = spawn_app_with(|_| {}).await;
    let user = "handover@example.com";
    app.create_run("r-first", user).await;
    app.create_run("r-second", user).await;
    let crashing = agentcron::run::Context {
        fail_point: Some(FailPoint::Before(Phase::Streaming)),
        ..app.ctx.clone()
    };
    app.execute_with(&crashing, "r-first").await.unwrap_err();
    app.execute("r-second").await.unwrap_err();
    let waiters = app.ctx.keys.user_lock_waiters(&user_id(user));
    let noted: Vec<String> = app.conn.clone().zrange(&waiters, 0, -1).await.unwrap();
    assert_eq!(noted, ["r-second"]);
    let mut timeline = agentcron::run::Timeline::default();
    let run_id = crate::common::run_id("r-first");
    let cancel = CancellationToken::new();
    agentcron::run::execute(&app.ctx, &run_id, None, None, &cancel, &mut timeline).await.unwrap();
    let woken: Vec<&str> = timeline.woken.iter().map(|id| id.as_str()).collect();
    assert_eq!(woken, ["r-second"]);
    let exists: bool = app.conn.clone().exists(&waiters).await.unwrap();
    assert!(!exists, "the release emptied the waiters");
}
