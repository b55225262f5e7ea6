-- Wakes a run that was deferred while its user's lease was held, now that it was released.
-- KEYS: 1 q:delayed, 2 q:ready, 3 run record. ARGV: 1 run id.
-- Idempotent, and a no-op for a run that no longer waits: returns 1 when the run moved from
-- the delayed set to the ready list; 2 when it is still in the attempt that found the user
-- busy (its deferral is not recorded yet): marked `wake_requested`, so that the deferral
-- queues it now (`finish_many.lua`); 0 otherwise (promoted already, started, finished, a retry's
-- backoff, or gone).
local state = redis.call('HGET', KEYS[3], 'state')
if state == 'queued' then
  if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
if state == 'running' then
  redis.call('HSET', KEYS[3], 'wake_requested', '1')
  return 2
end
return 0
