//! The `phase` transitions of the run lifecycle events: a phase marker and its event on the
//! run's shard's events stream (`<p>:events`, see `crate::keys`) are written by one script, only
//! while the attempt's fence is current, so a fenced-off attempt reports no phase.
//! The queue's scripts write every other transition (`queue/lua/`: created, started, the
//! outcomes, cancelled, requeued). This module must not decide outcomes.

use std::sync::LazyLock;

use super::{Phase, RecordsError};
use crate::config::RedisConn;
use crate::ids::RunId;
use crate::keys::Keys;
use crate::transient;

/// Sets `fields` of the run record and appends a `phase` event for `phase`, in one step; with
/// `fence`, only while the record's `fence` is that value (returns false, writing nothing, when
/// a later attempt of the run started since). A reply lost to passing trouble is retried, so
/// the event may then appear twice: consumers see each phase at least once.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn enter_phase(
    conn: &mut RedisConn,
    keys: &Keys,
    run_id: &RunId,
    fence: Option<u64>,
    phase: Phase,
    fields: &[(&str, String)],
) -> Result<bool, RecordsError> {
    let shard = keys.for_run(run_id);
    let (record, events, cap) = (shard.run(run_id), shard.events(), shard.events_cap());
    let fence = fence.map(|fence| fence.to_string()).unwrap_or_default();
    let written: i64 = transient::retry(|| {
        let mut conn = conn.clone();
        let mut invocation = ENTER_PHASE.key(&record);
        invocation.key(&events).arg(&fence).arg(cap).arg(run_id).arg(phase.as_str()).arg(fields);
        async move { invocation.invoke_async(&mut conn).await }
    })
    .await?;
    Ok(written == 1)
}

/// KEYS: 1 run record, 2 events. ARGV: 1 fence or '' (no check), 2 events cap, 3 run id,
/// 4 phase, 5.. field/value pairs for the record. The event's fields are those of the queue's
/// (`queue/lua/common.lua`, `emit`), with `phase` last.
static ENTER_PHASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then return 0 end
         redis.call('HSET', KEYS[1], unpack(ARGV, 5))
         local f = redis.call('HMGET', KEYS[1], 'user', 'schedule', 'state', 'attempts')
         local t = redis.call('TIME')
         local at = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
         redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', 'phase',
           'run_id', ARGV[3], 'user', f[1] or '', 'schedule', f[2] or '', 'state', f[3] or '',
           'attempt', f[4] or '0', 'at_ms', at, 'phase', ARGV[4])
         return 1",
    )
});
