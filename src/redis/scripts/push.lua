local checks = {{KEYS[1], 'list'}}
if ARGV[2] ~= '' then table.insert(checks, {KEYS[2], 'string'}) end
local companion_needs = companion_type(ARGV[4])
if companion_needs then table.insert(checks, {KEYS[#KEYS], companion_needs}) end
local refused = wrong_type(checks)
if refused then return refused end
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then return {-2, 0} end
local len = redis.call('LLEN', KEYS[1])
local n = #ARGV - 5
if ARGV[1] ~= '' then
  local room = tonumber(ARGV[1]) - len
  if room < n then n = room end
end
if n <= 0 then return {0, len} end
len = push_in_chunks(ARGV[3], KEYS[1], 6, n + 5, len)
companion(ARGV[4], KEYS[#KEYS], ARGV[5], n)
return {n, len}
