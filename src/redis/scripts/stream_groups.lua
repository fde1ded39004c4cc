-- What a stream's consumer groups have not finished, and what every one of them has: one rule for
-- the push's cap, the paused lanes' drain check, the backlog, and the trim (redis/stream_groups.rs).

-- Entry ids compared and stepped as decimal strings: a sequence number may exceed what a Lua
-- number holds exactly (2^53).
local function id_parts(id)
  local dash = string.find(id, '-', 1, true)
  return string.sub(id, 1, dash - 1), string.sub(id, dash + 1)
end

local function decimal_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

local function id_less(a, b)
  local am, as = id_parts(a)
  local bm, bs = id_parts(b)
  if am ~= bm then return decimal_less(am, bm) end
  return decimal_less(as, bs)
end

-- `n` + 1, for a decimal string.
local function decimal_next(n)
  local digits = {}
  for i = 1, #n do digits[i] = string.byte(n, i) - 48 end
  local i = #digits
  while i >= 1 and digits[i] == 9 do
    digits[i] = 0
    i = i - 1
  end
  if i == 0 then table.insert(digits, 1, 1) else digits[i] = digits[i] + 1 end
  local out = {}
  for k = 1, #digits do out[k] = string.char(digits[k] + 48) end
  return table.concat(out)
end

-- The smallest id after `id`: the next sequence number, or the next millisecond's first id after
-- the largest sequence number (2^64 - 1).
local function id_after(id)
  local ms, seq = id_parts(id)
  if seq == '18446744073709551615' then return decimal_next(ms) .. '-0' end
  return ms .. '-' .. decimal_next(seq)
end

-- XINFO GROUPS as one table per group, by field name (a nil reply field is false).
local function stream_groups(stream)
  if redis.call('EXISTS', stream) == 0 then return {} end
  local groups = {}
  for _, flat in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local group = {}
    for i = 1, #flat, 2 do group[flat[i]] = flat[i + 1] end
    table.insert(groups, group)
  end
  return groups
end

-- How many entries after `last` (a group's last-delivered id) the stream holds, for a group whose
-- lag Redis cannot tell (entries deleted after its position, or its read counter unknown): counted
-- when there are few (true: exact), else the stream's length, which holds them all (false: an
-- upper bound; an over-count only pauses earlier).
local COUNTED_AFTER = 100
local function entries_after(stream, last, len)
  local after = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', COUNTED_AFTER)
  if #after < COUNTED_AFTER then return #after, true end
  return len, false
end

-- The unfinished work of the stream's busiest group: entries not yet delivered to it plus those it
-- has pending (delivered, not acknowledged). A stream without groups: its length.
local function stream_unfinished(stream, groups)
  local len = redis.call('XLEN', stream)
  if #groups == 0 then return len end
  local most = 0
  for _, group in ipairs(groups) do
    local unfinished
    if group['lag'] then
      unfinished = group['pending'] + group['lag']
    else
      local after, exact = entries_after(stream, group['last-delivered-id'], len)
      if exact then
        unfinished = group['pending'] + after
      else
        -- Pending entries lie in the stream before the position, the rest after it: the length
        -- holds both (the pending count alone is larger only when pending entries were deleted).
        unfinished = math.max(len, group['pending'])
      end
    end
    if unfinished > most then most = unfinished end
  end
  return most
end

-- The first entry from `start` on (an id, `(id` for after it, or `-`); nil when there is none.
local function first_entry_from(stream, start)
  local first = redis.call('XRANGE', stream, start, '+', 'COUNT', 1)[1]
  return first and first[1]
end

-- The oldest entry some group has not finished: per group its oldest pending entry, else the first
-- entry after its last-delivered one; without groups, the stream's first entry. nil when nothing
-- waits. Its id begins with the millisecond it was added at: the backlog's age.
local function stream_oldest_unfinished(stream, groups)
  if #groups == 0 then return first_entry_from(stream, '-') end
  local oldest = nil
  for _, group in ipairs(groups) do
    local first
    if group['pending'] > 0 then
      first = redis.call('XPENDING', stream, group['name'])[2]
    else
      first = first_entry_from(stream, '(' .. group['last-delivered-id'])
    end
    if first and (oldest == nil or id_less(first, oldest)) then oldest = first end
  end
  return oldest
end

-- The id before which every group has finished every entry: the smallest over the groups of
-- their oldest pending entry, or the entry after their last-delivered one. nil without groups
-- (nobody has read anything, so nothing is finished).
local function stream_trim_point(stream, groups)
  local point = nil
  for _, group in ipairs(groups) do
    local first
    if group['pending'] > 0 then
      first = redis.call('XPENDING', stream, group['name'])[2]
    else
      first = id_after(group['last-delivered-id'])
    end
    if point == nil or id_less(first, point) then point = first end
  end
  return point
end

-- Deletes the entries every group has finished (XTRIM MINID: never an entry a group still has
-- pending or has not been delivered); returns how many.
local function stream_trim(stream, groups)
  local point = stream_trim_point(stream, groups)
  if point == nil then return 0 end
  return redis.call('XTRIM', stream, 'MINID', point)
end
