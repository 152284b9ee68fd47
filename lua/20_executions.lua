--[[ Execution lifecycle outside a lease: submit, cancel, promote delayed. ]]
local function rcall(...) return redis.call(...) end

local MAX_PAYLOAD = 64 * 1024 * 1024

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
  local current = rcall('HGET', keys[1], 'state')
  if current then return {id, current, 0} end

  local now = now_ms()
  local state = 'ready'
  if delay_ms > 0 then state = 'delayed' end
  local deadline = 0
  if deadline_in_ms > 0 then deadline = now + deadline_in_ms end
  -- One HSET: move() writes the state with every other field. Defaults are not
  -- stored (fewer arguments per submit): readers take a missing attempts and epoch
  -- as 0 until the first claim writes them, and a missing deadline_ms as 0 (none).
  local fields = {'id', id, 'task', task, 'lane', lane, 'payload', payload,
    'priority', priority, 'max_attempts', max_attempts,
    'backoff_ms', backoff_ms, 'backoff_max_ms', backoff_max_ms, 'created_ms', now}
  if deadline > 0 then fields[#fields + 1] = 'deadline_ms'; fields[#fields + 1] = deadline end
  if state == 'ready' then
    fields[#fields + 1] = 'ready_ms'; fields[#fields + 1] = now
  else
    fields[#fields + 1] = 'due_ms'; fields[#fields + 1] = now + delay_ms
  end
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

--[[ exec_promote: make due delayed executions ready.
  KEYS[1] delayed  ZSET   delayed executions by due time
  ARGV[1] max_count
  Derived: ready, counts, events, flows_done, execution, flow, flow_held, flow_done
  Reply:  {promoted_count, {lane, ...}}  lanes that received work (to hint)
  Errors: BAD_ARGS ]]
local function exec_promote(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local due = rcall('ZRANGEBYSCORE', keys[1], '-inf', now, 'LIMIT', 0, max_count)
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
