--[[ Retry: run again what did not succeed. A standalone execution goes back
  to ready with fresh attempts; a finished flow re-runs its failed, skipped,
  expired and canceled steps while every succeeded step keeps its result. ]]

local RETRYABLE = {failed = 1, skipped = 1, canceled = 1, expired = 1}

--[[ exec_retry: a failed, canceled or expired standalone execution runs again.
  KEYS[1] exec     HASH   the execution
  Derived: ready, terminal, counts, events, flows_done, execution, done, flow, flow_held,
    flow_done
  Reply:  {previous_state, lane}  (lane to hint)
  Errors: NOT_FOUND, INVALID_STATE ]]
register('exec_retry', function(keys, args)
  local e = hash_table(rcall('HGETALL', keys[1]))
  if not e.state then raise('NOT_FOUND', 'no execution ' .. keys[1]) end
  if e.flow then raise('INVALID_STATE', 'execution ' .. e.id .. ' is a step of flow ' .. e.flow ..
    '; retry the flow') end
  check_move(e.id, e.state, 'ready')
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local previous = e.state
  rcall('ZREM', K.terminal(prefix), e.id)
  rcall('DEL', K.done(prefix, e.id))
  rcall('HDEL', keys[1], 'finished_ms', 'error_kind', 'error_msg', 'result')
  move(prefix, e, 'ready', {'attempts', 0, 'ready_ms', now, 'deadline_ms', 0}, 'retry')
  enqueue_ready(prefix, e, now)
  return {previous, e.lane}
end)

-- Phase 1: every retryable step back to blocked, out of the flow's tallies.
local function retry_reset(prefix, fid, id, now)
  local fkey = K.flow(prefix, fid)
  local e = hash_table(rcall('HGETALL', K.execution(prefix, id)))
  if not RETRYABLE[e.state] then return end
  rcall('HINCRBY', fkey, 'terminal', -1)
  if e.optional ~= '1' then rcall('HINCRBY', fkey, 'bad', -1) end
  rcall('ZREM', K.terminal(prefix), id)
  rcall('ZREM', K.pending_dispatch(prefix), id)
  rcall('DEL', K.done(prefix, id))
  rcall('HDEL', K.execution(prefix, id), 'finished_ms', 'error_kind', 'error_msg', 'result')
  if e.wait_event then
    -- A wait step keeps no attempts, and no deadline until it waits again (start_wait).
    rcall('HDEL', K.execution(prefix, id), 'deadline_ms')
    move(prefix, e, 'blocked', {'dispatch_pos', 0}, 'retry')
  else
    move(prefix, e, 'blocked', {'attempts', 0, 'dispatch_pos', 0, 'deadline_ms', 0}, 'retry')
  end
  rcall('SADD', K.flow_retry(prefix, fid), id)
end

-- Phases 2 and 3 visit the steps being re-run, and any step left blocked.
local function rerun(prefix, fid, id)
  return rcall('SISMEMBER', K.flow_retry(prefix, fid), id) == 1
    or rcall('HGET', K.execution(prefix, id), 'state') == 'blocked'
end

-- Phase 2, for one step: its edges from re-run upstreams are pending again
-- and the gate counters are recounted. The edge hash is read with HSCAN a page
-- at a time (a 20,000-way fan-in spans many calls); counts so far are kept in
-- the flow hash with the cursor. Returns true once the step is done, and the
-- number of edges read.
local function retry_edges(prefix, fid, id, budget)
  local fkey = K.flow(prefix, fid)
  local in_key = K.edges_in(prefix, id)
  local cursor, ok, bad, soft = unpack(rcall('HMGET', fkey, 'retry_cursor', 'retry_ok', 'retry_bad', 'retry_soft'))
  ok, bad, soft = tonumber(ok or 0), tonumber(bad or 0), tonumber(soft or 0)
  local page = rcall('HSCAN', in_key, cursor or '0', 'COUNT', budget)
  local edges = page[2]
  for i = 1, #edges, 2 do
    local up, kind, state = edges[i], string.match(edges[i + 1], '^([%w_]+)|(%w+)$')
    local up_id = rcall('HGET', K.flow_steps(prefix, fid), up)
    if state ~= 'pending' and up_id and rcall('SISMEMBER', K.flow_retry(prefix, fid), up_id) == 1 then
      state = 'pending'
      rcall('HSET', in_key, up, kind .. '|pending')
      rcall('HDEL', K.inputs(prefix, id), up)
    end
    if state ~= 'pending' then
      if kind == 'ref' or kind == 'after' then
        if state == 'satisfied' then ok = ok + 1 else bad = bad + 1 end
      else
        soft = soft + 1
      end
    end
  end
  if page[1] == '0' then
    rcall('HSET', K.execution(prefix, id), 'req_ok', ok, 'req_bad', bad, 'soft_done', soft)
    rcall('HDEL', fkey, 'retry_cursor', 'retry_ok', 'retry_bad', 'retry_soft')
    return true, #edges / 2
  end
  rcall('HSET', fkey, 'retry_cursor', page[1], 'retry_ok', ok, 'retry_bad', bad, 'retry_soft', soft)
  return false, #edges / 2
end

--[[ flow_retry: re-run the failed, skipped, expired and canceled steps of a
  failed or canceled flow, in three bounded phases (reset, edges, settle),
  each walking the flow's steps in order from a position kept in the flow
  hash (the edges phase also keeps an HSCAN cursor within a step's edges);
  call until done is 1. Succeeded steps keep their results.
  KEYS[1] flow     HASH   the flow
  ARGV[1] max_count
  Derived: ready, leases, deadlines, terminal, pending_dispatch, counts, events, flows_done,
    flow_ops, execution, done, edges_in, edges_out, inputs, flow, flow_steps, flow_order,
    flow_held, flow_done, flow_retry (flow_retry: steps being re-run; flow_ops: "retry:<flow>"
    until done; drops an unfinished "cancel:<flow>"), event_buffer, waits, waiting, outbox, outbox_msgs, outbox_seq,
    build_waits, slice, slices
  Reply:  {done (1|0), {id, lane, ... ready}, {skipped id...}}
  Errors: BAD_ARGS, NOT_FOUND, INVALID_STATE ]]
register('flow_retry', function(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local state, phase, pos, fid = unpack(rcall('HMGET', keys[1], 'state', 'retry_phase', 'retry_pos', 'id'))
  if not state then raise('NOT_FOUND', 'no flow ' .. keys[1]) end
  if not phase and state ~= 'failed' and state ~= 'canceled' then
    raise('INVALID_STATE', 'flow ' .. fid .. ' is ' .. state .. '; only failed or canceled flows can be retried')
  end
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local out = {ready = {}, skipped = {}}
  if not phase then
    set_flow_state(prefix, fid, state, 'running', now, 'retry')
    rcall('DEL', K.flow_done(prefix, fid))
    rcall('ZREM', K.flows_done(prefix), fid)
    rcall('HDEL', keys[1], 'finished_ms', 'cancel_pos')
    op_pending(prefix, 'cancel', fid, false, now)  -- a retry supersedes an unfinished cancel
    phase, pos = 'reset', 0
  end
  pos = tonumber(pos or 0)
  local order = K.flow_order(prefix, fid)
  local list_len = rcall('LLEN', order)
  if phase == 'reset' then
    for _, id in ipairs(rcall('LRANGE', order, pos, pos + max_count - 1)) do
      retry_reset(prefix, fid, id, now)
    end
    pos = pos + max_count
  else
    -- One unit per step visited, one per edge read (edges cost a quarter of a step).
    local budget = max_count
    if phase == 'edges' then budget = max_count * 4 end
    for _, id in ipairs(rcall('LRANGE', order, pos, pos + budget - 1)) do
      if budget <= 0 then break end
      budget = budget - 1
      local finished = true
      if rerun(prefix, fid, id) then
        if phase == 'edges' then
          local read
          finished, read = retry_edges(prefix, fid, id, math.max(budget, 10))
          budget = budget - read
        else
          settle(prefix, gate_fields(prefix, id, fid), now, out, 'upstream failed again')
        end
      end
      if not finished then break end
      pos = pos + 1
    end
  end
  local done = 0
  if pos >= list_len then
    if phase == 'reset' then phase = 'edges'
    elseif phase == 'edges' then phase = 'settle'
    else
      rcall('DEL', K.flow_retry(prefix, fid))
      rcall('HDEL', keys[1], 'retry_phase', 'retry_pos', 'retry_cursor', 'retry_ok', 'retry_bad', 'retry_soft')
      op_pending(prefix, 'retry', fid, false, now)
      maybe_finish_flow(prefix, fid, now)
      return {1, out.ready, out.skipped}
    end
    pos = 0
  end
  rcall('HSET', keys[1], 'retry_phase', phase, 'retry_pos', pos)
  op_pending(prefix, 'retry', fid, true, now)
  return {done, out.ready, out.skipped}
end)
