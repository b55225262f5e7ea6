//! Retention of finished runs: the oldest records past the retention go, with their transcript
//! streams and every index entry, in bounded batches (one script call removes at most
//! [`EXPIRE_BATCH`] per finished state), so that Redis holds what the last `retention` days
//! produced and no more. This module must not decide when it runs: the worker's maintenance
//! loop does.

use std::time::{Duration, SystemTime};

use super::{Queue, Result, script};

/// Entries visited per finished state per script call: a call stays well under a millisecond
/// of Redis time.
pub(crate) const EXPIRE_BATCH: usize = 200;

impl Queue {
    /// Removes up to `EXPIRE_BATCH` finished runs per state and shard that were created and
    /// ended more than `retention` ago. Returns how many went.
    ///
    /// # Errors
    /// [`super::QueueError`] when Redis fails.
    pub async fn expire_finished(&self, retention: Duration) -> Result<usize> {
        let cutoff = SystemTime::now().checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut n_removed = 0;
        for keys in self.keys.each_shard() {
            let mut invocation = script::EXPIRE.prepare_invoke();
            invocation
                .key(keys.runs())
                .arg(super::unix_ms(cutoff))
                .arg(EXPIRE_BATCH)
                .arg(keys.runs_by_state_prefix())
                .arg(keys.run_prefix())
                .arg(keys.runs_by_user_prefix())
                .arg(keys.transcript_prefix());
            let n: usize = invocation.invoke_async(&mut self.connection()).await?;
            n_removed += n;
        }
        Ok(n_removed)
    }
}
