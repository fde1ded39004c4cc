-- Shared by bullmq_push.lua and rq_push.lua, which add jobs kept in hashes of their own.
-- ARGV: 1 cap ('' for none), 2 lease token ('' for none), 3 the partition's field in the offsets
-- hash ('' when the push records no offset), 4 the next offset the lane believes is recorded ('' for
-- none), 5 the next offset once every job is in, 6 the job hash key prefix, 7 n = fields per job,
-- then per job: its offset, its id and its n fields as name, value pairs (HSET's arguments as they
-- are, so no table is built per job).
-- KEYS: the framework's `fixed` keys, then the offsets hash when ARGV[3] names a field, then the
-- fence key when ARGV[2] holds a token.

-- The batch as the scripts read it.
local function read_batch(fixed)
  local b = {
    cap = tonumber(ARGV[1]),
    token = ARGV[2],
    field = ARGV[3],
    expected = ARGV[4],
    next_all = ARGV[5],
    base = ARGV[6],
    n = tonumber(ARGV[7]),
  }
  b.first = 8
  b.stride = 2 + 2 * b.n
  local k = fixed + 1
  if b.field ~= '' then b.offsets = KEYS[k]; k = k + 1 end
  if b.token ~= '' then b.fence = KEYS[k] end
  return b
end

-- The refusal when another instance holds the lease ({-2, ''}) or Redis records another position
-- for the partition ({-1, recorded}); nil when the push may go ahead.
local function refusal(b)
  if b.fence and redis.call('GET', b.fence) ~= b.token then return {-2, ''} end
  if b.offsets then
    local recorded = redis.call('HGET', b.offsets, b.field)
    if (recorded or '') ~= b.expected then return {-1, recorded or ''} end
  end
  return nil
end

-- The refusal {-3, key, type found, type wanted} for the first key (of {key, type} pairs) that
-- exists with another type: checked before the first write, so a push is never half-applied.
local function wrong_type(pairs)
  for _, p in ipairs(pairs) do
    local t = redis.call('TYPE', p[1]).ok
    if t ~= 'none' and t ~= p[2] then
      return {-3, p[1], t, p[2]}
    end
  end
  return nil
end

-- HSET of the job at ARGV index i (its offset) into `key`.
local function store_job(b, key, i)
  redis.call('HSET', key, unpack(ARGV, i + 2, i + 1 + 2 * b.n))
end

-- Records the partition's next offset (the first job not taken, or the batch's end) when the push
-- records one, and returns {taken, list length, next}.
local function finish(b, taken, len)
  local next = b.next_all
  local at = b.first + taken * b.stride
  if at <= #ARGV then next = ARGV[at] end
  if b.offsets then redis.call('HSET', b.offsets, b.field, next) end
  return {taken, len, next}
end
