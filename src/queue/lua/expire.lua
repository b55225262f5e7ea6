-- Removes finished runs older than the retention: the record, its transcript stream and every
-- index entry. Visits at most ARGV[2] of the oldest entries (by creation) of each finished
-- state's index whose creation is before the cutoff; a run that ended after the cutoff (it
-- waited long before it ran) is kept for a later pass.
-- KEYS: 1 runs
-- ARGV: 1 cutoff (unix ms), 2 batch per state, 3 state index prefix, 4 run key prefix,
--       5 user index prefix, 6 transcript key prefix
-- Returns the number of runs removed.
local cutoff = tonumber(ARGV[1])
local batch = tonumber(ARGV[2])
local removed = 0
for _, state in ipairs({'succeeded', 'cancelled', 'needs_auth', 'dead', 'skipped'}) do
  local index = ARGV[3] .. state
  local ids = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. int(cutoff), 'LIMIT', 0, batch)
  for _, id in ipairs(ids) do
    local rec = ARGV[4] .. id
    local f = redis.call('HMGET', rec, 'state', 'ended_at_ms', 'user')
    local now_state, ended, user = f[1], tonumber(f[2]), f[3]
    if now_state ~= state then
      -- A stale entry (the run moved on, or its record is gone): only the entry goes.
      redis.call('ZREM', index, id)
      if not now_state then
        redis.call('ZREM', KEYS[1], id)
      end
    elseif not ended or ended < cutoff then
      redis.call('DEL', rec, ARGV[6] .. id)
      redis.call('ZREM', index, id)
      redis.call('ZREM', KEYS[1], id)
      if user then
        redis.call('ZREM', ARGV[5] .. user, id)
      end
      removed = removed + 1
    end
  end
end
return removed
