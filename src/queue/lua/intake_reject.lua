-- Files an invalid intake payload under rejected and acknowledges it, atomically.
-- KEYS: 1 intake:processing:<worker>, 2 rejected. ARGV: 1 raw payload, 2 entry JSON, 3 cap.
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return 1
