local k = 2
local fence, sequence
if ARGV[2] ~= '' then fence = KEYS[k]; k = k + 1 end
if ARGV[6] ~= '' then sequence = KEYS[k] end
local checks = {{KEYS[1], 'list'}}
if fence then table.insert(checks, {fence, 'string'}) end
if sequence then table.insert(checks, {sequence, 'hash'}) end
local companion_needs = companion_type(ARGV[4])
if companion_needs then table.insert(checks, {KEYS[#KEYS], companion_needs}) end
local refused = wrong_type(checks)
if refused then return refused end
if fence and redis.call('GET', fence) ~= ARGV[2] then return {-2, 0} end
if sequence and ARGV[7] ~= '' then
  local stored = redis.call('HGET', sequence, ARGV[6])
  if stored ~= ARGV[7] then return {-4, stored or ''} end
end
local len = redis.call('LLEN', KEYS[1])
local n = #ARGV - 8
local all = n
if ARGV[1] ~= '' then
  local room = tonumber(ARGV[1]) - len
  if room < n then n = room end
end
if sequence then
  -- Only a whole batch lets the lane's next one follow it; a part says how much of it went in.
  local after = ARGV[8]
  if n < all then after = after .. '#' .. math.max(n, 0) end
  redis.call('HSET', sequence, ARGV[6], after)
end
if n <= 0 then return {0, len} end
len = push_in_chunks(ARGV[3], KEYS[1], 9, n + 8, len)
companion(ARGV[4], KEYS[#KEYS], ARGV[5], n)
return {n, len}
