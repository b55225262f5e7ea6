-- Creates a run from one intake payload and queues it, unless the record exists (the dedupe
-- point), and acknowledges the payload in the same step. Batches use enqueue_many.lua.
-- KEYS: 1 run record, 2 runs, 3 runs:user:<u>, 4 runs:state:queued, 5 q:ready, 6 q:delayed,
--       7 intake processing list to acknowledge, 8 events
-- ARGV: 1 run_id, 2 user, 3 schedule or '', 4 prompt or '', 5 not_before_ms or '',
--       6 instructions or '', 7 source, 8 intake payload to remove from KEYS[7], 9 events cap
-- Returns 1 when created, 0 when the run already existed.
redis.call('LREM', KEYS[7], 1, ARGV[8])
local now = now_ms()
local id = ARGV[1]
local now_s = int(now)
local due = create_run(KEYS[1], KEYS[3], id, ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
  ARGV[7], now, now_s)
if not due then
  return 0
end
redis.call('ZADD', KEYS[2], now_s, id)
redis.call('ZADD', KEYS[4], now_s, id)
emit(KEYS[8], ARGV[9], 'created', id, ARGV[2], ARGV[3], 'queued', 0, now_s)
if due > now then
  redis.call('ZADD', KEYS[6], int(due), id)
else
  redis.call('LPUSH', KEYS[5], id)
end
return 1
