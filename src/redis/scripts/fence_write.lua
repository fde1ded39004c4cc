local held_type = redis.call('TYPE', KEYS[1])['ok']
if held_type ~= 'none' and held_type ~= 'string' then return {-3, KEYS[1], held_type, 'string'} end
local held = redis.call('GET', KEYS[1])
if held then
  local number = tonumber(string.match(held, '^(%d+) '))
  if number == nil then
    if ARGV[3] ~= '1' then return {0, held} end
  elseif number > tonumber(ARGV[1]) then
    return {0, held}
  end
end
redis.call('SET', KEYS[1], ARGV[2])
return {1, ARGV[2]}
