//! A queue of several shards (`redis.shards`, issue 24) on one node: every producer (enqueue,
//! the redis-cli intake, a schedule's fan-out) places each run in its shard, real worker
//! processes run each once, the reports count every shard, a worker killed while it handles
//! the intake creates no run twice, and a process configured with another shard count refuses
//! to start. The same code on a 3-master cluster is in `redis_cluster.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use agentcron::config::{self, Env};
use agentcron::keys::Keys;
use agentcron::queue::Queue;
use redis::AsyncCommands;

use super::chaos_redis::{assert_one_session_and_message_each, runs};
use crate::common::app::{TestApp, spawn_app_with};
use crate::common::poll::{WithLog, poll_until};
use crate::common::procs::{Worker, child_env, kill9, set_env, signal, spawn_worker};
use crate::common::{agentcron, agentcron_json, text};

const SHARDS: usize = 3;

async fn sharded_app() -> TestApp {
    spawn_app_with(|config| config.redis.shards = SHARDS).await
}

/// The environment of a worker (or any command) of `app`'s sharded queue.
fn sharded_env(app: &TestApp, dir: &std::path::Path) -> Vec<(String, String)> {
    let mut env = child_env(app, dir);
    set_env(&mut env, "AGENTCRON__REDIS__SHARDS", &SHARDS.to_string());
    let shipped = crate::common::shipped_config().display().to_string();
    set_env(&mut env, "AGENTCRON_CONFIG", &shipped);
    env
}

/// Sums `command` of the key `key` gives in each shard.
async fn over_shards(app: &TestApp, command: &str, key: impl Fn(&Keys) -> String) -> usize {
    let queue = Queue::connect(&app.config.redis).await.unwrap();
    queue.sum_over_shards(command, key).await.unwrap()
}

async fn n_succeeded(app: &TestApp) -> usize {
    over_shards(app, "ZCARD", |keys| keys.runs_by_state("succeeded")).await
}

/// Runs of `user`, over every shard.
async fn runs_of(app: &TestApp, user: &str) -> usize {
    let user = crate::common::user_id(user);
    over_shards(app, "ZCARD", |keys| keys.runs_by_user(&user)).await
}

async fn wait_all_succeeded(app: &TestApp, want: usize, log: &std::path::Path) {
    poll_until(&format!("{want} runs succeeded"), Duration::from_secs(90), || async {
        let n = n_succeeded(app).await;
        if n >= want { Ok(()) } else { Err(WithLog(format!("{n} succeeded"), log)) }
    })
    .await;
}

/// Runs from `enqueue`, from the intake and from a schedule's fan-out land in all three shards,
/// ring the bell for theirs, and two worker processes run each once; `status` and `runs` count
/// them over every shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_producer_reaches_every_shard_and_each_run_runs_once() {
    let app = sharded_app().await;
    let keys = app.config.redis.keys();
    let queue = Queue::connect(&app.config.redis).await.unwrap();
    queue.check_layout().await.unwrap();
    let mut conn = app.conn.clone();

    // Enqueued before any worker runs: each run's record is in its shard, and the bell names
    // every shard that got one.
    let batch = runs("shard", 30);
    queue.enqueue(&batch, "test").await.unwrap();
    let shards: BTreeSet<usize> = batch.iter().map(|run| keys.shard_of(&run.run_id)).collect();
    assert_eq!(shards.len(), SHARDS, "30 ids reach every shard");
    let rung: Vec<usize> = conn.lrange(keys.bell(), 0, -1).await.unwrap();
    assert_eq!(rung.iter().copied().collect::<BTreeSet<_>>(), shards, "{rung:?}");
    for run in &batch {
        let shard = keys.shard_of(&run.run_id);
        let listed: Option<usize> =
            conn.zrank(keys.shard(shard).runs(), run.run_id.as_str()).await.unwrap();
        assert!(listed.is_some(), "{} is indexed in shard {shard}", run.run_id);
        let record = keys.run(&run.run_id);
        let expected = if shard == 0 {
            format!("{}:run:", app.redis.prefix)
        } else {
            format!("{}:{shard}:run:", app.redis.prefix)
        };
        assert!(record.starts_with(&expected), "{record}");
    }

    // The intake, as README's redis-cli form pushes it: no run ids.
    for i in 0..30 {
        let payload = serde_json::json!({"user": format!("intake{i}@shards.test")}).to_string();
        let _: usize = conn.lpush(keys.intake(), payload).await.unwrap();
    }
    // A tick of a schedule of 30 users.
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.toml");
    let users: Vec<String> = (0..30).map(|i| format!("\"tick{i}@shards.test\"")).collect();
    let schedule = format!(
        "[[schedule]]\nname = \"daily\"\ncron = \"0 8 * * *\"\nusers = [{}]\n",
        users.join(", ")
    );
    std::fs::write(&jobs, schedule).unwrap();
    let env_pairs =
        [("REDIS_URL", app.redis.url.clone()), ("SCALEKIT_ENV_URL", app.sim.base_url().to_owned())];
    let mut schedule_config = config::load(&jobs, &Env::from_pairs(env_pairs)).unwrap();
    schedule_config.redis = app.config.redis.clone();
    let tick = chrono::DateTime::from_timestamp(1_767_254_400, 0).unwrap();
    let report =
        agentcron::schedule::fan_out(&queue, &schedule_config.schedules[0], tick).await.unwrap();
    assert_eq!(report.enqueued, 30, "{report:?}");

    let env = sharded_env(&app, dir.path());
    let log = dir.path().join("workers.log");
    let mut workers: Vec<Worker> = (0..2).map(|_| spawn_worker(&env, &log)).collect();
    wait_all_succeeded(&app, 90, &log).await;
    for worker in &mut workers {
        kill9(worker);
    }
    for i in 0..30 {
        assert_eq!(runs_of(&app, &format!("intake{i}@shards.test")).await, 1, "intake{i}");
        assert_eq!(runs_of(&app, &format!("tick{i}@shards.test")).await, 1, "tick{i}");
    }
    assert_one_session_and_message_each(&app.audit().await, &batch);
    let audit = app.audit().await;
    assert_eq!(audit["sessions"].as_array().map(Vec::len), Some(90), "one session per run");

    let status = agentcron_json(&env, &["status", "--json"]);
    assert_eq!(status["runs_last_hour"]["succeeded"], 90, "{status}");
    assert_eq!(status["queue"]["pending"], 0, "{status}");
    assert_eq!(status["redis"]["shards"], SHARDS, "{status}");
    let listed = agentcron_json(&env, &["runs", "--json", "--limit", "1000"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(90), "runs lists every shard's runs");
    let newest = agentcron_json(&env, &["runs", "--json", "--limit", "5"]);
    assert_eq!(newest.as_array().map(Vec::len), Some(5), "{newest}");
}

/// A worker SIGKILLed while it turns intake payloads (without run ids) into runs leaves them
/// stamped with their run ids in its intake list; the worker that takes them over creates no
/// run twice: every user has exactly one run. Rounds of 300 payloads go on until the worker is
/// caught holding a stamped payload: frozen (SIGSTOP) as soon as one is seen, looked at again,
/// and killed frozen, so the kill lands between the stamp and the acknowledgement for sure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_it_takes_the_intake_creates_each_run_once() {
    const ROUND: usize = 300;
    let app = sharded_app().await;
    let keys = app.config.redis.keys();
    Queue::connect(&app.config.redis).await.unwrap().check_layout().await.unwrap();
    let mut conn = app.conn.clone();
    let dir = tempfile::tempdir().unwrap();
    let env = sharded_env(&app, dir.path());
    let log = dir.path().join("workers.log");
    let (mut pushed, mut stamped) = (0, 0);
    while stamped == 0 && pushed < 8 * ROUND {
        let mut pipe = redis::pipe();
        for i in pushed..pushed + ROUND {
            let payload = serde_json::json!({"user": format!("kill{i}@shards.test")}).to_string();
            pipe.lpush(keys.intake(), payload).ignore();
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();
        pushed += ROUND;
        let mut worker = spawn_worker(&env, &log);
        stamped = freeze_holding_a_stamp(&app, &worker, pushed).await;
        kill9(&mut worker);
        let created = over_shards(&app, "ZCARD", Keys::runs).await;
        println!("killed with {created} of {pushed} runs created, {stamped} payloads stamped");
    }
    assert!(stamped > 0, "a kill landed between a stamp and its acknowledgement");

    let _drainer = spawn_worker(&env, &log);
    wait_all_succeeded(&app, pushed, &log).await;
    assert_eq!(over_shards(&app, "ZCARD", Keys::runs).await, pushed, "no run was created twice");
    for i in (0..pushed).step_by(7) {
        assert_eq!(runs_of(&app, &format!("kill{i}@shards.test")).await, 1, "kill{i}");
    }
    let left: usize = conn.llen(keys.intake()).await.unwrap();
    assert_eq!(left, 0, "the intake is drained");
}

/// Watches `worker`'s intake lists until one holds a stamped payload, then freezes the worker
/// and counts the stamped payloads it holds frozen (a kill now leaves them); a worker frozen
/// just after its acknowledgement is let go on. Returns 0 once `pushed` runs exist.
async fn freeze_holding_a_stamp(app: &TestApp, worker: &Worker, pushed: usize) -> usize {
    let (keys, conn) = (app.config.redis.keys(), app.conn.clone());
    let stamped_now = |mut conn: agentcron::config::RedisConn| {
        let keys = keys.clone();
        async move {
            let owners: Vec<String> = conn.zrange(keys.leases(), 0, -1).await.unwrap();
            let mut stamped = 0;
            for owner in &owners {
                let held: Vec<String> =
                    conn.lrange(keys.intake_processing(owner), 0, -1).await.unwrap();
                stamped += held.iter().filter(|payload| payload.contains("run_id")).count();
            }
            stamped
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if stamped_now(conn.clone()).await > 0 {
            signal(worker, "-STOP");
            let stamped = stamped_now(conn.clone()).await;
            if stamped > 0 {
                return stamped;
            }
            signal(worker, "-CONT");
        }
        if over_shards(app, "ZCARD", Keys::runs).await >= pushed {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the worker neither held a stamped payload nor created the {pushed} runs in 60 s");
}

/// The queue remembers its shard count: a command configured with another refuses to run and
/// says which count to set, and nothing is enqueued.
#[tokio::test]
async fn a_process_with_another_shard_count_refuses_to_start() {
    let app = sharded_app().await;
    Queue::connect(&app.config.redis).await.unwrap().check_layout().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = sharded_env(&app, dir.path());
    set_env(&mut env, "AGENTCRON__REDIS__SHARDS", "2");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = agentcron(&["enqueue", "alice@example.com"], &env, dir.path());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("redis.shards is 2, but the queue in Redis was created with 3 shards"),
        "{stderr}"
    );
    assert_eq!(over_shards(&app, "ZCARD", Keys::runs).await, 0, "nothing was enqueued");
}
