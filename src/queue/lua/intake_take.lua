-- Moves intake payloads into this worker's intake processing list, bounded before reading:
-- each payload's size is checked here, inside Redis, and one over the limit is never moved or
-- returned: it is removed from the intake and filed under rejected as `too_large`, with its
-- size and only its first bytes. The batch stops at ARGV[1] payloads, and before the payload
-- that would take its bytes past ARGV[3]; oversized payloads count towards that budget too, so
-- one call measures at most one of them past it.
-- KEYS: 1 intake, 2 intake:processing:<worker>, 3 rejected
-- ARGV: 1 max payloads, 2 max payload bytes, 3 batch byte budget (>= ARGV[2]),
--       4 bytes of a payload kept in its rejected entry, 5 rejected cap
-- Returns {sizes of the payloads rejected, payloads left in the intake, {payloads}}.

-- The bytes as text, each maximal invalid UTF-8 sequence replaced by U+FFFD, as Rust's
-- String::from_utf8_lossy does, so that the entry is valid JSON for every reader.
local function lossy(s)
  if not string.find(s, '[\128-\255]') then
    return s
  end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = string.byte(s, i)
    local len, lo, hi = 0, 0x80, 0xBF
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c == 0xE0 then len, lo = 3, 0xA0
    elseif c == 0xED then len, hi = 3, 0x9F
    elseif c >= 0xE1 and c <= 0xEF then len = 3
    elseif c == 0xF0 then len, lo = 4, 0x90
    elseif c >= 0xF1 and c <= 0xF3 then len = 4
    elseif c == 0xF4 then len, hi = 4, 0x8F
    end
    -- k: how many bytes of the sequence starting at i are valid so far.
    local k = len > 0 and 1 or 0
    while k > 0 and k < len and i + k <= n do
      local b = string.byte(s, i + k)
      local l, h = 0x80, 0xBF
      if k == 1 then l, h = lo, hi end
      if b < l or b > h then break end
      k = k + 1
    end
    if len > 0 and k == len then
      out[#out + 1] = string.sub(s, i, i + len - 1)
    else
      out[#out + 1] = '\239\191\189'
    end
    i = i + math.max(k, 1)
  end
  return table.concat(out)
end

local max_n, max_bytes, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local kept, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local out, rejected, bytes, seen, drained = {}, {}, 0, 0, false
while #out < max_n and seen < budget do
  -- The oldest payload, read inside Redis only: the caller never sees one over the limit.
  local item = redis.call('LINDEX', KEYS[1], -1)
  if not item then
    drained = true
    break
  end
  local size = #item
  if size > max_bytes then
    redis.call('LTRIM', KEYS[1], 0, -2)
    local entry = cjson.encode({
      reason = 'too_large',
      detail = string.format('%d bytes, limit %d', size, max_bytes),
      payload = lossy(string.sub(item, 1, kept)),
      payload_bytes = size,
      at_ms = now_ms(),
    })
    redis.call('LPUSH', KEYS[3], entry)
    redis.call('LTRIM', KEYS[3], 0, cap - 1)
    rejected[#rejected + 1] = size
  elseif bytes + size > budget then
    break
  else
    redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
    out[#out + 1] = item
    bytes = bytes + size
  end
  item = nil
  seen = seen + size
end
if #rejected > 0 then
  -- Frees the oversized copies now rather than at some later script's collection.
  collectgarbage('collect')
end
-- An idle worker's poll costs this script and one LINDEX.
return {rejected, drained and 0 or redis.call('LLEN', KEYS[1]), out}
