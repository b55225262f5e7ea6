-- Moves at most ARGV[1] due run ids from q:delayed to q:ready. Bounded: never one huge unpack.
-- KEYS: 1 q:delayed, 2 q:ready. Returns the number moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('LPUSH', KEYS[2], id)
end
return #due
