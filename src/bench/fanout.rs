//! `agentcron bench fanout`: one tick of a schedule whose `users` Redis set holds N users,
//! through the real `schedule::fan_out` (the overlap check, pipelined enqueue, the users'
//! pointers), timed until all N run records and queued jobs exist.

use crate::keys::Keys;
use std::time::{Duration, Instant};

use chrono::{DurationRound as _, TimeDelta, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::stats::{self, Baseline, per_sec, round1, round2};
use super::{BenchError, Result, Scratch, guarded, wait_until};
use crate::queue::Queue;
use crate::schedule;

/// Users added to the Redis set per pipelined round trip while preparing.
const SADD_CHUNK: usize = 1_000;
/// The benchmark's schedule name.
const SCHEDULE: &str = "bench";

/// What to run.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// Redis URL.
    pub redis_url: String,
    /// The queue\'s shards (`redis.shards`); the configuration\'s default when `None`.
    pub shards: Option<usize>,
    /// Users of the schedule.
    pub users: usize,
    /// With N > 0, the users live in N zones of a `timezone = "user"` schedule.
    pub zones: usize,
}

/// The numbers.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// The key prefix the benchmark used (deleted at its end).
    pub prefix: String,
    /// Users of the schedule.
    pub users: usize,
    /// From the tick's fan-out call until all run records and jobs exist, ms.
    pub fanout_ms: f64,
    /// Users per second over `fanout_ms`.
    pub users_per_sec: f64,
    /// Runs the fan-out created.
    pub enqueued: usize,
    /// Run records found afterwards (`ZCARD <p>:runs`).
    pub run_records: usize,
    /// Jobs found afterwards (ready list plus delayed set).
    pub jobs: usize,
    /// Redis commands per user during the fan-out (all clients; see the idle rate).
    pub redis_commands_per_user: f64,
    /// CPU time the Redis server used during the fan-out, ms (all clients).
    pub redis_cpu_ms: f64,
    /// `redis_cpu_ms / fanout_ms`: near 1.0 when Redis bounds the fan-out.
    pub redis_busy: f64,
    /// Redis commands per second with this benchmark idle.
    pub idle_redis_commands_per_sec: f64,
    /// Peak RSS of this process, MB.
    pub peak_rss_mb: f64,
    /// Raw Redis speed measured in this process just before.
    pub baseline: Baseline,
    /// Users per second / pipelined `LPUSH` per second.
    pub ratio_vs_lpush_pipelined: f64,
}

/// Runs the benchmark; its keys are deleted at the end, also when `cancel` fires.
///
/// # Errors
/// [`BenchError`] when Redis or the fan-out fails.
pub async fn run(opts: &FanoutOptions, cancel: &CancellationToken) -> Result<FanoutReport> {
    if opts.users == 0 {
        return Err(BenchError::Usage("--users must be positive".to_owned()));
    }
    let scratch = Scratch::new(&opts.redis_url, opts.shards)?;
    guarded(&scratch, cancel, measure(opts, &scratch)).await
}

async fn measure(opts: &FanoutOptions, scratch: &Scratch) -> Result<FanoutReport> {
    let config = scratch.config("http://127.0.0.1:9")?;
    let mut schedule = config
        .schedules
        .first()
        .cloned()
        .ok_or_else(|| BenchError::Usage("the shipped jobs.toml has no schedule".to_owned()))?;
    SCHEDULE.clone_into(&mut schedule.name);
    schedule.users.clear();
    schedule.spread = None;
    schedule.enabled = true;
    let queue = Queue::connect(&config.redis).await?;
    let mut conn = scratch.connection().await?;
    let set = queue.keys().schedule_users(SCHEDULE);
    for chunk_start in (0..opts.users).step_by(SADD_CHUNK) {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(&set);
        for i in chunk_start..(chunk_start + SADD_CHUNK).min(opts.users) {
            cmd.arg(format!("fan-{i}@example.com"));
        }
        cmd.query_async::<()>(&mut conn).await?;
    }
    let tick = if opts.zones > 0 {
        spread_over_zones(&mut conn, queue.keys(), opts, &mut schedule).await?
    } else {
        Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap_or_else(|_| Utc::now())
    };
    let baseline_key = queue.keys().bench_baseline();
    let baseline = Baseline::measure(&mut conn, &baseline_key, opts.users.min(20_000)).await?;
    let idle = stats::idle_commands(&mut conn, Duration::from_secs(1)).await?;

    let commands_before = stats::redis_commands(&mut conn).await?;
    let cpu_before = stats::redis_cpu_seconds(&mut conn).await?;
    let started = Instant::now();
    let report = schedule::fan_out(&queue, &schedule, tick).await?;
    let (mut run_records, mut jobs) = (0, 0);
    wait_until(
        "all run records and jobs",
        Duration::from_secs(60),
        Duration::from_millis(5),
        || {
            let queue = queue.clone();
            async move {
                let counts = |keys: &Keys| {
                    vec![("ZCARD", keys.runs()), ("LLEN", keys.ready()), ("ZCARD", keys.delayed())]
                };
                let sums = queue.sums_over_shards(counts).await?;
                Ok((sums[0], sums[1] + sums[2]))
            }
        },
        |(records, n_jobs)| {
            run_records = records;
            jobs = n_jobs;
            records >= opts.users && n_jobs >= opts.users
        },
    )
    .await?;
    let elapsed = started.elapsed();
    let redis_cpu_ms = (stats::redis_cpu_seconds(&mut conn).await? - cpu_before) * 1000.0;
    let commands = stats::redis_commands(&mut conn).await?.saturating_sub(commands_before);
    let users_per_sec = per_sec(opts.users, elapsed);
    Ok(FanoutReport {
        prefix: scratch.prefix.clone(),
        users: opts.users,
        fanout_ms: round1(elapsed.as_secs_f64() * 1000.0),
        users_per_sec: round1(users_per_sec),
        enqueued: report.enqueued,
        run_records,
        jobs,
        redis_commands_per_user: round2(commands as f64 / opts.users as f64),
        redis_cpu_ms: round1(redis_cpu_ms),
        redis_busy: round2(redis_cpu_ms / (elapsed.as_secs_f64() * 1000.0)),
        idle_redis_commands_per_sec: round1(idle),
        peak_rss_mb: round1(stats::peak_rss_mb()),
        ratio_vs_lpush_pipelined: round1(
            users_per_sec / baseline.lpush_pipelined_per_sec.max(1e-9) * 100.0,
        ) / 100.0,
        baseline,
    })
}

/// Writes each user's profile with one of `opts.zones` zones, makes `schedule` fire every
/// minute in each user's zone, and returns a tick at which every zone fires.
async fn spread_over_zones(
    conn: &mut crate::config::RedisConn,
    keys: &Keys,
    opts: &FanoutOptions,
    schedule: &mut crate::config::ScheduleConfig,
) -> Result<chrono::DateTime<Utc>> {
    // Zones whose offset is whole minutes, as every zone's is today.
    let zones: Vec<chrono_tz::Tz> =
        chrono_tz::TZ_VARIANTS.iter().copied().take(opts.zones).collect();
    for chunk_start in (0..opts.users).step_by(SADD_CHUNK) {
        let mut pipe = redis::pipe();
        for i in chunk_start..(chunk_start + SADD_CHUNK).min(opts.users) {
            let user = crate::ids::UserId::trusted(format!("fan-{i}@example.com"));
            pipe.hset(keys.profile(&user), "timezone", zones[i % zones.len()].name()).ignore();
        }
        pipe.query_async::<()>(conn).await?;
    }
    schedule.per_user_zone = true;
    schedule.cron =
        crate::cron::CronExpr::parse("* * * * *").map_err(|e| BenchError::Usage(e.to_string()))?;
    let now = Utc::now();
    Ok(now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now))
}
