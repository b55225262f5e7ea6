-- Cancels a run: a waiting one at once (taken off the ready list and the delayed set), a
-- running one by a request its worker honours at the next safe point: the request is in the
-- record (read when an attempt starts) and in the worker's cancel set, which its heartbeat
-- takes, so that no run polls for it.
-- KEYS: 1 run record, 2 q:ready, 3 q:delayed, 4 events
-- ARGV: 1 run_id, 2 state index prefix, 3 cancel set prefix, 4 cancel set lifetime (s),
--       5 events cap
-- A waiting run's cancel writes its `cancelled` event here; a running one's, when its worker
-- records the end (finish_many.lua).
-- Returns the state found: queued/failed runs are now cancelled, running ones asked to stop,
-- finished ones untouched.
local rec = KEYS[1]
local id = ARGV[1]
local found = redis.call('HMGET', rec, 'state', 'worker', 'user', 'schedule', 'attempts')
local state, worker = found[1], found[2]
if not state then return 'missing' end
local now = int(now_ms())
if state == 'queued' or state == 'failed' then
  -- LREM scans the ready list, but only for this operator action, never per job.
  redis.call('LREM', KEYS[2], 0, id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('HSET', rec, 'state', 'cancelled', 'ended_at_ms', now, 'cancel_requested_at_ms', now)
  index_move(ARGV[2], rec, id, state, 'cancelled')
  emit(KEYS[4], ARGV[5], 'cancelled', id, found[3], found[4], 'cancelled', found[5], now)
elseif state == 'running' then
  redis.call('HSET', rec, 'cancel_requested_at_ms', now)
  if worker then
    -- A set of a worker that died is never taken: it expires.
    local set = ARGV[3] .. worker
    redis.call('SADD', set, id)
    redis.call('EXPIRE', set, tonumber(ARGV[4]))
  end
end
return state
