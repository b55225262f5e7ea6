-- Retry now: a failed run waiting in the delayed set for its next attempt is made due at once
-- (moved to the ready list); its attempt count and budget are unchanged.
-- KEYS: 1 run record, 2 q:ready, 3 q:delayed, 4 events
-- ARGV: 1 run_id, 2 (the state index prefix, unused), 3-4 (cancel's, unused), 5 events cap
-- Writes a `retried` event (state failed, the attempts so far).
-- Returns the state found, or `due` for a failed run that is not waiting (its retry is already
-- due or taken); the run was moved only if the answer is `failed`.
local rec = KEYS[1]
local id = ARGV[1]
local found = redis.call('HMGET', rec, 'state', 'user', 'schedule', 'attempts')
local state = found[1]
if not state then return 'missing' end
if state ~= 'failed' then return state end
if redis.call('ZREM', KEYS[3], id) == 0 then return 'due' end
local now = int(now_ms())
redis.call('HSET', rec, 'next_attempt_at_ms', now, 'retried_at_ms', now)
redis.call('LPUSH', KEYS[2], id)
emit(KEYS[4], ARGV[5], 'retried', id, found[2], found[3], 'failed', found[4], now)
return state
