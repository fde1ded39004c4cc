if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then return {-2, 0} end
local len = redis.call('LLEN', KEYS[1])
local n = #ARGV - 5
if ARGV[1] ~= '' then
  local room = tonumber(ARGV[1]) - len
  if room < n then n = room end
end
if n <= 0 then return {0, len} end
-- unpack() is limited by Lua's C stack (~8000 values): push in chunks. LPUSH chunks in order
-- still leave the first element first in line for the tail's popper.
local i = 6
local last = n + 5
while i <= last do
  local j = i + 999
  if j > last then j = last end
  len = redis.call(ARGV[3], KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
companion(ARGV[4], KEYS[#KEYS], ARGV[5], n)
return {n, len}
