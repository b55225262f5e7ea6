-- Hands this worker's intake processing list back to the intake's consuming end, in order,
-- so that the bounded take script reads each payload again (after a failed round).
-- KEYS: 1 intake:processing:<worker>, 2 intake. ARGV: 1 max items. Returns the items moved.
local n = 0
for _ = 1, tonumber(ARGV[1]) do
  if not redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') then break end
  n = n + 1
end
return n
