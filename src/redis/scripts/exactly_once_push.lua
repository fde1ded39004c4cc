if ARGV[9] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[9] then return {-2, ''} end
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
local i = 10
local last = 9 + take
while i <= last do
  local j = i + 999
  if j > last then j = last end
  len = redis.call(ARGV[6], KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
companion(ARGV[7], KEYS[#KEYS], ARGV[8], take)
local next = ARGV[5]
if take < n then next = ARGV[10 + n + take] end
redis.call('HSET', KEYS[2], ARGV[1], next)
return {take, len, next}
