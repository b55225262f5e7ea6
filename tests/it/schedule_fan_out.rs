//! Fan-out of one tick, in process against a real Redis: deterministic run ids, repeats are
//! duplicates, users added with redis-cli join from the next tick, `skip` overlap, and `spread`.

use agentcron::config::{self, Env, ScheduleConfig};
use agentcron::ids::RunId;
use agentcron::queue::Queue;
use agentcron::schedule::{self, TickReport};
use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use crate::common::TestRedis;

/// A test's Redis namespace, queue and the one schedule of `schedule_toml`.
pub struct Fixture {
    pub redis: TestRedis,
    pub queue: Queue,
    pub schedule: ScheduleConfig,
    _dir: tempfile::TempDir,
}

/// The environment that points a configuration at `redis` (and at an unused Scalekit URL).
pub fn env_for(redis: &TestRedis) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", redis.url.clone()),
        ("AGENTCRON__REDIS__PREFIX", redis.prefix.clone()),
        ("SCALEKIT_ENV_URL", "http://127.0.0.1:9".to_owned()),
        // Schedulers of parallel tests (and two of one test) must not share the default port.
        ("AGENTCRON__OPS__SCHEDULER_BIND", "127.0.0.1:0".to_owned()),
    ]
}

pub async fn fixture(schedule_toml: &str) -> Fixture {
    let redis = TestRedis::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.toml");
    std::fs::write(&path, format!("[[schedule]]\n{schedule_toml}")).unwrap();
    let config = config::load(&path, &Env::from_pairs(env_for(&redis))).unwrap();
    let queue = Queue::connect(&config.redis).await.unwrap();
    let schedule = config.schedules.into_iter().next().unwrap();
    Fixture { redis, queue, schedule, _dir: dir }
}

fn tick(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

async fn fan_out(fixture: &Fixture, secs: i64) -> TickReport {
    schedule::fan_out(&fixture.queue, &fixture.schedule, tick(secs)).await.unwrap()
}

async fn state(fixture: &Fixture, user: &str, secs: i64) -> Option<String> {
    let id = RunId::scheduled(&fixture.schedule.name, user, secs).unwrap();
    let mut conn = fixture.redis.conn.clone();
    conn.hget(fixture.queue.keys().run(&id), "state").await.unwrap()
}

async fn set_state(fixture: &Fixture, user: &str, secs: i64, state: &str) {
    let id = RunId::scheduled(&fixture.schedule.name, user, secs).unwrap();
    let mut conn = fixture.redis.conn.clone();
    let () = conn.hset(fixture.queue.keys().run(&id), "state", state).await.unwrap();
}

/// `redis-cli SADD`/`SREM` on the schedule's user set, as an operator would; the redis crate
/// when the binary is absent.
async fn redis_cli(fixture: &Fixture, command: &str, user: &str) {
    let key = fixture.queue.keys().schedule_users(&fixture.schedule.name);
    let status = std::process::Command::new("redis-cli")
        .args(["-u", &fixture.redis.url, command, &key, user])
        .output();
    if status.is_ok_and(|output| output.status.success()) {
        return;
    }
    let mut conn = fixture.redis.conn.clone();
    let () = redis::cmd(command).arg(&key).arg(user).query_async(&mut conn).await.unwrap();
}

fn report(
    tick: i64,
    users: usize,
    enqueued: usize,
    duplicates: usize,
    skipped: usize,
) -> TickReport {
    TickReport { tick, users, enqueued, duplicates, skipped, invalid: 0, ..TickReport::default() }
}

#[tokio::test]
async fn a_tick_creates_one_run_per_user_and_a_repeat_creates_none() {
    let fixture =
        fixture("name = \"triage\"\ncron = \"0 8 * * *\"\nusers = [\"a@x\", \"b@x\"]\n").await;
    redis_cli(&fixture, "SADD", "c@x").await;
    redis_cli(&fixture, "SADD", "a@x").await;
    assert_eq!(fan_out(&fixture, 1_767_254_400).await, report(1_767_254_400, 3, 3, 0, 0));
    for user in ["a@x", "b@x", "c@x"] {
        assert_eq!(state(&fixture, user, 1_767_254_400).await.as_deref(), Some("queued"));
    }
    let record: std::collections::HashMap<String, String> = fixture
        .redis
        .conn
        .clone()
        .hgetall(fixture.queue.keys().run(&crate::common::run_id("triage:a@x:1767254400")))
        .await
        .unwrap();
    assert_eq!(record.get("schedule").map(String::as_str), Some("triage"));
    assert_eq!(record.get("user").map(String::as_str), Some("a@x"));
    // A second scheduler (or a restart) firing the same tick creates nothing.
    assert_eq!(fan_out(&fixture, 1_767_254_400).await, report(1_767_254_400, 3, 0, 3, 0));
    let ready: Vec<String> =
        fixture.redis.conn.clone().lrange(fixture.queue.keys().ready(), 0, -1).await.unwrap();
    let delayed: Vec<String> =
        fixture.redis.conn.clone().zrange(fixture.queue.keys().delayed(), 0, -1).await.unwrap();
    assert_eq!(ready.len() + delayed.len(), 3, "each run queued once: {ready:?} {delayed:?}");
}

#[tokio::test]
async fn a_user_added_with_redis_cli_is_included_from_the_next_tick() {
    let fixture = fixture(
        "name = \"triage\"\ncron = \"* * * * * *\"\nusers = [\"a@x\"]\noverlap = \"queue\"\n",
    )
    .await;
    assert_eq!(fan_out(&fixture, 100).await.users, 1);
    redis_cli(&fixture, "SADD", "new@x").await;
    assert_eq!(fan_out(&fixture, 101).await, report(101, 2, 2, 0, 0));
    assert_eq!(state(&fixture, "new@x", 100).await, None);
    assert_eq!(state(&fixture, "new@x", 101).await.as_deref(), Some("queued"));
    redis_cli(&fixture, "SREM", "new@x").await;
    assert_eq!(fan_out(&fixture, 102).await, report(102, 1, 1, 0, 0));
    assert_eq!(state(&fixture, "new@x", 102).await, None);
}

#[tokio::test]
async fn skip_overlap_skips_a_user_whose_previous_run_is_still_active() {
    let fixture = fixture(
        "name = \"triage\"\ncron = \"0 * * * * *\"\nusers = [\"a@x\", \"b@x\"]\noverlap = \"skip\"\n",
    )
    .await;
    assert_eq!(fan_out(&fixture, 60).await, report(60, 2, 2, 0, 0));
    // a's run finished; b's is still queued.
    set_state(&fixture, "a@x", 60, "succeeded").await;
    assert_eq!(fan_out(&fixture, 120).await, report(120, 2, 1, 0, 1));
    assert_eq!(state(&fixture, "b@x", 120).await, None);
    // b's first run failed and will retry: still active. a's second is running: active.
    set_state(&fixture, "b@x", 60, "failed").await;
    set_state(&fixture, "a@x", 120, "running").await;
    assert_eq!(fan_out(&fixture, 180).await, report(180, 2, 0, 0, 2));
    // Both end (dead, needs_auth): the next tick runs both again.
    set_state(&fixture, "b@x", 60, "dead").await;
    set_state(&fixture, "a@x", 120, "needs_auth").await;
    assert_eq!(fan_out(&fixture, 240).await, report(240, 2, 2, 0, 0));
    // Repeating a tick reports duplicates, not skips, although its runs are active.
    assert_eq!(fan_out(&fixture, 240).await, report(240, 2, 0, 2, 0));
    // A late replica repeating an older tick does not move the pointers back.
    assert_eq!(fan_out(&fixture, 180).await, report(180, 2, 0, 0, 2));
    assert_eq!(fan_out(&fixture, 300).await, report(300, 2, 0, 0, 2));
}

#[tokio::test]
async fn queue_overlap_enqueues_every_tick() {
    let fixture = fixture(
        "name = \"triage\"\ncron = \"0 * * * * *\"\nusers = [\"a@x\"]\noverlap = \"queue\"\n",
    )
    .await;
    assert_eq!(fan_out(&fixture, 60).await.enqueued, 1);
    assert_eq!(fan_out(&fixture, 120).await.enqueued, 1);
}

#[tokio::test]
async fn spread_offsets_are_deterministic_and_within_the_window() {
    let users: Vec<String> = (0..200).map(|i| format!("\"user{i}@x\"")).collect();
    let fixture = fixture(&format!(
        "name = \"triage\"\ncron = \"0 8 * * *\"\nspread = \"10m\"\nusers = [{}]\n",
        users.join(", ")
    ))
    .await;
    let tick_secs = 1_767_254_400;
    assert_eq!(fan_out(&fixture, tick_secs).await.enqueued, 200);
    let window = std::time::Duration::from_secs(600);
    let mut offsets = std::collections::BTreeSet::new();
    for i in 0..200 {
        let user = format!("user{i}@x");
        let id = RunId::scheduled("triage", &user, tick_secs).unwrap();
        let not_before: i64 = fixture
            .redis
            .conn
            .clone()
            .hget(fixture.queue.keys().run(&id), "not_before_ms")
            .await
            .unwrap();
        let offset = not_before - tick_secs * 1000;
        assert!((0..600_000).contains(&offset), "{user}: offset {offset} ms outside the window");
        let expect = schedule::spread_offset("triage", &user, window);
        assert_eq!(offset, i64::try_from(expect.as_millis()).unwrap(), "{user}");
        offsets.insert(offset);
    }
    assert!(offsets.len() > 190, "offsets should differ between users: {}", offsets.len());
}

#[tokio::test]
async fn invalid_users_from_redis_are_left_out_not_fatal() {
    let fixture = fixture("name = \"triage\"\ncron = \"0 8 * * *\"\nusers = [\"a@x\"]\n").await;
    redis_cli(&fixture, "SADD", " padded").await;
    let report = fan_out(&fixture, 1_767_254_400).await;
    assert_eq!((report.users, report.enqueued, report.invalid), (2, 1, 1));
}
