if KEYS[3] and redis.call('GET', KEYS[3]) ~= ARGV[#ARGV] then return {-2, ''} end
local recorded = redis.call('HGET', KEYS[2], ARGV[1])
if (recorded or '') ~= ARGV[2] then return {-1, recorded or ''} end
local n = tonumber(ARGV[4])
local len = redis.call('LLEN', KEYS[1])
local take = n
if ARGV[3] ~= '' then
  local room = tonumber(ARGV[3]) - len
  if room < take then take = room end
end
if take < 0 then take = 0 end
local i = 6
local last = 5 + take
while i <= last do
  local j = i + 999
  if j > last then j = last end
  len = redis.call('RPUSH', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
local next = ARGV[5]
if take < n then next = ARGV[6 + n + take] end
redis.call('HSET', KEYS[2], ARGV[1], next)
return {take, len, next}
