-- Takes up to ARGV[2] run ids from q:ready into this worker's processing list and starts them.
-- Returns -1 when this worker's lease was lost (reaped), else a list of
-- {id, attempt, previous state, record as read}.
local now = now_ms()
if lost(now) then return -1 end
local out = {}
for _ = 1, tonumber(ARGV[2]) do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not id then break end
  local started = start(id, now)
  if started then table.insert(out, started) end
end
return out
