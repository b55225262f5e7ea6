-- A worker's last act on graceful shutdown: everything it still holds goes back to the queue,
-- attempts it started but could not finish are refunded, and its lease and heartbeat go.
-- Per shard; the intake and the heartbeat are only in the control slot (shard 0).
-- KEYS: 1 q:processing:<worker>, 2 q:ready, 3 q:leases, 4 intake:processing:<worker>,
--       5 intake, 6 workers (4 to 6 in shard 0 only)
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
for _ = 1, KEYS[4] and limit or 0 do
  if not redis.call('LMOVE', KEYS[4], KEYS[5], 'RIGHT', 'RIGHT') then break end
  items = items + 1
end
if redis.call('LLEN', KEYS[1]) == 0 and (not KEYS[4] or redis.call('LLEN', KEYS[4]) == 0) then
  redis.call('ZREM', KEYS[3], ARGV[1])
  if KEYS[6] then
    redis.call('HDEL', KEYS[6], ARGV[1])
  end
end
return {runs, items}
