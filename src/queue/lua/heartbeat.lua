-- Renews (or, with ARGV[4] = '1', registers) a worker's lease in one shard, and takes the
-- cancel requests for its runs there; in the control slot (shard 0), also its heartbeat.
-- KEYS: 1 q:leases, 2 q:cancel:<worker>, 3 q:clock, 4 workers (shard 0 only).
-- ARGV: 1 worker id, 2 lease ms, 3 heartbeat JSON, 4 register flag, 5 most requests taken,
--       6 stall ms (see stall_grace).
-- Returns 0 when the lease was lost: the reaper took (or is taking) this worker's runs; else
-- {1, run ids whose cancel was requested}.
local now = now_ms()
stall_grace(KEYS[3], now, tonumber(ARGV[6]), tonumber(ARGV[2]))
if ARGV[4] ~= '1' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if (not score) or tonumber(score) == 0 then return 0 end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if KEYS[4] then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
end
return {1, redis.call('SPOP', KEYS[2], tonumber(ARGV[5]))}
