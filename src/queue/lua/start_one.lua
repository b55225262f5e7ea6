-- Starts one run id that BLMOVE already put in this worker's processing list (ARGV[8]).
-- Returns -1 when the lease was lost (the id goes back to the head of q:ready, since a reaped
-- list may never be visited again), {} when the run must not run, else
-- {{id, attempt, state, record}}.
local now = now_ms()
if lost(now) then
  redis.call('LREM', KEYS[2], 1, ARGV[8])
  redis.call('RPUSH', KEYS[1], ARGV[8])
  return -1
end
local moves = new_moves()
local started = start(ARGV[8], now, moves)
apply_moves(ARGV[4], moves)
if started then return {started} end
return {}
