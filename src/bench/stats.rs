//! What the benchmarks measure besides wall time: percentiles, this process's memory
//! (`/proc/self/status`), Redis's command counters (`INFO commandstats`), the raw-Redis
//! baseline every ratio is taken against, and a progress counter on a terminal.
//!
//! Pure helpers and Redis reads only; it must not drive the product.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use crate::config::RedisConn;
use serde::Serialize;

/// The `q`-quantile (0..=1) of `samples` by nearest rank; 0 for no samples. Sorts `samples`.
pub fn percentile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * samples.len() as f64).ceil() as usize;
    samples[rank.saturating_sub(1).min(samples.len() - 1)]
}

/// A rate in items per second.
pub fn per_sec(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Rounds to one decimal, for printing and JSON.
pub fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Rounds to two decimals (ratios and per-item counts), for printing and JSON.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A field of `/proc/self/status` in MB (the kernel reports kB); 0 where there is none.
fn proc_status_mb(field: &str) -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0.0 };
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// This process's peak resident set (`VmHWM`), MB; 0 off Linux.
pub fn peak_rss_mb() -> f64 {
    proc_status_mb("VmHWM")
}

/// This process's resident set now (`VmRSS`), MB; 0 off Linux.
pub fn rss_mb() -> f64 {
    proc_status_mb("VmRSS")
}

/// Commands Redis has executed, by command (`calls` in `INFO commandstats`), counting every
/// client and the commands scripts run: other activity on a shared Redis inflates deltas,
/// see [`idle_commands`].
///
/// # Errors
/// Redis errors.
pub async fn redis_command_counts(
    conn: &mut RedisConn,
) -> redis::RedisResult<BTreeMap<String, u64>> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect())
}

/// CPU seconds (user + system) the Redis server has used since it started, from `INFO cpu`:
/// its delta over a phase says how busy Redis was, that is whether Redis bounds the phase.
///
/// # Errors
/// Redis errors.
pub async fn redis_cpu_seconds(conn: &mut RedisConn) -> redis::RedisResult<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (name, value) = line.trim_end().split_once(':')?;
            matches!(name, "used_cpu_user" | "used_cpu_sys").then(|| value.parse::<f64>().ok())?
        })
        .sum())
}

/// The total of [`redis_command_counts`].
///
/// # Errors
/// Redis errors.
pub async fn redis_commands(conn: &mut RedisConn) -> redis::RedisResult<u64> {
    Ok(redis_command_counts(conn).await?.values().sum())
}

/// Per-command growth from `before` to `after`, divided by `per`, largest first, without
/// those under 0.05.
pub fn command_deltas(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    per: usize,
) -> Vec<(String, f64)> {
    let mut deltas: Vec<(String, f64)> = after
        .iter()
        .map(|(name, calls)| {
            let grown = calls.saturating_sub(before.get(name).copied().unwrap_or(0));
            (name.clone(), round2(grown as f64 / per.max(1) as f64))
        })
        .filter(|(_, per_item)| *per_item >= 0.05)
        .collect();
    deltas.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    deltas
}

/// Commands per second Redis executes while this benchmark does nothing: the background rate
/// of other clients (and of the `INFO` calls themselves) over `window`.
///
/// # Errors
/// Redis errors.
pub async fn idle_commands(conn: &mut RedisConn, window: Duration) -> redis::RedisResult<f64> {
    let before = redis_commands(conn).await?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = redis_commands(conn).await?;
    Ok(after.saturating_sub(before) as f64 / started.elapsed().as_secs_f64())
}

/// Raw Redis speed on this machine, now: what our queue paths are compared against.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Baseline {
    /// Sequential `PING` round trips per second (one client, one at a time).
    pub ping_per_sec: f64,
    /// `LPUSH` of one small item, pipelined 500 per round trip, items per second.
    pub lpush_pipelined_per_sec: f64,
    /// `LPUSH` then `RPOP` of one item, one at a time: the cheapest possible queue, items/s.
    pub lpush_rpop_per_sec: f64,
}

impl Baseline {
    /// Measures the baseline with `n` items on `key` (deleted afterwards).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn measure(conn: &mut RedisConn, key: &str, n: usize) -> redis::RedisResult<Self> {
        let n = n.max(500);
        let started = Instant::now();
        for _ in 0..n.min(5_000) {
            redis::cmd("PING").query_async::<()>(conn).await?;
        }
        let ping_per_sec = per_sec(n.min(5_000), started.elapsed());
        let started = Instant::now();
        for chunk_start in (0..n).step_by(500) {
            let mut pipe = redis::pipe();
            for i in chunk_start..(chunk_start + 500).min(n) {
                pipe.cmd("LPUSH").arg(key).arg(i).ignore();
            }
            pipe.query_async::<()>(conn).await?;
        }
        let lpush_pipelined_per_sec = per_sec(n, started.elapsed());
        redis::cmd("DEL").arg(key).query_async::<()>(conn).await?;
        let started = Instant::now();
        for i in 0..n.min(5_000) {
            redis::cmd("LPUSH").arg(key).arg(i).query_async::<()>(conn).await?;
            redis::cmd("RPOP").arg(key).query_async::<Option<String>>(conn).await?;
        }
        let lpush_rpop_per_sec = per_sec(n.min(5_000), started.elapsed());
        redis::cmd("DEL").arg(key).query_async::<()>(conn).await?;
        Ok(Self {
            ping_per_sec: round1(ping_per_sec),
            lpush_pipelined_per_sec: round1(lpush_pipelined_per_sec),
            lpush_rpop_per_sec: round1(lpush_rpop_per_sec),
        })
    }
}

/// `done/total` on stderr with `\r`, only when stderr is a terminal; silent otherwise.
#[derive(Debug)]
pub struct Progress {
    label: String,
    enabled: bool,
    last: Option<Instant>,
}

impl Progress {
    /// A counter titled `label`.
    pub fn new(label: &str) -> Self {
        Self { label: label.to_owned(), enabled: std::io::stderr().is_terminal(), last: None }
    }

    /// Shows `done` of `total`, at most 10 times a second.
    pub fn update(&mut self, done: usize, total: usize) {
        if !self.enabled
            || self.last.is_some_and(|last| last.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        // A lost progress line is harmless: the result does not depend on it.
        write!(std::io::stderr(), "\r{}: {done}/{total}   ", self.label).ok();
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.enabled && self.last.is_some() {
            write!(std::io::stderr(), "\r{:width$}\r", "", width = self.label.len() + 30).ok();
        }
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(samples: &[f64], q: f64, expect: f64) {
        let mut samples = samples.to_vec();
        assert_eq!(percentile(&mut samples, q), expect, "q = {q}");
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        check(&samples, 0.5, 50.0);
        check(&samples, 0.99, 99.0);
        check(&samples, 1.0, 100.0);
        check(&samples, 0.0, 1.0);
        check(&[3.0, 1.0, 2.0], 0.5, 2.0);
        check(&[], 0.5, 0.0);
    }

    #[test]
    fn proc_status_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_mb() > 0.0);
            assert!(rss_mb() > 0.0);
            assert!(peak_rss_mb() >= rss_mb() * 0.99);
        }
    }
}
