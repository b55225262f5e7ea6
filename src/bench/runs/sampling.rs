//! What `bench runs` reads from Redis while and after the runs go: the sampled count of
//! running runs and RSS until every run has ended, then each succeeded run's times and
//! transcript length.
//!
//! It only reads. It must not enqueue runs, start workers or compute the report's statistics.

use crate::keys::Keys;
use std::time::{Duration, Instant};

use super::super::stats::{self, Progress};
use super::super::{BenchError, Result};
use crate::config::Config;
use crate::ids::RunId;
use crate::outcome::RunState;
use crate::queue::{Queue, QueueError};

/// How often the running index and RSS are sampled.
const SAMPLE: Duration = Duration::from_millis(100);
/// Records read per pipelined round trip afterwards.
const READ_CHUNK: usize = 500;

/// What sampling saw.
#[derive(Debug, Default)]
pub(super) struct Sampled {
    pub(super) peak_running: usize,
    pub(super) rss_at_peak_mb: f64,
    pub(super) succeeded: usize,
    /// Commands the sampling sent (all `ZCARD`).
    pub(super) own_commands: usize,
}

/// Samples the running index and RSS until every run has ended.
pub(super) async fn sample_until_done(queue: &Queue, config: &Config, n: usize) -> Result<Sampled> {
    // Running, succeeded, then every state a run ends in.
    let ended = RunState::ALL.into_iter().filter(|state| state.is_terminal());
    let states: Vec<RunState> =
        [RunState::Running, RunState::Succeeded].into_iter().chain(ended).collect();
    // Generous: every run may wait out a few retries of the pipeline.
    let deadline = config.worker.run_timeout.min(Duration::from_secs(600));
    let started = Instant::now();
    let mut sampled = Sampled::default();
    let mut progress = Progress::new("runs ended");
    loop {
        let zcards = |keys: &Keys| {
            states.iter().map(|state| ("ZCARD", keys.runs_by_state(state.as_str()))).collect()
        };
        let counts = queue.sums_over_shards(zcards).await?;
        sampled.own_commands += counts.len() * queue.keys().shards();
        let running = counts[0];
        // The largest RSS while runs are in flight: streams open after the pre-stream phases,
        // so memory peaks later than the count of running runs.
        sampled.peak_running = sampled.peak_running.max(running);
        if running > 0 {
            sampled.rss_at_peak_mb = sampled.rss_at_peak_mb.max(stats::rss_mb());
        }
        sampled.succeeded = counts[1];
        let n_ended: usize = counts[2..].iter().sum();
        progress.update(n_ended, n);
        if n_ended >= n {
            progress.finish();
            return Ok(sampled);
        }
        if started.elapsed() > deadline {
            progress.finish();
            let what = format!("{n_ended} of {n} runs ended");
            return Err(BenchError::Timeout { secs: deadline.as_secs(), what });
        }
        tokio::time::sleep(SAMPLE).await;
    }
}

/// `started_at_ms`, `ended_at_ms`, `streaming_at_ms` and `state` of a run record.
type RecordTimes = (Option<u64>, Option<u64>, Option<u64>, Option<String>);

/// A run's times (Redis clock, ms) and its transcript length.
#[derive(Debug)]
pub(super) struct Timing {
    pub(super) started_ms: u64,
    pub(super) ended_ms: u64,
    /// When the streaming phase was entered: before it, the pre-stream phases.
    pub(super) streaming_ms: u64,
    pub(super) events: u64,
}

/// Reads each ended run's times and transcript length, pipelined.
pub(super) async fn read_timings(queue: &Queue, run_ids: &[RunId]) -> Result<Vec<Timing>> {
    let keys = queue.keys();
    let mut conn = queue.connection();
    let mut timings = Vec::with_capacity(run_ids.len());
    for chunk in run_ids.chunks(READ_CHUNK) {
        let mut fields_pipe = redis::pipe();
        let mut events_pipe = redis::pipe();
        for run_id in chunk {
            fields_pipe.cmd("HMGET").arg(keys.run(run_id)).arg(&[
                "started_at_ms",
                "ended_at_ms",
                "streaming_at_ms",
                "state",
            ]);
            events_pipe.xlen(keys.transcript(run_id));
        }
        let fields: Vec<RecordTimes> =
            fields_pipe.query_async(&mut conn).await.map_err(QueueError::from)?;
        let events: Vec<u64> =
            events_pipe.query_async(&mut conn).await.map_err(QueueError::from)?;
        for ((started_ms, ended_ms, streaming_ms, state), events) in fields.into_iter().zip(events)
        {
            if let (Some(started_ms), Some(ended_ms), Some(streaming_ms), Some("succeeded")) =
                (started_ms, ended_ms, streaming_ms, state.as_deref())
            {
                timings.push(Timing { started_ms, ended_ms, streaming_ms, events });
            }
        }
    }
    Ok(timings)
}
