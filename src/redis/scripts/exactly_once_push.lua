local checks = {{KEYS[1], 'list'}, {KEYS[2], 'hash'}}
if ARGV[9] ~= '' then table.insert(checks, {KEYS[3], 'string'}) end
local companion_needs = companion_type(ARGV[7])
if companion_needs then table.insert(checks, {KEYS[#KEYS], companion_needs}) end
local refused = wrong_type(checks)
if refused then return refused end
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
len = push_in_chunks(ARGV[6], KEYS[1], 10, 9 + take, len)
companion(ARGV[7], KEYS[#KEYS], ARGV[8], take)
local next = ARGV[5]
if take < n then next = ARGV[10 + n + take] end
redis.call('HSET', KEYS[2], ARGV[1], next)
return {take, len, next}
