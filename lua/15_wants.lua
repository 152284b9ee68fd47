--[[ Wants and data slices (docs/architecture.md "Wants").

  A data slice ("clean/2026-11-21": a dataset and its key) has one canonical
  record, sl:<name>, in the partition of hash(name), chosen by Python
  (engine/wants.py): its state (missing/building/live/failed), the execution
  building it, when it became live, and why it failed. The build is an
  ordinary execution of the slice's producer task in that same partition,
  marked with the slice's name; its terminal transition moves the slice
  (build_finished in 10_states.lua) and records it in pending_dispatch, so the
  dispatcher then tells the wants waiting for the slice (settle_slice, from
  flow_resolve) in bounded batches, and the reconciler finishes that if the
  caller died.

  A want (w:<id>) lives in the partition of its first slice: the first four
  hex digits of its UUID are that partition. It asks each slice for itself
  (request_slice): a live slice answers at once, a slice being built adds the
  want to its waiting set (slw:<name>), any other starts one build. Slices in
  other partitions, and the answers, travel as outbox messages (outbox_send):
  each message kind has one applying function here, and the same code runs
  inline when sender and receiver share the partition.

  A build that raises MissingDependencies (slice_missing) waits like a
  suspended handler (state waiting, suspend_on 'flowslot.slices', attempt not
  counted) and spawns one upstream want per missing slice, whose parent is
  the build; each upstream want that ends tells the build (build_news): when
  every missing slice is live the build is ready again, when one failed the
  build fails for good with that slice named.

  Applying functions take an `out` table: out.sent (messages written),
  out.ready (id, lane, id, lane, ... to hint), out.dispatch (execution ids whose terminal
  transition the dispatcher must settle), and optionally out.lease(e): a build
  this call makes ready that the hook leases at once to the calling worker
  (slice_missing, slice_complete in lua/32_missing.lua) goes into no ready set
  and no hint.
]]

local MAX_WANT_SLICES = 100
local MAX_REASON = 2000
local BUILD_WAIT = 'flowslot.slices'  -- suspend_on of a build waiting for missing slices

-- A want id is a UUID whose first four hex digits are its partition; an
-- execution id is e_<4 hex digits of partition>_...
local function want_partition(id) return tonumber(string.sub(id, 1, 4), 16) end
local function exec_partition(id) return tonumber(string.sub(id, 3, 6), 16) end

local function new_out() return {sent = 0, ready = {}, dispatch = {}} end

local function out_reply(outcome, out)
  return {outcome, out.sent, out.ready, out.dispatch}
end

local function decode_body(text)
  local ok, body = pcall(cjson.decode, text or '')
  if not ok or type(body) ~= 'table' then raise('BAD_ARGS', 'body must be a JSON object') end
  return body
end

-- Create an execution from a spec Python checked and encoded (engine/wants.py
-- build_spec): ready now, in its lane's ready set, or leased at once to the
-- caller when `out` has a lease hook that takes it (e.state is then 'leased').
local function create_execution(prefix, id, spec, now, extra, out)
  local key = K.execution(prefix, id)
  local deadline = 0
  if tonumber(spec.deadline_in_ms or 0) > 0 then deadline = now + tonumber(spec.deadline_in_ms) end
  rcall('HSET', key, 'id', id, 'task', spec.task, 'lane', spec.lane, 'payload', spec.payload,
    'priority', spec.priority, 'attempts', 0, 'max_attempts', spec.max_attempts,
    'backoff_ms', spec.backoff_ms, 'backoff_max_ms', spec.backoff_max_ms,
    'created_ms', now, 'deadline_ms', deadline, 'epoch', 0, 'ready_ms', now, unpack(extra))
  if deadline > 0 then rcall('ZADD', K.deadlines(prefix), deadline, id) end
  local e = {id = id, lane = spec.lane, priority = spec.priority, task = spec.task, payload = spec.payload,
             attempts = 0, deadline_ms = deadline, epoch = 0}
  move(prefix, e, 'ready')
  if out and out.lease and out.lease(e) then return e end
  rcall('ZADD', K.ready(prefix, spec.lane), ready_score(tonumber(spec.priority), now), id)
  return e
end

-- deliver(prefix, from_partition, to_partition, kind, body, now, out), defined below the
-- functions it applies (which call it in turn).
local deliver

-- The want's state change, its counters and event; a terminal want leaves the
-- due index and tells its parent build (an upstream want) what came of it.
local function want_move(prefix, w, to, now, detail, out)
  local from = w.state or ''
  if from == '' then
    if to ~= 'waiting' then raise('BUG', 'want ' .. w.id .. ' cannot be created ' .. to) end
  elseif WANT_TRANSITIONS[from] == nil or WANT_TRANSITIONS[from][to] ~= 1 then
    raise('BUG', 'want ' .. w.id .. ' cannot move from ' .. from .. ' to ' .. to)
  end
  rcall('XADD', K.events(prefix), 'MAXLEN', '~', EVENTS_MAXLEN, '*',
    'want', w.id, 'from', from, 'to', to, 'detail', detail or '')
  local key = K.want(prefix, w.id)
  rcall('HSET', key, 'state', to, 'updated_ms', now)
  local counts = K.want_counts(prefix)  -- written at the call's end, like the lane counters
  if from ~= '' then note_count(counts, from, -1) end
  note_count(counts, to, 1)
  w.state = to
  if not WANT_TERMINAL[to] then return end
  rcall('HSET', key, 'finished_ms', now, 'reason', string.sub(detail or '', 1, MAX_REASON))
  rcall('ZREM', K.want_due(prefix), 'sla:' .. w.id, 'ttl:' .. w.id)
  rcall('ZADD', K.wants_done(prefix), now, w.id)
  local home = want_partition(w.id)
  for _, s in ipairs(cjson.decode(w.slices or '[]')) do
    if tonumber(s.partition) == home then rcall('SREM', K.slice_wants(prefix, s.name), w.id) end
  end
  if w.parent and w.parent ~= '' then
    local body = {exec = w.parent, dep = w.first_slice, want = w.id, outcome = 'failed',
                  root = w.root or w.first_slice, error = w.root_error or detail or to}
    if to == 'satisfied' then body.outcome = 'live' end
    deliver(prefix, home, exec_partition(w.parent), 'build_news', body, now, out)
  end
end

-- The fields of a want that its news and its move read.
local NEWS_FIELDS = {'id', 'state', 'acked', 'total', 'slices', 'parent', 'first_slice', 'root'}

-- What one slice's news does to a want (in the want's partition).
local function apply_want_news(prefix, body, now, out)
  local values = rcall('HMGET', K.want(prefix, body.want), unpack(NEWS_FIELDS))
  local w = {}
  for i, name in ipairs(NEWS_FIELDS) do
    if values[i] then w[name] = values[i] end
  end
  if not w.state or WANT_TERMINAL[w.state] then return 'ignored' end
  local wsl = K.want_slices(prefix, w.id)
  local known = rcall('HGET', wsl, body.slice)
  if not known or known == 'live' or known == 'failed' then return 'ignored' end
  local acked = tonumber(w.acked or 0)
  if known == 'requested' then acked = acked + 1 end
  if body.news == 'failed' then
    rcall('HSET', wsl, body.slice, 'failed')
    rcall('HSET', K.want(prefix, w.id), 'root', body.root, 'acked', acked)
    w.root, w.root_error = body.root, tostring(body.error)
    local to = 'failed'
    if body.root ~= body.slice then to = 'upstream_failed' end
    want_move(prefix, w, to, now, body.root .. ' failed: ' .. tostring(body.error), out)
    return to
  end
  rcall('HSET', wsl, body.slice, body.news)
  rcall('HSET', K.want(prefix, w.id), 'acked', acked)
  if body.news == 'live' then
    local pending = rcall('HINCRBY', K.want(prefix, w.id), 'pending', -1)
    if pending <= 0 then
      want_move(prefix, w, 'satisfied', now, 'every slice is live', out)
      return 'satisfied'
    end
  end
  if w.state == 'waiting' and acked >= tonumber(w.total) then
    want_move(prefix, w, 'building', now, 'every slice is live or being built', out)
  end
  return w.state
end

-- A build waiting for missing slices runs again: out of the waiting index, its
-- own deadline back, ready (the attempt was not counted).
local function resume_build(prefix, e, now, out)
  rcall('ZREM', K.waiting(prefix), e.id)
  rcall('ZREM', K.build_waits(prefix), e.id)
  local deadline = tonumber(e.deadline_ms or 0)
  if deadline > 0 then rcall('ZADD', K.deadlines(prefix), deadline, e.id) end
  move(prefix, e, 'ready', {'ready_ms', now}, 'every missing slice is live')
  rcall('HDEL', K.execution(prefix, e.id), 'suspend_on')
  if out.lease and out.lease(e) then return end  -- leased at once to the caller (slice_complete)
  if enqueue_ready(prefix, e, now) then
    out.ready[#out.ready + 1] = e.id
    out.ready[#out.ready + 1] = e.lane
  end
end

-- What an upstream want's end does to the build that spawned it (in the build's partition).
local function apply_build_news(prefix, body, now, out)
  local e = hash_table(rcall('HGETALL', K.execution(prefix, body.exec)))
  if e.state ~= 'waiting' or e.suspend_on ~= BUILD_WAIT then return 'ignored' end
  local mkey = K.missing(prefix, e.id)
  local current = rcall('HGET', mkey, body.dep)
  if current ~= body.want .. '|waiting' then return 'ignored' end
  if body.outcome == 'live' then
    rcall('HSET', mkey, body.dep, body.want .. '|live')
    if rcall('HINCRBY', K.execution(prefix, e.id), 'missing_left', -1) <= 0 then
      resume_build(prefix, e, now, out)
      return 'ready'
    end
    return 'waiting'
  end
  rcall('HSET', mkey, body.dep, body.want .. '|failed')
  leave_waits(prefix, e)
  local err = string.sub(tostring(body.error), 1, MAX_REASON)
  rcall('HSET', K.execution(prefix, e.id), 'up_root', body.root, 'up_error', err)
  move(prefix, e, 'failed', {'finished_ms', now, 'error_kind', 'upstream_failed',
    'error_msg', 'missing slice ' .. body.dep .. ' did not become live: ' .. err}, 'upstream_failed')
  if finish(prefix, e, now) == 1 then out.dispatch[#out.dispatch + 1] = e.id end
  return 'failed'
end

-- "dependency cycle: A → B → A" when the slices a want descends from (chain)
-- meet the slices that `name`'s current build waits for; nil otherwise.
local function cycle_through_build(prefix, build, name, chain)
  if not build or #chain == 0 then return nil end
  local waits_for = rcall('HKEYS', K.missing(prefix, build))
  if #waits_for == 0 then return nil end
  local waiting = {}
  for _, m in ipairs(waits_for) do waiting[m] = 1 end
  for i, c in ipairs(chain) do
    if waiting[c] then
      local path = {}
      for j = i, #chain do path[#path + 1] = chain[j] end
      path[#path + 1] = name
      path[#path + 1] = c
      return 'dependency cycle: ' .. table.concat(path, ' → ')
    end
  end
  return nil
end

-- A want asks a slice for itself (in the slice's partition): answered at once
-- when live, else it waits for the build, which this starts when none runs.
local function apply_request(prefix, body, now, out)
  local name, spec = body.slice, body.spec
  local here = tonumber(spec.partition)
  local home = want_partition(body.want)
  local skey = K.slice(prefix, name)
  local state, build = unpack(rcall('HMGET', skey, 'state', 'build'))
  state = state or 'missing'
  local news = {want = body.want, slice = name, news = 'building'}
  if state == 'live' and not body.force then
    news.news = 'live'
  elseif state == 'building' then
    local cycle = cycle_through_build(prefix, build, name, body.chain or {})
    if cycle then
      news.news, news.root, news.error = 'failed', name, cycle
    else
      rcall('SADD', K.slice_wants(prefix, name), body.want)
    end
  else
    local chain = cjson.encode(body.chain or {})
    local e = create_execution(prefix, spec.build_id, spec, now, {'slice', name, 'chain', chain,
      'data_ts_ms', body.data_ts_ms, 'sla_ms', body.sla_ms, 'ttl_ms', body.ttl_ms}, out)
    slice_move(prefix, name, state, 'building', {'name', name, 'build', e.id, 'task', spec.task,
      'partition', here},
      now, 'build ' .. e.id .. ' for want ' .. body.want)
    if e.state == 'ready' then
      out.ready[#out.ready + 1] = e.id
      out.ready[#out.ready + 1] = e.lane
    end
    rcall('SADD', K.slice_wants(prefix, name), body.want)
  end
  deliver(prefix, here, home, 'want_news', news, now, out)
  return news.news
end

-- Record a want (in its home partition) and ask each of its slices.
local function apply_create(prefix, body, now, out)
  local id = body.want
  local key = K.want(prefix, id)
  local existing = rcall('HGET', key, 'state')
  if existing then return existing end
  local slices = body.slices
  local home = want_partition(id)
  local sla_due, ttl_due = -1, -1
  if tonumber(body.sla_ms) >= 0 then sla_due = tonumber(body.data_ts_ms) + tonumber(body.sla_ms) end
  if tonumber(body.ttl_ms) >= 0 then ttl_due = tonumber(body.data_ts_ms) + tonumber(body.ttl_ms) end
  local names = {}  -- what the want keeps of its slices: the build specs served their requests
  for i, s in ipairs(slices) do names[i] = {name = s.name, partition = s.partition} end
  local w = {id = id, slices = cjson.encode(names), parent = body.parent or '',
             first_slice = slices[1].name}
  rcall('HSET', key, 'id', id, 'slices', w.slices, 'first_slice', w.first_slice, 'total', #slices,
    'pending', #slices, 'acked', 0, 'data_ts_ms', body.data_ts_ms, 'sla_ms', body.sla_ms,
    'ttl_ms', body.ttl_ms, 'sla_due_ms', sla_due, 'ttl_due_ms', ttl_due, 'source', body.source or '',
    'comment', body.comment or '', 'parent', w.parent, 'chain', cjson.encode(body.chain or {}),
    'force', body.force and 1 or 0, 'breach_task', body.breach_task or '', 'created_ms', now)
  want_move(prefix, w, 'waiting', now, body.source, out)
  rcall('ZADD', K.wants(prefix), now, id)
  if sla_due >= 0 then rcall('ZADD', K.want_due(prefix), sla_due, 'sla:' .. id) end
  if ttl_due >= 0 then
    if ttl_due <= now then
      want_move(prefix, w, 'expired', now, 'its TTL had passed when it was made', out)
      return w.state
    end
    rcall('ZADD', K.want_due(prefix), ttl_due, 'ttl:' .. id)
  end
  local wsl = K.want_slices(prefix, id)
  for _, s in ipairs(slices) do rcall('HSET', wsl, s.name, 'requested') end
  for _, s in ipairs(slices) do
    local request = {want = id, slice = s.name, spec = s.spec, chain = body.chain, force = body.force,
                     data_ts_ms = body.data_ts_ms, sla_ms = body.sla_ms, ttl_ms = body.ttl_ms}
    deliver(prefix, home, tonumber(s.partition), 'want_request', request, now, out)
  end
  return rcall('HGET', key, 'state')
end

-- Apply a message of `kind` here.
local function apply(kind, prefix, body, now, out)
  if kind == 'want_create' then return apply_create(prefix, body, now, out) end
  if kind == 'want_request' then return apply_request(prefix, body, now, out) end
  if kind == 'want_news' then return apply_want_news(prefix, body, now, out) end
  if kind == 'build_news' then return apply_build_news(prefix, body, now, out) end
  raise('BAD_ARGS', 'unknown message kind ' .. tostring(kind))
end

-- Apply a message here when it is for this partition, else put it in the outbox.
function deliver(prefix, from_partition, to_partition, kind, body, now, out)
  if from_partition == to_partition then return apply(kind, prefix, body, now, out) end
  outbox_send(prefix, kind, to_partition, body)
  out.sent = out.sent + 1
  return 'sent'
end

-- After the build of up.slice ended: tell up to max_count waiting wants the
-- slice is live or failed. Returns true when none is left to tell.
local function settle_slice(prefix, up, max_count, now, out)
  local name = up.slice
  local state, build, root, err, here = unpack(rcall('HMGET', K.slice(prefix, name), 'state', 'build',
    'root', 'error', 'partition'))
  if build ~= up.id or (state ~= 'live' and state ~= 'failed') then return true end
  local swants = K.slice_wants(prefix, name)
  local news = 'live'
  if state == 'failed' then news = 'failed' end
  for _, want in ipairs(rcall('SPOP', swants, max_count)) do
    deliver(prefix, tonumber(here), want_partition(want), 'want_news',
      {want = want, slice = name, news = news, root = root, error = err}, now, out)
  end
  return rcall('SCARD', swants) == 0
end

-- The body of a message applied by its own call: checked, then applied once.
local function apply_message(kind, keys, args)
  local msg_id = args[1] or ''
  local body = decode_body(args[2])
  local prefix = prefix_of(keys[1])
  local out = new_out()
  if msg_id ~= '' and not outbox_first(prefix, msg_id) then return out_reply('duplicate', out) end
  return out_reply(apply(kind, prefix, body, now_ms(), out), out)
end

--[[ want_create: record a want and ask each of its slices (a live slice answers at
  once; a slice nobody builds gets one build). Also the target of 'want_create'
  messages (an upstream want spawned in another partition). Idempotent per want id.
  KEYS[1] want     HASH   the new want (its partition: the first slice's)
  ARGV[1] msg_id ('' for a direct call)  ARGV[2] body (JSON: want, slices [{name, partition,
    spec}], data_ts_ms, sla_ms, ttl_ms (-1: none), source, comment, force, parent, chain, breach_task)
  Derived: build_waits, counts, deadlines, done, edges_out, events, execution, flow, flow_done,
    flow_held, flows_done, inbox, leases, missing, outbox, outbox_msgs, outbox_seq,
    pending_dispatch, ready, slice, slice_wants, slices, terminal, waiting, waits, want,
    want_counts, want_due, want_slices, wants, wants_done
  Reply:  {state (or 'duplicate'), messages sent, {id, lane, ... to hint}, {id to dispatch...}}
  Errors: BAD_ARGS ]]
register('want_create', function(keys, args)
  local body = decode_body(args[2])
  if type(body.slices) ~= 'table' or #body.slices < 1 or #body.slices > MAX_WANT_SLICES then
    raise('BAD_ARGS', 'a want names 1..' .. MAX_WANT_SLICES .. ' slices')
  end
  return apply_message('want_create', keys, args)
end)

--[[ want_request: a want in another partition asks this partition's slice for itself.
  KEYS[1] slice    HASH   the slice
  ARGV[1] msg_id  ARGV[2] body (JSON: want, slice, spec, chain, force, data_ts_ms, sla_ms, ttl_ms)
  Derived: build_waits, counts, deadlines, done, edges_out, events, execution, flow, flow_done,
    flow_held, flows_done, inbox, leases, missing, outbox, outbox_msgs, outbox_seq,
    pending_dispatch, ready, slice, slice_wants, slices, terminal, waiting, waits, want,
    want_counts, want_due, want_slices, wants, wants_done
  Reply:  {outcome, messages sent, {id, lane, ... to hint}, {id to dispatch...}}
  Errors: BAD_ARGS ]]
register('want_request', function(keys, args)
  return apply_message('want_request', keys, args)
end)

--[[ want_news: a slice in another partition tells a want it is building, live or failed.
  KEYS[1] want     HASH   the want
  ARGV[1] msg_id  ARGV[2] body (JSON: want, slice, news, root, error)
  Derived: build_waits, counts, deadlines, done, edges_out, events, execution, flow, flow_done,
    flow_held, flows_done, inbox, leases, missing, outbox, outbox_msgs, outbox_seq,
    pending_dispatch, ready, slice, slice_wants, slices, terminal, waiting, waits, want,
    want_counts, want_due, want_slices, wants, wants_done
  Reply:  {outcome, messages sent, {id, lane, ... to hint}, {id to dispatch...}}
  Errors: BAD_ARGS ]]
register('want_news', function(keys, args)
  return apply_message('want_news', keys, args)
end)

--[[ build_news: an upstream want in another partition tells the build that spawned it
  whether its slice became live.
  KEYS[1] exec     HASH   the build waiting for missing slices
  ARGV[1] msg_id  ARGV[2] body (JSON: exec, dep, want, outcome, root, error)
  Derived: build_waits, counts, deadlines, done, edges_out, events, execution, flow, flow_done,
    flow_held, flows_done, inbox, leases, missing, outbox, outbox_msgs, outbox_seq,
    pending_dispatch, ready, slice, slice_wants, slices, terminal, waiting, waits, want,
    want_counts, want_due, want_slices, wants, wants_done
  Reply:  {outcome, messages sent, {id, lane, ... to hint}, {id to dispatch...}}
  Errors: BAD_ARGS ]]
register('build_news', function(keys, args)
  return apply_message('build_news', keys, args)
end)

--[[ want_cancel: cancel a want that has not ended (an upstream want's build then fails).
  KEYS[1] want     HASH   the want
  ARGV[1] reason
  Derived: build_waits, counts, deadlines, done, edges_out, events, execution, flow, flow_done,
    flow_held, flows_done, leases, missing, outbox, outbox_msgs, outbox_seq, pending_dispatch,
    ready, slice, slice_wants, slices, terminal, waiting, waits, want, want_counts, want_due,
    want_slices, wants, wants_done
  Reply:  {previous_state, messages sent, {id, lane, ... to hint}, {id to dispatch...}}
  Errors: NOT_FOUND, INVALID_STATE ]]
register('want_cancel', function(keys, args)
  local w = hash_table(rcall('HGETALL', keys[1]))
  if not w.state then raise('NOT_FOUND', 'no want ' .. keys[1]) end
  if WANT_TERMINAL[w.state] then raise('INVALID_STATE', 'want ' .. w.id .. ' is ' .. w.state) end
  local out, previous = new_out(), w.state
  want_move(prefix_of(keys[1]), w, 'canceled', now_ms(), 'canceled: ' .. (args[1] or ''), out)
  return out_reply(previous, out)
end)

--[[ slice_invalidate: a live (or failed) slice becomes missing; the next want builds it.
  KEYS[1] slice    HASH   the slice
  ARGV[1] reason
  Derived: events, slice, slices
  Reply:  previous state ('missing' when there was nothing to invalidate)
  Errors: INVALID_STATE ]]
register('slice_invalidate', function(keys, args)
  local state, name = unpack(rcall('HMGET', keys[1], 'state', 'name'))
  if not state or state == 'missing' then return 'missing' end
  if state == 'building' then
    raise('INVALID_STATE', 'slice ' .. name .. ' is being built: invalidate it once its build ended')
  end
  slice_move(prefix_of(keys[1]), name, state, 'missing', {'live_ms', 0}, now_ms(),
    'invalidated: ' .. (args[1] or ''))
  return state
end)

--[[ want_due: the wants scanner. Wants past data_timestamp + sla_s that are not
  satisfied are flagged breached (event, wants_breached index, and the app's
  on_sla_breach task when it has one); wants past data_timestamp + ttl_s
  that have not ended expire.
  KEYS[1] due      ZSET   sla:<want id> / ttl:<want id> by due time
  ARGV[1] max_count
  Derived: build_waits, counts, deadlines, done, edges_out, events, execution, flow, flow_done,
    flow_held, flows_done, leases, missing, outbox, outbox_msgs, outbox_seq, pending_dispatch,
    ready, slice, slice_wants, slices, terminal, waiting, waits, want, want_counts, want_due,
    want_slices, wants, wants_breached, wants_done
  Reply:  {{breached want id...}, {expired want id...}, messages sent, {id, lane, ... to hint},
           {id to dispatch...}, entries read}
  Errors: BAD_ARGS ]]
register('want_due', function(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local out = new_out()
  local breached, expired = {}, {}
  local due = rcall('ZRANGEBYSCORE', keys[1], '-inf', now, 'LIMIT', 0, max_count)
  for _, member in ipairs(due) do
    rcall('ZREM', keys[1], member)
    local kind, id = string.match(member, '^(%a+):(.+)$')
    local w = hash_table(rcall('HGETALL', K.want(prefix, id or '')))
    if w.state and not WANT_TERMINAL[w.state] and kind == 'sla' then
      rcall('HSET', K.want(prefix, id), 'breached_ms', now)
      rcall('ZADD', K.wants_breached(prefix), now, id)
      rcall('XADD', K.events(prefix), 'MAXLEN', '~', EVENTS_MAXLEN, '*',
        'want', id, 'from', w.state, 'to', w.state, 'detail', 'sla breached')
      breached[#breached + 1] = id
      if w.breach_task and w.breach_task ~= '' then
        local spec = cjson.decode(w.breach_task)
        local eid = 'e_' .. string.sub(id, 1, 4) .. '_' .. string.format('%011x', now % 17592186044416)
          .. string.sub((string.gsub(id, '-', '')), -8)
        local e = create_execution(prefix, eid, spec, now, {'want', id})
        rcall('HSET', K.want(prefix, id), 'breach_execution', eid)
        out.ready[#out.ready + 1] = e.id
        out.ready[#out.ready + 1] = e.lane
      end
    elseif w.state and not WANT_TERMINAL[w.state] and kind == 'ttl' then
      want_move(prefix, w, 'expired', now, 'TTL passed (data_timestamp + ttl_s) before it was satisfied',
        out)
      expired[#expired + 1] = id
    end
  end
  return {breached, expired, out.sent, out.ready, out.dispatch, #due}
end)

--[[ want_purge: delete wants that ended at least age_ms ago (their hash, what they
  knew of their slices, their index entries); the slices stay.
  KEYS[1] done     ZSET   ended wants by when they ended
  ARGV[1] age_ms  ARGV[2] max_count
  Derived: want, want_counts, want_slices, wants, wants_breached
  Reply:  wants purged
  Errors: BAD_ARGS ]]
register('want_purge', function(keys, args)
  local age_ms = int_arg(args[1], 'age_ms', 0, 1e13)
  local max_count = int_arg(args[2], 'max_count', 1, MAX_BATCH)
  local prefix = prefix_of(keys[1])
  local ids = rcall('ZRANGEBYSCORE', keys[1], '-inf', now_ms() - age_ms, 'LIMIT', 0, max_count)
  for _, id in ipairs(ids) do
    local state = rcall('HGET', K.want(prefix, id), 'state')
    rcall('UNLINK', K.want(prefix, id), K.want_slices(prefix, id))
    rcall('ZREM', keys[1], id)
    rcall('ZREM', K.wants(prefix), id)
    rcall('ZREM', K.wants_breached(prefix), id)
    if state and rcall('HINCRBY', K.want_counts(prefix), state, -1) <= 0 then
      rcall('HDEL', K.want_counts(prefix), state)
    end
  end
  return #ids
end)
