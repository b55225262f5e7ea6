//! The worker's retention loop: every `retention.every`, finished runs past `retention.runs` go
//! (record, transcript stream, index entries; bounded batches), transcript days past
//! `retention.transcripts` or over `retention.transcripts_max_mb` go, and a slice of the
//! measuring scan of agentcron's Redis keys runs; what both take is published as gauges and in
//! `<prefix>:usage`. Every worker runs it; each step is idempotent. This module must not
//! execute runs.

use std::time::Duration;

use crate::config::RedisConn;
use tokio_util::sync::CancellationToken;

use super::maintenance::sleep_or_stop;
use crate::config::Config;
use crate::queue::Queue;
use crate::records::{prune, usage};
use crate::telemetry::metrics;

/// Script calls per pass: at most this many batches of finished runs go per `every`.
const MAX_BATCHES: usize = 25;
/// Transcript files rebuilt per pass.
const REPAIR_BUDGET: usize = 100;
/// `SCAN` calls of the measuring scan per pass (about 20,000 keys examined).
const MEASURE_BUDGET: usize = 20;

/// Runs until `stop`.
pub(super) async fn keeper(queue: Queue, config: Config, stop: CancellationToken) {
    let mut conn = queue.connection();
    let mut scan = usage::RedisScan::default();
    let mut first = true;
    let mut policy = Some(crate::queue::SAFE_POLICY.to_owned());
    // The first pass at once: a worker started after a long stop has most to catch up on.
    // Its measuring scan waits for the second: the figure is stored in Redis and lives
    // across restarts, and a worker's first moments belong to the backlog that waited for it.
    while first || sleep_or_stop(config.retention.every, &stop).await {
        expire_runs(&queue, config.retention.runs).await;
        watch_eviction(&queue, &mut policy).await;
        prune_transcripts(&config, &mut conn, queue.keys()).await;
        repair_transcripts(&mut conn, queue.keys()).await;
        if std::mem::take(&mut first) {
            continue;
        }
        match scan.step(&mut conn, queue.keys(), MEASURE_BUDGET).await {
            Ok(Some((bytes, n_keys))) => {
                metrics::redis_usage(bytes, n_keys);
                let figures = [("redis_bytes", bytes), ("redis_keys", n_keys)];
                if let Err(error) = usage::store(&mut conn, queue.keys(), "redis", &figures).await {
                    tracing::warn!(message = "Could not store the Redis usage.", %error);
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(message = "Measuring the Redis keys failed; going on next time.", %error)
            }
        }
    }
}

/// The policy was checked at start; one changed since (by an operator, a managed service's
/// maintenance) is logged once per change.
async fn watch_eviction(queue: &Queue, last: &mut Option<String>) {
    let Ok(now) = queue.eviction_policy().await else { return };
    if now != *last {
        if let Some(policy) = now.as_deref().filter(|p| *p != crate::queue::SAFE_POLICY) {
            tracing::error!(
                message = "Redis's maxmemory-policy changed to one that drops keys: runs may be lost. Set it back to noeviction.",
                policy
            );
        }
        *last = now;
    }
}

async fn expire_runs(queue: &Queue, retention: Duration) {
    let mut n_runs = 0;
    for _ in 0..MAX_BATCHES {
        match queue.expire_finished(retention).await {
            Ok(0) => break,
            Ok(removed) => n_runs += removed,
            Err(error) => {
                queue.health().failed("expire", &error);
                break;
            }
        }
    }
    if n_runs > 0 {
        metrics::runs_expired(n_runs);
        tracing::info!(message = "Removed finished runs past the retention.", n_runs);
    }
}

/// Transcript files whose writes failed (a full disk) are rebuilt from Redis once they can be.
async fn repair_transcripts(conn: &mut RedisConn, keys: &crate::keys::Keys) {
    match crate::records::transcript::repair_pending(conn, keys, REPAIR_BUDGET).await {
        Ok((0, _)) => {}
        Ok((rebuilt, left)) => {
            tracing::info!(message = "Rebuilt transcript files from Redis.", rebuilt, left);
        }
        Err(error) => tracing::warn!(message = "Rebuilding transcript files failed.", %error),
    }
}

async fn prune_transcripts(config: &Config, conn: &mut RedisConn, keys: &crate::keys::Keys) {
    let dir = config.transcripts.dir.clone();
    let days = u32::try_from(config.retention.transcripts.as_secs() / 86_400).unwrap_or(u32::MAX);
    let max_bytes = config.retention.transcripts_max_mb.saturating_mul(1024 * 1024);
    let today = chrono::Utc::now().date_naive();
    let pruned =
        tokio::task::spawn_blocking(move || prune::prune_transcripts(&dir, days, max_bytes, today))
            .await;
    match pruned {
        Ok(Ok(disk)) => {
            metrics::transcript_usage(disk.bytes);
            if disk.removed_days > 0 {
                tracing::info!(
                    message = "Removed transcript days past the retention.",
                    n_days = disk.removed_days
                );
            }
            if let Err(error) =
                usage::store(conn, keys, "transcripts", &[("transcript_bytes", disk.bytes)]).await
            {
                tracing::warn!(message = "Could not store the transcript usage.", %error);
            }
        }
        Ok(Err(error)) => tracing::warn!(message = "Pruning the transcript files failed.", %error),
        Err(error) => tracing::error!(message = "The transcript prune panicked.", %error),
    }
}
