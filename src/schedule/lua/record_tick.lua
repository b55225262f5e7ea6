-- Records one replica's view of a tick in the schedule's stats hash. Replicas fan out the same
-- tick: `enqueued` adds up (only the replica that created a run counts it), `users`, `paused`,
-- `bad_profile` and `invalid` are the same for all and are kept as the largest seen; an older tick is ignored.
-- KEYS[1] = <p>:schedule:<name>
-- ARGV = tick (unix seconds), users, invalid, enqueued, now (unix ms), paused, bad_profile
local tick = tonumber(ARGV[1])
local last = tonumber(redis.call('HGET', KEYS[1], 'last_tick') or '-1')
if tick < last then
  return 0
end
if tick > last then
  redis.call('HSET', KEYS[1], 'last_tick', tick, 'users', ARGV[2], 'invalid', ARGV[3],
    'enqueued', 0, 'paused', ARGV[6], 'bad_profile', ARGV[7])
end
for i, field in ipairs({'paused', 'bad_profile'}) do
  local seen = tonumber(redis.call('HGET', KEYS[1], field) or '0')
  if tonumber(ARGV[5 + i]) > seen then
    redis.call('HSET', KEYS[1], field, ARGV[5 + i])
  end
end
local users = tonumber(redis.call('HGET', KEYS[1], 'users') or '0')
if tonumber(ARGV[2]) > users then
  redis.call('HSET', KEYS[1], 'users', ARGV[2])
end
local invalid = tonumber(redis.call('HGET', KEYS[1], 'invalid') or '0')
if tonumber(ARGV[3]) > invalid then
  redis.call('HSET', KEYS[1], 'invalid', ARGV[3])
end
redis.call('HINCRBY', KEYS[1], 'enqueued', ARGV[4])
redis.call('HSET', KEYS[1], 'updated_at_ms', ARGV[5])
return 1
