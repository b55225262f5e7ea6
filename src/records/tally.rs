//! Counters on a run record that only rise: a run's token counts, summed from its transcript
//! each time an attempt ends its turn. Setting them returns by how much each rose, so what is
//! added elsewhere (Prometheus counters) from these rises adds each token once per run,
//! however many attempts recompute the sums; and the per-day aggregates those rises are added
//! to (`add_to_day`). This module must not decide what is counted.

use crate::config::RedisConn;

use super::RecordsError;
use crate::ids::{RunId, UserId};
use crate::keys::Keys;
use crate::transient;

/// Sets `fields` on the record of `run_id` and raises each counter of `counts` to its value
/// (a counter never goes down: a smaller value leaves it), in one step; with `fence`, only
/// while the record's `fence` is that value. Returns each counter's rise, in the order of
/// `counts`, or `None` when a later attempt started (nothing written).
///
/// A retried call whose first reply was lost returns rises of 0 (the first call made them),
/// so passing trouble may lose a rise, never count one twice.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn set_run_counts(
    conn: &mut RedisConn,
    keys: &Keys,
    run_id: &RunId,
    fence: Option<u64>,
    fields: &[(&str, String)],
    counts: &[(&str, u64)],
) -> Result<Option<Vec<u64>>, RecordsError> {
    let key = keys.run(run_id);
    let fence = fence.map(|fence| fence.to_string()).unwrap_or_default();
    let rises: Option<Vec<u64>> = transient::retry(|| {
        let mut conn = conn.clone();
        let mut invocation = SET_COUNTS.key(&key);
        invocation.arg(&fence).arg(counts.len()).arg(counts).arg(fields);
        async move { invocation.invoke_async(&mut conn).await }
    })
    .await?;
    Ok(rises)
}

/// Adds a run's rises to the day's aggregate `<p>:tokens:<day>`: for each kind that rose,
/// `total:<kind>`, `user:<u>:<kind>` and `schedule:<s>:<kind>`, and sets the hash to expire
/// `ttl_secs` after this change. One transaction on one key, sent once and never retried (a
/// lost reply could otherwise add a rise twice).
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn add_to_day(
    conn: &mut RedisConn,
    keys: &Keys,
    (day, user, schedule): (&str, &UserId, &str),
    rises: &[(&str, u64)],
    ttl_secs: u64,
) -> Result<(), RecordsError> {
    let key = keys.tokens_day(day);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (kind, rise) in rises.iter().filter(|(_, rise)| *rise > 0) {
        let groups = [
            format!("total:{kind}"),
            format!("user:{user}:{kind}"),
            format!("schedule:{schedule}:{kind}"),
        ];
        for group in groups {
            pipe.cmd("HINCRBY").arg(&key).arg(group).arg(*rise).ignore();
        }
    }
    pipe.cmd("EXPIRE").arg(&key).arg(ttl_secs).ignore();
    pipe.query_async::<()>(conn).await?;
    Ok(())
}

/// The days of `today`'s month up to it, oldest first, as the per-day aggregates name them.
pub fn month_so_far(today: chrono::NaiveDate) -> Vec<String> {
    use chrono::Datelike;
    let first = today.with_day(1).unwrap_or(today);
    first
        .iter_days()
        .take_while(|day| *day <= today)
        .map(|day| day.format("%Y-%m-%d").to_string())
        .collect()
}

/// The token kinds a day's aggregate counts per group, all of which a budget counts.
pub const TOKEN_KINDS: [&str; 4] = ["input", "output", "cache_write", "cache_read"];

/// The tokens (every kind) each of `groups` (`user:<u>`, `schedule:<s>`) used on each of
/// `days` (`YYYY-MM-DD`), in one pipeline: `[day][group]`.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn day_tokens(
    conn: &mut RedisConn,
    keys: &Keys,
    days: &[String],
    groups: &[String],
) -> Result<Vec<Vec<u64>>, RecordsError> {
    if days.is_empty() || groups.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for day in days {
        let cmd = pipe.cmd("HMGET").arg(keys.tokens_day(day));
        for group in groups {
            for kind in TOKEN_KINDS {
                cmd.arg(format!("{group}:{kind}"));
            }
        }
    }
    let replies: Vec<Vec<Option<u64>>> = pipe.query_async(conn).await?;
    Ok(replies
        .into_iter()
        .map(|counts| {
            counts.chunks(TOKEN_KINDS.len()).map(|kinds| kinds.iter().flatten().sum()).collect()
        })
        .collect())
}

/// KEYS[1]: the record. ARGV: the fence (empty: none), the number of counters, that many
/// (field, value) pairs, then the (field, value) pairs to set.
static SET_COUNTS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then return false end \
         local n = tonumber(ARGV[2]) \
         local rises = {} \
         for i = 0, n - 1 do \
           local field, value = ARGV[3 + 2 * i], ARGV[4 + 2 * i] \
           local old = tonumber(redis.call('HGET', KEYS[1], field) or '0') or 0 \
           local new = tonumber(value) or 0 \
           if new >= old then redis.call('HSET', KEYS[1], field, value) end \
           rises[#rises + 1] = math.max(new - old, 0) \
         end \
         if #ARGV > 2 + 2 * n then redis.call('HSET', KEYS[1], unpack(ARGV, 3 + 2 * n)) end \
         return rises",
    )
});
