-- Takes up to ARGV[2] run ids from q:ready into this worker's processing list and starts them
-- (`take_ready`, start.lua). Returns -1 when this worker's lease was lost (reaped), else a list
-- of {id, attempt, previous state, record as read, fence}. The index moves of the whole batch
-- are one ZREM and one ZADD per state.
local now = now_ms()
local moves = new_moves()
local out = take_ready(tonumber(ARGV[2]), now, moves, int(now))
apply_moves(ARGV[4], moves)
return out
