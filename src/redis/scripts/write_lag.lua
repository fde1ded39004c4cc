local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local i = 3
for _ = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, m do
  redis.call('HDEL', KEYS[2], ARGV[i])
  i = i + 1
end
local sums = {}
local all = redis.call('HGETALL', KEYS[2])
for j = 1, #all, 2 do
  local topic = string.match(all[j], '^(.*)/%d+$')
  if topic then sums[topic] = (sums[topic] or 0) + tonumber(all[j + 1]) end
end
for j = i, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[j], sums[ARGV[j]] or 0)
end
return 0
