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
//!
//! A run that finds the user busy is deferred until the lease would expire, and notes itself
//! in `<p>:lock:waiters:<u>` in the same script; the release pops the waiters, and the worker
//! wakes them at once (`queue::Queue::wake`, on each run's shard: the two keys are in the
//! control slot, the runs in theirs, so this is a second call). The waiters are bounded
//! ([`WAITERS_CAP`]; more are deferred all the same, unnoted) and expire with the lease, so a
//! lost wake, a crash between release and wake, or a release that never comes (a dead worker)
//! costs only the old wait: the delayed set promotes the run at its time.

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

/// Runs noted as waiting for one user's lease at most; a user with more queued runs than this
/// has the rest wait as long as the lease had left (see the module doc).
pub const WAITERS_CAP: usize = 32;

/// KEYS: 1 the lease, 2 its waiters. ARGV: 1 run id, 2 lease ms, 3 the waiters' cap.
/// A busy lease notes the run as a waiter, kept (with its first score: waiters are woken
/// oldest first) as long as the lease can last without a renewal.
const ACQUIRE: &str = r"
local ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
if ok then return {1, ''} end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, ''}
end
if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[3]) then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], 'NX', t[1] * 1000 + math.floor(t[2] / 1000), ARGV[1])
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {0, holder or '', redis.call('PTTL', KEYS[1])}";

/// KEYS: 1 the lease, 2 its waiters. ARGV: 1 run id, 2 the waiters' cap. Returns the waiters
/// popped when the lease was the run's, else none: they wait for whoever holds it now.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {} end
redis.call('DEL', KEYS[1])
return redis.call('ZPOPMIN', KEYS[2], ARGV[2])";

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
        .key(keys.user_lock_waiters(user))
        .arg(run_id)
        .arg(millis(lease))
        .arg(WAITERS_CAP)
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

/// Releases the lease if `run_id` holds it, and returns the runs that were waiting for it
/// (oldest first, never `run_id` itself), for the worker to wake.
pub(crate) async fn release(
    conn: &mut RedisConn,
    keys: &Keys,
    (user, run_id): (&UserId, &RunId),
    lease: Duration,
    held: &Held,
) -> redis::RedisResult<Vec<RunId>> {
    let (key, waiters) = (keys.user_lock(user), keys.user_lock_waiters(user));
    let popped: redis::Value = if held.surely_ours(lease) {
        // Two plain commands in one round trip, not atomic and not needing to be: a waiter
        // noted before the `DEL` is popped, and one noted after it waits for a newer holder,
        // whom an early wake costs only another deferral.
        let mut pipe = redis::pipe();
        pipe.del(&key).ignore().zpopmin(&waiters, WAITERS_CAP as isize);
        let (popped,): (redis::Value,) = pipe.query_async(conn).await?;
        popped
    } else {
        redis::Script::new(RELEASE)
            .key(key)
            .key(waiters)
            .arg(run_id)
            .arg(WAITERS_CAP)
            .invoke_async(conn)
            .await?
    };
    let mut woken = Vec::new();
    members(&popped, &mut 0, &mut woken);
    // The ids were noted by runs of validated ids.
    Ok(woken.into_iter().filter(|id| id != run_id.as_str()).map(RunId::trusted).collect())
}

/// The members of a `ZPOPMIN` reply, whether flat (member, score, …) as RESP2 and scripts
/// give it, or nested pairs as RESP3 does: every other leaf, from the first (`n_leaves`
/// counts the leaves seen).
fn members(reply: &redis::Value, n_leaves: &mut usize, out: &mut Vec<String>) {
    let text = match reply {
        redis::Value::Array(items) => {
            for item in items {
                members(item, n_leaves, out);
            }
            return;
        }
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        redis::Value::SimpleString(text) => text.clone(),
        redis::Value::Double(_) | redis::Value::Int(_) => String::new(),
        _ => return,
    };
    if n_leaves.is_multiple_of(2) {
        out.push(text);
    }
    *n_leaves += 1;
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

    #[test]
    fn waiters_are_read_from_flat_and_nested_zpopmin_replies() {
        let bulk = |text: &str| redis::Value::BulkString(text.as_bytes().to_vec());
        let check = |reply: redis::Value, expect: &[&str]| {
            let mut out = Vec::new();
            members(&reply, &mut 0, &mut out);
            assert_eq!(out, expect, "{reply:?}");
        };
        // RESP2 and scripts: member, score, member, score.
        check(
            redis::Value::Array(vec![bulk("r1"), bulk("17"), bulk("r2"), bulk("18")]),
            &["r1", "r2"],
        );
        // RESP3: [member, score] pairs, the score a double.
        let pair =
            |id: &str, score: f64| redis::Value::Array(vec![bulk(id), redis::Value::Double(score)]);
        check(redis::Value::Array(vec![pair("r1", 17.0), pair("r2", 18.0)]), &["r1", "r2"]);
        check(redis::Value::Array(vec![]), &[]);
        check(redis::Value::Nil, &[]);
    }
}
