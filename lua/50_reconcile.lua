--[[ The reconciler's functions: each reads a time-ordered index from its due
  end, so the cost of a pass depends on what is due, never on how many
  executions are stored; each is bounded by an ARGV batch size. ]]

--[[ rec_due: members of a time-scored index that came due at least age_ms ago.
  KEYS[1] index    ZSET   scored by time (pending_dispatch, unsealed, ...)
  ARGV[1] age_ms  ARGV[2] max_count
  Derived: none
  Reply:  {member, ...}
  Errors: BAD_ARGS ]]
register('rec_due', function(keys, args)
  local age_ms = int_arg(args[1], 'age_ms', 0, 1e13)
  local max_count = int_arg(args[2], 'max_count', 1, MAX_BATCH)
  return rcall('ZRANGEBYSCORE', keys[1], '-inf', now_ms() - age_ms, 'LIMIT', 0, max_count)
end, {'no-writes'})

--[[ exec_expire_deadlines: executions whose deadline has passed become expired.
  KEYS[1] deadlines ZSET  non-terminal executions by deadline
  ARGV[1] max_count
  Derived: ready, delayed, leases, deadlines, terminal, pending_dispatch, counts, events,
    flows_done, execution, done, edges_out, flow, flow_held, flow_done, waits, waiting, outbox, outbox_msgs, outbox_seq,
    build_waits, slice, slices
  Reply:  {{id, dispatch (1|0)}, ...}
  Errors: BAD_ARGS ]]
register('exec_expire_deadlines', function(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local out = {}
  for _, id in ipairs(rcall('ZRANGEBYSCORE', keys[1], '-inf', now, 'LIMIT', 0, max_count)) do
    local e = hash_table(rcall('HGETALL', K.execution(prefix, id)))
    rcall('ZREM', keys[1], id)
    if e.state and not TERMINAL[e.state] then
      rcall('ZREM', K.ready(prefix, e.lane), id)
      rcall('ZREM', K.delayed(prefix), id)
      if e.flow then rcall('ZREM', K.flow_held(prefix, e.flow), id) end
      if e.state == 'waiting' and e.suspend_on then
        -- A suspended handler: its wait timed out, or the execution's own deadline passed.
        leave_waits(prefix, e)
        local msg = 'no signal ' .. e.suspend_on .. ' within the timeout'
        local kind = 'timeout'
        local wait_deadline = tonumber(e.wait_deadline_ms or 0)
        if wait_deadline == 0 or now < wait_deadline then
          kind, msg = 'deadline', 'deadline passed while waiting for signal ' .. e.suspend_on
        end
        if e.suspend_on == 'flowslot.slices' then  -- a build waiting for missing slices (lua/32_missing.lua)
          kind, msg = 'deadline', 'deadline passed while waiting for missing slices'
        end
        move(prefix, e, 'expired', {'finished_ms', now, 'error_kind', kind, 'error_msg', msg}, kind)
      elseif e.state == 'waiting' then
        -- A wait that timed out: expired (children get defaults or are skipped) or failed.
        leave_waits(prefix, e)
        local to = 'expired'
        if e.on_timeout == 'fail' then to = 'failed' end
        local what = e.wait_event .. ' event'
        if e.wait_event == 'flowslot.signal' then what = 'signal' end  -- engine/events.py SIGNAL_EVENT
        move(prefix, e, to, {'finished_ms', now, 'error_kind', 'timeout',
          'error_msg', 'no ' .. what .. ' within the timeout'}, 'timeout')
      else
        move(prefix, e, 'expired', {'finished_ms', now, 'error_kind', 'deadline',
          'error_msg', 'deadline passed while ' .. e.state}, 'deadline')
      end
      out[#out + 1] = {id, finish(prefix, e, now)}
    end
  end
  return out
end)

--[[ rec_stale_ready: lanes whose first ready execution has waited at least
  age_ms (its hint was lost, or no worker serves the lane).
  KEYS[1] counts   HASH   "<lane>:<state>" -> count, kept by every transition
  ARGV[1] age_ms  ARGV[2] max_lanes
  Derived: ready, execution
  Reply:  {lane, ...}
  Errors: BAD_ARGS ]]
register('rec_stale_ready', function(keys, args)
  local age_ms = int_arg(args[1], 'age_ms', 0, 1e13)
  local max_lanes = int_arg(args[2], 'max_lanes', 1, MAX_BATCH)
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local flat = rcall('HGETALL', keys[1])
  local lanes = {}
  for i = 1, #flat, 2 do
    local lane = string.match(flat[i], '^(.*):ready$')
    if lane and tonumber(flat[i + 1]) > 0 and #lanes < max_lanes then
      local head = rcall('ZRANGE', K.ready(prefix, lane), 0, 0)[1]
      if head then
        local ready_ms, created_ms = unpack(rcall('HMGET', K.execution(prefix, head), 'ready_ms', 'created_ms'))
        local since = tonumber(ready_ms or created_ms or now)  -- submitted ready: ready_ms not stored
        if now - since >= age_ms then lanes[#lanes + 1] = lane end
      end
    end
  end
  return lanes
end, {'no-writes'})

-- Delete an execution with every key of its own, leave every index, and
-- take it out of its lane's counters.
local function delete_execution(prefix, id)
  local state, lane = unpack(rcall('HMGET', K.execution(prefix, id), 'state', 'lane'))
  -- UNLINK: a 20,000-way fan-in's edge and input hashes are freed in the background
  rcall('UNLINK', K.execution(prefix, id), K.done(prefix, id), K.edges_in(prefix, id),
    K.edges_out(prefix, id), K.inputs(prefix, id), K.defaults(prefix, id), K.signals(prefix, id),
    K.missing(prefix, id))
  for _, index in ipairs({K.terminal(prefix), K.pending_dispatch(prefix), K.leases(prefix),
      K.delayed(prefix), K.deadlines(prefix)}) do
    rcall('ZREM', index, id)
  end
  if state and lane then
    rcall('ZREM', K.ready(prefix, lane), id)
    local counts, field = K.counts(prefix), lane .. ':' .. state
    rcall('HINCRBY', counts, field, -1)
  end
end

-- Trim the event stream to `cutoff` (ms); a stream left with only older
-- entries (approximate trimming keeps part of a node) is deleted whole.
local function trim_events(prefix, cutoff)
  local events = K.events(prefix)
  rcall('XTRIM', events, 'MINID', '~', cutoff)
  local newest = rcall('XREVRANGE', events, '+', '-', 'COUNT', 1)[1]
  if newest == nil or tonumber(string.match(newest[1], '^(%d+)')) < cutoff then
    rcall('DEL', events, K.check_cursor(prefix))  -- no events left: no place to resume from
  end
end

-- Drop the lane counters that are zero (bounded by lanes x states).
local function tidy_counts(prefix)
  local counts = K.counts(prefix)
  local flat = rcall('HGETALL', counts)
  for i = 1, #flat, 2 do
    if tonumber(flat[i + 1]) == 0 then rcall('HDEL', counts, flat[i]) end
  end
end

--[[ rec_purge: delete standalone executions that finished at least age_ms ago
  (flow steps are deleted with their flow), and trim the event stream to the
  same age.
  KEYS[1] terminal ZSET   terminal executions by finish time
  ARGV[1] age_ms  ARGV[2] max_count
  Derived: ready, delayed, leases, deadlines, terminal, pending_dispatch, counts, events,
    check_cursor, execution, done, edges_in, edges_out, inputs, defaults, signals (and each purged
    execution's idempotency key, named in its hash), missing
  Reply:  purged_count
  Errors: BAD_ARGS ]]
register('rec_purge', function(keys, args)
  local age_ms = int_arg(args[1], 'age_ms', 0, 1e13)
  local max_count = int_arg(args[2], 'max_count', 1, MAX_BATCH)
  local prefix = prefix_of(keys[1])
  local cutoff = now_ms() - age_ms
  local purged = 0
  for _, id in ipairs(rcall('ZRANGEBYSCORE', keys[1], '-inf', cutoff, 'LIMIT', 0, max_count)) do
    local flow, idem = unpack(rcall('HMGET', K.execution(prefix, id), 'flow', 'idem'))
    if flow then
      rcall('ZREM', keys[1], id)
    else
      if idem and rcall('GET', idem) == id then rcall('DEL', idem) end
      delete_execution(prefix, id)
      purged = purged + 1
    end
  end
  trim_events(prefix, cutoff)
  tidy_counts(prefix)
  return purged
end)

--[[ flow_purge: delete flows that finished at least age_ms ago, with their
  steps, at most max_steps steps per call (a big flow takes several calls).
  KEYS[1] flows_done ZSET  terminal flows by finish time
  ARGV[1] age_ms  ARGV[2] max_steps
  Derived: ready, delayed, leases, deadlines, terminal, pending_dispatch, counts, flows, unsealed,
    flow_ops, execution, done, edges_in, edges_out, inputs, defaults, flow, flow_steps,
    flow_order, flow_roots, flow_held, flow_done, flow_retry, signals, missing
  Reply:  {flows_purged, steps_purged}
  Errors: BAD_ARGS ]]
register('flow_purge', function(keys, args)
  local age_ms = int_arg(args[1], 'age_ms', 0, 1e13)
  local budget = int_arg(args[2], 'max_steps', 1, MAX_BATCH)
  local prefix = prefix_of(keys[1])
  local flows, steps = 0, 0
  for _, fid in ipairs(rcall('ZRANGEBYSCORE', keys[1], '-inf', now_ms() - age_ms, 'LIMIT', 0, 10)) do
    local fkey = K.flow(prefix, fid)
    local ids = rcall('LPOP', K.flow_order(prefix, fid), budget - steps) or {}
    for _, id in ipairs(ids) do delete_execution(prefix, id) end
    steps = steps + #ids
    if rcall('LLEN', K.flow_order(prefix, fid)) == 0 then
      rcall('UNLINK', fkey, K.flow_steps(prefix, fid), K.flow_roots(prefix, fid), K.flow_held(prefix, fid),
        K.flow_done(prefix, fid), K.flow_retry(prefix, fid))
      rcall('ZREM', keys[1], fid)
      rcall('ZREM', K.flows(prefix), fid)
      rcall('ZREM', K.unsealed(prefix), fid)
      rcall('ZREM', K.flow_ops(prefix), 'seal:' .. fid, 'cancel:' .. fid, 'resume:' .. fid,
        'retry:' .. fid)
      flows = flows + 1
    end
    if steps >= budget then break end
  end
  return {flows, steps}
end)

-- The index check (rec_audit). Every transition appends its event before any
-- other write, so an execution whose transition was cut short is named in the
-- partition's event stream. The check follows that stream from a cursor and,
-- for each execution and flow an event names, compares the current state
-- with the indexes and repairs what a half-applied transition can leave.
-- Every repair is an idempotent write: a repair cut short is completed by the
-- next pass. `a` is one call's audit: its keys, bounds and collected output.

local function audit_note(a, kind, id, detail)
  a.repairs[#a.repairs + 1] = {kind, id, detail}
end

local function audit_hint(a, lane)
  if not a.lane_seen[lane] then
    a.lane_seen[lane] = 1
    a.lanes[#a.lanes + 1] = lane
  end
end

-- What checking one event takes from the call's budgets: the execution it
-- names (unless checked already in this call), a blocked step's edges, and
-- the steps of a flow not yet recounted in this call. A step with more edges
-- than max_work, or a flow with more steps than max_count, is not examined
-- that deeply.
local function audit_cost(a, e, fid)
  local cost, recount = {execs = 0, edges = 0, steps = 0}, false
  if e then
    cost.execs = 1
    if e.state == 'blocked' then
      local edges = tonumber(e.req_total or 0) + tonumber(e.soft_total or 0)
      if edges > a.work then e.skip_edges = true else cost.edges = edges end
    end
  end
  if fid and a.flows[fid] == nil then
    local steps = tonumber(rcall('HGET', K.flow(a.prefix, fid), 'total') or 0)
    recount = steps <= a.max
    if recount then cost.steps = steps end
  end
  return cost, recount
end

-- Take `cost` from the call's budgets if they allow it.
local function audit_spend(a, cost)
  local left = a.left
  if cost.execs > left.execs or cost.edges > left.edges or cost.steps > left.steps then return false end
  left.execs, left.edges, left.steps = left.execs - cost.execs, left.edges - cost.edges, left.steps - cost.steps
  return true
end

-- The fields every audit of one execution reads (a blocked step's gate
-- fields too), or nil when it no longer exists. Others are read when needed.
local function audit_fields(prefix, id)
  local state, lane, flow, deadline = unpack(rcall('HMGET', K.execution(prefix, id), 'state', 'lane', 'flow',
    'deadline_ms'))
  if not state then return nil end
  local e = {id = id, state = state, lane = lane, deadline_ms = deadline}
  if state == 'blocked' then e = gate_fields(prefix, id, flow) end
  if flow then e.flow = flow else e.flow = nil end
  e.deadline_ms = deadline
  return e
end

-- Add `e` to a time index it belongs to but is missing from.
local function audit_index(a, key, kind, e, field)
  if rcall('ZSCORE', key, e.id) then return end
  local score = tonumber(e[field] or rcall('HGET', K.execution(a.prefix, e.id), field)) or a.now
  rcall('ZADD', key, score, e.id)
  audit_note(a, kind, e.id, e.state .. ', added to ' .. key)
end

-- Record a terminal step's unresolved outgoing edges for the dispatcher.
local function audit_dispatch(a, id, why)
  rcall('ZADD', a.pending, a.now, id)
  a.dispatch[#a.dispatch + 1] = id
  audit_note(a, 'pending_dispatch', id, why)
end

local function audit_terminal(a, e)
  local p, id = a.prefix, e.id
  local done = K.done(p, id)
  if rcall('HGET', K.execution(p, id), 'watched') == '1' and rcall('EXISTS', done) == 0 then
    rcall('RPUSH', done, '1')
    rcall('PEXPIRE', done, DONE_TTL_MS)
    audit_note(a, 'done_marker', id, e.state .. ', result waiters woken')
  end
  audit_index(a, a.terminal, 'terminal_index', e, 'finished_ms')
  local sets, left = {K.ready(p, e.lane), a.leases, a.delayed, a.deadlines}, {}
  if e.flow then sets[#sets + 1] = K.flow_held(p, e.flow) end
  for _, key in ipairs(sets) do
    if rcall('ZREM', key, id) == 1 then left[#left + 1] = key end
  end
  if #left > 0 then audit_note(a, 'left_index', id, e.state .. ', removed from ' .. table.concat(left, ', ')) end
  if not e.flow then return end
  local children = rcall('LLEN', K.edges_out(p, id))
  if children == 0 or rcall('ZSCORE', a.pending, id) then return end
  if tonumber(rcall('HGET', K.execution(p, id), 'dispatch_pos') or 0) >= children then return end
  if rcall('HGET', K.flow(p, e.flow), 'state') == 'canceled' then return end
  audit_dispatch(a, id, e.state .. ', outgoing edges unresolved')
end

-- A resolved ref / ref_or_default edge must have left the input it passes.
local function audit_input(a, e, up, kind, state)
  if not (kind == 'ref' and state == 'satisfied' or kind == 'ref_or_default') then return end
  local p = a.prefix
  local inp = K.inputs(p, e.id)
  if rcall('HEXISTS', inp, up) == 1 then return end
  local up_id = rcall('HGET', K.flow_steps(p, e.flow), up)
  local up_state, input = nil, nil
  if up_id then up_state, input = unpack(rcall('HMGET', K.execution(p, up_id), 'state', 'result')) end
  if up_state ~= 'succeeded' then input = rcall('HGET', K.defaults(p, e.id), up) end
  if input == nil or input == false or input == '' then input = 'null' end
  rcall('HSET', inp, up, input)
  audit_note(a, 'input', e.id, 'input from step ' .. up .. ' restored')
end

-- A pending edge whose upstream is terminal and not being dispatched is
-- resolved here; the upstream's other unresolved edges go to the dispatcher.
local function audit_pending_edge(a, e, up)
  local p = a.prefix
  local up_id = rcall('HGET', K.flow_steps(p, e.flow), up)
  if not up_id then return 0 end
  local up_state = rcall('HGET', K.execution(p, up_id), 'state')
  if not TERMINAL[up_state] or rcall('ZSCORE', a.pending, up_id) then return 0 end
  local pos, result = unpack(rcall('HMGET', K.execution(p, up_id), 'dispatch_pos', 'result'))
  resolve_edges(p, {{step = up, state = up_state, result = result}}, e.id, a.now, {ready = {}, skipped = {}}, false)
  audit_note(a, 'edge', e.id, 'edge from ' .. up_state .. ' step ' .. up .. ' resolved')
  if tonumber(pos or 0) < rcall('LLEN', K.edges_out(p, up_id)) then
    audit_dispatch(a, up_id, up_state .. ', outgoing edges unresolved')
  end
  return 1
end

-- Whether the blocked steps of a flow are audited: it is sealed, not
-- finished or canceled, not being retried (read once per flow per call; no
-- repair here cancels or retries a flow, and one that finishes has no
-- blocked step left).
local function audit_gated(a, fkey)
  local open = a.gated[fkey]
  if open == nil then
    local fstate, sealed, phase = unpack(rcall('HMGET', fkey, 'state', 'sealed', 'retry_phase'))
    open = sealed == '1' and not phase and fstate ~= nil and fstate ~= false and not FLOW_TERMINAL[fstate]
    a.gated[fkey] = open
  end
  return open
end

-- A blocked step of a sealed, running flow: its edge counters must match its
-- edges, and once its edges allow it the gate must have been applied.
local function audit_blocked(a, e)
  local p, fkey = a.prefix, K.flow(a.prefix, e.flow)
  if not audit_gated(a, fkey) then return end
  local flat = rcall('HGETALL', K.edges_in(p, e.id))
  if #flat == 0 and rcall('LLEN', K.flow_roots(p, e.flow)) > 0 then return end  -- a root flow_seal releases
  local ok, bad, soft, pending = 0, 0, 0, {}
  for i = 1, #flat, 2 do
    local kind, state = string.match(flat[i + 1], '^([%w_]+)|(%w+)$')
    if state == 'pending' then
      pending[#pending + 1] = flat[i]
    else
      if not REQUIRED_EDGE[kind] then soft = soft + 1
      elseif state == 'satisfied' then ok = ok + 1
      else bad = bad + 1 end
      audit_input(a, e, flat[i], kind, state)
    end
  end
  local had = {tonumber(e.req_ok or 0), tonumber(e.req_bad or 0), tonumber(e.soft_done or 0)}
  if had[1] ~= ok or had[2] ~= bad or had[3] ~= soft then
    rcall('HSET', K.execution(p, e.id), 'req_ok', ok, 'req_bad', bad, 'soft_done', soft)
    e.req_ok, e.req_bad, e.soft_done = ok, bad, soft
    audit_note(a, 'edge_counts', e.id, string.format('req_ok %d->%d, req_bad %d->%d, soft_done %d->%d',
      had[1], ok, had[2], bad, had[3], soft))
  end
  local resolved = 0
  for _, up in ipairs(pending) do resolved = resolved + audit_pending_edge(a, e, up) end
  local g = e
  if resolved > 0 then g = gate_fields(p, e.id, e.flow) end
  if gate(g) == 'wait' then return end
  local out = {ready = {}, skipped = {}}
  settle(p, g, a.now, out)
  audit_note(a, 'settled', e.id, 'blocked with its edges resolved, now ' .. g.state)
  for i = 2, #out.ready, 2 do audit_hint(a, out.ready[i]) end
  for _, id in ipairs(out.skipped) do a.dispatch[#a.dispatch + 1] = id end
end

local function audit_execution(a, e)
  local p, id = a.prefix, e.id
  if TERMINAL[e.state] then return audit_terminal(a, e) end
  if e.state == 'ready' then
    local held = e.flow and rcall('ZSCORE', K.flow_held(p, e.flow), id)
    if not held and not rcall('ZSCORE', K.ready(p, e.lane), id) then
      e.priority = rcall('HGET', K.execution(p, id), 'priority')
      if enqueue_ready(p, e, a.now) then
        audit_hint(a, e.lane)
        audit_note(a, 'ready_set', id, 'ready, added to ' .. K.ready(p, e.lane))
      else
        audit_note(a, 'ready_set', id, 'ready, added to the held set of paused flow ' .. e.flow)
      end
    end
  elseif e.state == 'leased' then
    audit_index(a, a.leases, 'lease_index', e, 'lease_expiry_ms')
  elseif e.state == 'delayed' then
    audit_index(a, a.delayed, 'delayed_index', e, 'due_ms')
  end
  if tonumber(e.deadline_ms or 0) > 0 then audit_index(a, a.deadlines, 'deadline_index', e, 'deadline_ms') end
  if e.state == 'blocked' and e.flow and not e.skip_edges then audit_blocked(a, e) end
end

-- A terminal flow keeps its done marker and its retention entry.
local function audit_flow_done(a, fid, fkey, state)
  local done = K.flow_done(a.prefix, fid)
  if rcall('EXISTS', done) == 0 then
    rcall('RPUSH', done, state)
    rcall('PEXPIRE', done, DONE_TTL_MS)
    audit_note(a, 'flow_done_marker', fid, state .. ', flow waiters woken')
  end
  if not rcall('ZSCORE', a.flows_done, fid) then
    rcall('ZADD', a.flows_done, tonumber(rcall('HGET', fkey, 'finished_ms')) or a.now, fid)
    audit_note(a, 'flows_done_index', fid, state .. ', added to ' .. a.flows_done)
  end
end

-- Blocked steps of a flow no event named in this call (a resolve cut short
-- before the gate writes no event for the child), while the budgets last.
local function audit_flow_blocked(a, ids)
  for _, id in ipairs(ids) do
    local e = audit_fields(a.prefix, id)
    if e and e.state == 'blocked' then
      local edges = tonumber(e.req_total or 0) + tonumber(e.soft_total or 0)
      if not audit_spend(a, {execs = 1, edges = edges, steps = 0}) then return end
      a.checked[id] = true
      audit_blocked(a, e)
    end
  end
end

-- Recount a flow's counters from its steps and fix them, audit its blocked
-- steps, then let the flow pause or finish if its steps say it should.
local function audit_flow(a, fid)
  local p, fkey = a.prefix, K.flow(a.prefix, fid)
  local state, total, phase = unpack(rcall('HMGET', fkey, 'state', 'total', 'retry_phase'))
  if not state or phase then return end
  total = tonumber(total or 0)
  local ids = rcall('LRANGE', K.flow_order(p, fid), 0, total)
  if #ids ~= total then return end  -- being purged (or created)
  local want, blocked = {terminal = 0, bad = 0}, {}
  for _, id in ipairs(ids) do
    local st, optional = unpack(rcall('HMGET', K.execution(p, id), 'state', 'optional'))
    if not st then return end
    want['c:' .. st] = (want['c:' .. st] or 0) + 1
    if st == 'blocked' and not a.checked[id] then blocked[#blocked + 1] = id end
    if TERMINAL[st] then
      want.terminal = want.terminal + 1
      if optional ~= '1' and st ~= 'succeeded' then want.bad = want.bad + 1 end
    end
  end
  local fields = {'terminal', 'bad'}
  for st in pairs(EXEC_TRANSITIONS) do fields[#fields + 1] = 'c:' .. st end
  table.sort(fields)
  local had, fix, said = rcall('HMGET', fkey, unpack(fields)), {}, {}
  for i, field in ipairs(fields) do
    local have, should = tonumber(had[i] or 0), want[field] or 0
    if have ~= should then
      fix[#fix + 1] = field
      fix[#fix + 1] = should
      said[#said + 1] = field .. ' ' .. have .. '->' .. should
    end
  end
  if #fix > 0 then
    rcall('HSET', fkey, unpack(fix))
    audit_note(a, 'flow_counts', fid, table.concat(said, ', '))
  end
  if FLOW_TERMINAL[state] then return audit_flow_done(a, fid, fkey, state) end
  audit_flow_blocked(a, blocked)
  if state == 'pausing' and (want['c:leased'] or 0) == 0 then
    set_flow_state(p, fid, 'pausing', 'paused', a.now, 'no step is leased')
    audit_note(a, 'flow_paused', fid, 'pausing with no leased step, now paused')
  end
  maybe_finish_flow(p, fid, a.now)
  local now_state = rcall('HGET', fkey, 'state')
  if FLOW_TERMINAL[now_state] then
    audit_note(a, 'flow_finished', fid, 'every step is terminal, now ' .. now_state)
  end
end

-- Index heads: members whose execution is gone or in another state leave.
local function audit_heads(a, counts, head_count)
  local indexes = {{a.leases, 'leased', 'stale_lease'}, {a.delayed, 'delayed', 'stale_delayed'}}
  local flat, seen = rcall('HGETALL', counts), {}
  for i = 1, #flat, 2 do
    local lane = string.match(flat[i], '^(.*):[a-z]+$')
    if lane and not seen[lane] then
      seen[lane] = 1
      indexes[#indexes + 1] = {K.ready(a.prefix, lane), 'ready', 'stale_ready'}
    end
  end
  for _, index in ipairs(indexes) do
    for _, id in ipairs(rcall('ZRANGE', index[1], 0, head_count - 1)) do
      local state = rcall('HGET', K.execution(a.prefix, id), 'state')
      if state ~= index[2] then
        rcall('ZREM', index[1], id)
        audit_note(a, index[3], id, state or 'missing')
      end
    end
  end
end

-- Check up to max_count events after the cursor while the call's budgets
-- last; returns true when events are left for another call.
local function audit_events(a)
  local cursor = rcall('GET', a.cursor)
  local from = '-'
  if cursor then from = '(' .. cursor end
  local entries = rcall('XRANGE', a.events, from, '+', 'COUNT', a.max)
  if cursor and #entries == 0 and rcall('EXISTS', a.events) == 0 then
    rcall('DEL', a.cursor)  -- retention removed the stream: nothing of the cursor is left
    return false
  end
  -- Each execution and flow is checked at its last event in this batch: the
  -- check reads its current state, so its earlier events need nothing more.
  -- An entry holds every transition of one call (event_records); the cursor
  -- passes an entry once all of its records are checked.
  local named, entry_of, final = {}, {}, {}
  for n, entry in ipairs(entries) do
    local records = event_records(entry[2])
    if #records == 0 then records = {{}} end  -- an entry of no execution or flow (a want's, say)
    for r, f in ipairs(records) do
      if f.flow == '' then f.flow = nil end
      local i = #named + 1
      named[i] = f
      if r == #records then entry_of[i] = entry[1] end
      if f.id then final['x' .. f.id] = i end
      if f.flow then final['f' .. f.flow] = i end
    end
  end
  local last, more = nil, #entries >= a.max
  for i, f in ipairs(named) do
    local e, fid = nil, nil
    if f.id and final['x' .. f.id] == i then e = audit_fields(a.prefix, f.id) end
    if f.flow and final['f' .. f.flow] == i then fid = f.flow end
    local cost, recount = audit_cost(a, e, fid)
    if not audit_spend(a, cost) then
      more = true
      break
    end
    if entry_of[i] then last = entry_of[i] end
    if e then
      a.checked[e.id] = true
      audit_execution(a, e)
    end
    if fid and a.flows[fid] == nil then
      a.flows[fid] = recount
      if recount then a.flow_list[#a.flow_list + 1] = fid end
    end
  end
  if last then rcall('SET', a.cursor, last) end
  return more
end

--[[ rec_audit: the index check. Remove index-head members whose execution is
  gone or in another state; then follow the event stream from the cursor and,
  for each execution and flow the events name, repair what a half-applied
  transition can leave: a ready execution in no ready or held set, a leased,
  delayed or deadline-bound one missing from its index, a terminal one
  without its done marker or terminal-index entry or still in a live index,
  a terminal step with unresolved edges and no pending_dispatch record, a
  blocked step whose edges allow it (counters recounted, missing inputs
  restored, edges from terminal upstreams resolved, gate applied), flow
  counters that disagree with the steps (then the flow pauses or finishes if
  due), a terminal flow without its done marker or flows_done entry.
  A partition with no new event and nothing to repair costs one call and
  writes nothing (but deleting, once, a cursor whose stream retention removed).
  KEYS[1] counts    HASH   lanes come from its "<lane>:<state>" fields
  KEYS[2] events    STREAM one entry per transition
  KEYS[3] cursor    STRING id of the last event checked
  KEYS[4] leases    ZSET   lease expiries
  KEYS[5] delayed   ZSET   delayed executions by due time
  KEYS[6] deadlines ZSET   non-terminal executions by deadline
  KEYS[7] terminal  ZSET   terminal executions by finish time
  KEYS[8] pending_dispatch ZSET terminal steps with unresolved edges
  KEYS[9] flows_done ZSET  terminal flows by finish time
  ARGV[1] max_count (per call: events read, flow steps recounted)
  ARGV[2] max_work (per call, each: executions checked, edges read)
  ARGV[3] head_count (members read from the head of each index)
  Derived: ready, leases, deadlines, terminal, pending_dispatch, counts, events, flows_done,
    execution, done, edges_in, edges_out, inputs, defaults, flow, flow_steps, flow_order,
    flow_roots, flow_held, flow_done, event_buffer, waits, waiting, outbox, outbox_msgs, outbox_seq,
    build_waits, slice, slices
  Reply:  {more (1: events left for another call), {{kind, id, detail}, ...},
           {lane to hint, ...}, {execution id to dispatch, ...}}
  Errors: BAD_ARGS ]]
register('rec_audit', function(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local max_work = int_arg(args[2], 'max_work', 1, MAX_BATCH)
  local head_count = int_arg(args[3], 'head_count', 0, MAX_BATCH)
  local a = {prefix = prefix_of(keys[1]), now = now_ms(), max = max_count, work = max_work,
    left = {execs = max_work, edges = max_work, steps = max_count},
    events = keys[2], cursor = keys[3], leases = keys[4], delayed = keys[5], deadlines = keys[6],
    terminal = keys[7], pending = keys[8], flows_done = keys[9],
    repairs = {}, lanes = {}, lane_seen = {}, dispatch = {}, checked = {}, flows = {}, flow_list = {},
    gated = {}}
  if head_count > 0 then audit_heads(a, keys[1], head_count) end
  local more = audit_events(a)
  for _, fid in ipairs(a.flow_list) do
    flush_pending()  -- the recount compares the flow's counters with its steps: write them first
    audit_flow(a, fid)
  end
  return {more and 1 or 0, a.repairs, a.lanes, a.dispatch}
end)

--[[ own_claim: take or renew the reconciler lease on one partition.
  KEYS[1] owner    STRING daemon id holding the partition, with a TTL
  ARGV[1] daemon_id  ARGV[2] ttl_ms
  Derived: none
  Reply:  1 when this daemon owns the partition now, else 0
  Errors: BAD_ARGS ]]
register('own_claim', function(keys, args)
  local daemon = str_arg(args[1], 'daemon_id', 200)
  local ttl_ms = int_arg(args[2], 'ttl_ms', 100, 86400000)
  local holder = rcall('GET', keys[1])
  if holder and holder ~= daemon then return 0 end
  rcall('SET', keys[1], daemon, 'PX', ttl_ms)
  return 1
end)

--[[ own_release: give a partition back (shutdown, or more than our share).
  KEYS[1] owner    STRING daemon id holding the partition
  ARGV[1] daemon_id
  Derived: none
  Reply:  1 when released, 0 when another daemon held it
  Errors: BAD_ARGS ]]
register('own_release', function(keys, args)
  local daemon = str_arg(args[1], 'daemon_id', 200)
  if rcall('GET', keys[1]) ~= daemon then return 0 end
  rcall('DEL', keys[1])
  return 1
end)

--[[ own_heartbeat: record this daemon as alive and count the live ones.
  KEYS[1] daemons  ZSET   daemon id -> expiry (ms, server clock)
  ARGV[1] daemon_id  ARGV[2] ttl_ms  ARGV[3] leaving (1: remove this daemon)
  Derived: none
  Reply:  {daemon_id, ...} alive now (in expiry order)
  Errors: BAD_ARGS ]]
register('own_heartbeat', function(keys, args)
  local daemon = str_arg(args[1], 'daemon_id', 200)
  local ttl_ms = int_arg(args[2], 'ttl_ms', 100, 86400000)
  local leaving = int_arg(args[3], 'leaving', 0, 1) == 1
  local now = now_ms()
  rcall('ZREMRANGEBYSCORE', keys[1], '-inf', now)
  if leaving then rcall('ZREM', keys[1], daemon) else rcall('ZADD', keys[1], now + ttl_ms, daemon) end
  return rcall('ZRANGE', keys[1], 0, -1)
end)
