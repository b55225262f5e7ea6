-- Renews (or, with ARGV[4] = '1', registers) a worker's lease and heartbeat.
-- KEYS: 1 q:leases, 2 workers. ARGV: 1 worker id, 2 lease ms, 3 heartbeat JSON, 4 register flag.
-- Returns 0 when the lease was lost: the reaper took (or is taking) this worker's runs.
local now = now_ms()
if ARGV[4] ~= '1' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if (not score) or tonumber(score) == 0 then return 0 end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
