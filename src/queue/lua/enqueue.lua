-- Creates a run record and queues the run, unless the record exists (the dedupe point).
-- KEYS: 1 run record, 2 runs, 3 runs:user:<u>, 4 runs:state:queued, 5 q:ready, 6 q:delayed,
--       7 (optional) intake processing list to acknowledge
-- ARGV: 1 run_id, 2 user, 3 schedule or '', 4 prompt or '', 5 not_before_ms or '', 6 source,
--       7 (optional) intake payload to remove from KEYS[7]
-- Returns 1 when created, 0 when the run already existed.
if KEYS[7] then
  redis.call('LREM', KEYS[7], 1, ARGV[7])
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local now = now_ms()
local id = ARGV[1]
local fields = {'run_id', id, 'user', ARGV[2], 'state', 'queued', 'attempts', '0',
  'created_at_ms', int(now), 'source', ARGV[6]}
if ARGV[3] ~= '' then
  table.insert(fields, 'schedule'); table.insert(fields, ARGV[3])
end
if ARGV[4] ~= '' then
  table.insert(fields, 'prompt'); table.insert(fields, ARGV[4])
end
local due = now
if ARGV[5] ~= '' then
  local not_before = tonumber(ARGV[5])
  table.insert(fields, 'not_before_ms'); table.insert(fields, int(not_before))
  if not_before > now then due = not_before end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], now, id)
redis.call('ZADD', KEYS[3], now, id)
redis.call('ZADD', KEYS[4], now, id)
if due > now then
  redis.call('ZADD', KEYS[6], due, id)
else
  redis.call('LPUSH', KEYS[5], id)
end
return 1
