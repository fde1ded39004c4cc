-- The type the companion write needs its key to have (nil: no companion write).
local function companion_type(kind)
  if kind == 'notify' then return 'list' end
  if kind == 'sadd' then return 'set' end
  return nil
end

-- Checked before the first write, so that a script never stops half-way: the refusal
-- `{-3, key, type found, type wanted}` for the first of `checks` ({key, type} pairs) that holds
-- another type than its own (a missing key is fine), else nil.
local function wrong_type(checks)
  for _, check in ipairs(checks) do
    local found = redis.call('TYPE', check[1])['ok']
    if found ~= 'none' and found ~= check[2] then
      return {-3, check[1], found, check[2]}
    end
  end
  return nil
end

-- The write a job framework's own client makes beside its list (pipeline/jobs.rs), for the
-- `pushed` jobs just pushed: 'notify' = RPUSH key '1' once per job (Laravel's <list>:notify, which
-- blocking workers wait on and take one of per job); 'sadd' = SADD key member (Sidekiq's `queues`).
local function companion(kind, key, member, pushed)
  if pushed <= 0 then return end
  if kind == 'notify' then
    local ones = {}
    for k = 1, math.min(pushed, 1000) do ones[k] = '1' end
    local left = pushed
    while left > 0 do
      local m = math.min(left, 1000)
      redis.call('RPUSH', key, unpack(ones, 1, m))
      left = left - m
    end
  elseif kind == 'sadd' then
    redis.call('SADD', key, member)
  end
end
