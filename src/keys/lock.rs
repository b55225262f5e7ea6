//! The per-user lease's keys, in the control slot (shard 0's) whatever the handle: the lease
//! (`run/user_lease.rs`) and the runs waiting for it, so one script can touch both.

use super::Keys;
use crate::ids::UserId;

impl Keys {
    /// `<p>:lock:user:<u>`.
    pub fn user_lock(&self, user: &UserId) -> String {
        self.control_key(&format!("lock:user:{user}"))
    }

    /// `<p>:lock:waiters:<u>`: the runs deferred while the user's lease was held, to wake when
    /// it is released.
    pub fn user_lock_waiters(&self, user: &UserId) -> String {
        self.control_key(&format!("lock:waiters:{user}"))
    }
}
