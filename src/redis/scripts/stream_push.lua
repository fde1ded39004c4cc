local stream = KEYS[1]
local next_key = 2
local offsets, fence
if ARGV[3] ~= '' then offsets = KEYS[next_key]; next_key = next_key + 1 end
if ARGV[2] ~= '' then fence = KEYS[next_key] end
local checks = {{stream, 'stream'}}
if offsets then table.insert(checks, {offsets, 'hash'}) end
if fence then table.insert(checks, {fence, 'string'}) end
local refused = wrong_type(checks)
if refused then return refused end
if fence and redis.call('GET', fence) ~= ARGV[2] then return {-2, ''} end
if offsets then
  local recorded = redis.call('HGET', offsets, ARGV[3])
  if (recorded or '') ~= ARGV[4] then return {-1, recorded or ''} end
end
local groups = stream_groups(stream)
stream_trim(stream, groups)
local unfinished = stream_unfinished(stream, groups)
local room = nil
if ARGV[1] ~= '' then room = tonumber(ARGV[1]) - unfinished end
local taken = 0
local next = ARGV[5]
local i = 6
while i <= #ARGV do
  if room and taken >= room then
    next = ARGV[i]
    break
  end
  local fields = tonumber(ARGV[i + 1])
  redis.call('XADD', stream, '*', unpack(ARGV, i + 2, i + 1 + fields))
  taken = taken + 1
  i = i + 2 + fields
end
if offsets then redis.call('HSET', offsets, ARGV[3], next) end
return {taken, unfinished + taken, next}
