-- Records the end of an attempt, unless another worker took the run over meanwhile.
-- KEYS: 1 q:processing:<worker>, 2 run record, 3 q:ready, 4 q:delayed, 5 q:dead, 6 q:leases,
--       7 events, 8 webhooks:outbox
-- ARGV: 1 run_id, 2 mode, 3 state index prefix, 4 error, 5 error class, 6 delay ms, 7 dead cap,
--       8 worker id, 9 events cap, 10 the run webhook's states (` succeeded dead `, or empty),
--       11 the webhook message's claim in ms
-- Modes: succeeded | needs_auth | cancelled (terminal), skipped (terminal, never started: the
--        attempt is refunded; ARGV[5] is the reason, ARGV[4] its detail), retry (failed, due
--        later),
--        dead, defer (queued again later, attempt refunded), release (queued now, refunded).
-- Returns 1 when recorded; 2 when recorded though the run's queue entry was gone (lost to an
-- operator's DEL, eviction or a restore: nobody else can have started the run, since the
-- record still names this worker and its lease was never reaped); 3 when an earlier try of
-- this same finish already recorded it (its reply was lost); 0 when the run was taken over
-- (this worker's lease was reaped, or another worker started it): nothing written.
-- A deferral of a run marked `wake_requested` (the lease it waited for was released while
-- this attempt was still finding it busy, `wake.lua`) queues it now rather than later.
-- Each recorded outcome (not a deferral or a release, which hand the attempt back) writes its
-- event: succeeded, needs_auth, cancelled, skipped, failed (retry) or dead; and, when the run
-- webhook is sent for that state, its message in the outbox (`queue/outbox.rs`).
local id = ARGV[1]
local rec = KEYS[2]
local f = redis.call('HMGET', rec, 'state', 'created_at_ms', 'worker', 'wake_requested', 'user',
  'schedule', 'attempts')
local old, created, holder, wake = f[1], f[2], f[3], f[4]
local held = redis.call('LREM', KEYS[1], 1, id) > 0
local now = now_ms()
local function event(name, state, extra)
  emit(KEYS[7], ARGV[9], name, id, f[5], f[6], state, f[7], int(now), extra)
  if ARGV[10] ~= '' and string.find(ARGV[10], ' ' .. state .. ' ', 1, true) then
    redis.call('ZADD', KEYS[8], int(now + tonumber(ARGV[11])), state .. ':' .. id)
  end
end
if not held then
  if holder ~= ARGV[8] then return 0 end
  -- The reaper leaves the record as it was but zeroes (then removes) the lease: a lease that
  -- is not live means the run went back to the queue, whatever the record still says.
  local lease = redis.call('ZSCORE', KEYS[6], ARGV[8])
  if not lease or tonumber(lease) <= now then return 0 end
  if old ~= 'running' then return 3 end
end
if not old then return 1 end
local mode = ARGV[2]
if wake then redis.call('HDEL', rec, 'wake_requested') end
if mode == 'succeeded' or mode == 'needs_auth' or mode == 'cancelled' then
  if mode == 'succeeded' then
    -- A run that succeeded has no error to show: an earlier attempt's stays in the log.
    redis.call('HDEL', rec, 'last_error', 'error_class', 'next_attempt_at_ms')
  end
  redis.call('HSET', rec, 'state', mode, 'ended_at_ms', int(now))
  index_move(ARGV[3], rec, id, old, mode, created)
  event(mode, mode)
elseif mode == 'skipped' then
  redis.call('HINCRBY', rec, 'attempts', -1)
  redis.call('HSET', rec, 'state', 'skipped', 'skip_reason', ARGV[5], 'skip_detail', ARGV[4],
    'ended_at_ms', int(now))
  index_move(ARGV[3], rec, id, old, 'skipped', created)
  event('skipped', 'skipped', {'reason', ARGV[5]})
elseif mode == 'retry' then
  local due = now + tonumber(ARGV[6])
  redis.call('HSET', rec, 'state', 'failed', 'last_error', ARGV[4], 'error_class', ARGV[5],
    'next_attempt_at_ms', int(due))
  redis.call('ZADD', KEYS[4], due, id)
  index_move(ARGV[3], rec, id, old, 'failed', created)
  event('failed', 'failed', {'error_class', ARGV[5]})
elseif mode == 'dead' then
  redis.call('HSET', rec, 'state', 'dead', 'last_error', ARGV[4], 'error_class', ARGV[5],
    'ended_at_ms', int(now))
  push_dead(KEYS[5], tonumber(ARGV[7]), id, ARGV[4], ARGV[5], now)
  index_move(ARGV[3], rec, id, old, 'dead', created)
  event('dead', 'dead', {'error_class', ARGV[5]})
elseif mode == 'defer' and wake then
  redis.call('HINCRBY', rec, 'attempts', -1)
  redis.call('HSET', rec, 'state', 'queued')
  redis.call('LPUSH', KEYS[3], id)
  index_move(ARGV[3], rec, id, old, 'queued', created)
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
if held then return 1 end
return 2
