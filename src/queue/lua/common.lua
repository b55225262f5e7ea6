-- Helpers shared by the queue scripts (prepended to each one in script.rs).
-- Times come from the Redis clock so that workers on machines with skewed clocks agree.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as plain decimal strings: tostring() would print 1.7e+12.
local function int(n)
  return string.format('%d', n)
end

-- Moves a run between the state indexes; the score stays the creation time. `created` may be
-- passed by a caller that has read it already (saves a command per move), else it is read.
-- Every state change happens in a script that moves the index with it, so removing the id
-- from the index of its previous state is enough.
local function index_move(state_prefix, rec, id, from, to, created)
  created = created or redis.call('HGET', rec, 'created_at_ms') or '0'
  if from then
    redis.call('ZREM', state_prefix .. from, id)
  end
  redis.call('ZADD', state_prefix .. to, created, id)
end

-- Index moves gathered over a batch of runs and made at its end, one ZREM per state left and
-- one ZADD per state entered, instead of two commands per run (`defer_move`, `apply_moves`).
-- All removals come before all additions, as in `index_move`.
local function new_moves()
  return {from = {}, to = {}}
end

local function defer_move(moves, id, from, to, created)
  if from then
    moves.from[from] = moves.from[from] or {}
    table.insert(moves.from[from], id)
  end
  moves.to[to] = moves.to[to] or {}
  table.insert(moves.to[to], created or '0')
  table.insert(moves.to[to], id)
end

local function apply_moves(state_prefix, moves)
  for from, ids in pairs(moves.from) do
    redis.call('ZREM', state_prefix .. from, unpack(ids))
  end
  for to, scored in pairs(moves.to) do
    redis.call('ZADD', state_prefix .. to, unpack(scored))
  end
end

-- A Redis that stops serving (DEBUG SLEEP, a slow fork, a failover, a full memory refusing
-- writes) stops every worker from renewing its lease, and when it serves again those leases
-- look expired although their workers are alive. The heartbeat and the reaper note in `clock`
-- when Redis last served one of them; a gap longer than `stall_ms` is a stall of Redis, not of
-- the workers, and gives every lease `grace_ms` from now before the reaper may take any.
-- A frozen worker is still reaped: the others' heartbeats keep `served` fresh.
-- Returns true while reaping is held off.
local function stall_grace(clock, now, stall_ms, grace_ms)
  local f = redis.call('HMGET', clock, 'served', 'grace_until')
  local served, grace = tonumber(f[1]), tonumber(f[2]) or 0
  if served and now - served > stall_ms then
    grace = now + grace_ms
    redis.call('HSET', clock, 'served', int(now), 'grace_until', int(grace))
  else
    redis.call('HSET', clock, 'served', int(now))
  end
  return now < grace
end

local function push_dead(dead_key, cap, id, reason, class, at)
  local entry = cjson.encode({run_id = id, reason = reason, error_class = class, at_ms = at})
  redis.call('LPUSH', dead_key, entry)
  redis.call('LTRIM', dead_key, 0, cap - 1)
end

local terminal = {succeeded = true, needs_auth = true, dead = true, cancelled = true,
  skipped = true}

-- Puts a run that `worker` started back to `queued`, refunding the attempt its start counted;
-- a run in any other state, or started by another worker, is left as it is.
local function refund_start(state_prefix, rec, id, worker)
  if redis.call('HGET', rec, 'state') == 'running' and redis.call('HGET', rec, 'worker') == worker then
    redis.call('HINCRBY', rec, 'attempts', -1)
    redis.call('HSET', rec, 'state', 'queued')
    index_move(state_prefix, rec, id, 'running', 'queued')
  end
end

-- Appends one run lifecycle event to the shard's events stream (`<p>:events`), trimmed to
-- about `cap` entries; called by the script that makes the transition, so no transition is
-- ever missed and none is reported that did not happen. `extra` is nil or a flat list of more
-- fields (`phase`, `error_class`). One XADD per transition: the hot path stays cheap.
local function emit(stream, cap, event, id, user, schedule, state, attempt, at, extra)
  if not extra then
    -- The common events (started, succeeded) without building a table per event.
    redis.call('XADD', stream, 'MAXLEN', '~', cap, '*', 'event', event, 'run_id', id,
      'user', user or '', 'schedule', schedule or '', 'state', state,
      'attempt', tostring(attempt or 0), 'at_ms', at)
    return
  end
  local fields = {'event', event, 'run_id', id, 'user', user or '', 'schedule', schedule or '',
    'state', state, 'attempt', tostring(attempt or 0), 'at_ms', at}
  for _, value in ipairs(extra) do table.insert(fields, value) end
  redis.call('XADD', stream, 'MAXLEN', '~', cap, '*', unpack(fields))
end
