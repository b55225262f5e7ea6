-- Moves each user's "last run of this schedule" pointer forward, never back: a slow replica
-- that writes an older tick after a newer one must not hide the newer run from the overlap check.
-- One HMGET and one HSET for the whole batch: a fan-out of 100,000 users must not cost two
-- commands per user here.
-- KEYS[1] = <p>:schedule:<name>:last (hash user -> run id)
-- ARGV[1] = tick (unix seconds); ARGV[2], ARGV[3], ... = user, run id pairs
local tick = tonumber(ARGV[1])
local users = {}
for i = 2, #ARGV, 2 do
  table.insert(users, ARGV[i])
end
if #users == 0 then return 0 end
local current = redis.call('HMGET', KEYS[1], unpack(users))
local updates = {}
for j, user in ipairs(users) do
  local run = current[j]
  local current_tick = run and tonumber(string.match(run, ':(%d+)$')) or -1
  if current_tick < tick then
    table.insert(updates, user)
    table.insert(updates, ARGV[2 * j + 1])
  end
end
if #updates > 0 then
  redis.call('HSET', KEYS[1], unpack(updates))
end
return #updates / 2
