-- Hands the runs and intake items of workers whose lease expired back to the queue.
-- KEYS: 1 q:leases, 2 q:ready, 3 intake, 4 workers
-- ARGV: 1 processing prefix, 2 intake processing prefix, 3 max workers, 4 max items per list
-- A reaped lease is first set to 0, so that its worker, if alive, learns on its next heartbeat
-- that it lost its runs; it is removed once both lists are empty.
-- Returns {runs moved, intake items moved, workers reaped}.
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local limit = tonumber(ARGV[4])
local runs, items = 0, 0
for _, worker in ipairs(expired) do
  redis.call('ZADD', KEYS[1], 0, worker)
  redis.call('HDEL', KEYS[4], worker)
  local processing = ARGV[1] .. worker
  local intake = ARGV[2] .. worker
  -- RIGHT to RIGHT: orphans go to the head of the queue, oldest first.
  for _ = 1, limit do
    if not redis.call('LMOVE', processing, KEYS[2], 'RIGHT', 'RIGHT') then break end
    runs = runs + 1
  end
  for _ = 1, limit do
    if not redis.call('LMOVE', intake, KEYS[3], 'RIGHT', 'RIGHT') then break end
    items = items + 1
  end
  if redis.call('LLEN', processing) == 0 and redis.call('LLEN', intake) == 0 then
    redis.call('ZREM', KEYS[1], worker)
  end
end
return {runs, items, #expired}
