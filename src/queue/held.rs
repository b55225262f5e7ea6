//! What a worker holds and hands back outside the fetch and finish steps: the runs in its
//! processing lists (which the reconciler compares with what it executes), the runs it hands
//! back, and the per-user leases of the runs it executes. It must not decide outcomes.

use std::time::Duration;

use redis::AsyncCommands;

use super::{Owner, Queue, Result, script};
use crate::ids::{RunId, UserId};

/// Per-user leases renewed per script call: bounds one call's time on Redis.
const USER_LEASES_PER_CALL: usize = 1_000;

impl Queue {
    /// The runs in `owner`'s processing lists, at most `limit` per shard (a list is bounded by
    /// the worker's concurrency plus one fetch batch).
    pub(crate) async fn processing_ids(&self, owner: &Owner, limit: usize) -> Result<Vec<RunId>> {
        let stop = isize::try_from(limit).unwrap_or(isize::MAX).saturating_sub(1);
        let mut conn = self.connection();
        let mut ids = Vec::new();
        for keys in self.keys.each_shard() {
            let listed: Vec<RunId> = conn.lrange(keys.processing(&owner.id), 0, stop).await?;
            ids.extend(listed);
        }
        Ok(ids)
    }

    /// Renews the per-user lease of each (user, run) in `holders` for `lease`, where that run
    /// still holds it; [`USER_LEASES_PER_CALL`] per script call. Returns how many were renewed.
    pub(crate) async fn renew_user_leases(
        &self,
        holders: &[(UserId, RunId)],
        lease: Duration,
    ) -> Result<usize> {
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let mut n_renewed = 0;
        for chunk in holders.chunks(USER_LEASES_PER_CALL) {
            let mut invocation = script::RENEW_USER_LEASES.prepare_invoke();
            invocation.arg(lease_ms);
            for (user, run_id) in chunk {
                invocation.key(self.keys.user_lock(user)).arg(run_id);
            }
            let n: usize = invocation.invoke_async(&mut self.connection()).await?;
            n_renewed += n;
        }
        Ok(n_renewed)
    }

    /// Hands `run_ids` back to the ready list if they are still in `owner`'s processing list,
    /// refunding the attempt their start counted. Returns how many were handed back.
    pub(crate) async fn release_runs(&self, owner: &Owner, run_ids: &[RunId]) -> Result<usize> {
        let mut n_released = 0;
        for (shard, positions) in self.by_shard(run_ids) {
            let keys = self.keys.shard(shard);
            let mut invocation = script::RELEASE_RUNS.prepare_invoke();
            invocation
                .key(keys.processing(&owner.id))
                .key(keys.ready())
                .arg(&*owner.id)
                .arg(keys.run_prefix())
                .arg(keys.runs_by_state_prefix());
            for i in positions {
                invocation.arg(&run_ids[i]);
            }
            let n: usize = invocation.invoke_async(&mut self.connection()).await?;
            if n > 0 {
                self.ring([shard]).await?;
            }
            n_released += n;
        }
        Ok(n_released)
    }
}
