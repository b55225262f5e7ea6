-- Moves each user's "last run of this schedule" pointer forward, never back: a slow replica
-- that writes an older tick after a newer one must not hide the newer run from the overlap check.
-- KEYS[1] = <p>:schedule:<name>:last (hash user -> run id)
-- ARGV[1] = tick (unix seconds); ARGV[2], ARGV[3], ... = user, run id pairs
local tick = tonumber(ARGV[1])
local moved = 0
for i = 2, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  local current_tick = current and tonumber(string.match(current, ':(%d+)$')) or -1
  if current_tick < tick then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    moved = moved + 1
  end
end
return moved
