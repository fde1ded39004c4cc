//! Lua scripts that make a push and its checks one atomic step in Redis.

use std::sync::LazyLock;

use ::redis::Script;

/// `KEYS[1]` list, `ARGV[1]` cap, `ARGV[2..]` elements. Pushes as many elements as fit under the cap
/// (the length check and the push are atomic, so concurrent lanes and instances can never take
/// the list past it) and returns `{pushed, length after}`.
pub static CAPPED_PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local len = redis.call('LLEN', KEYS[1])
local room = tonumber(ARGV[1]) - len
local n = #ARGV - 1
if room < n then n = room end
if n <= 0 then return {0, len} end
-- unpack() is limited by Lua's C stack (~8000 values): push in chunks.
local i = 2
local last = n + 1
while i <= last do
  local j = i + 999
  if j > last then j = last end
  len = redis.call('RPUSH', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
return {n, len}
"#,
    )
});

/// Exactly-once push. `KEYS[1]` list, `KEYS[2]` its offsets hash (same Cluster slot).
/// `ARGV[1]` the partition's field, `ARGV[2]` the next offset the lane believes is recorded ("" for
/// none), `ARGV[3]` cap ("" for none), `ARGV[4]` n, `ARGV[5]` the next offset once the whole batch is
/// in, `ARGV[6..5+n]` the elements, `ARGV[6+n..5+2n]` their offsets.
///
/// Refuses the batch — `{-1, recorded}` — when the recorded offset is not the one the lane expects:
/// another writer (a zombie after a rebalance, a duplicate instance) moved the partition, or a Redis
/// failover lost writes. Otherwise pushes what fits under the cap and records, in the same atomic
/// step, the offset of the first message that did not fit (or the batch's end): `{pushed, length,
/// next}`.
pub static EXACTLY_ONCE_PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
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
local i = 6
local last = 5 + take
while i <= last do
  local j = i + 999
  if j > last then j = last end
  len = redis.call('RPUSH', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
local next = ARGV[5]
if take < n then next = ARGV[6 + n + take] end
redis.call('HSET', KEYS[2], ARGV[1], next)
return {take, len, next}
"#,
    )
});
