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
