//! The per-user lease: at most one run per user executes at a time, whichever worker holds it.
//!
//! `SET <prefix>:lock:user:<u> <run_id> NX PX <lease>`; renewal and release are conditional on
//! the holder (Lua), so a run whose lease expired can never extend or delete a newer holder's.
//! The run id is the fencing token: the queue delivers each run to one worker at a time, so
//! the same run id re-entering after a crash is the same logical holder and may take over.

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::queue::keys::Keys;

/// What acquiring found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lease is ours.
    Held,
    /// Another run holds it.
    Busy {
        /// The other run.
        holder: String,
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

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Takes the user's lease for `run_id`, or reports who holds it.
pub(crate) async fn acquire(
    conn: &mut ConnectionManager,
    keys: &Keys,
    user: &str,
    run_id: &str,
    lease: Duration,
) -> redis::RedisResult<Acquired> {
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
        return Ok(Acquired::Held);
    }
    let (ok, holder, ttl): (i64, String, Option<i64>) = redis::Script::new(ACQUIRE)
        .key(keys.user_lock(user))
        .arg(run_id)
        .arg(millis(lease))
        .invoke_async(conn)
        .await
        .map(|reply: Vec<redis::Value>| parse_reply(&reply))?;
    if ok == 1 {
        return Ok(Acquired::Held);
    }
    let ttl = Duration::from_millis(u64::try_from(ttl.unwrap_or(0)).unwrap_or(0));
    Ok(Acquired::Busy { holder, ttl })
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

/// Extends the lease if `run_id` still holds it; returns whether it did.
pub(crate) async fn renew(
    conn: &mut ConnectionManager,
    keys: &Keys,
    user: &str,
    run_id: &str,
    lease: Duration,
) -> redis::RedisResult<bool> {
    let renewed: i64 = redis::Script::new(RENEW)
        .key(keys.user_lock(user))
        .arg(run_id)
        .arg(millis(lease))
        .invoke_async(conn)
        .await?;
    Ok(renewed == 1)
}

/// Releases the lease if `run_id` holds it.
pub(crate) async fn release(
    conn: &mut ConnectionManager,
    keys: &Keys,
    user: &str,
    run_id: &str,
) -> redis::RedisResult<()> {
    redis::Script::new(RELEASE)
        .key(keys.user_lock(user))
        .arg(run_id)
        .invoke_async::<i64>(conn)
        .await?;
    Ok(())
}
