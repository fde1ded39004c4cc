-- Runs in the same MULTI/EXEC as the plain push before it, which put ARGV[1] elements onto the
-- end of KEYS[1] that ARGV[2] names: everything is checked after that push, and whatever is
-- refused is taken back off that end before EXEC returns, so no other client ever sees it.
local list, n, command = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local k = 2
local fence, record
if ARGV[4] ~= '' then fence = KEYS[k]; k = k + 1 end
if ARGV[5] ~= '' then record = KEYS[k] end
-- ARGV[11] 'sequence': the field is a window's chain (any value passes an empty ARGV[6]), not an
-- exactly-once offset record.
local sequence = ARGV[11] == 'sequence'
local companion_needs = companion_type(ARGV[9])

-- Removes the last `count` elements this push added.
local undone = 0
local function undo(count)
  if count <= 0 then return end
  undone = undone + count
  if command == 'LPUSH' then
    redis.call('LTRIM', list, count, -1)
  else
    redis.call('LTRIM', list, 0, -count - 1)
  end
end

local function check()
  local list_type = redis.call('TYPE', list)['ok']
  -- The push before this script failed: the key holds another type, or (never seen) nothing at
  -- all. Either way there is nothing to take back.
  if list_type == 'none' then return {-5, 'the push before the checks did not land'} end
  if list_type ~= 'list' then return {-3, list, list_type, 'list'} end
  local checks = {}
  if fence then table.insert(checks, {fence, 'string'}) end
  if record then table.insert(checks, {record, 'hash'}) end
  if companion_needs then table.insert(checks, {KEYS[#KEYS], companion_needs}) end
  local refused = wrong_type(checks)
  if refused then undo(n); return refused end
  if fence and redis.call('GET', fence) ~= ARGV[4] then undo(n); return {-2, ''} end
  if record then
    local recorded = redis.call('HGET', record, ARGV[5])
    if sequence then
      if ARGV[6] ~= '' and recorded ~= ARGV[6] then undo(n); return {-4, recorded or ''} end
    elseif (recorded or '') ~= ARGV[6] then
      undo(n); return {-1, recorded or ''}
    end
  end
  local len = redis.call('LLEN', list)
  local take = n
  if ARGV[3] ~= '' then
    local room = tonumber(ARGV[3]) - (len - n)
    if room < take then take = math.max(room, 0) end
  end
  undo(n - take)
  len = len - (n - take)
  companion(ARGV[9], KEYS[#KEYS], ARGV[10], take)
  if not record then return {take, len} end
  local next = ARGV[7]
  if take < n and sequence then
    -- Only a whole batch lets the lane's next one follow it; a part says how much of it went in.
    next = next .. '#' .. take
  elseif take < n then
    -- ARGV[8]: the elements' offsets, each right-aligned in 20 characters.
    next = string.match(string.sub(ARGV[8], take * 20 + 1, take * 20 + 20), '%d+')
  end
  redis.call('HSET', record, ARGV[5], next)
  if sequence then return {take, len} end
  return {take, len, next}
end

-- A check that fails for any other reason must not leave the push standing unchecked.
local ok, reply = pcall(check)
if ok then return reply end
if redis.call('TYPE', list)['ok'] == 'list' then undo(n - undone) end
return {-5, tostring(reply and (reply.err or reply))}
