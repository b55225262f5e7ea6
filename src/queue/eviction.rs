//! Whether the Redis can drop keys: any `maxmemory-policy` but `noeviction` lets Redis evict
//! run records, queue entries, per-user locks and transcripts under memory pressure, and a run
//! whose record is gone is lost without a trace. Read from `INFO memory` (managed services that
//! disable `CONFIG GET` still answer it). This module must not decide what to do about it.

use super::{Queue, Result};

/// The only policy under which Redis never drops a key.
pub const SAFE_POLICY: &str = "noeviction";

impl Queue {
    /// The server's `maxmemory-policy`, when `INFO memory` reports one.
    ///
    /// # Errors
    /// [`super::QueueError`] when Redis fails.
    pub async fn eviction_policy(&self) -> Result<Option<String>> {
        Ok(read_policy(&mut self.connection()).await?)
    }
}

/// The `maxmemory-policy` of the server behind `conn`, when `INFO memory` reports one.
///
/// # Errors
/// The Redis error.
pub async fn read_policy(
    conn: &mut impl redis::aio::ConnectionLike,
) -> redis::RedisResult<Option<String>> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    Ok(policy_of(&info))
}

/// `maxmemory_policy` from an `INFO memory` reply.
fn policy_of(info: &str) -> Option<String> {
    info.lines().find_map(|line| line.trim().strip_prefix("maxmemory_policy:")).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_read_from_info_memory() {
        let info = "# Memory\r\nused_memory:1024\r\nmaxmemory_policy:allkeys-lru\r\n";
        assert_eq!(policy_of(info).as_deref(), Some("allkeys-lru"));
        assert_eq!(policy_of("# Memory\r\n"), None);
    }
}
