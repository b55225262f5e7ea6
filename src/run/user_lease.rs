//! The per-user lease: at most one run per user executes at a time, whichever worker holds it.
//!
//! `SET <prefix>:lock:user:<u> <run_id> NX PX <lease>`. The worker's heartbeat renews the
//! lease of every run it holds (`Queue::renew_user_leases`), so a run keeps it however long a
//! remote call blocks, and loses it only when its worker is gone. Renewal and release are
//! conditional on the holder, so a run whose lease expired can never extend or delete a newer
//! holder's: while less than half the lease has passed since the run took it, the key cannot
//! have expired, so a plain `DEL` releases it (one command); later, a Lua script compares the
//! holder first. The run id is the fencing token: the queue
//! delivers each run to one worker at a time, so the same run id re-entering after a crash is
//! the same logical holder and may take over.

use std::time::{Duration, Instant};

use crate::config::RedisConn;

use crate::ids::{RunId, UserId};
use crate::keys::Keys;

/// A lease the run holds, as far as it knows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    /// When the run last set the lease, read before the command was sent: Redis's expiry is
    /// never earlier than this plus the lease.
    since: Instant,
}

impl Held {
    /// Whether the key is certainly still this run's: less than half the lease has passed
    /// since the run took it, which leaves a plain command the other half to reach Redis.
    fn surely_ours(&self, lease: Duration) -> bool {
        self.since.elapsed() < lease / 2
    }
}

/// What acquiring found.
#[derive(Debug, Clone)]
pub(crate) enum Acquired {
    /// The lease is ours.
    Held(Held),
    /// Another run holds it.
    Busy {
        /// The other run.
        holder: RunId,
        /// How long until it expires unless renewed.
        ttl: Duration,
    },
}

const ACQUIRE: &str = r"
local ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
if ok then return {1, ''} end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, ''}
end
return {0, holder or '', redis.call('PTTL', KEYS[1])}";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Takes the user's lease for `run_id`, or reports who holds it.
pub(crate) async fn acquire(
    conn: &mut RedisConn,
    keys: &Keys,
    user: &UserId,
    run_id: &RunId,
    lease: Duration,
) -> redis::RedisResult<Acquired> {
    let held = Held { since: Instant::now() };
    // The common case, a free lease, in one plain command; the script (re-entry by the same
    // run, or who holds it and for how long) only when that fails.
    let taken: Option<String> = redis::cmd("SET")
        .arg(keys.user_lock(user))
        .arg(run_id)
        .arg("NX")
        .arg("PX")
        .arg(millis(lease))
        .query_async(conn)
        .await?;
    if taken.is_some() {
        return Ok(Acquired::Held(held));
    }
    let (ok, holder, ttl): (i64, String, Option<i64>) = redis::Script::new(ACQUIRE)
        .key(keys.user_lock(user))
        .arg(run_id)
        .arg(millis(lease))
        .invoke_async(conn)
        .await
        .map(|reply: Vec<redis::Value>| parse_reply(&reply))?;
    if ok == 1 {
        return Ok(Acquired::Held(held));
    }
    let ttl = Duration::from_millis(u64::try_from(ttl.unwrap_or(0)).unwrap_or(0));
    // The holder was written by a run of a validated id.
    Ok(Acquired::Busy { holder: RunId::trusted(holder), ttl })
}

fn parse_reply(reply: &[redis::Value]) -> (i64, String, Option<i64>) {
    let int = |value: Option<&redis::Value>| match value {
        Some(redis::Value::Int(n)) => Some(*n),
        _ => None,
    };
    let holder = match reply.get(1) {
        Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    };
    (int(reply.first()).unwrap_or(0), holder, int(reply.get(2)))
}

/// Releases the lease if `run_id` holds it.
pub(crate) async fn release(
    conn: &mut RedisConn,
    keys: &Keys,
    (user, run_id): (&UserId, &RunId),
    lease: Duration,
    held: &Held,
) -> redis::RedisResult<()> {
    let key = keys.user_lock(user);
    if held.surely_ours(lease) {
        redis::cmd("DEL").arg(key).query_async::<i64>(conn).await?;
    } else {
        redis::Script::new(RELEASE).key(key).arg(run_id).invoke_async::<i64>(conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_command_only_while_the_key_cannot_have_expired() {
        let lease = Duration::from_secs(30);
        let ago = |secs| Instant::now().checked_sub(Duration::from_secs(secs)).unwrap();
        assert!(Held { since: ago(0) }.surely_ours(lease));
        assert!(Held { since: ago(14) }.surely_ours(lease));
        assert!(!Held { since: ago(16) }.surely_ours(lease), "half the lease passed");
    }
}
