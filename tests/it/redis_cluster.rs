//! Redis Cluster (issue 24): three real masters, real `agentcron worker` processes given only
//! a seed node (`redis+cluster://`), runs from `enqueue` and from the `redis-cli -c` intake all
//! succeed once, `agentcron status` names the topology, and 1,000 runs over the queue's 16
//! shards lose and duplicate nothing while slots move to other masters (`redis-cli --cluster
//! reshard`) or a master fails over.

use std::process::Command;
use std::time::Duration;

use agentcron::config::Config;
use agentcron::queue::{ACL_RULES, CLUSTER_ACL_RULES, NewRun, Queue};
use redis::AsyncCommands;

use super::chaos_redis::{assert_one_session_and_message_each, runs};
use crate::common::agentcron_json;
use crate::common::app::{TestApp, spawn_app};
use crate::common::cluster::ClusterGroup;
use crate::common::poll::{WithLog, poll_until};
use crate::common::procs::{Worker, child_env_at, kill9, set_env, spawn_worker};

/// The test's configuration on `group`, with `setup` done there.
pub(crate) async fn setup_on_cluster(app: &TestApp, group: &ClusterGroup) -> Config {
    let mut config = (*app.config).clone();
    config.redis.url = group.url().parse().unwrap();
    config.redis.cluster = true;
    // What the workers, given only the cluster URL, take by default.
    config.redis.shards = 16;
    let mut conn = config.redis.connect(Default::default()).await.unwrap();
    let keys = config.redis.keys();
    let (scalekit, anthropic, _) = agentcron::run::clients(&config).unwrap();
    agentcron::setup::ensure(&config, &scalekit, &anthropic, &mut conn, &keys).await.unwrap();
    config
}

fn cluster_env(
    app: &TestApp,
    group: &ClusterGroup,
    dir: &std::path::Path,
) -> Vec<(String, String)> {
    let mut env = child_env_at(app, &group.url(), dir);
    set_env(&mut env, "AGENTCRON__WORKER__CONCURRENCY", "20");
    env
}

/// How many of `run_ids` have succeeded, read through agentcron's own cluster connection.
async fn succeeded(config: &Config, run_ids: &[String]) -> usize {
    let Ok(mut conn) = config.redis.connect(Default::default()).await else { return 0 };
    let keys = config.redis.keys();
    // One pipeline, which the cluster connection splits by slot.
    let mut pipe = redis::pipe();
    for id in run_ids {
        pipe.hget(keys.run(&crate::common::run_id(id)), "state");
    }
    let states: Vec<Option<String>> = pipe.query_async(&mut conn).await.unwrap_or_default();
    states.iter().filter(|state| state.as_deref() == Some("succeeded")).count()
}

async fn wait_succeeded(config: &Config, run_ids: &[String], log: &std::path::Path) {
    let want = run_ids.len();
    poll_until(&format!("{want} runs succeeded"), Duration::from_secs(120), || async {
        let n = succeeded(config, run_ids).await;
        if n == want { Ok(()) } else { Err(WithLog(format!("{n} succeeded"), log)) }
    })
    .await;
}

/// Two workers on the cluster going through `n` runs of about 300 ms of agent events each.
struct Busy {
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
    workers: Vec<Worker>,
    batch: Vec<NewRun>,
    run_ids: Vec<String>,
}

impl Busy {
    /// Starts them, and returns once `under_way` runs have succeeded.
    async fn start(
        app: &TestApp,
        group: &ClusterGroup,
        config: &Config,
        tag: &str,
        n: usize,
        under_way: usize,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = cluster_env(app, group, dir.path());
        let log = dir.path().join("workers.log");
        app.sim_client
            .add_fault(serde_json::json!({
                "method": "POST", "path": "/v1/sessions/*/events", "event_delay_ms": 300
            }))
            .await;
        let mut env = env;
        set_env(&mut env, "AGENTCRON__WORKER__CONCURRENCY", "100");
        let workers = (0..2).map(|_| spawn_worker(&env, &log)).collect();
        let batch = runs(tag, n);
        Queue::connect(&config.redis).await.unwrap().enqueue(&batch, "test").await.unwrap();
        let run_ids = ids(&batch);
        poll_until("runs under way", Duration::from_secs(60), || async {
            succeeded(config, &run_ids).await >= under_way
        })
        .await;
        Self { _dir: dir, log, workers, batch, run_ids }
    }

    /// Waits for every run to succeed, stops the workers, and checks the simulator's audit:
    /// one session and one message per run.
    /// Returns how many times a worker replaced its cluster connection, stuck in the crate's
    /// recovery (`config/redis_cluster.rs`), to be printed.
    async fn finish(mut self, app: &TestApp, config: &Config) -> usize {
        wait_succeeded(config, &self.run_ids, &self.log).await;
        let logs = std::fs::read_to_string(&self.log).unwrap_or_default();
        let stuck = logs.lines().filter(|line| line.contains("got no answer")).count();
        for worker in &mut self.workers {
            kill9(worker);
        }
        assert_one_session_and_message_each(&app.audit().await, &self.batch);
        stuck
    }
}

fn ids(batch: &[NewRun]) -> Vec<String> {
    batch.iter().map(|run| run.run_id.as_str().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_enqueued_and_intake_runs_and_status_names_it() {
    let app = spawn_app().await;
    let group = ClusterGroup::start().await;
    let config = setup_on_cluster(&app, &group).await;
    let dir = tempfile::tempdir().unwrap();
    let env = cluster_env(&app, &group, dir.path());
    let log = dir.path().join("workers.log");
    let mut workers: Vec<_> = (0..2).map(|_| spawn_worker(&env, &log)).collect();

    let batch = runs("cluster", 30);
    Queue::connect(&config.redis).await.unwrap().enqueue(&batch, "test").await.unwrap();
    // The redis-cli form of the intake, as README gives it: `-c` follows the slot's master.
    let intake = config.redis.keys().intake();
    let payload = r#"{"user":"intake@cluster.test","run_id":"cluster-intake"}"#;
    let pushed = ClusterGroup::cli(&group.nodes[1], &["LPUSH", &intake, payload]);
    assert_eq!(pushed.trim(), "1", "redis-cli -c LPUSH {intake}");
    let mut all = ids(&batch);
    all.push("cluster-intake".to_owned());
    wait_succeeded(&config, &all, &log).await;

    // The scheduler's ticks, on the same cluster.
    let jobs = dir.path().join("ticks.toml");
    std::fs::write(
        &jobs,
        "[[schedule]]\nname = \"tick\"\ncron = \"* * * * * *\"\noverlap = \"queue\"\n\
         users = [\"tick@cluster.test\"]\n",
    )
    .unwrap();
    // Killed on drop: a failing assertion below must not leave it ticking.
    let mut scheduler = crate::common::procs::Worker(
        Command::new(env!("CARGO_BIN_EXE_agentcron"))
            .arg("--config")
            .arg(&jobs)
            .arg("scheduler")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let tick_user = crate::common::user_id("tick@cluster.test");
    let conn = config.redis.connect(Default::default()).await.unwrap();
    // Each shard indexes its own runs: the user's runs are spread over all sixteen.
    let by_user: Vec<String> =
        config.redis.keys().each_shard().map(|keys| keys.runs_by_user(&tick_user)).collect();
    poll_until("two ticks ran", Duration::from_secs(60), || async {
        let mut ticked: Vec<String> = Vec::new();
        for index in &by_user {
            let ids: Vec<String> = conn.clone().zrange(index, 0, -1).await.unwrap_or_default();
            ticked.extend(ids);
        }
        let done = succeeded(&config, &ticked).await;
        if done >= 2 { Ok(()) } else { Err(WithLog(format!("{ticked:?}: {done} done"), &log)) }
    })
    .await;
    kill9(&mut scheduler);

    let report = agentcron_json(&env, &["status", "--json"]);
    let listed = agentcron_json(&env, &["runs", "--json"]);
    assert!(listed.to_string().contains("cluster-intake"), "runs lists the intake run: {listed}");
    let one = agentcron_json(&env, &["run", "cluster-intake", "--json"]);
    assert_eq!(one["record"]["state"], "succeeded", "{one}");
    assert_eq!(report["redis"]["topology"], "cluster", "{report}");
    assert_eq!(report["redis"]["masters"].as_array().map(Vec::len), Some(3), "{report}");
    assert_eq!(report["redis"]["shards"], 16, "{report}");
    assert_eq!(
        report["redis"]["shard_masters"], 3,
        "16 shards spread over the 3 masters: {report}"
    );
    assert!(report["runs_last_hour"]["succeeded"].as_u64() >= Some(31), "{report}");
    for worker in &mut workers {
        kill9(worker);
    }
    assert_one_session_and_message_each(&app.audit().await, &batch);
    // Removing a prefix (as the demo and benchmarks do) visits every master: the shards' keys
    // are spread over all three, and none is left.
    let mut conn = config.redis.connect(Default::default()).await.unwrap();
    let removed = agentcron::queue::remove_all_keys(&mut conn, &config.redis.keys(), 50).await;
    assert!(removed.unwrap() > 31 * 3, "records, indexes and transcripts of 31 runs");
    for node in &group.nodes {
        assert_eq!(ClusterGroup::cli(node, &["DBSIZE"]).trim(), "0", "port {}", node.port());
    }
}

/// Two slots move to other masters, a few keys at a time, while 1,000 runs spread over the
/// queue's 16 shards go through two workers: the control slot (shard 0, with the intake and the
/// users' locks) and another shard's. The clients follow `ASK` and `MOVED` and wait out
/// `TRYAGAIN` (a script whose keys are split between the two masters), and every run succeeds
/// with one session and one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_runs_over_sixteen_shards_survive_slot_migrations() {
    let app = spawn_app().await;
    let group = ClusterGroup::start().await;
    let config = setup_on_cluster(&app, &group).await;
    let busy = Busy::start(&app, &group, &config, "reshard", 1_000, 20).await;
    let keys = config.redis.keys();
    let shards: std::collections::BTreeSet<usize> =
        busy.batch.iter().map(|run| keys.shard_of(&run.run_id)).collect();
    assert_eq!(shards.len(), 16, "1,000 runs reach every shard");
    for shard in [0, 5] {
        let home = keys.shard(shard).ready();
        let (_, from_port) = group.owner_of(&home);
        let to = group.nodes.iter().find(|node| node.port() != from_port).unwrap();
        let moved = group.migrate_slot_of(&home, to, 5);
        println!("shard {shard}: {moved} keys moved with its slot");
        assert_ne!(group.owner_of(&home).1, from_port, "shard {shard}'s slot moved");
    }
    let done_at_move = succeeded(&config, &busy.run_ids).await;
    println!("runs succeeded when the slots had moved: {done_at_move} of {}", busy.run_ids.len());
    assert!(done_at_move < busy.run_ids.len(), "runs were in flight while the slots moved");
    let stuck = busy.finish(&app, &config).await;
    println!("cluster connections replaced after a request got no answer: {stuck}");
}

/// An ACL user with the documented rules and the cluster's key pattern runs the pipeline on the
/// cluster, and `status` reads it, without a single refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_the_cluster_rules_runs_the_pipeline() {
    let app = spawn_app().await;
    let group = ClusterGroup::start().await;
    let config = setup_on_cluster(&app, &group).await;
    // The control slot's keys and the shards': `~{<p>}:* ~{<p>:*}:*`.
    let patterns: Vec<String> =
        config.redis.keys().all().iter().map(|pattern| format!("~{pattern}")).collect();
    assert_eq!(patterns.len(), 2, "{patterns:?}");
    let password = "s3cret-cluster-acl-9c2e";
    for node in &group.nodes {
        let mut args = vec!["ACL", "SETUSER", "agentcron", "reset", "on"];
        let secret = format!(">{password}");
        args.push(secret.as_str());
        args.extend(patterns.iter().map(String::as_str));
        args.extend(ACL_RULES.split_whitespace().chain(CLUSTER_ACL_RULES.split_whitespace()));
        let out = Command::new("/usr/bin/redis-cli")
            .args(["-p", &node.port().to_string()])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut env = cluster_env(&app, &group, dir.path());
    set_env(&mut env, "REDIS_USERNAME", "agentcron");
    set_env(&mut env, "REDIS_PASSWORD", password);
    let log = dir.path().join("workers.log");
    let mut workers: Vec<_> = (0..2).map(|_| spawn_worker(&env, &log)).collect();
    let batch = runs("cluster-acl", 10);
    Queue::connect(&config.redis).await.unwrap().enqueue(&batch, "test").await.unwrap();
    wait_succeeded(&config, &ids(&batch), &log).await;
    let report = agentcron_json(&env, &["status", "--json"]);
    assert_eq!(report["redis"]["user"], "agentcron", "{report}");
    assert_eq!(report["redis"]["masters"].as_array().map(Vec::len), Some(3), "{report}");
    for worker in &mut workers {
        kill9(worker);
    }
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.to_uppercase().contains("NOPERM"), "the rules are enough: {logs}");
    assert!(!logs.contains(password), "the password is never logged");
    assert_one_session_and_message_each(&app.audit().await, &batch);
}

/// The master holding the deployment's slot fails over to its replica (`CLUSTER FAILOVER`, as
/// a managed service's maintenance does) while 100 runs go through two workers: the clients
/// follow the `MOVED` to the new master, and every run succeeds once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failover_mid_run_loses_and_duplicates_nothing() {
    let app = spawn_app().await;
    let mut group = ClusterGroup::start().await;
    let config = setup_on_cluster(&app, &group).await;
    let home = config.redis.keys().ready();
    let replica = group.add_replica_of(&home).await;
    let busy = Busy::start(&app, &group, &config, "failover", 100, 10).await;
    let (_, old_master) = group.owner_of(&home);
    group.failover_to(replica, &home).await;
    let done_at_failover = succeeded(&config, &busy.run_ids).await;
    println!("runs succeeded at the failover: {done_at_failover} of {}", busy.run_ids.len());
    assert_ne!(group.owner_of(&home).1, old_master, "the slot has a new master");
    assert!(done_at_failover < busy.run_ids.len(), "runs were in flight at the failover");
    let stuck = busy.finish(&app, &config).await;
    println!("cluster connections replaced after a request got no answer: {stuck}");
}

/// A seed node that is down when a worker starts is passed over for the next of
/// `redis.cluster_nodes`: the client learns the slot map from the first that answers.
#[tokio::test]
async fn a_seed_that_is_down_is_passed_over_for_the_next() {
    let app = spawn_app().await;
    let group = ClusterGroup::start().await;
    let mut config = setup_on_cluster(&app, &group).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    config.redis.url = format!("redis+cluster://127.0.0.1:{dead}").parse().unwrap();
    config.redis.cluster_nodes = vec![format!("127.0.0.1:{}", group.nodes[2].port())];
    let queue = Queue::connect(&config.redis).await.unwrap();
    let batch = runs("seeds", 3);
    queue.enqueue(&batch, "test").await.unwrap();
    let mut conn = queue.connection();
    let key = config.redis.keys().run(&batch[0].run_id);
    let state: Option<String> = conn.hget(&key, "state").await.unwrap();
    assert_eq!(state.as_deref(), Some("queued"), "{key}");
    // With the dead seed alone, connecting fails and names it.
    config.redis.cluster_nodes.clear();
    let error = Queue::connect(&config.redis).await.unwrap_err().to_string();
    assert!(error.contains(&dead.to_string()), "{error}");
}
