//! The queue's shards (`redis.shards`, the layout in `crate::keys`): which shard each run id
//! goes to, the bell that wakes idle workers of a sharded queue, and the check that every
//! process agrees on the shard count. This module must not take or finish runs.
//!
//! A worker of a sharded queue cannot block on N ready lists at once (`BLMOVE` waits on one
//! list, and on a cluster the lists are on different masters), and it must not poll N empty
//! lists in a hot loop. Producers therefore ring a bell after they queue runs: they push the
//! shard's number onto `<p>:q:bell` (capped at [`BELL_CAP`]). An idle worker blocks on the bell
//! (`BLPOP`), and when it wakes it looks at that shard first and then the others. A bell is
//! only a hint: one rung while no worker was idle, or lost with a worker, costs at most the
//! wait, since an idle worker also looks at every shard once per wait ([`crate::queue`]'s
//! fetch, every two seconds). A worker that took a full batch rings again, so that a burst
//! wakes as many idle workers as it needs.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;

use super::{Queue, QueueError, Result};
use crate::config::RedisConn;
use crate::ids::RunId;

/// Entries kept on the bell: enough to wake every idle worker of a large fleet once.
pub(crate) const BELL_CAP: isize = 256;

impl Queue {
    /// The positions of `ids` grouped by shard, in shard order, each group in the order given.
    pub(crate) fn by_shard<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a RunId>,
    ) -> BTreeMap<usize, Vec<usize>> {
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, id) in ids.into_iter().enumerate() {
            groups.entry(self.keys.shard_of(id)).or_default().push(i);
        }
        groups
    }

    /// Tells idle workers that `shards` have ready runs. Nothing with one shard: its workers
    /// block on the ready list itself.
    pub(crate) async fn ring(&self, shards: impl IntoIterator<Item = usize>) -> Result {
        if self.keys.shards() == 1 {
            return Ok(());
        }
        let shards: Vec<usize> = shards.into_iter().collect();
        if shards.is_empty() {
            return Ok(());
        }
        let bell = self.keys.bell();
        let mut pipe = redis::pipe();
        pipe.lpush(&bell, &shards).ignore().ltrim(&bell, 0, BELL_CAP - 1).ignore();
        Ok(pipe.query_async(&mut self.connection()).await?)
    }

    /// Waits up to `block` on the bell (on the blocking connection); the shard it names.
    pub(crate) async fn wait_bell(
        &self,
        blocking: &mut RedisConn,
        block: Duration,
    ) -> Result<Option<usize>> {
        let rung: Option<(String, usize)> =
            blocking.blpop(self.keys.bell(), block.as_secs_f64()).await?;
        Ok(rung.map(|(_, shard)| shard).filter(|shard| *shard < self.keys.shards()))
    }

    /// Sums `command` (`ZCARD`, `LLEN`) of the key `key` names in each shard, in one pipeline.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis fails.
    pub async fn sum_over_shards(
        &self,
        command: &str,
        key: impl Fn(&crate::keys::Keys) -> String,
    ) -> Result<usize> {
        let sums = self.sums_over_shards(|shard| vec![(command, key(shard))]).await?;
        Ok(sums.iter().sum())
    }

    /// Sums each count `counts` gives for a shard, a (command, key) pair such as `("LLEN",
    /// keys.ready())`, over the shards, all in one pipeline; the sums in the order given.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis fails.
    pub async fn sums_over_shards<'a>(
        &self,
        counts: impl Fn(&crate::keys::Keys) -> Vec<(&'a str, String)>,
    ) -> Result<Vec<usize>> {
        let mut pipe = redis::pipe();
        let mut n_counts = 0;
        for shard in self.keys.each_shard() {
            let shard_counts = counts(&shard);
            n_counts = shard_counts.len();
            for (command, key) in shard_counts {
                pipe.cmd(command).arg(key);
            }
        }
        let replies: Vec<usize> = pipe.query_async(&mut self.connection()).await?;
        let mut sums = vec![0; n_counts];
        for shard in replies.chunks(n_counts.max(1)) {
            for (sum, n) in sums.iter_mut().zip(shard) {
                *sum += n;
            }
        }
        Ok(sums)
    }

    /// Records the shard count in `<p>:q:layout` if none is, and refuses a different one: runs
    /// would be looked for in the wrong shards.
    ///
    /// # Errors
    /// [`QueueError::Layout`] when Redis holds another count, or Redis failed.
    pub async fn check_layout(&self) -> Result {
        let key = self.keys.layout();
        let mut conn = self.connection();
        let configured = self.keys.shards();
        let _: bool = conn.hset_nx(&key, "shards", configured).await?;
        let stored: Option<usize> = conn.hget(&key, "shards").await?;
        match stored {
            Some(stored) if stored != configured => Err(QueueError::Layout { stored, configured }),
            _ => Ok(()),
        }
    }
}
