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
