-- Hands back runs that sit in this worker's processing list but that it is not executing (a
-- fetch whose reply was lost: the script ran, the worker never learnt of the runs). Each goes
-- back to the ready list with the attempt its start counted refunded.
-- KEYS: 1 q:processing:<worker>, 2 q:ready
-- ARGV: 1 worker id, 2 run key prefix, 3 state index prefix, 4.. run ids
-- Returns how many were still in the list and were handed back.
local n = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  if redis.call('LREM', KEYS[1], 1, id) > 0 then
    n = n + 1
    refund_start(ARGV[3], ARGV[2] .. id, id, ARGV[1])
    redis.call('RPUSH', KEYS[2], id)
  end
end
return n
