--[[ Shared helpers for every flowslot function. Loaded first.

  Conventions (see ARCHITECTURE.md §4):
  * raise(code, detail) aborts with an error reply "CODE detail"; it is only
    ever called before the first write of a function, except for BUG (move()
    asked for a transition its table forbids: a bug in this library).
  * every function registered without 'no-writes' first checks that its slot
    is stable (check_slot_stable), so it runs whole or not at all while a
    slot is being migrated.
  * now_ms() is the only clock: the server's TIME, never the caller's.
  * pkey(prefix, suffix) rebuilds a partition key from the prefix of a KEYS
    entry; it mirrors keys/schema.py (a unit test checks both agree).
  * register(name, fn, flags) wraps fn so raise() becomes an error reply. It is
    the only caller of redis.register_function; this file registers no function
    of its own (KEYS: none), each caller documents its KEYS and ARGV.
  * rcall looks redis.call up at call time: during FUNCTION LOAD the `redis`
    table has no `call` (fakeredis enforces this too).
]]
local function rcall(...) return redis.call(...) end

local EVENTS_MAXLEN = 10000
local DONE_TTL_MS = 7 * 24 * 3600 * 1000
local MAX_BATCH = 1000

local function raise(code, detail)
  error({fs = code .. ' ' .. detail})
end

local function now_ms()
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- "fs:{tag}:ready:default" -> "fs:{tag}:"
local function prefix_of(key)
  local p = string.match(key, '^(.-}:)')
  if not p then raise('BAD_ARGS', 'key without a hash tag: ' .. key) end
  return p
end

local function pkey(prefix, suffix)
  return prefix .. suffix
end

local function exec_key(prefix, id) return prefix .. 'x:' .. id end
local function done_key(prefix, id) return prefix .. 'done:' .. id end
local function ready_key(prefix, lane) return prefix .. 'ready:' .. lane end

local function int_arg(value, name, min, max)
  local n = tonumber(value)
  if n == nil or n ~= math.floor(n) or n < min or n > max then
    raise('BAD_ARGS', name .. ' must be an integer in ' .. min .. '..' .. max .. ', got ' .. tostring(value))
  end
  return n
end

local function num_arg(value, name, min, max)
  local n = tonumber(value)
  if n == nil or n < min or n > max then
    raise('BAD_ARGS', name .. ' must be a number in ' .. min .. '..' .. max .. ', got ' .. tostring(value))
  end
  return n
end

local function str_arg(value, name, max_len)
  if value == nil or value == '' or #value > max_len then
    raise('BAD_ARGS', name .. ' must be a non-empty string of at most ' .. max_len .. ' bytes')
  end
  return value
end

-- HGETALL reply -> table
local function hash_table(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local function emit(prefix, id, from, to, detail)
  if detail then
    rcall('XADD', pkey(prefix, 'events'), 'MAXLEN', '~', EVENTS_MAXLEN, '*',
      'id', id, 'from', from, 'to', to, 'detail', detail)
  else
    rcall('XADD', pkey(prefix, 'events'), 'MAXLEN', '~', EVENTS_MAXLEN, '*',
      'id', id, 'from', from, 'to', to)
  end
end

-- The key that never exists in the slot of `key`: "fs:{tag}:probe", or
-- "{fs:daemons}:probe" for a key without a hash tag (same slot either way).
local function probe_key(key)
  local tag = string.match(key, '^(.-{[^}]+}:)')
  if tag then return tag .. 'probe' end
  return '{' .. key .. '}:probe'
end

-- Slot stability check, the first command of every writing function. While
-- a slot is MIGRATING (a classic reshard: SETSLOT + MIGRATE key by key), a
-- script on the source node may only touch keys still held there; touching a
-- key that is gone fails the script where it stands, keeping every write made
-- before. Reading a key that never exists fails at once in that state ("non
-- local key"), so the function refuses before its first write and the caller
-- retries until the slot has settled. On a stable slot it costs one EXISTS.
local function check_slot_stable(keys)
  if keys[1] then rcall('EXISTS', probe_key(keys[1])) end
end

local function register(name, fn, flags)
  -- (runs at FUNCTION LOAD, where only the basic Lua library is reachable)
  local writes = true
  local list = flags or {}
  for i = 1, #list do
    if list[i] == 'no-writes' then writes = false end
  end
  local wrapped = function(keys, args)
    if writes then check_slot_stable(keys) end
    local ok, res = pcall(fn, keys, args)
    if ok then return res end
    if type(res) == 'table' and res.fs then return redis.error_reply(res.fs) end
    error(res)
  end
  redis.register_function{function_name = name, callback = wrapped, flags = flags or {}}
end
