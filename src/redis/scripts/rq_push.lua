-- RQ jobs, each as `Queue.enqueue` of RQ 3 with a job id writes it: the queue registered in the
-- queues set, then per job whose hash does not exist yet (what RQ's own `unique=True` checks) the
-- hash and RPUSH of its id. A job whose hash exists is taken without a write (a replay); a new one
-- only while the queue's list is below the cap.
-- KEYS: 1 the queue's list, 2 the queues set, then as hash_jobs.lua says.
local b = read_batch(2)
local refused = refusal(b)
if refused then return refused end
local types = {{KEYS[1], 'list'}, {KEYS[2], 'set'}}
if b.offsets then types[#types + 1] = {b.offsets, 'hash'} end
local bad = wrong_type(types)
if bad then return bad end
redis.call('SADD', KEYS[2], KEYS[1])
local len = redis.call('LLEN', KEYS[1])
local taken = 0
for i = b.first, #ARGV, b.stride do
  local id = ARGV[i + 1]
  local key = b.base .. id
  if redis.call('EXISTS', key) == 0 then
    if b.cap and len >= b.cap then break end
    store_job(b, key, i)
    len = redis.call('RPUSH', KEYS[1], id)
  end
  taken = taken + 1
end
return finish(b, taken, len)
