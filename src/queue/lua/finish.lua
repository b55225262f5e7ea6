-- Records the end of an attempt, if this worker still holds the run.
-- KEYS: 1 q:processing:<worker>, 2 run record, 3 q:ready, 4 q:delayed, 5 q:dead
-- ARGV: 1 run_id, 2 mode, 3 state index prefix, 4 error, 5 error class, 6 delay ms, 7 dead cap
-- Modes: succeeded | needs_auth | cancelled (terminal), retry (failed, due later),
--        dead, defer (queued again later, attempt refunded), release (queued now, refunded).
-- Returns 0 when the run was no longer in this worker's processing list (taken over).
local id = ARGV[1]
if redis.call('LREM', KEYS[1], 1, id) == 0 then return 0 end
local rec = KEYS[2]
local f = redis.call('HMGET', rec, 'state', 'created_at_ms')
local old, created = f[1], f[2]
if not old then return 1 end
local now = now_ms()
local mode = ARGV[2]
if mode == 'succeeded' or mode == 'needs_auth' or mode == 'cancelled' then
  redis.call('HSET', rec, 'state', mode, 'ended_at_ms', int(now))
  index_move(ARGV[3], rec, id, old, mode, created)
elseif mode == 'retry' then
  local due = now + tonumber(ARGV[6])
  redis.call('HSET', rec, 'state', 'failed', 'last_error', ARGV[4], 'error_class', ARGV[5],
    'next_attempt_at_ms', int(due))
  redis.call('ZADD', KEYS[4], due, id)
  index_move(ARGV[3], rec, id, old, 'failed', created)
elseif mode == 'dead' then
  redis.call('HSET', rec, 'state', 'dead', 'last_error', ARGV[4], 'error_class', ARGV[5],
    'ended_at_ms', int(now))
  push_dead(KEYS[5], tonumber(ARGV[7]), id, ARGV[4], ARGV[5], now)
  index_move(ARGV[3], rec, id, old, 'dead', created)
elseif mode == 'defer' then
  local due = now + tonumber(ARGV[6])
  redis.call('HINCRBY', rec, 'attempts', -1)
  redis.call('HSET', rec, 'state', 'queued', 'next_attempt_at_ms', int(due))
  redis.call('ZADD', KEYS[4], due, id)
  index_move(ARGV[3], rec, id, old, 'queued', created)
elseif mode == 'release' then
  redis.call('HINCRBY', rec, 'attempts', -1)
  redis.call('HSET', rec, 'state', 'queued')
  redis.call('RPUSH', KEYS[3], id)
  index_move(ARGV[3], rec, id, old, 'queued', created)
else
  return redis.error_reply('unknown finish mode ' .. mode)
end
return 1
