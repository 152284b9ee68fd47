--[[ Execution lifecycle outside a lease: submit, cancel, promote delayed. ]]

local MAX_PAYLOAD = 64 * 1024 * 1024

-- The fields of a new standalone execution (move() adds its state): one HSET.
-- Fields at their default are not stored (fewer arguments per submit): readers
-- take a missing attempts and epoch as 0 until the first claim writes them, a
-- missing deadline_ms as 0 (none), a missing priority, max_attempts, backoff_ms
-- or backoff_max_ms as EXEC_DEFAULTS says, and a missing ready_ms of an
-- execution submitted ready as its created_ms.
local function submit_fields(id, task, lane, payload, priority, max_attempts, backoff_ms, backoff_max_ms,
                             now, deadline, delay_ms)
  local fields = {'id', id, 'task', task, 'lane', lane, 'payload', payload, 'created_ms', now}
  local n = 10
  if priority ~= EXEC_DEFAULTS.priority then fields[n + 1] = 'priority'; fields[n + 2] = priority; n = n + 2 end
  if max_attempts ~= EXEC_DEFAULTS.max_attempts then
    fields[n + 1] = 'max_attempts'; fields[n + 2] = max_attempts; n = n + 2
  end
  if backoff_ms ~= EXEC_DEFAULTS.backoff_ms then fields[n + 1] = 'backoff_ms'; fields[n + 2] = backoff_ms; n = n + 2 end
  if backoff_max_ms ~= EXEC_DEFAULTS.backoff_max_ms then
    fields[n + 1] = 'backoff_max_ms'; fields[n + 2] = backoff_max_ms; n = n + 2
  end
  if deadline > 0 then fields[n + 1] = 'deadline_ms'; fields[n + 2] = deadline; n = n + 2 end
  if delay_ms > 0 then fields[n + 1] = 'due_ms'; fields[n + 2] = now + delay_ms end
  return fields
end

--[[ exec_submit: create one execution, ready now or delayed; idempotent.
  KEYS[1] exec     HASH   the new execution
  KEYS[2] ready    ZSET   ready set of its lane
  KEYS[3] delayed  ZSET   delayed executions by due time
  KEYS[4] idem     STRING idempotency key -> id (unused when idem_ttl_ms is 0)
  ARGV[1] id  ARGV[2] task  ARGV[3] lane  ARGV[4] payload  ARGV[5] priority
  ARGV[6] delay_ms  ARGV[7] max_attempts  ARGV[8] backoff_ms
  ARGV[9] backoff_max_ms  ARGV[10] deadline_in_ms  ARGV[11] idem_ttl_ms
  Derived: deadlines, counts, events, flows_done, execution, flow, flow_done
  Reply:  {id, state, created (1 new, 0 existing)}
  Errors: BAD_ARGS ]]
local function exec_submit(keys, args)
  local id = str_arg(args[1], 'id', 64)
  local task = str_arg(args[2], 'task', 256)
  local lane = str_arg(args[3], 'lane', 64)
  local payload = args[4] or ''
  if #payload > MAX_PAYLOAD then raise('BAD_ARGS', 'payload over ' .. MAX_PAYLOAD .. ' bytes') end
  local priority = int_arg(args[5], 'priority', 0, 255)
  local delay_ms = int_arg(args[6], 'delay_ms', 0, 1e13)
  local max_attempts = int_arg(args[7], 'max_attempts', 1, 1000)
  local backoff_ms = int_arg(args[8], 'backoff_ms', 0, 1e10)
  local backoff_max_ms = int_arg(args[9], 'backoff_max_ms', 0, 1e10)
  local deadline_in_ms = int_arg(args[10], 'deadline_in_ms', 0, 1e13)
  local idem_ttl_ms = int_arg(args[11], 'idem_ttl_ms', 0, 1e13)
  local prefix = prefix_of(keys[1])

  if idem_ttl_ms > 0 then
    local existing = rcall('GET', keys[4])
    if existing then
      local state = rcall('HGET', K.execution(prefix, existing), 'state')
      if state then return {existing, state, 0} end
    end
  end
  if rcall('EXISTS', keys[1]) == 1 then return {id, rcall('HGET', keys[1], 'state'), 0} end

  local now = now_ms()
  local state = 'ready'
  if delay_ms > 0 then state = 'delayed' end
  local deadline = 0
  if deadline_in_ms > 0 then deadline = now + deadline_in_ms end
  local fields = submit_fields(id, task, lane, payload, priority, max_attempts, backoff_ms, backoff_max_ms,
    now, deadline, delay_ms)
  if idem_ttl_ms > 0 then fields[#fields + 1] = 'idem'; fields[#fields + 1] = keys[4] end
  move(prefix, {id = id, lane = lane}, state, fields)
  if state == 'ready' then
    rcall('ZADD', keys[2], ready_score(priority, now), id)
  else
    rcall('ZADD', keys[3], now + delay_ms, id)
  end
  if deadline > 0 then rcall('ZADD', K.deadlines(prefix), deadline, id) end
  if idem_ttl_ms > 0 then rcall('SET', keys[4], id, 'PX', idem_ttl_ms) end
  return {id, state, 1}
end
register('exec_submit', exec_submit)

local SUBMIT_MANY_MAX = 100

-- Check one item of exec_submit_many (its ten ARGV from base + 1); a bad value
-- raises BAD_ARGS. Nothing is kept: the write loop reads the ARGV again (int_of
-- finds the integers parsed here), which costs less than a table per item.
local function check_submit_item(args, base)
  str_arg(args[base + 1], 'id', 64)
  str_arg(args[base + 2], 'task', 256)
  str_arg(args[base + 3], 'lane', 64)
  int_arg(args[base + 5], 'priority', 0, 255)
  int_arg(args[base + 6], 'delay_ms', 0, 1e13)
  int_arg(args[base + 7], 'max_attempts', 1, 1000)
  int_arg(args[base + 8], 'backoff_ms', 0, 1e10)
  int_arg(args[base + 9], 'backoff_max_ms', 0, 1e10)
  int_arg(args[base + 10], 'deadline_in_ms', 0, 1e13)
  if #(args[base + 4] or '') > MAX_PAYLOAD then raise('BAD_ARGS', 'payload over ' .. MAX_PAYLOAD .. ' bytes') end
end

-- Every item of exec_submit_many, checked before the first write; the error names
-- the execution whose value is bad. One pcall for the whole list.
local function check_submit_items(args, n)
  local i = 0
  local ok, err = pcall(function()
    for j = 1, n do
      i = j
      check_submit_item(args, 10 * (j - 1))
    end
  end)
  if ok then return end
  if type(err) ~= 'table' or not err.fs then error(err) end
  raise('BAD_ARGS', 'execution ' .. tostring(args[10 * (i - 1) + 1]) .. ' (item ' .. i .. '): '
    .. string.gsub(err.fs, '^BAD_ARGS ', ''))
end

--[[ exec_submit_many: create several executions of one partition, each as exec_submit
  would without an idempotency key. Every item is checked before the first write (the
  error names the execution); the call's clock, event entry, counter writes and one
  ZADD per lane's ready set (and of the delayed set) are shared, and so is the existence
  check of fresh ids (one EXISTS of every key; each is checked alone only when one of them
  exists); per execution remains its HSET.
  KEYS[1] delayed  ZSET   delayed executions of the partition, by due time
  ARGV[1] id  ARGV[2] task  ARGV[3] lane  ARGV[4] payload  ARGV[5] priority
  ARGV[6] delay_ms  ARGV[7] max_attempts  ARGV[8] backoff_ms  ARGV[9] backoff_max_ms
  ARGV[10] deadline_in_ms; then the next execution's ten, at most SUBMIT_MANY_MAX (100)
  Derived: ready, deadlines, counts, events, flows_done, execution, flow, flow_done
  Reply:  {id, state, created (1 new, 0 existing), then the next execution's three, ...}
           one flat triple per execution, in ARGV order
  Errors: BAD_ARGS ]]
local function exec_submit_many(keys, args)
  local n = batch_count(args, 10, SUBMIT_MANY_MAX, 'executions of 10 values')
  check_submit_items(args, n)
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local out, ready, lanes, delayed, deadlines, xkeys, made = {}, {}, {}, {}, {}, {}, {}
  local memo = {}  -- move()'s counters of the last creation, for the next of its kind
  for i = 1, n do xkeys[i] = K.execution(prefix, args[10 * i - 9]) end
  -- One EXISTS for the whole batch (its keys share the partition's slot): fresh ids, the
  -- usual case, cost one command, not one each. Only when one of them exists is each
  -- checked; an id repeated in the batch is found in `made`.
  local any_exists = rcall('EXISTS', unpack(xkeys)) > 0
  for i = 1, n do
    local base = 10 * (i - 1)
    local id, lane = args[base + 1], args[base + 3]
    local key = xkeys[i]
    local j = 3 * i - 2
    if made[id] or (any_exists and rcall('EXISTS', key) == 1) then
      out[j] = id; out[j + 1] = rcall('HGET', key, 'state'); out[j + 2] = 0
    else
      local priority, delay_ms, deadline_in_ms = int_of(args[base + 5]), int_of(args[base + 6]),
        int_of(args[base + 10])
      local state = 'ready'
      if delay_ms > 0 then state = 'delayed' end
      local deadline = 0
      if deadline_in_ms > 0 then
        deadline = now + deadline_in_ms
        deadlines[#deadlines + 1] = deadline; deadlines[#deadlines + 1] = id
      end
      if state == 'ready' then
        if not ready[lane] then ready[lane] = {}; lanes[#lanes + 1] = lane end
        local zadd = ready[lane]
        zadd[#zadd + 1] = ready_score(priority, now); zadd[#zadd + 1] = id
      else
        delayed[#delayed + 1] = now + delay_ms; delayed[#delayed + 1] = id
      end
      move(prefix, {key = key, id = id, lane = lane}, state, submit_fields(id, args[base + 2], lane,
        args[base + 4] or '', priority, int_of(args[base + 7]), int_of(args[base + 8]), int_of(args[base + 9]), now, deadline, delay_ms),
        nil, memo)
      made[id] = 1
      out[j] = id; out[j + 1] = state; out[j + 2] = 1
    end
  end
  for _, lane in ipairs(lanes) do rcall('ZADD', K.ready(prefix, lane), unpack(ready[lane])) end
  if #delayed > 0 then rcall('ZADD', keys[1], unpack(delayed)) end
  if #deadlines > 0 then rcall('ZADD', K.deadlines(prefix), unpack(deadlines)) end
  return out
end
register('exec_submit_many', exec_submit_many)

-- Cancel any non-terminal execution (checked by the caller): leave every
-- index, become terminal. Shared by exec_cancel and flow_cancel.
local function cancel_execution(prefix, e, reason, now)
  leave_waits(prefix, e)
  rcall('ZREM', K.ready(prefix, e.lane), e.id)
  rcall('ZREM', K.delayed(prefix), e.id)
  if e.flow then rcall('ZREM', K.flow_held(prefix, e.flow), e.id) end
  move(prefix, e, 'canceled', {'finished_ms', now, 'error_kind', 'canceled', 'error_msg', reason}, reason)
  return finish(prefix, e, now)
end

--[[ exec_cancel: cancel a non-terminal execution (a leased one too: its
  worker learns it at the next renew, and its late result is refused).
  KEYS[1] exec     HASH   the execution
  ARGV[1] reason
  Derived: ready, delayed, leases, deadlines, terminal, pending_dispatch, counts, events,
    flows_done, execution, done, edges_out, flow, flow_held, flow_done, waits, waiting, outbox, outbox_msgs, outbox_seq,
    build_waits, slice, slices
  Reply:  {previous_state, lane, dispatch (1|0)}; previous_state 'canceled' when it already was
  Errors: NOT_FOUND, INVALID_STATE ]]
local function exec_cancel(keys, args)
  local reason = args[1] or 'canceled'
  local e = hash_table(rcall('HGETALL', keys[1]))
  if not e.state then raise('NOT_FOUND', 'no execution ' .. keys[1]) end
  if e.state == 'canceled' then return {'canceled', e.lane, 0} end
  check_move(e.id, e.state, 'canceled')
  local previous = e.state
  local dispatch = cancel_execution(prefix_of(keys[1]), e, reason, now_ms())
  return {previous, e.lane, dispatch}
end
register('exec_cancel', exec_cancel)

--[[ exec_watch: a result waiter's request for the done marker. finish() pushes
  the marker only for an execution watched here, so a waiter calls this before
  it first blocks on the done list: either the execution is terminal already
  (nothing written; the waiter reads it), or it is marked watched and its
  terminal transition, later, pushes the marker. One slot, so nothing falls in
  between.
  KEYS[1] exec     HASH   the execution
  ARGV:   none
  Derived: none
  Reply:  the execution's state (terminal ones mean: read it now)
  Errors: NOT_FOUND ]]
local function exec_watch(keys, args)
  local state, watched = unpack(rcall('HMGET', keys[1], 'state', 'watched'))
  if not state then raise('NOT_FOUND', 'no execution ' .. keys[1]) end
  if not TERMINAL[state] and watched ~= '1' then rcall('HSET', keys[1], 'watched', '1') end
  return state
end
register('exec_watch', exec_watch)

--[[ exec_promote: make due delayed executions ready: those due at least min_late_ms
  ago by the server's clock (the reconciler's safety net leaves the ones the workers'
  own timers and passes are about to promote; a worker passes 0).
  KEYS[1] delayed  ZSET   delayed executions by due time
  ARGV[1] max_count  ARGV[2] min_late_ms (0, or left out as a worker older than it
  leaves it: every due one)
  Derived: ready, counts, events, flows_done, execution, flow, flow_held, flow_done
  Reply:  {promoted_count, {lane, ...}}  lanes that received work (to hint)
  Errors: BAD_ARGS ]]
local function exec_promote(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local late = 0
  if args[2] ~= nil then late = int_arg(args[2], 'min_late_ms', 0, 1e10) end
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local due = rcall('ZRANGEBYSCORE', keys[1], '-inf', now - late, 'LIMIT', 0, max_count)
  local lanes, seen, promoted = {}, {}, 0
  for _, id in ipairs(due) do
    local e = hash_table(rcall('HGETALL', K.execution(prefix, id)))
    rcall('ZREM', keys[1], id)
    if e.state == 'delayed' then
      move(prefix, e, 'ready', {'ready_ms', now})
      promoted = promoted + 1
      if enqueue_ready(prefix, e, now) and not seen[e.lane] then
        seen[e.lane] = 1
        lanes[#lanes + 1] = e.lane
      end
    end
  end
  return {promoted, lanes}
end
register('exec_promote', exec_promote)
