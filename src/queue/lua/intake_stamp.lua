-- Replaces an intake payload in this worker's intake processing list by the same payload with
-- the run id it was given, so that handling it again (after a kill, from the intake) creates
-- the same run: on a sharded queue the run is created in its shard, out of this slot, so the
-- creation and the acknowledgement cannot be one script.
-- KEYS: 1 intake:processing:<worker>. ARGV: 1 raw payload, 2 stamped payload.
-- Returns 1 when stamped, 0 when the payload is no longer in the list (the reaper handed it
-- back meanwhile): its run must not be created from here.
local at = redis.call('LPOS', KEYS[1], ARGV[1])
if not at then return 0 end
redis.call('LSET', KEYS[1], at, ARGV[2])
return 1
