//! The scheduler daemon as real `agentcron scheduler` processes on one Redis: two replicas
//! enqueue every (user, tick) exactly once, catch-up enqueues a missed tick once across
//! restarts, a changed `jobs.toml` is applied and an invalid one is rejected, and `schedules`
//! reports the last tick.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{Timelike, Utc};
use redis::AsyncCommands;

use super::schedule_fan_out::env_for;
use crate::common::poll::Text;
use crate::common::{TestRedis, poll_until};

/// A running `agentcron scheduler`, killed on drop so a failed test leaves no process behind.
struct Scheduler {
    child: Child,
    log: PathBuf,
}

impl Scheduler {
    fn spawn(config: &Path, redis: &TestRedis, log: PathBuf) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_agentcron"));
        command.arg("--config").arg(config).arg("scheduler");
        for (name, _) in std::env::vars() {
            if name.starts_with("AGENTCRON") || name.starts_with("SCALEKIT_") || name == "REDIS_URL"
            {
                command.env_remove(name);
            }
        }
        command.envs(env_for(redis)).env("RUST_LOG", "info");
        let stderr = std::fs::File::create(&log).unwrap();
        let child = command.stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
        Self { child, log }
    }

    /// SIGTERM, then the exit status: the scheduler must stop cleanly with 0. Returns the log.
    async fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let child = &mut self.child;
        let exit =
            poll_until("the scheduler to stop after SIGTERM", Duration::from_secs(20), || {
                let exited = child.try_wait().unwrap();
                async move { exited }
            })
            .await;
        let log = self.log();
        assert!(exit.success(), "scheduler exited with {exit}: {log}");
        log
    }

    /// The log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `line`.
    async fn wait_for_log(&self, line: &str) {
        poll_until(&format!("the scheduler to log {line:?}"), Duration::from_secs(30), || async {
            let log = self.log();
            if log.contains(line) { Ok(()) } else { Err(Text(log)) }
        })
        .await;
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // Best effort: the process may have exited already.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn write_config(dir: &Path, schedule_toml: &str) -> PathBuf {
    let path = dir.join("jobs.toml");
    // Write-then-rename, as editors and config management do, so the daemon never reads half.
    let tmp = dir.join("jobs.toml.tmp");
    std::fs::write(&tmp, schedule_toml).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Run ids of the schedule `name`, read from the `<p>:runs` index.
async fn run_ids(redis: &TestRedis) -> Vec<String> {
    let mut conn = redis.conn.clone();
    conn.zrange(format!("{}:runs", redis.prefix), 0, -1).await.unwrap()
}

/// Ticks (unix seconds) → users with a run, parsed from `<schedule>:<user>:<tick>` ids.
fn by_tick(ids: &[String]) -> BTreeMap<i64, BTreeSet<String>> {
    let mut ticks: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for id in ids {
        let (rest, tick) = id.rsplit_once(':').unwrap();
        let (_, user) = rest.split_once(':').unwrap();
        ticks.entry(tick.parse().unwrap()).or_default().insert(user.to_owned());
    }
    ticks
}

/// Waits until `check` holds for the run ids, or fails after `limit` showing the last ids.
async fn wait_for(
    redis: &TestRedis,
    limit: Duration,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) {
    poll_until(what, limit, || async {
        let ids = run_ids(redis).await;
        if check(&ids) { Ok(()) } else { Err(ids) }
    })
    .await;
}

/// Every queued run id, with how often it sits in the ready list and the delayed set.
async fn queued_counts(redis: &TestRedis) -> BTreeMap<String, usize> {
    let mut conn = redis.conn.clone();
    let ready: Vec<String> = conn.lrange(format!("{}:q:ready", redis.prefix), 0, -1).await.unwrap();
    let delayed: Vec<String> =
        conn.zrange(format!("{}:q:delayed", redis.prefix), 0, -1).await.unwrap();
    let mut counts = BTreeMap::new();
    for id in ready.into_iter().chain(delayed) {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn two_schedulers_enqueue_every_user_and_tick_exactly_once() {
    let redis = TestRedis::new().await;
    let dir = tempfile::tempdir().unwrap();
    let users = ["u1@x", "u2@x", "u3@x", "u4@x", "u5@x"];
    let config = write_config(
        dir.path(),
        "[[schedule]]\nname = \"every-second\"\ncron = \"* * * * * *\"\noverlap = \"queue\"\n\
         users = [\"u1@x\", \"u2@x\", \"u3@x\", \"u4@x\", \"u5@x\"]\n",
    );
    let first = Scheduler::spawn(&config, &redis, dir.path().join("first.log"));
    let second = Scheduler::spawn(&config, &redis, dir.path().join("second.log"));
    wait_for(&redis, Duration::from_secs(60), "12 ticks", |ids| by_tick(ids).len() >= 12).await;
    let (first_log, second_log) = (first.stop().await, second.stop().await);
    assert!(first_log.contains("Tick fanned out"), "first scheduler never fanned out: {first_log}");
    assert!(second_log.contains("Tick fanned out"), "second never fanned out: {second_log}");

    let ticks = by_tick(&run_ids(&redis).await);
    let (first_tick, last_tick) = (*ticks.keys().next().unwrap(), *ticks.keys().last().unwrap());
    // Every second between the first and the last tick fired for every user (the last one may
    // have been cut by the stop), with no gap.
    for tick in first_tick..last_tick {
        let got = ticks.get(&tick).cloned().unwrap_or_default();
        let expect: BTreeSet<String> = users.iter().map(|user| (*user).to_owned()).collect();
        assert_eq!(got, expect, "tick {tick}");
    }
    // Exactly once: each run id is queued once, though both replicas fanned out each tick.
    let counts = queued_counts(&redis).await;
    assert!(counts.values().all(|n| *n == 1), "a run was queued twice: {counts:?}");
    assert_eq!(counts.len(), ticks.values().map(BTreeSet::len).sum::<usize>());
}

#[tokio::test(flavor = "multi_thread")]
async fn catch_up_enqueues_a_missed_tick_once_and_not_again_after_a_second_restart() {
    let redis = TestRedis::new().await;
    let dir = tempfile::tempdir().unwrap();
    // A yearly schedule whose tick was 30 seconds ago: only catch-up can enqueue it.
    let missed = Utc::now().with_nanosecond(0).unwrap() - chrono::Duration::seconds(30);
    let cron = missed.format("%-S %-M %-H %-d %-m *").to_string();
    let config = write_config(
        dir.path(),
        &format!(
            "[[schedule]]\nname = \"yearly\"\ncron = \"{cron}\"\ncatch_up = \"10m\"\n\
             users = [\"a@x\", \"b@x\"]\n"
        ),
    );
    let expect: Vec<String> =
        ["a@x", "b@x"].iter().map(|user| format!("yearly:{user}:{}", missed.timestamp())).collect();
    let stats_key = format!("{}:schedule:yearly", redis.prefix);

    let first = Scheduler::spawn(&config, &redis, dir.path().join("first.log"));
    wait_for(&redis, Duration::from_secs(30), "the caught-up tick", |ids| sorted(ids) == expect)
        .await;
    wait_for_stats(&redis, &stats_key, 1).await;
    first.stop().await;

    // The second start fans the same tick out again (its stats update proves it ran)...
    let mut conn = redis.conn.clone();
    let updated: i64 = conn.hget(&stats_key, "updated_at_ms").await.unwrap();
    let second = Scheduler::spawn(&config, &redis, dir.path().join("second.log"));
    wait_for_stats(&redis, &stats_key, updated + 1).await;
    second.stop().await;
    // ...and creates nothing: the same two runs, each queued once, counted once.
    assert_eq!(sorted(&run_ids(&redis).await), expect);
    let counts = queued_counts(&redis).await;
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [1, 1], "{counts:?}");
    let enqueued: i64 = conn.hget(&stats_key, "enqueued").await.unwrap();
    assert_eq!(enqueued, 2);
}

fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

/// Waits until the schedule's statistics at `key` were updated at or after `at_least_ms`.
async fn wait_for_stats(redis: &TestRedis, key: &str, at_least_ms: i64) {
    let conn = redis.conn.clone();
    poll_until(&format!("tick statistics at {key}"), Duration::from_secs(30), || {
        let mut conn = conn.clone();
        async move {
            let updated: Option<i64> = conn.hget(key, "updated_at_ms").await.unwrap();
            if updated.unwrap_or(0) >= at_least_ms { Ok(()) } else { Err(updated) }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_jobs_toml_is_applied_and_an_invalid_one_is_rejected() {
    let redis = TestRedis::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[schedule]]\nname = \"later\"\ncron = \"0 0 0 1 1 *\"\nusers = [\"a@x\"]\n",
    );
    let scheduler = Scheduler::spawn(&config, &redis, dir.path().join("daemon.log"));
    // It has loaded the first file (and noted its modification time) before the change.
    scheduler.wait_for_log("Schedule added.").await;
    write_config(
        dir.path(),
        "[[schedule]]\nname = \"now\"\ncron = \"* * * * * *\"\noverlap = \"queue\"\nusers = [\"a@x\"]\n",
    );
    wait_for(&redis, Duration::from_secs(30), "the new schedule to fire", |ids| {
        ids.iter().any(|id| id.starts_with("now:a@x:"))
    })
    .await;
    write_config(dir.path(), "[[schedule]]\nname = \"broken\"\ncron = \"61 * * * * *\"\n");
    // The invalid file is rejected; the running schedule keeps firing.
    scheduler.wait_for_log("Rejected the new configuration").await;
    let n_runs = run_ids(&redis).await.len();
    wait_for(&redis, Duration::from_secs(30), "more ticks after the invalid file", |ids| {
        ids.len() >= n_runs + 2
    })
    .await;
    let log = scheduler.stop().await;
    assert!(log.contains("Rejected the new configuration"), "{log}");
    assert!(log.contains("Schedule added"), "{log}");
    assert!(!run_ids(&redis).await.iter().any(|id| id.starts_with("broken:")));
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_reports_next_fire_times_and_the_last_tick() {
    let redis = TestRedis::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[schedule]]\nname = \"triage\"\ncron = \"0 8 * * Mon-Fri\"\n\
         timezone = \"America/New_York\"\nusers = [\"a@x\", \"b@x\"]\n",
    );
    let env: Vec<(&str, String)> = env_for(&redis);
    let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let config_arg = config.to_str().unwrap();
    let output = crate::common::agentcron(
        &["--config", config_arg, "schedules", "--json"],
        &env,
        dir.path(),
    );
    let (stdout, stderr) = crate::common::text(&output);
    assert!(output.status.success(), "{stderr}");
    let reports: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let triage = &reports[0];
    assert_eq!(triage["name"], "triage");
    assert_eq!(triage["users"], 2);
    assert_eq!(triage["next"].as_array().unwrap().len(), 3);
    let local = triage["next"][0]["local"].as_str().unwrap();
    assert!(local.contains("T08:00:00-0"), "{local}");
    assert!(triage["last_tick"].is_null());
    let table = crate::common::agentcron(&["--config", config_arg, "schedules"], &env, dir.path());
    let (stdout, _) = crate::common::text(&table);
    assert!(stdout.contains("triage") && stdout.contains("last      never"), "{stdout}");
}
