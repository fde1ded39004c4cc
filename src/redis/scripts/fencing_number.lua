local counter_type = redis.call('TYPE', KEYS[1])['ok']
if counter_type ~= 'none' and counter_type ~= 'string' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' is a ' .. counter_type .. ', not the fencing counter (a string)')
end
local floor = tonumber(ARGV[1])
local n = redis.call('INCR', KEYS[1])
if n <= floor then
  n = floor + 1
  redis.call('SET', KEYS[1], n)
end
return n
