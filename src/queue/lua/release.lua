-- A worker's last act on graceful shutdown: everything it still holds goes back to the queue,
-- attempts it started but could not finish are refunded, and its lease and heartbeat go.
-- KEYS: 1 q:processing:<worker>, 2 q:ready, 3 intake:processing:<worker>, 4 intake,
--       5 q:leases, 6 workers
-- ARGV: 1 worker id, 2 run key prefix, 3 state index prefix, 4 max items
-- Returns {runs released, intake items released}.
local limit = tonumber(ARGV[4])
local runs, items = 0, 0
for _ = 1, limit do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'RIGHT')
  if not id then break end
  runs = runs + 1
  refund_start(ARGV[3], ARGV[2] .. id, id, ARGV[1])
end
for _ = 1, limit do
  if not redis.call('LMOVE', KEYS[3], KEYS[4], 'RIGHT', 'RIGHT') then break end
  items = items + 1
end
if redis.call('LLEN', KEYS[1]) == 0 and redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[5], ARGV[1])
  redis.call('HDEL', KEYS[6], ARGV[1])
end
return {runs, items}
