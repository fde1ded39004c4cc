local len = redis.call('LLEN', KEYS[1])
local room = tonumber(ARGV[1]) - len
local n = #ARGV - 1
if room < n then n = room end
if n <= 0 then return {0, len} end
-- unpack() is limited by Lua's C stack (~8000 values): push in chunks.
local i = 2
local last = n + 1
while i <= last do
  local j = i + 999
  if j > last then j = last end
  len = redis.call('RPUSH', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
return {n, len}
