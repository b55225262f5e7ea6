//! Waking runs that wait for a user's lease: when a run releases the lease, the runs deferred
//! meanwhile (`run/user_lease.rs` notes and pops them) go from the delayed set to the ready
//! list now instead of at their due time. One script per run, on the run's shard (the lease
//! is in the control slot, so this is a call of its own). It must not decide outcomes.

use super::{Queue, Result, script};
use crate::config::RedisConn;
use crate::ids::RunId;
use crate::keys::Keys;

impl Queue {
    /// A handle on `conn` and `keys`, for a caller that has both but no queue (the run
    /// pipeline's handler); its health is its own.
    pub(crate) fn on(conn: RedisConn, keys: Keys) -> Self {
        Self { conn, keys, health: std::sync::Arc::default() }
    }

    /// Moves each of `run_ids` that is deferred (`queued` in the delayed set) to its shard's
    /// ready list, and marks one still in the attempt that is being deferred so that its
    /// deferral queues it at once (`wake.lua`). Idempotent; a run that already started, was
    /// promoted or finished is left alone. Returns how many moved.
    ///
    /// # Errors
    /// Redis failed; the runs not woken yet keep their due time.
    pub(crate) async fn wake(&self, run_ids: &[RunId]) -> Result<usize> {
        let mut n_moved = 0;
        let mut rung = Vec::new();
        for (shard, positions) in self.by_shard(run_ids) {
            let keys = self.keys.shard(shard);
            for i in positions {
                let run_id = &run_ids[i];
                let mut invocation = script::WAKE.prepare_invoke();
                invocation.key(keys.delayed()).key(keys.ready()).key(keys.run(run_id)).arg(run_id);
                let woken: u8 = invocation.invoke_async(&mut self.connection()).await?;
                if woken == 1 {
                    n_moved += 1;
                    rung.push(shard);
                }
            }
        }
        rung.dedup();
        self.ring(rung).await?;
        Ok(n_moved)
    }
}
