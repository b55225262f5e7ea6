-- Records the ends of a batch of attempts of one worker on one shard (group commit: one call
-- for every end the worker has ready), each unless another worker took its run over meanwhile,
-- and takes up to ARGV[2] ready runs into the slots the ends free (as `fetch.lua` does, with
-- `start.lua`), so that a busy worker's next runs come back with the answer for its last.
-- KEYS: 1 q:ready, 2 q:processing:<worker>, 3 q:leases, 4 q:dead, 5 events, 6 q:delayed,
--       7 webhooks:outbox (1 to 5 as `start.lua` has them)
-- ARGV: 1 worker id, 2 runs to take (0 for none), 3 run key prefix, 4 state index prefix,
--       5 max attempts, 6 dead cap, 7 events cap (1 to 7 as `start.lua` has them), 8 the run
--       webhook's states (` succeeded dead `, or empty), 9 the webhook message's claim in ms,
--       then ITEM fields per end: run_id, mode, error, error class, delay ms, and what the
--       attempt's start read (so that the common end need not read the record again):
--       created_at_ms, user, schedule, attempt, `1` when the record carries an earlier
--       attempt's error to clear on success, and the attempt's fence.
-- Modes: succeeded | needs_auth | cancelled (terminal), skipped (terminal, never started: the
--        attempt is refunded; the class field is the reason, the error its detail), retry
--        (failed, due later), dead, defer (queued again later, attempt refunded), release
--        (queued now, refunded).
-- Returns {codes, started}: one code per end: 1 recorded; 2 recorded though the run's queue
-- entry was gone (lost to an operator's DEL, eviction or a restore: nobody else can have
-- started the run, since the record still names this worker and its lease was never reaped);
-- 3 an earlier try of this same finish already recorded it (its reply was lost); 0 the run was
-- taken over (this worker's lease was reaped, or another worker started it, or this worker
-- started it again: the record's fence is not the attempt's): nothing written. `started` is
-- as `fetch.lua`'s list, or -1 when this worker's lease was lost (then nothing was taken; the
-- ends are recorded or refused as above either way).
-- A deferral of a run marked `wake_requested` (the lease it waited for was released while
-- this attempt was still finding it busy, `wake.lua`) queues it now rather than later.
-- Each recorded outcome (not a deferral or a release, which hand the attempt back) writes its
-- event: succeeded, needs_auth, cancelled, skipped, failed (retry) or dead; and, when the run
-- webhook is sent for that state, its message in the outbox (`queue/outbox.rs`).
local ITEM = 11
local now = now_ms()
local now_s = int(now)
local moves = new_moves()

local function event(it, name, state, user, schedule, attempt, extra)
  emit(KEYS[5], ARGV[7], name, it.id, user, schedule, state, attempt, now_s, extra)
  if ARGV[8] ~= '' and string.find(ARGV[8], ' ' .. state .. ' ', 1, true) then
    redis.call('ZADD', KEYS[7], int(now + tonumber(ARGV[9])), state .. ':' .. it.id)
  end
end

-- The common end: a terminal outcome of a run this worker still holds. Holding it means its
-- state is `running` (only this worker's finish, its shutdown's release and the reaper, which
-- takes the entry, change a held run's state), so the record is written without being read.
-- Nor is the fence compared (a command per run): a stale copy under this same owner would be
-- a run started twice by one owner, which only a fetch whose reply was lost does, and such a
-- copy is never executed (the reconciler hands it back; the worker counts the runs it has
-- taken and not yet executed as its own, `queue::Slots`).
local function held_terminal(it)
  local rec = ARGV[3] .. it.id
  if it.clean == '1' and it.mode == 'succeeded' then
    redis.call('HDEL', rec, 'last_error', 'error_class', 'next_attempt_at_ms')
  end
  -- Both fields new: the record was gone (an operator's DEL); leave no stub of it.
  if redis.call('HSET', rec, 'state', it.mode, 'ended_at_ms', now_s) == 2 then
    redis.call('DEL', rec)
    return 1
  end
  defer_move(moves, it.id, 'running', it.mode, it.created)
  event(it, it.mode, it.mode, it.user, it.schedule, it.attempt)
  return 1
end

-- Every other end: reads the record first.
local function with_record(it, held)
  local id, rec, mode = it.id, ARGV[3] .. it.id, it.mode
  local f = redis.call('HMGET', rec, 'state', 'created_at_ms', 'worker', 'wake_requested',
    'user', 'schedule', 'attempts', 'fence')
  local old, created, holder, wake = f[1], f[2], f[3], f[4]
  local function record_event(name, state, extra)
    event(it, name, state, f[5], f[6], f[7], extra)
  end
  -- A later start of the run (here or elsewhere) superseded this attempt: a stale copy must
  -- not end, release or requeue the live one. The entry it removed is the live attempt's
  -- when this worker holds that one.
  if f[8] and f[8] ~= it.fence then
    if held and holder == ARGV[1] then redis.call('LPUSH', KEYS[2], id) end
    return 0
  end
  if not held then
    if holder ~= ARGV[1] then return 0 end
    -- The reaper leaves the record as it was but zeroes (then removes) the lease: a lease that
    -- is not live means the run went back to the queue, whatever the record still says.
    local lease = redis.call('ZSCORE', KEYS[3], ARGV[1])
    if not lease or tonumber(lease) <= now then return 0 end
    if old ~= 'running' then return 3 end
  end
  if not old then return 1 end
  if wake then redis.call('HDEL', rec, 'wake_requested') end
  if mode == 'succeeded' or mode == 'needs_auth' or mode == 'cancelled' then
    if mode == 'succeeded' then
      -- A run that succeeded has no error to show: an earlier attempt's stays in the log.
      redis.call('HDEL', rec, 'last_error', 'error_class', 'next_attempt_at_ms')
    end
    redis.call('HSET', rec, 'state', mode, 'ended_at_ms', now_s)
    defer_move(moves, id, old, mode, created)
    record_event(mode, mode)
  elseif mode == 'skipped' then
    redis.call('HINCRBY', rec, 'attempts', -1)
    redis.call('HSET', rec, 'state', 'skipped', 'skip_reason', it.class, 'skip_detail', it.error,
      'ended_at_ms', now_s)
    defer_move(moves, id, old, 'skipped', created)
    record_event('skipped', 'skipped', {'reason', it.class})
  elseif mode == 'retry' then
    local due = now + tonumber(it.delay)
    redis.call('HSET', rec, 'state', 'failed', 'last_error', it.error, 'error_class', it.class,
      'next_attempt_at_ms', int(due))
    redis.call('ZADD', KEYS[6], due, id)
    defer_move(moves, id, old, 'failed', created)
    record_event('failed', 'failed', {'error_class', it.class})
  elseif mode == 'dead' then
    redis.call('HSET', rec, 'state', 'dead', 'last_error', it.error, 'error_class', it.class,
      'ended_at_ms', now_s)
    push_dead(KEYS[4], tonumber(ARGV[6]), id, it.error, it.class, now)
    defer_move(moves, id, old, 'dead', created)
    record_event('dead', 'dead', {'error_class', it.class})
  elseif mode == 'defer' and wake then
    redis.call('HINCRBY', rec, 'attempts', -1)
    redis.call('HSET', rec, 'state', 'queued')
    redis.call('LPUSH', KEYS[1], id)
    defer_move(moves, id, old, 'queued', created)
  elseif mode == 'defer' then
    local due = now + tonumber(it.delay)
    redis.call('HINCRBY', rec, 'attempts', -1)
    redis.call('HSET', rec, 'state', 'queued', 'next_attempt_at_ms', int(due))
    redis.call('ZADD', KEYS[6], due, id)
    defer_move(moves, id, old, 'queued', created)
  elseif mode == 'release' then
    redis.call('HINCRBY', rec, 'attempts', -1)
    redis.call('HSET', rec, 'state', 'queued')
    redis.call('RPUSH', KEYS[1], id)
    defer_move(moves, id, old, 'queued', created)
  else
    return redis.error_reply('unknown finish mode ' .. mode)
  end
  if held then return 1 end
  return 2
end

local quick = {succeeded = true, needs_auth = true, cancelled = true}
local codes = {}
for at = 10, #ARGV, ITEM do
  local it = {id = ARGV[at], mode = ARGV[at + 1], error = ARGV[at + 2], class = ARGV[at + 3],
    delay = ARGV[at + 4], created = ARGV[at + 5], user = ARGV[at + 6],
    schedule = ARGV[at + 7], attempt = ARGV[at + 8], clean = ARGV[at + 9],
    fence = ARGV[at + 10]}
  -- From the tail: the list is pushed at the head and runs end roughly in the order they
  -- started, so an ending run is near the tail and the scan is short.
  local held = redis.call('LREM', KEYS[2], -1, it.id) > 0
  local code
  if held and quick[it.mode] and it.created ~= '' then
    code = held_terminal(it)
  else
    code = with_record(it, held)
  end
  if type(code) == 'table' then
    apply_moves(ARGV[4], moves)
    return code
  end
  table.insert(codes, code)
end
local started = {}
local n = tonumber(ARGV[2])
if n > 0 then started = take_ready(n, now, moves, now_s) end
apply_moves(ARGV[4], moves)
return {codes, started}
