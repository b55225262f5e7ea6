-- Moves up to ARGV[1] intake payloads into this worker's intake processing list.
-- KEYS: 1 intake, 2 intake:processing:<worker>. Returns the payloads.
local out = {}
for _ = 1, tonumber(ARGV[1]) do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not item then break end
  table.insert(out, item)
end
return out
