-- Puts a dead, failed, cancelled or skipped run back on the ready list with a fresh attempt budget.
-- Its phase and session are kept, so the run resumes where it stopped.
-- KEYS: 1 run record, 2 q:ready, 3 q:delayed, 4 events
-- ARGV: 1 run_id, 2 state index prefix, 3-4 (cancel's, unused), 5 events cap
-- Writes a `requeued` event (state queued, attempt 0).
-- Returns the state found; the run was requeued only if that state is dead, failed, cancelled or
-- skipped.
local rec = KEYS[1]
local id = ARGV[1]
local found = redis.call('HMGET', rec, 'state', 'user', 'schedule')
local state = found[1]
if not state then return 'missing' end
if state ~= 'dead' and state ~= 'failed' and state ~= 'cancelled' and state ~= 'skipped' then
  return state
end
redis.call('ZREM', KEYS[3], id)
local now = int(now_ms())
redis.call('HSET', rec, 'state', 'queued', 'attempts', 0, 'requeued_at_ms', now)
-- `wake_requested` too: an attempt that ended without reading its record leaves it.
redis.call('HDEL', rec, 'ended_at_ms', 'next_attempt_at_ms', 'cancel_requested_at_ms',
  'skip_reason', 'skip_detail', 'wake_requested')
index_move(ARGV[2], rec, id, state, 'queued')
redis.call('LPUSH', KEYS[2], id)
emit(KEYS[4], ARGV[5], 'requeued', id, found[2], found[3], 'queued', 0, now)
return state
