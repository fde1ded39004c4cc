-- Pushes ARGV[from..to] onto `key` with `command` (RPUSH, or LPUSH for workers that pop the tail)
-- in chunks, since unpack() is limited by Lua's C stack (~8000 values); LPUSH chunks in order still
-- leave the first element first in line for the tail's popper. Returns the list's length after the
-- push (`len` when there was nothing to push).
local function push_in_chunks(command, key, from, to, len)
  local i = from
  while i <= to do
    local j = i + 999
    if j > to then j = to end
    len = redis.call(command, key, unpack(ARGV, i, j))
    i = j + 1
  end
  return len
end
