--[[ Shared helpers for every flowslot function. Loaded first.

  Conventions (see docs/architecture.md §5):
  * raise(code, detail) aborts with an error reply "CODE detail"; it is only
    ever called before the first write of a function, except for BUG (move()
    asked for a transition its table forbids: a bug in this library).
  * every function registered without 'no-writes' first checks that its slot
    is stable (check_slot_stable), so it runs whole or not at all while a
    slot is being migrated.
  * now_ms() is the only clock: the server's TIME, never the caller's.
  * every key a function reaches beyond its KEYS is built by one K.<name>
    helper below, named after the keys/schema.py KeySpace method that spells
    the same key; no other file joins a key suffix by hand (a unit test runs
    every helper against its KeySpace method and scans the other files).
  * register(name, fn, flags) wraps fn so raise() becomes an error reply. It is
    the only caller of redis.register_function; this file registers no function
    of its own (KEYS: none), each caller documents its KEYS and ARGV.
  * a header before every function lists its KEYS, its ARGV, and on a
    `Derived:` line every key it builds with a K helper, in its body or in a
    local function it calls (read off the code: a call may not reach them
    all); the slot probe that register() reads for every writing function is
    not repeated there. A unit test derives that list from the code and
    compares.
  * rcall is redis.call, looked up at the first call: during FUNCTION LOAD the
    `redis` table has no `call` (fakeredis enforces this too). That first call
    rebinds rcall, an upvalue every function of the library shares, to
    redis.call itself, so no later command pays a Lua call of its own (about
    600 instructions each). It is defined once, here, for every file after
    this one: the library is one Lua chunk, and a chunk holds at most 200
    top-level locals.
]]
local rcall
rcall = function(...)
  rcall = redis.call
  return rcall(...)
end

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

-- The key builders: one line each, `function K.<KeySpace method>(prefix, ...)
-- return ... end`, where prefix is "<ns>:{<tag>}:" (prefix_of a KEYS entry).
-- tests/unit/test_lua_contract.py runs each line and compares it with the
-- KeySpace method of the same name; keep the one-line form it reads.
local K = {}
-- partition indexes and bookkeeping
function K.ready(prefix, lane) return prefix .. 'ready:' .. lane end
function K.delayed(prefix) return prefix .. 'delayed' end
function K.leases(prefix) return prefix .. 'leases' end
function K.deadlines(prefix) return prefix .. 'deadlines' end
function K.terminal(prefix) return prefix .. 'terminal' end
function K.pending_dispatch(prefix) return prefix .. 'pending_dispatch' end
function K.counts(prefix) return prefix .. 'counts' end
function K.events(prefix) return prefix .. 'events' end
function K.check_cursor(prefix) return prefix .. 'check_cursor' end
function K.flows(prefix) return prefix .. 'flows' end
function K.flows_done(prefix) return prefix .. 'flows_done' end
function K.unsealed(prefix) return prefix .. 'unsealed' end
function K.flow_ops(prefix) return prefix .. 'flow_ops' end
function K.probe(prefix) return prefix .. 'probe' end
function K.waiting(prefix) return prefix .. 'waiting' end
function K.waits(prefix, wait_key) return prefix .. 'wait:' .. wait_key end
function K.event_buffer(prefix, wait_key) return prefix .. 'evbuf:' .. wait_key end
function K.outbox(prefix) return prefix .. 'outbox' end
function K.outbox_msgs(prefix) return prefix .. 'outbox_msgs' end
function K.outbox_seq(prefix) return prefix .. 'outbox_seq' end
function K.inbox(prefix) return prefix .. 'inbox' end
-- one execution
function K.execution(prefix, id) return prefix .. 'x:' .. id end
function K.done(prefix, id) return prefix .. 'done:' .. id end
function K.edges_in(prefix, id) return prefix .. 'in:' .. id end
function K.edges_out(prefix, id) return prefix .. 'out:' .. id end
function K.inputs(prefix, id) return prefix .. 'inp:' .. id end
function K.defaults(prefix, id) return prefix .. 'def:' .. id end
function K.signals(prefix, id) return prefix .. 'sig:' .. id end
-- one flow
function K.flow(prefix, fid) return prefix .. 'f:' .. fid end
function K.flow_steps(prefix, fid) return K.flow(prefix, fid) .. ':steps' end
function K.flow_order(prefix, fid) return K.flow(prefix, fid) .. ':order' end
function K.flow_roots(prefix, fid) return K.flow(prefix, fid) .. ':roots' end
function K.flow_held(prefix, fid) return K.flow(prefix, fid) .. ':held' end
function K.flow_done(prefix, fid) return K.flow(prefix, fid) .. ':done' end
function K.flow_retry(prefix, fid) return K.flow(prefix, fid) .. ':retry' end
-- wants and data slices
function K.slice(prefix, name) return prefix .. 'sl:' .. name end
function K.slice_wants(prefix, name) return prefix .. 'slw:' .. name end
function K.slices(prefix) return prefix .. 'slices' end
function K.want(prefix, want_id) return prefix .. 'w:' .. want_id end
function K.want_slices(prefix, want_id) return prefix .. 'wsl:' .. want_id end
function K.wants(prefix) return prefix .. 'wants' end
function K.want_due(prefix) return prefix .. 'want_due' end
function K.wants_done(prefix) return prefix .. 'wants_done' end
function K.wants_breached(prefix) return prefix .. 'wants_breached' end
function K.want_counts(prefix) return prefix .. 'want_counts' end
function K.missing(prefix, execution_id) return prefix .. 'miss:' .. execution_id end
function K.build_waits(prefix) return prefix .. 'build_waits' end

-- Integers already parsed, by their string: tonumber() of a string costs a
-- strtod (about 800 instructions in this Lua), a table lookup of an interned
-- string a few dozen, and the same few values ('0', '1', '3', '1000', a lease
-- time) come back call after call. Bounded; kept from call to call like the
-- buffers below (a cache: no call's result depends on it).
local INT_SEEN, int_seen_n = {}, 0

-- `value` (a string or number) as an integer, or nil when it is not one.
local function int_of(value)
  local n = INT_SEEN[value]
  if n then return n end
  n = tonumber(value)
  if n == nil or n ~= math.floor(n) then return nil end
  if int_seen_n < 4096 then INT_SEEN[value] = n; int_seen_n = int_seen_n + 1 end
  return n
end

local function int_arg(value, name, min, max)
  local n = int_of(value)
  if n == nil or n < min or n > max then
    raise('BAD_ARGS', name .. ' must be an integer in ' .. min .. '..' .. max .. ', got ' .. tostring(value))
  end
  return n
end

-- How many items of `width` ARGV each `args` holds after its first `skip` (0 when
-- nil), 1..max; BAD_ARGS otherwise (`what` names an item in the message:
-- "executions of 10 values").
local function batch_count(args, width, max, what, skip)
  local values = #args - (skip or 0)
  local n = values / width
  if n < 1 or n ~= math.floor(n) or n > max then
    raise('BAD_ARGS', 'expected 1..' .. max .. ' ' .. what .. ', got ' .. values .. ' values')
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

-- rcall(cmd, key, ...values) for a list of any length, in slices of at most
-- 1,000 values (an even number: field/value pairs stay whole), so unpack()
-- never meets its limit; returns the slices' replies concatenated when they
-- are lists (HMGET), else the last reply.
local function rcall_sliced(cmd, key, values)
  local n = #values
  if n <= 1000 then return rcall(cmd, key, unpack(values)) end
  local all, last = {}, nil
  for first = 1, n, 1000 do
    last = rcall(cmd, key, unpack(values, first, math.min(first + 999, n)))
    if type(last) == 'table' then
      for _, v in ipairs(last) do all[#all + 1] = v end
    end
  end
  if type(last) == 'table' then return all end
  return last
end

-- Hashes that grow large: a flow's steps (f:F:steps) in a batched submit, and the
-- edges (in:E) and inputs (inp:E) of a step with more than WIDE_ENTRIES edges.
-- The server keeps a hash of up to hash-max-listpack-entries entries (512 by
-- default) as a listpack, which every lookup and every insert walks from its
-- start: filling one entry by entry costs comparisons growing with the square of
-- its size (a fifth of the server's work in a 1 -> 1,000 -> 1 flow's submit).
-- hset_wide writes the flat field/value list `values` into the hash at `key`
-- with one field longer than hash-max-listpack-value (64 bytes by default) first,
-- which turns the hash into a hash table for good, and deletes that field at once:
-- the hash holds the same fields, only its encoding differs (a server configured
-- with longer listpack values keeps a listpack, as before). The field is longer
-- than any step id (200 bytes at most), so it never names an entry.
local WIDE_ENTRIES = 512
local hset_wide
do
  local wide_field = nil  -- (string.rep cannot run at FUNCTION LOAD)
  hset_wide = function(key, values)
    wide_field = wide_field or string.rep('~', 256)
    rcall('HSET', key, wide_field, 1)
    rcall_sliced('HSET', key, values)
    rcall('HDEL', key, wide_field)
  end
end

-- Append `a` (and `b` when given) to the list groups[key], made when `key` is new
-- and then also listed in `groups`' array part: the keys in the order first seen,
-- for a caller that writes each group once (one command per key, not per value).
local function group_add(groups, key, a, b)
  local list = groups[key]
  if not list then
    list = {}
    groups[key] = list
    groups[#groups + 1] = key
  end
  list[#list + 1] = a
  if b ~= nil then list[#list + 1] = b end
end

-- HGETALL reply -> table
local function hash_table(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- The key that never exists in the slot of `key`: "fs:{tag}:probe", or
-- "{fs:daemons}:probe" for a key without a hash tag (the key's whole name
-- is the tag: same slot either way).
local function probe_key(key)
  local tag = string.match(key, '^(.-{[^}]+}:)')
  if tag then return K.probe(tag) end
  return K.probe('{' .. key .. '}:')
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

-- What one call writes to its partition's event stream and lane counters is
-- gathered while it runs and written once at its end (register's wrapper):
-- one XADD per call, carrying every transition of the call as consecutive
-- records (see note_event), and one HINCRBY per counter the call changed.
-- The flush runs after an error too, so a call that stopped half-way still
-- records the transitions it made (the index check follows the stream).
-- The buffers are reused from call to call (a Lua table allocated per call
-- cost more server CPU than the commands it saved).
local EVENT_RECORDS_PER_ENTRY = 200  -- a record is at most 10 values: unpack() stays small
local COUNTS_HELD = 16  -- distinct counters summed per call; further ones are written at once
local ev_key, ev_flat, ev_n, ev_records = nil, {}, 0, 0
-- c_slot[key][field]: the counter's index in c_keys/c_fields/c_deltas (the
-- per-key tables are dropped at the flush: a call touches one or two keys).
local c_keys, c_fields, c_deltas, c_n, c_slot = {}, {}, {}, 0, {}

-- Append one transition record to the call's pending entry of stream `key`:
-- an execution's or, with `id` nil, a flow's (flow, from, to, detail). An
-- execution's record is one field 'e' whose value is "<id> <from> <to> <flow>
-- <detail>" (flow and detail may be empty; detail, last, may hold spaces): one
-- pair, not up to five, per transition, which costs the XADD a third of the
-- arguments. Consecutive ones of one kind (from, to, flow and detail) share one
-- field 'g': "<from> <to> <flow> <n> <id 1> ... <id n> <detail>" (close_group). An
-- id or flow id with a space in it (only a raw FCALL could make one) gets the
-- long form: id, from, to[, flow][, detail]. A record starts at 'e', at 'g', at
-- 'id', or at 'flow' directly followed by 'from' (event_records, here and in
-- engine/replies.py, reads them all; streams written before the short form hold
-- the long one). A group counts its transitions towards EVENT_RECORDS_PER_ENTRY.
local flush_events, note_event
do
  -- The call's open group: consecutive execution transitions of one kind (the same
  -- from, to, flow and detail: a claim's or a batch completion's) kept as their ids
  -- and written as one 'g' record (an 'e' record when it holds one) when a
  -- transition of another kind comes or the entry is written: a batch of n costs
  -- the XADD one field, not n, and n concatenations less. (Upvalues, not a table:
  -- a transition of another kind than the last pays a few assignments.)
  local g_n, g_ids, g_from, g_to, g_flow, g_detail = 0, {}, '', '', '', ''

  -- Write the open group into the pending entry.
  local function close_group()
    local n = g_n
    if n == 0 then return end
    g_n = 0
    local m = ev_n
    if n == 1 then
      ev_flat[m + 1] = 'e'
      ev_flat[m + 2] = g_ids[1] .. ' ' .. g_from .. ' ' .. g_to .. ' ' .. g_flow .. ' ' .. g_detail
    else
      ev_flat[m + 1] = 'g'
      ev_flat[m + 2] = g_from .. ' ' .. g_to .. ' ' .. g_flow .. ' ' .. n .. ' ' .. table.concat(g_ids, ' ', 1, n)
        .. ' ' .. g_detail
    end
    ev_n = m + 2
  end

  flush_events = function()
    close_group()
    local key, n = ev_key, ev_n
    ev_key, ev_n, ev_records = nil, 0, 0  -- taken first: a failed XADD leaves nothing behind
    if n > 0 then rcall('XADD', key, 'MAXLEN', '~', EVENTS_MAXLEN, '*', unpack(ev_flat, 1, n)) end
  end

  -- Flow ids found free of spaces (a cache, emptied when it holds 4,096): a flow's
  -- transitions skip the search of its id (about 800 instructions each).
  local plain_flows, plain_flows_n = {}, 0
  note_event = function(key, id, from, to, flow, detail)
    if ev_key ~= key or ev_records >= EVENT_RECORDS_PER_ENTRY then flush_events() end
    ev_key = key
    local n = ev_n
    local short = id and not string.find(id, ' ', 1, true)
    if short and flow and not plain_flows[flow] then
      if string.find(flow, ' ', 1, true) then
        short = false
      else
        if plain_flows_n >= 4096 then plain_flows, plain_flows_n = {}, 0 end
        plain_flows[flow] = true
        plain_flows_n = plain_flows_n + 1
      end
    end
    if short then
      local fl, dt = flow or '', detail or ''
      if g_n > 0 and g_to == to and g_from == from and g_flow == fl and g_detail == dt then
        g_n = g_n + 1
        g_ids[g_n] = id
      else
        if g_n > 0 then close_group() end
        g_from, g_to, g_flow, g_detail, g_n = from, to, fl, dt, 1
        g_ids[1] = id
      end
      ev_records = ev_records + 1
      return
    end
    if g_n > 0 then
      close_group()
      n = ev_n
    end
    if id then
      ev_flat[n + 1] = 'id'; ev_flat[n + 2] = id
      n = n + 2
    else
      ev_flat[n + 1] = 'flow'; ev_flat[n + 2] = flow
      n = n + 2
    end
    ev_flat[n + 1] = 'from'; ev_flat[n + 2] = from; ev_flat[n + 3] = 'to'; ev_flat[n + 4] = to
    n = n + 4
    if id and flow then ev_flat[n + 1] = 'flow'; ev_flat[n + 2] = flow; n = n + 2 end
    if detail then ev_flat[n + 1] = 'detail'; ev_flat[n + 2] = detail; n = n + 2 end
    ev_n, ev_records = n, ev_records + 1
  end
end

-- Add `delta` to `field` of the counters hash `key`, written at the call's end.
local function note_count(key, field, delta)
  local slots = c_slot[key]
  local i = slots and slots[field]
  if i then
    c_deltas[i] = c_deltas[i] + delta
    return
  end
  if c_n >= COUNTS_HELD then
    rcall('HINCRBY', key, field, delta)
    return
  end
  c_n = c_n + 1
  c_keys[c_n], c_fields[c_n], c_deltas[c_n] = key, field, delta
  if not slots then
    slots = {}
    c_slot[key] = slots
  end
  slots[field] = c_n
end

-- What this call has added to `field` of `key` and not yet written.
local function noted_count(key, field)
  local slots = c_slot[key]
  local i = slots and slots[field]
  if i then return c_deltas[i] end
  return 0
end

local function flush_pending()
  local n = c_n
  c_n = 0  -- taken first: a write that fails here leaves nothing for the next call
  for i = 1, n do c_slot[c_keys[i]] = nil end
  flush_events()
  for i = 1, n do
    if c_deltas[i] ~= 0 then rcall('HINCRBY', c_keys[i], c_fields[i], c_deltas[i]) end
  end
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
    if writes then flush_pending() end
    if ok then return res end
    if type(res) == 'table' and res.fs then return redis.error_reply(res.fs) end
    error(res)
  end
  redis.register_function{function_name = name, callback = wrapped, flags = flags or {}}
end

-- The outbox (docs/architecture.md §9, engine/outbox.py): a function that must
-- change another partition (another slot) records a message in its own
-- partition's outbox, in the same atomic call; Python applies it with the
-- handler of its kind (a call on the target partition) and acknowledges it.
-- The target function calls outbox_first before its first write, so a message
-- applied twice (two flushers, a flusher killed before its ack) changes nothing
-- the second time.

-- Record a message for `to_partition`; returns its id, unique in the namespace
-- ("<tag>.<seq>.<ms>": the partition's hash tag, its counter, the server time).
local function outbox_send(prefix, kind, to_partition, body)
  local now = now_ms()
  local seq = rcall('INCR', K.outbox_seq(prefix))
  local id = string.match(prefix, '{([^}]*)}') .. '.' .. seq .. '.' .. now
  rcall('HSET', K.outbox_msgs(prefix), id, cjson.encode({kind = kind, to = to_partition, body = body}))
  rcall('ZADD', K.outbox(prefix), now, id)
  return id
end

-- A target function's first write: false when message `msg_id` was applied
-- here already (the caller then writes nothing and answers 'duplicate'), else
-- the id goes into the partition's inbox and the answer is true.
local function outbox_first(prefix, msg_id)
  local inbox = K.inbox(prefix)
  if rcall('ZSCORE', inbox, msg_id) then return false end
  rcall('ZADD', inbox, now_ms(), msg_id)
  return true
end
