//! `GET /api/charts`: the data behind the dashboard's charts. Runs per hour by state over the
//! last 24 hours and 7 days are counted in Redis (`ZCOUNT` of each `runs:state:<s>` index,
//! scored by creation time, per hour and per shard). Queue depth and in-flight runs over the
//! last hour, and each schedule's recent ticks, have no history in Redis: the server samples
//! them once a minute into [`History`], bounded (60 depth samples, [`TICKS_KEPT`] ticks per
//! configured schedule), so they cover only the time this server has been up.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::OpsState;
use super::json_api::ApiError;
use crate::config::RedisConn;
use crate::keys::Keys;
use crate::outcome::RunState;
use crate::records::{RecordsError, now_ms};

const HOUR_MS: i64 = 3_600_000;
/// Depth samples kept: one a minute for an hour.
const DEPTHS_KEPT: usize = 60;
/// Ticks kept per schedule.
pub(super) const TICKS_KEPT: usize = 24;
/// How often the history is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(60);

/// Queue depth and in-flight runs at one moment.
#[derive(Debug, Clone, Serialize)]
struct DepthSample {
    at_ms: i64,
    /// Ready to run.
    pending: u64,
    /// Waiting for a retry or `not_before`.
    scheduled: u64,
    /// Taken by workers (in flight).
    running: u64,
}

/// One tick of a schedule as last sampled: its runs' states change after the tick, so a tick
/// is replaced by each newer sample of it.
#[derive(Debug, Clone, Serialize)]
struct TickSample {
    /// The tick, RFC 3339 in UTC.
    at: String,
    users: usize,
    enqueued: usize,
    succeeded: usize,
    needs_auth: usize,
    /// Every state of the tick's runs, counted.
    states: BTreeMap<String, usize>,
}

/// The sampled history; every part is bounded.
#[derive(Debug, Default)]
pub(super) struct History {
    depths: VecDeque<DepthSample>,
    /// Keyed by configured schedule name only, so the map is as bounded as the configuration.
    ticks: BTreeMap<String, VecDeque<TickSample>>,
}

/// Runs per hour of one window, by state: `series[state][i]` counts the runs created in
/// `[start_ms + i h, start_ms + (i + 1) h)` that are in `state` now.
#[derive(Debug, Serialize)]
struct Hourly {
    start_ms: i64,
    bucket_ms: i64,
    series: BTreeMap<&'static str, Vec<u64>>,
}

#[derive(Debug, Serialize)]
struct Charts {
    at_ms: i64,
    hours_24: Hourly,
    days_7: Hourly,
    depth: Vec<DepthSample>,
    ticks: BTreeMap<String, Vec<TickSample>>,
}

pub(super) async fn charts(State(state): State<OpsState>) -> Result<Response, ApiError> {
    let now = now_ms();
    let mut conn = state.redis.clone();
    let hours_24 = hourly(&mut conn, &state.keys, now, 24).await.map_err(RecordsError::from)?;
    let days_7 = hourly(&mut conn, &state.keys, now, 7 * 24).await.map_err(RecordsError::from)?;
    // A std Mutex: held only to copy, never across an await.
    let (depth, ticks) = {
        let history = state.history.lock().unwrap_or_else(PoisonError::into_inner);
        let ticks =
            history.ticks.iter().map(|(name, t)| (name.clone(), t.iter().cloned().collect()));
        (history.depths.iter().cloned().collect(), ticks.collect())
    };
    Ok(state.json(&Charts { at_ms: now, hours_24, days_7, depth, ticks }))
}

/// `n_hours` buckets ending with the current hour; one pipeline of `ZCOUNT`s per shard.
async fn hourly(
    conn: &mut RedisConn,
    keys: &Keys,
    now: i64,
    n_hours: i64,
) -> Result<Hourly, redis::RedisError> {
    let end = (now.div_euclid(HOUR_MS) + 1) * HOUR_MS;
    let start = end - n_hours * HOUR_MS;
    let mut series: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for shard in keys.each_shard() {
        let mut pipe = redis::pipe();
        for state in RunState::ALL {
            let index = shard.runs_by_state(state.as_str());
            for hour in 0..n_hours {
                let from = start + hour * HOUR_MS;
                pipe.cmd("ZCOUNT").arg(&index).arg(from).arg(format!("({}", from + HOUR_MS));
            }
        }
        let counts: Vec<u64> = pipe.query_async(conn).await?;
        let per_state = counts.chunks(usize::try_from(n_hours).unwrap_or(1).max(1));
        for (state, counts) in RunState::ALL.iter().zip(per_state) {
            let sums = series.entry(state.as_str()).or_insert_with(|| vec![0; counts.len()]);
            sums.iter_mut().zip(counts).for_each(|(sum, n)| *sum += n);
        }
    }
    Ok(Hourly { start_ms: start, bucket_ms: HOUR_MS, series })
}

/// Samples the history now and then once a minute until `shutdown` is cancelled. A failed
/// sample is logged and skipped: the charts show a gap, nothing else waits on it.
pub(super) async fn sample_every_minute(state: OpsState, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(SAMPLE_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Cancel safety: a tick of `interval` is lost at most, and the loop ends anyway.
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Err(error) = sample(&state).await {
            tracing::warn!(message = "Could not sample the queue for the charts.", %error);
        }
    }
}

async fn sample(state: &OpsState) -> Result<(), crate::schedule::ScheduleError> {
    let mut conn = state.redis.clone();
    let workers: Vec<String> = redis::cmd("HKEYS")
        .arg(state.keys.workers())
        .query_async(&mut conn)
        .await
        .map_err(crate::queue::QueueError::from)?;
    let worker_ids: Vec<&str> = workers.iter().map(String::as_str).collect();
    let depths = crate::ops::report::depths(&mut conn, &state.keys, &worker_ids)
        .await
        .map_err(crate::queue::QueueError::from)?;
    let now = chrono::Utc::now();
    let reports = crate::schedule::report(&state.queue, &state.config.schedules, now).await?;
    let mut history = state.history.lock().unwrap_or_else(PoisonError::into_inner);
    let depth = DepthSample {
        at_ms: now.timestamp_millis(),
        pending: depths.pending,
        scheduled: depths.scheduled,
        running: depths.running,
    };
    push_bounded(&mut history.depths, depth, DEPTHS_KEPT);
    for report in reports {
        let Some(tick) = report.last_tick else { continue };
        let count = |state: &str| tick.states.get(state).copied().unwrap_or(0);
        let sample = TickSample {
            at: tick.tick.utc.clone(),
            users: tick.users,
            enqueued: tick.enqueued,
            succeeded: count("succeeded"),
            needs_auth: count("needs_auth"),
            states: tick.states.clone(),
        };
        let ticks = history.ticks.entry(report.name).or_default();
        if ticks.back().is_some_and(|last| last.at == sample.at) {
            ticks.pop_back();
        }
        push_bounded(ticks, sample, TICKS_KEPT);
    }
    Ok(())
}

fn push_bounded<T>(ring: &mut VecDeque<T>, item: T, cap: usize) {
    while ring.len() >= cap {
        ring.pop_front();
    }
    ring.push_back(item);
}

/// The history shared by the handlers and the sampler.
pub(super) type SharedHistory = std::sync::Arc<Mutex<History>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_keeps_only_the_newest() {
        let mut ring = VecDeque::new();
        for i in 0..100 {
            push_bounded(&mut ring, i, DEPTHS_KEPT);
        }
        assert_eq!(ring.len(), DEPTHS_KEPT);
        assert_eq!(ring.front(), Some(&40));
        assert_eq!(ring.back(), Some(&99));
    }
}
