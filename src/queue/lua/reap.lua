-- Hands the runs of workers whose lease in this shard expired back to the shard's queue; in
-- the control slot (shard 0) also their intake items and heartbeats.
-- KEYS: 1 q:leases, 2 q:ready, 3 q:clock, 4 intake and 5 workers (shard 0 only)
-- ARGV: 1 processing prefix, 2 intake processing prefix, 3 max workers, 4 max items per list,
--       5 the reaping worker's id, 6 stall ms, 7 grace ms (see stall_grace)
-- Nothing is reaped while a stall's grace lasts, and a worker never reaps itself: it is alive,
-- and its heartbeat renews its lease as soon as Redis answers it.
-- A reaped lease is first set to 0, so that its worker, if alive, learns on its next heartbeat
-- that it lost its runs; it is removed at a later pass that finds both lists empty and moves
-- nothing. Not at once: a worker frozen (SIGSTOP, a paused VM) while its fetch was blocked in
-- `BLMOVE` on the ready list still has that command waiting in Redis, which is served first
-- when this script puts the runs back, and takes one into the frozen worker's list again; a
-- lease kept at 0 lets the next pass take it back (a removed one left it there for ever).
-- Returns {runs moved, intake items moved, workers reaped}.
local now = now_ms()
if stall_grace(KEYS[3], now, tonumber(ARGV[6]), tonumber(ARGV[7])) then return {0, 0, 0} end
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]) + 1)
local expired = {}
for _, worker in ipairs(found) do
  if worker ~= ARGV[5] and #expired < tonumber(ARGV[3]) then expired[#expired + 1] = worker end
end
local limit = tonumber(ARGV[4])
local runs, items = 0, 0
for _, worker in ipairs(expired) do
  redis.call('ZADD', KEYS[1], 0, worker)
  local processing = ARGV[1] .. worker
  local intake = nil
  if KEYS[4] then
    redis.call('HDEL', KEYS[5], worker)
    intake = ARGV[2] .. worker
  end
  local moved = 0
  -- RIGHT to RIGHT: orphans go to the head of the queue, oldest first.
  for _ = 1, limit do
    if not redis.call('LMOVE', processing, KEYS[2], 'RIGHT', 'RIGHT') then break end
    runs = runs + 1
    moved = moved + 1
  end
  for _ = 1, intake and limit or 0 do
    if not redis.call('LMOVE', intake, KEYS[4], 'RIGHT', 'RIGHT') then break end
    items = items + 1
    moved = moved + 1
  end
  if moved == 0 and redis.call('LLEN', processing) == 0
    and (not intake or redis.call('LLEN', intake) == 0) then
    redis.call('ZREM', KEYS[1], worker)
  end
end
return {runs, items, #expired}
