//! Fan-out: one tick of one schedule becomes a run per user, with deterministic run ids
//! `<schedule>:<user>:<tick-unix-seconds>`, written in pipelined batches.
//!
//! Exactly once without a leader: any number of scheduler replicas may fan out the same tick,
//! because the queue creates a run record only when its id is new (`Queue::enqueue`). The
//! overlap check and the statistics are advisory on top of that and never create runs. This
//! module must not decide when a tick happens (see `daemon.rs`) or execute runs.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use redis::Script;
use serde::Serialize;

use super::ScheduleError;
use super::instruct;
use super::zones::TickZones;
use crate::config::{Overlap, ScheduleConfig};
use crate::ids::{RunId, UserId};
use crate::outcome::RunState;
use crate::queue::{NewRun, Queue, QueueError};
use crate::telemetry::metrics::{self, ScheduleLabel};
use crate::template::Template;

/// Users per batch: one `HMGET` of pointers, one pipeline of states, one enqueue pipeline and
/// one pointer script per batch, so a batch costs a handful of round trips.
const BATCH: usize = 1_000;
/// Batches in flight at once: while Redis runs one batch's scripts, the next is built and
/// sent, which keeps Redis (the bound) busy instead of waiting on this process.
const BATCHES_IN_FLIGHT: usize = 4;
/// Users read per `SSCAN` call from the Redis set: large enough that reading 100,000 users
/// takes 20 round trips, small enough that no reply blocks Redis for long.
const SCAN_COUNT: usize = 5_000;

static ADVANCE_LAST: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/advance_last.lua")));
static RECORD_TICK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/record_tick.lua")));

/// What one fan-out of one tick did, seen from this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// The tick, unix seconds.
    pub tick: i64,
    /// Distinct users of the schedule the tick is for (inline and Redis set; with
    /// `timezone = "user"`, those whose zone fires at the tick), malformed ones not counted.
    pub users: usize,
    /// Runs this call created.
    pub enqueued: usize,
    /// Runs that existed already (another replica, or an earlier fan-out of the same tick).
    pub duplicates: usize,
    /// Users skipped because their previous run of the schedule was still active.
    pub skipped: usize,
    /// Users whose id is malformed (or makes too long a run id); logged and left out.
    pub invalid: usize,
    /// Users paused at the tick (their profile's `paused_until`).
    pub paused: usize,
    /// Users whose local date at the tick is one of the schedule's `skip_dates`.
    pub skip_dates: usize,
    /// Users left out because their profile's zone or pause cannot be read.
    pub bad_profile: usize,
}

impl TickReport {
    fn add(&mut self, batch: Self) {
        self.users += batch.users;
        self.enqueued += batch.enqueued;
        self.duplicates += batch.duplicates;
        self.skipped += batch.skipped;
        self.invalid += batch.invalid;
        self.paused += batch.paused;
        self.skip_dates += batch.skip_dates;
        self.bad_profile += batch.bad_profile;
    }
}

/// Creates the runs of `tick` for every user of `schedule` (inline users and the Redis set
/// `<p>:users:<schedule>`, read now), honouring `overlap` and `spread`. Safe to repeat and to
/// run on several replicas at once: each (schedule, user, tick) is enqueued at most once.
///
/// # Errors
/// [`ScheduleError::Queue`] when Redis fails; some runs may exist then, and calling again with
/// the same tick completes the rest.
pub async fn fan_out(
    queue: &Queue,
    schedule: &ScheduleConfig,
    tick: DateTime<Utc>,
) -> Result<TickReport, ScheduleError> {
    let started = Instant::now();
    let names = users(queue, schedule).await?;
    let mut report = TickReport { tick: tick.timestamp(), ..TickReport::default() };
    let mut valid = Vec::with_capacity(names.len());
    for name in &names {
        match UserId::parse(name) {
            Ok(user) => valid.push(user),
            Err(_) => {
                tracing::warn!(message = "Invalid user left out of the tick.", schedule = %schedule.name, user = %name.escape_debug());
                report.invalid += 1;
            }
        }
    }
    let n_valid = valid.len();
    let template = Template::parse(&schedule.prompt);
    // Owned batches, moved rather than borrowed out of `valid`: a stream of futures borrowing
    // slices trips rustc's higher-ranked `Send` check when the daemon spawns the fan-out.
    let mut valid = valid.into_iter();
    let batches: Vec<Vec<UserId>> = std::iter::from_fn(|| {
        let batch: Vec<UserId> = valid.by_ref().take(BATCH).collect();
        (!batch.is_empty()).then_some(batch)
    })
    .collect();
    let mut batches = futures::stream::iter(batches)
        .map(|batch| fan_out_batch(queue, schedule, &template, tick, batch))
        .buffer_unordered(BATCHES_IN_FLIGHT);
    while let Some(counts) = batches.next().await {
        report.add(counts?);
    }
    // Malformed users count among the users, as the listing's arithmetic expects.
    report.users += names.len() - n_valid;
    // A per-user-zone tick that is nobody's (no user lives where the cron fires now) leaves
    // the schedule's last tick as it was.
    if report.users + report.invalid + report.bad_profile > 0 || !schedule.per_user_zone {
        record(queue, schedule, &report).await?;
    }
    emit_metrics(schedule, &report, started);
    Ok(report)
}

/// The distinct users of `schedule`: inline ones and the Redis set, sorted.
///
/// # Errors
/// [`ScheduleError::Queue`] when Redis fails.
pub async fn users(
    queue: &Queue,
    schedule: &ScheduleConfig,
) -> Result<BTreeSet<String>, ScheduleError> {
    let mut users: BTreeSet<String> =
        schedule.users.iter().map(|u| u.as_str().to_owned()).collect();
    let mut conn = queue.connection();
    let key = queue.keys().schedule_users(&schedule.name);
    // SSCAN rather than SMEMBERS: a set of 100,000 users is read in slices, so Redis never
    // blocks other clients for one large reply. Members added during the scan may be missed;
    // they are included from the next tick.
    let mut cursor: u64 = 0;
    loop {
        let (next, members): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(&key)
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(&mut conn)
            .await
            .map_err(QueueError::from)?;
        users.extend(members);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(users)
}

async fn fan_out_batch(
    queue: &Queue,
    schedule: &ScheduleConfig,
    template: &Template,
    tick: DateTime<Utc>,
    users: Vec<UserId>,
) -> Result<TickReport, ScheduleError> {
    let mut zones = TickZones::new(schedule, tick);
    let decided = instruct::decide(queue, schedule, template, &mut zones, tick, &users).await?;
    let mut counts = TickReport {
        users: users.len() - decided.not_due,
        paused: decided.paused,
        skip_dates: decided.skip_dates,
        bad_profile: decided.bad_profile,
        invalid: decided.invalid,
        ..TickReport::default()
    };
    let batch = decided.runs;
    let n_runs = batch.len();
    if batch.is_empty() {
        return Ok(counts);
    }
    let to_enqueue = match schedule.overlap {
        Overlap::Skip => without_active(queue, schedule, &batch).await?,
        Overlap::Queue => batch,
    };
    counts.skipped = n_runs - to_enqueue.len();
    if to_enqueue.is_empty() {
        return Ok(counts);
    }
    let enqueued = queue.enqueue(&to_enqueue, "schedule").await?;
    counts.enqueued = enqueued.iter().filter(|run| run.created).count();
    counts.duplicates = enqueued.len() - counts.enqueued;
    advance_last(queue, schedule, tick, &to_enqueue).await?;
    Ok(counts)
}

/// The runs of `batch` whose user has no active previous run of the schedule. A previous run
/// is active while its record is `queued`, `running` or `failed` (a retry is due); a missing
/// record is not active. A pointer to the run itself (this tick was fanned out before) keeps
/// the run, so that repeating a fan-out reports duplicates, not skips.
async fn without_active(
    queue: &Queue,
    schedule: &ScheduleConfig,
    batch: &[NewRun],
) -> Result<Vec<NewRun>, ScheduleError> {
    let mut conn = queue.connection();
    let users: Vec<&str> = batch.iter().map(|run| run.user.as_str()).collect();
    let last: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(queue.keys().schedule_last(&schedule.name))
        .arg(&users)
        .query_async(&mut conn)
        .await
        .map_err(QueueError::from)?;
    // The pointers hold run ids the schedule enqueued, which were valid then.
    let previous: Vec<(usize, RunId)> = last
        .into_iter()
        .enumerate()
        .filter_map(|(i, id)| id.map(|id| (i, RunId::trusted(id))))
        .filter(|(i, id)| batch[*i].run_id != *id)
        .collect();
    if previous.is_empty() {
        return Ok(batch.to_vec());
    }
    let mut pipe = redis::pipe();
    for (_, id) in &previous {
        pipe.hget(queue.keys().run(id), "state");
    }
    let states: Vec<Option<String>> =
        pipe.query_async(&mut conn).await.map_err(QueueError::from)?;
    let active: BTreeSet<usize> = previous
        .iter()
        .zip(states)
        .filter(|(_, state)| {
            state.as_deref().and_then(RunState::parse).is_some_and(|state| !state.is_terminal())
        })
        .map(|((i, _), _)| *i)
        .collect();
    Ok(batch
        .iter()
        .enumerate()
        .filter(|(i, _)| !active.contains(i))
        .map(|(_, run)| run.clone())
        .collect())
}

/// Points each user's "last run" at this tick's run, for the next tick's overlap check.
async fn advance_last(
    queue: &Queue,
    schedule: &ScheduleConfig,
    tick: DateTime<Utc>,
    runs: &[NewRun],
) -> Result<(), ScheduleError> {
    let mut invocation = ADVANCE_LAST.prepare_invoke();
    invocation.key(queue.keys().schedule_last(&schedule.name)).arg(tick.timestamp());
    for run in runs {
        invocation.arg(&run.user).arg(&run.run_id);
    }
    let _moved: i64 =
        invocation.invoke_async(&mut queue.connection()).await.map_err(QueueError::from)?;
    Ok(())
}

/// Adds this process's view of the tick to `<p>:schedule:<name>` for `agentcron schedules`.
async fn record(
    queue: &Queue,
    schedule: &ScheduleConfig,
    report: &TickReport,
) -> Result<(), ScheduleError> {
    let now_ms = Utc::now().timestamp_millis();
    let _recorded: i64 = RECORD_TICK
        .key(queue.keys().schedule_stats(&schedule.name))
        .arg(report.tick)
        .arg(report.users)
        .arg(report.invalid)
        .arg(report.enqueued)
        .arg(now_ms)
        .arg(report.paused)
        .arg(report.bad_profile)
        .invoke_async(&mut queue.connection())
        .await
        .map_err(QueueError::from)?;
    Ok(())
}

fn emit_metrics(schedule: &ScheduleConfig, report: &TickReport, started: Instant) {
    let name = ScheduleLabel::configured(&schedule.name);
    metrics::schedule_runs(name, "enqueued", report.enqueued);
    metrics::schedule_runs(name, "duplicate", report.duplicates);
    metrics::schedule_runs(name, "skipped", report.skipped);
    metrics::schedule_runs(name, "invalid", report.invalid);
    metrics::schedule_runs(name, "paused", report.paused);
    metrics::schedule_runs(name, "skip_date", report.skip_dates);
    metrics::schedule_runs(name, "bad_profile", report.bad_profile);
    metrics::schedule_fan_out(name, started.elapsed());
}
