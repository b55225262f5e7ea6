-- Takes up to ARGV[2] run ids from q:ready into this worker's processing list and starts them.
-- Returns -1 when this worker's lease was lost (reaped), else a list of
-- {id, attempt, previous state, record as read, fence}.
-- The ids move in two commands (RPOP with a count, one LPUSH: the same order as one LMOVE
-- RIGHT LEFT each), and the index moves of the whole batch in one ZREM and one ZADD per state.
local now = now_ms()
if lost(now) then return -1 end
local ids = redis.call('RPOP', KEYS[1], tonumber(ARGV[2]))
if not ids then return {} end
redis.call('LPUSH', KEYS[2], unpack(ids))
local out, moves, now_s = {}, new_moves(), int(now)
for _, id in ipairs(ids) do
  local started = start(id, now, moves, now_s)
  if started then table.insert(out, started) end
end
apply_moves(ARGV[4], moves)
return out
