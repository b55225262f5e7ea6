-- Starts runs whose ids are in this worker's processing list: one attempt more, state running.
-- Used by fetch.lua and finish_many.lua (a batch, `take_ready`) and by start_one.lua (after a
-- BLMOVE).
-- ARGV (shared): 1 worker id, 2 n, 3 run key prefix, 4 state index prefix, 5 max attempts,
--       6 dead list cap, 7 events cap
-- KEYS (shared): 1 q:ready, 2 q:processing:<worker>, 3 q:leases, 4 q:dead, 5 events
local function lease_live(worker, now)
  local score = redis.call('ZSCORE', KEYS[3], worker)
  return score and tonumber(score) > now
end

-- The run's move to the `running` index goes into `moves` (common.lua), made by the caller.
local function start(id, now, moves, now_s)
  now_s = now_s or int(now)
  local rec = ARGV[3] .. id
  -- One read for everything: the decision's fields, and the record the handler needs, which
  -- goes back with the run so that the worker need not read it again.
  local flat = redis.call('HGETALL', rec)
  local f = {}
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  local state, holder, created = f.state, f.worker, f.created_at_ms
  if not state then
    redis.call('LREM', KEYS[2], 1, id)
    push_dead(KEYS[4], tonumber(ARGV[6]), id, 'no run record for this id', 'missing', now)
    return nil
  end
  if terminal[state] then
    -- Finished (or cancelled while queued): a late or duplicate delivery.
    redis.call('LREM', KEYS[2], 1, id)
    return nil
  end
  if state == 'running' then
    if holder and (holder == ARGV[1] or lease_live(holder, now)) then
      -- A live worker runs it now: this copy is a duplicate and must not run twice.
      redis.call('LREM', KEYS[2], 1, id)
      return nil
    end
  end
  local attempts = (tonumber(f.attempts) or 0) + 1
  if attempts > tonumber(ARGV[5]) then
    -- Attempts were used up by workers that stopped without reporting (killed mid-run).
    local reason = 'attempts exhausted: attempt ' .. (attempts - 1) .. ' ended without a result'
    redis.call('HSET', rec, 'state', 'dead', 'last_error', reason, 'error_class', 'crashed',
      'ended_at_ms', int(now))
    index_move(ARGV[4], rec, id, state, 'dead', created)
    redis.call('LREM', KEYS[2], 1, id)
    push_dead(KEYS[4], tonumber(ARGV[6]), id, reason, 'crashed', now)
    emit(KEYS[5], ARGV[7], 'dead', id, f.user, f.schedule, 'dead', attempts - 1, int(now),
      {'error_class', 'crashed'})
    return nil
  end
  -- The fence: one more at every start, so that an attempt taken over while its worker was
  -- frozen finds, at its next side effect, that it is no longer the run's current attempt.
  -- Counted from the read above (the script is atomic), in the one write of the start.
  local fence = (tonumber(f.fence) or 0) + 1
  redis.call('HSET', rec, 'state', 'running', 'worker', ARGV[1], 'started_at_ms', now_s,
    'attempts', int(attempts), 'fence', int(fence))
  if f.next_attempt_at_ms then
    redis.call('HDEL', rec, 'next_attempt_at_ms')
  end
  -- The sweep's mark (the last attempt never ended) goes back with `flat`, for this attempt.
  if f.abandoned_at_ms then
    redis.call('HDEL', rec, 'abandoned_at_ms')
  end
  defer_move(moves, id, state, 'running', created)
  emit(KEYS[5], ARGV[7], 'started', id, f.user, f.schedule, 'running', attempts, now_s)
  -- A run the sweep returned (its last attempt never ended) is a takeover like a reaped one.
  local previous = f.abandoned_at_ms and 'running' or state
  return {id, attempts, previous, flat, fence}
end

local function lost(now)
  local score = redis.call('ZSCORE', KEYS[3], ARGV[1])
  return (not score) or tonumber(score) == 0
end

-- Takes up to `n` run ids from q:ready into this worker's processing list and starts them;
-- their index moves go into `moves`. Returns -1 when this worker's lease was lost (reaped:
-- nothing taken), else the list of {id, attempt, previous state, record as read, fence}.
-- The ids move in two commands (RPOP with a count, one LPUSH: the same order as one LMOVE
-- RIGHT LEFT each).
local function take_ready(n, now, moves, now_s)
  if lost(now) then return -1 end
  local ids = redis.call('RPOP', KEYS[1], n)
  if not ids then return {} end
  redis.call('LPUSH', KEYS[2], unpack(ids))
  local out = {}
  for _, id in ipairs(ids) do
    local started = start(id, now, moves, now_s)
    if started then table.insert(out, started) end
  end
  return out
end
