-- Creates and queues a batch of runs; each run whose record exists is left alone (the dedupe
-- point). One script call per batch, and one write per shared index, rather than a script
-- call and seven commands per run: batched enqueue and fan-out are bound by Redis's work.
-- KEYS: 1 runs, 2 runs:state:queued, 3 q:ready, 4 q:delayed, 5 events
-- ARGV: 1 run record prefix, 2 runs:user: prefix, 3 source, 4 events cap, then 6 per run:
--       run_id, user, schedule or '', prompt or '', not_before_ms or '', instructions or ''
-- Returns one integer per run: 1 when created, 0 when it already existed.
local now = now_ms()
local now_s = int(now)
local out, created, ready, delayed = {}, {}, {}, {}
for i = 5, #ARGV, 6 do
  local id, user = ARGV[i], ARGV[i + 1]
  local due = create_run(ARGV[1] .. id, ARGV[2] .. user, id, user, ARGV[i + 2], ARGV[i + 3],
    ARGV[i + 4], ARGV[i + 5], ARGV[3], now, now_s)
  if due then
    table.insert(out, 1)
    emit(KEYS[5], ARGV[4], 'created', id, user, ARGV[i + 2], 'queued', 0, now_s)
    table.insert(created, now_s); table.insert(created, id)
    if due > now then
      table.insert(delayed, int(due)); table.insert(delayed, id)
    else
      table.insert(ready, id)
    end
  else
    table.insert(out, 0)
  end
end
if #created > 0 then
  redis.call('ZADD', KEYS[1], unpack(created))
  redis.call('ZADD', KEYS[2], unpack(created))
end
if #ready > 0 then
  redis.call('LPUSH', KEYS[3], unpack(ready))
end
if #delayed > 0 then
  redis.call('ZADD', KEYS[4], unpack(delayed))
end
return out
