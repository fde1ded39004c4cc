-- BullMQ jobs, each as `Queue.add` of BullMQ 6 adds a job with a custom id (its `addStandardJob`):
-- INCR the id counter; read (or set) `opts.maxLenEvents`; if the job's hash exists, only a
-- `duplicated` event; else the hash, an `added` event, LPUSH onto `wait`, the marker unless the
-- queue is paused or at its global concurrency, and a `waiting` event. A job whose hash exists is
-- taken without a write of its own (a replay); a new one only while `wait` is below the cap.
-- KEYS: 1 wait, 2 meta, 3 id, 4 events, 5 marker, 6 active, then as hash_jobs.lua says.
local b = read_batch(6)
local refused = refusal(b)
if refused then return refused end
local types = {{KEYS[1], 'list'}, {KEYS[2], 'hash'}, {KEYS[3], 'string'}, {KEYS[4], 'stream'},
  {KEYS[5], 'zset'}, {KEYS[6], 'list'}}
if b.offsets then types[#types + 1] = {b.offsets, 'hash'} end
local bad = wrong_type(types)
if bad then return bad end
local len = redis.call('LLEN', KEYS[1])
-- Read once: nothing below changes them. `Queue.add` reads them per job; the writes are the same.
local max_events
local meta = redis.call('HMGET', KEYS[2], 'paused', 'concurrency')
local held = meta[1] or (meta[2] and redis.call('LLEN', KEYS[6]) >= tonumber(meta[2]))
local marked = false
local taken = 0
for i = b.first, #ARGV, b.stride do
  local id = ARGV[i + 1]
  local key = b.base .. id
  local exists = redis.call('EXISTS', key) == 1
  if not exists and b.cap and len >= b.cap then break end
  redis.call('INCR', KEYS[3])
  if not max_events then
    max_events = redis.call('HGET', KEYS[2], 'opts.maxLenEvents')
    if not max_events then
      max_events = 10000
      redis.call('HSET', KEYS[2], 'opts.maxLenEvents', max_events)
    end
  end
  if exists then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', max_events, '*', 'event', 'duplicated', 'jobId', id)
  else
    store_job(b, key, i)
    -- The first field is the job's name.
    redis.call('XADD', KEYS[4], '*', 'event', 'added', 'jobId', id, 'name', ARGV[i + 3])
    len = redis.call('LPUSH', KEYS[1], id)
    if not held and not marked then
      redis.call('ZADD', KEYS[5], 0, '0')
      marked = true
    end
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', max_events, '*', 'event', 'waiting', 'jobId', id)
  end
  taken = taken + 1
end
return finish(b, taken, len)
