-- Renews the per-user leases of the runs a worker holds, each only if that run still holds it
-- (a lease that expired and was taken by another run is left alone).
-- KEYS: the users' lock keys. ARGV: 1 lease ms, 2.. the run id holding each key, in order.
-- Returns how many were renewed.
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    n = n + 1
  end
end
return n
