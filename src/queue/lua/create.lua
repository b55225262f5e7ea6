-- Creates one run record unless it exists (the dedupe point), and indexes it by user.
-- Shared by enqueue.lua (one run) and enqueue_many.lua (a batch); the caller adds the id to
-- `runs`, `runs:state:queued` and the ready list or delayed set.
-- `now` is a number and `now_s` the same as a decimal string: formatting it once per batch
-- rather than once per run and field matters when a fan-out creates 100,000 runs.
-- `instructions` is '' or `<timezone> <local_time> <0|1>` (a scheduled run's zone, local fire
-- time, and whether its prompt was rendered at the tick).
-- Returns the time the run is due (unix ms), or nil when the record existed.
local function create_run(rec, user_index, id, user, schedule, prompt, not_before, instructions,
    source, now, now_s)
  if redis.call('EXISTS', rec) == 1 then
    return nil
  end
  local fields = {'run_id', id, 'user', user, 'state', 'queued', 'attempts', '0',
    'created_at_ms', now_s, 'source', source}
  if schedule ~= '' then
    table.insert(fields, 'schedule'); table.insert(fields, schedule)
  end
  if prompt ~= '' then
    table.insert(fields, 'prompt'); table.insert(fields, prompt)
  end
  if instructions ~= '' then
    local zone, local_time, rendered = string.match(instructions, '^(%S+) (%S+) ([01])$')
    if zone then
      table.insert(fields, 'timezone'); table.insert(fields, zone)
      table.insert(fields, 'local_time'); table.insert(fields, local_time)
      if rendered == '1' then
        table.insert(fields, 'rendered'); table.insert(fields, '1')
      end
    end
  end
  local due = now
  if not_before ~= '' then
    local at = tonumber(not_before)
    table.insert(fields, 'not_before_ms'); table.insert(fields, int(at))
    if at > now then due = at end
  end
  redis.call('HSET', rec, unpack(fields))
  redis.call('ZADD', user_index, now_s, id)
  return due
end
