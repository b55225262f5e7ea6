-- Returns to the queue the runs recorded `running` that nobody holds: their worker's lease is
-- gone (not live) and their id is in no queue list the reaper would move (their worker's
-- processing list was deleted, evicted or lost in a restore). The attempt counts, as for a
-- crash. Scans ARGV[4] entries of the running index from rank ARGV[3].
-- KEYS: 1 runs:state:running, 2 q:ready, 3 q:leases
-- ARGV: 1 run key prefix, 2 processing prefix, 3 start rank, 4 count, 5 state index prefix
-- Returns {next start rank (0 once the index was walked to its end), runs returned}.
local now = now_ms()
local start = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
local ids = redis.call('ZRANGE', KEYS[1], start, start + count - 1)
local returned = 0
for _, id in ipairs(ids) do
  local rec = ARGV[1] .. id
  local f = redis.call('HMGET', rec, 'state', 'worker')
  local state, worker = f[1], f[2]
  local live = false
  if worker then
    local lease = redis.call('ZSCORE', KEYS[3], worker)
    live = lease and tonumber(lease) > now
  end
  if state == 'running' and not live then
    local listed = worker and redis.call('LPOS', ARGV[2] .. worker, id)
    -- A run the reaper has just handed back sits at the consumers' end of the ready list,
    -- still `running`: it is held by the queue, and its next start must see that its last
    -- attempt never ended (a takeover), so it is left alone.
    if not listed then
      listed = redis.call('LPOS', KEYS[2], id, 'RANK', -1, 'MAXLEN', 1000)
    end
    if not listed then
      -- Marked, so that the next start knows its last attempt never ended (a takeover).
      redis.call('HSET', rec, 'state', 'queued', 'abandoned_at_ms', int(now))
      index_move(ARGV[5], rec, id, 'running', 'queued')
      redis.call('RPUSH', KEYS[2], id)
      returned = returned + 1
    end
  elseif state ~= 'running' then
    -- A stale index entry (the record moved on, or is gone): drop it from this index.
    redis.call('ZREM', KEYS[1], id)
  end
end
local next = start + #ids - returned
if #ids < count then next = 0 end
return {next, returned}
