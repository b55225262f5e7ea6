//! The data behind every report — `status`, `runs`, `run`, `transcript`, `notices` — read from
//! Redis and shaped for both the CLI and the HTTP `/api/*` endpoints (so both always agree).
//!
//! Reads only. It must not change run state and must not render (that is `cli` and `http`).

mod depths;
mod notices;
mod run_detail;
mod tokens;
mod topology;
mod typed;

use std::collections::{BTreeMap, HashMap};

use crate::config::RedisConn;
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::ids::{RunId, SessionId, UserId};
use crate::keys::Keys;
use crate::outcome::RunState;
use crate::records::{RecordsError, now_ms};

pub(crate) use self::depths::depths;
pub use self::notices::{Notice, notices};
pub use self::run_detail::{PhaseSpan, RunDetail, render_line, run};
pub use self::tokens::{Spend, UsageBy, UsageRow, usage};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Failures shown on the status screen.
const N_FAILURES: usize = 5;

/// Queue depths.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct QueueDepths {
    /// Ready to run.
    pub pending: u64,
    /// Waiting for a retry or `not_before`.
    pub scheduled: u64,
    /// Taken by workers.
    pub running: u64,
    /// Dead letters.
    pub dead: u64,
    /// Rejected intake payloads.
    pub rejected: u64,
    /// Intake payloads not yet moved.
    pub intake: u64,
    /// Runs each worker holds now (its processing lists), by worker id.
    pub by_worker: BTreeMap<String, u64>,
}

/// One worker's heartbeat.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    /// The worker id.
    pub id: String,
    /// What the worker last reported (host, pid, in-flight runs, times).
    pub heartbeat: Value,
    /// When its lease expires (unix ms); past means it is presumed dead.
    pub lease_expires_at_ms: Option<i64>,
    /// Runs it holds now, read from its processing lists (its heartbeat's `in_flight` is as
    /// old as the heartbeat).
    pub in_flight: u64,
}

/// A run, as listed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunSummary {
    /// The run id.
    pub run_id: RunId,
    /// The user.
    pub user: UserId,
    /// The schedule, if scheduled.
    pub schedule: Option<String>,
    /// `queued`, `running`, …
    pub state: String,
    /// The last phase entered.
    pub phase: Option<String>,
    /// Attempts started.
    pub attempts: u64,
    /// Creation time (unix ms).
    pub created_at_ms: Option<i64>,
    /// End time (unix ms).
    pub ended_at_ms: Option<i64>,
    /// The session.
    pub session_id: Option<SessionId>,
    /// The last error.
    pub last_error: Option<String>,
    /// Its class.
    pub error_class: Option<String>,
}

/// The status screen.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// When this was read (unix ms).
    pub at_ms: i64,
    /// Workers with a heartbeat.
    pub workers: Vec<WorkerInfo>,
    /// Queue depths.
    pub queue: QueueDepths,
    /// Runs created in the last hour, by current state.
    pub runs_last_hour: BTreeMap<String, u64>,
    /// Runs created in the last day, by current state.
    pub runs_last_day: BTreeMap<String, u64>,
    /// Open notices.
    pub notices_open: u64,
    /// A setup object a run found missing at the vendor (`{"object","detail","since_ms"}`):
    /// runs wait until `agentcron setup` runs.
    pub setup_missing: Option<serde_json::Value>,
    /// What agentcron's Redis keys and transcript files take, as the workers last measured:
    /// `redis_bytes`, `redis_keys`, `transcript_bytes` and when each was measured.
    pub usage: BTreeMap<String, i64>,
    /// Tokens and estimated cost of every run today and this month (UTC).
    pub tokens: tokens::Spend,
    /// Transcript files waiting to be rebuilt from Redis (their writes failed).
    pub transcript_repairs: u64,
    /// Redis's `maxmemory-policy` (agentcron needs `noeviction`).
    pub redis_policy: Option<String>,
    /// The Redis this status was read from: `{"host","topology","tls","user"}`.
    pub redis: serde_json::Value,
    /// The latest dead or failed runs.
    pub recent_failures: Vec<RunSummary>,
    /// The next fire time of each enabled schedule.
    pub next_ticks: Vec<NextTick>,
}

/// A schedule's next fire time.
#[derive(Debug, Clone, Serialize)]
pub struct NextTick {
    /// The schedule.
    pub schedule: String,
    /// RFC 3339 in the schedule's zone.
    pub local: String,
    /// RFC 3339 in UTC.
    pub utc: String,
}

/// Reads the status screen.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn status(
    conn: &mut RedisConn,
    keys: &Keys,
    config: &Config,
) -> Result<Status, RecordsError> {
    let now = now_ms();
    let workers = workers(conn, keys).await?;
    let worker_ids: Vec<&str> = workers.iter().map(|worker| worker.id.as_str()).collect();
    let queue = depths(conn, keys, &worker_ids).await?;
    let mut workers = workers;
    for worker in &mut workers {
        worker.in_flight = queue.by_worker.get(&worker.id).copied().unwrap_or(0);
    }
    let runs_last_hour = counts_since(conn, keys, now - HOUR_MS).await?;
    let runs_last_day = counts_since(conn, keys, now - DAY_MS).await?;
    let notices_open: u64 = redis::cmd("ZCARD").arg(keys.notice_index()).query_async(conn).await?;
    let setup_missing: Option<String> =
        redis::cmd("GET").arg(keys.setup_missing()).query_async(conn).await?;
    let setup_missing = setup_missing.and_then(|mark| serde_json::from_str(&mark).ok());
    let usage = crate::records::usage::load(conn, keys).await?;
    let tokens = tokens::spend(conn, keys, chrono::Utc::now().date_naive()).await?;
    let redis_policy = crate::queue::read_policy(conn).await?;
    let redis = topology::describe(config, conn, keys).await?;
    let transcript_repairs: u64 =
        redis::cmd("HLEN").arg(keys.transcript_repairs()).query_async(conn).await?;
    let usage = usage.0.into_iter().filter_map(|(k, v)| Some((k, v.parse().ok()?))).collect();
    let mut failed: Vec<RunId> = Vec::new();
    for state in [RunState::Dead, RunState::Failed] {
        let indexes = keys.each_shard().map(|shard| shard.runs_by_state(state.as_str()));
        failed.extend(newest(conn, indexes, "-inf", N_FAILURES).await?);
    }
    let mut recent_failures = summaries(conn, keys, &failed).await?;
    recent_failures.sort_by_key(|run| std::cmp::Reverse(run.ended_at_ms.or(run.created_at_ms)));
    recent_failures.truncate(N_FAILURES);
    Ok(Status {
        at_ms: now,
        workers,
        queue,
        runs_last_hour,
        runs_last_day,
        notices_open,
        setup_missing,
        usage,
        tokens,
        redis_policy,
        redis,
        transcript_repairs,
        recent_failures,
        next_ticks: next_ticks(config),
    })
}

fn next_ticks(config: &Config) -> Vec<NextTick> {
    let now = chrono::Utc::now();
    config
        .schedules
        .iter()
        .filter(|schedule| schedule.enabled)
        .filter_map(|schedule| {
            // The scheduler's own DST-correct computation, so this screen and the daemon agree.
            // With `timezone = "user"` that is the first zone to fire; `local` is in the
            // schedule's default zone.
            let next = crate::schedule::next_tick(schedule, now)?;
            let local = next.with_timezone(&schedule.timezone).to_rfc3339();
            Some(NextTick { schedule: schedule.name.clone(), local, utc: next.to_rfc3339() })
        })
        .collect()
}

async fn workers(conn: &mut RedisConn, keys: &Keys) -> Result<Vec<WorkerInfo>, RecordsError> {
    let beats: HashMap<String, String> =
        redis::cmd("HGETALL").arg(keys.workers()).query_async(conn).await?;
    let leases: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(keys.leases())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(conn)
        .await?;
    let leases: HashMap<String, i64> = leases.into_iter().collect();
    let mut workers: Vec<WorkerInfo> = beats
        .into_iter()
        .map(|(id, beat)| WorkerInfo {
            lease_expires_at_ms: leases.get(&id).copied(),
            in_flight: 0,
            heartbeat: serde_json::from_str(&beat).unwrap_or(Value::String(beat)),
            id,
        })
        .collect();
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(workers)
}

async fn counts_since(
    conn: &mut RedisConn,
    keys: &Keys,
    since_ms: i64,
) -> Result<BTreeMap<String, u64>, RecordsError> {
    let mut pipe = redis::pipe();
    for shard in keys.each_shard() {
        for state in RunState::ALL {
            pipe.cmd("ZCOUNT").arg(shard.runs_by_state(state.as_str())).arg(since_ms).arg("+inf");
        }
    }
    let counts: Vec<u64> = pipe.query_async(conn).await?;
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for (state, n) in RunState::ALL.iter().cycle().zip(counts) {
        *totals.entry(state.as_str().to_owned()).or_default() += n;
    }
    Ok(totals)
}

/// The ids of `index` (an index name, as `Keys::runs_by_state` takes) with the highest scores
/// at or above `min`, at most `limit`, merged over the shards, highest first.
async fn newest(
    conn: &mut RedisConn,
    indexes: impl Iterator<Item = String>,
    min: &str,
    limit: usize,
) -> Result<Vec<RunId>, RecordsError> {
    let mut pipe = redis::pipe();
    for index in indexes {
        pipe.cmd("ZREVRANGEBYSCORE").arg(index).arg("+inf").arg(min);
        pipe.arg("WITHSCORES").arg("LIMIT").arg(0).arg(limit);
    }
    let per_shard: Vec<Vec<(RunId, f64)>> = pipe.query_async(conn).await?;
    let mut merged: Vec<(RunId, f64)> = per_shard.into_iter().flatten().collect();
    merged.sort_by(|a, b| b.1.total_cmp(&a.1));
    merged.truncate(limit);
    Ok(merged.into_iter().map(|(id, _)| id).collect())
}

/// Summaries of `run_ids`, in order, skipping ids whose record is gone.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn summaries(
    conn: &mut RedisConn,
    keys: &Keys,
    run_ids: &[RunId],
) -> Result<Vec<RunSummary>, RecordsError> {
    // redis-rs refuses an empty pipeline ("empty command"): the status screen of a prefix
    // without failures asks for none.
    if run_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in run_ids {
        pipe.cmd("HGETALL").arg(keys.run(id));
    }
    let records: Vec<HashMap<String, String>> = pipe.query_async(conn).await?;
    Ok(records
        .into_iter()
        .filter(|fields| !fields.is_empty())
        .map(|fields| summary(&fields))
        .collect())
}

fn summary(fields: &HashMap<String, String>) -> RunSummary {
    let text = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
    let int = |name: &str| fields.get(name).and_then(|v| v.parse::<i64>().ok());
    RunSummary {
        // Both were validated at enqueue.
        run_id: RunId::trusted(text("run_id").unwrap_or_default()),
        user: UserId::trusted(text("user").unwrap_or_default()),
        schedule: text("schedule"),
        state: text("state").unwrap_or_default(),
        phase: text("phase"),
        attempts: int("attempts").and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
        created_at_ms: int("created_at_ms"),
        ended_at_ms: int("ended_at_ms"),
        session_id: text("session_id").map(SessionId::from),
        last_error: text("last_error"),
        error_class: text("error_class"),
    }
}

/// A `since` filter as unix milliseconds: an RFC 3339 time, or an age such as `1h` before now.
/// `None` when the text is neither.
pub fn since_ms(text: &str) -> Option<i64> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(at.timestamp_millis());
    }
    let age = humantime::parse_duration(text).ok()?;
    Some(now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)))
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this user.
    pub user: Option<String>,
    /// Only this state.
    pub state: Option<String>,
    /// Only this schedule.
    pub schedule: Option<String>,
    /// Only runs created at or after (unix ms).
    pub since_ms: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// Runs, newest first.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn runs(
    conn: &mut RedisConn,
    keys: &Keys,
    filter: &RunFilter,
) -> Result<Vec<RunSummary>, RecordsError> {
    let user = match filter.user.as_deref().map(UserId::parse) {
        Some(Ok(user)) => Some(user),
        // No run was ever enqueued for an invalid user.
        Some(Err(_)) => return Ok(Vec::new()),
        None => None,
    };
    let index = |shard: Keys| match (&user, &filter.state) {
        (Some(user), _) => shard.runs_by_user(user),
        (None, Some(state)) => shard.runs_by_state(state),
        (None, None) => shard.runs(),
    };
    // Filters without an index are applied after reading, so read ahead a bounded amount.
    let window = if filter.schedule.is_some() || (filter.user.is_some() && filter.state.is_some()) {
        filter.limit.saturating_mul(20).min(10_000)
    } else {
        filter.limit
    };
    let since = filter.since_ms.map_or_else(|| "-inf".to_owned(), |ms| ms.to_string());
    let ids = newest(conn, keys.each_shard().map(index), &since, window).await?;
    let mut runs = summaries(conn, keys, &ids).await?;
    runs.retain(|run| {
        filter.state.as_ref().is_none_or(|s| &run.state == s)
            && filter.schedule.as_ref().is_none_or(|s| run.schedule.as_ref() == Some(s))
    });
    runs.truncate(filter.limit);
    Ok(runs)
}
