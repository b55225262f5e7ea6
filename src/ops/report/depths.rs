//! The queue's depths over its shards (ready, delayed, dead, held by each worker, the intake
//! and rejected lists), read in one pipeline for `status`, the gauges and the charts. Reads
//! only.

use crate::config::RedisConn;
use crate::keys::Keys;

use super::QueueDepths;

/// The queue's depths, summed over its shards: two round trips, the worker ids given.
pub(crate) async fn depths(
    conn: &mut RedisConn,
    keys: &Keys,
    worker_ids: &[&str],
) -> Result<QueueDepths, redis::RedisError> {
    let mut pipe = redis::pipe();
    pipe.cmd("LLEN").arg(keys.rejected()).cmd("LLEN").arg(keys.intake());
    for shard in keys.each_shard() {
        pipe.cmd("LLEN").arg(shard.ready()).cmd("ZCARD").arg(shard.delayed());
        pipe.cmd("LLEN").arg(shard.dead());
        for worker in worker_ids {
            pipe.cmd("LLEN").arg(shard.processing(worker));
        }
    }
    let counts: Vec<u64> = pipe.query_async(conn).await?;
    let at = |i: usize| counts.get(i).copied().unwrap_or(0);
    let mut depths = QueueDepths { rejected: at(0), intake: at(1), ..QueueDepths::default() };
    for shard in counts.get(2..).unwrap_or_default().chunks(3 + worker_ids.len()) {
        let at = |i: usize| shard.get(i).copied().unwrap_or(0);
        depths.pending += at(0);
        depths.scheduled += at(1);
        depths.dead += at(2);
        depths.running += shard.iter().skip(3).sum::<u64>();
        for (worker, held) in worker_ids.iter().zip(shard.iter().skip(3)) {
            *depths.by_worker.entry((*worker).to_owned()).or_default() += held;
        }
    }
    Ok(depths)
}
