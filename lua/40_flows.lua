--[[ Flows: DAGs of executions in one partition (docs/architecture.md §4, §8).

  Keys of a flow F and its step executions E (all under one hash tag):
    f:F         HASH  state, name, labels, sealed, total, terminal, bad, c:<state> counters
    f:F:steps   HASH  step id -> execution id
    f:F:order   LIST  execution ids in creation order (cancel walks it)
    f:F:roots   LIST  steps with no edges, waiting for the flow to be sealed
    f:F:held    ZSET  ready steps held while the flow is paused
    f:F:done    LIST  pushed when the flow is terminal (waiters block on it)
    in:E        HASH  upstream step -> "kind|pending|satisfied|impossible"
    out:E       LIST  child execution ids (resolved by flow_resolve, cursor dispatch_pos)
    inp:E       HASH  upstream step -> JSON input (result or default)
    def:E       HASH  upstream step -> JSON default of a ref_or_default edge

  Edge kinds: ref and after are required (upstream must succeed);
  ref_or_default and after_any are soft (satisfied by any terminal upstream).
  Group policy over required edges: all (default), any, quorum(n).
]]

local REQUIRED_EDGE = {ref = 1, after = 1}
-- The in: value of a pending edge of each kind -> the kind and the values the edge
-- takes when resolved: a lookup where parsing "kind|state" with string.match and
-- joining the new value cost about 2,500 instructions per edge resolved.
local PENDING_EDGES = {
  ['ref|pending'] = {kind = 'ref', satisfied = 'ref|satisfied', impossible = 'ref|impossible'},
  ['after|pending'] = {kind = 'after', satisfied = 'after|satisfied', impossible = 'after|impossible'},
  ['ref_or_default|pending'] = {kind = 'ref_or_default', satisfied = 'ref_or_default|satisfied',
    impossible = 'ref_or_default|impossible'},
  ['after_any|pending'] = {kind = 'after_any', satisfied = 'after_any|satisfied', impossible = 'after_any|impossible'},
}
local WAIT_FIELDS = {'wait_key', 'timeout_ms', 'wait_home', 'wait_here', 'wait_gen'}

-- What settling, starting a wait and canceling read of a step (nil fields absent); a
-- wait step's wait fields with a second read, so other steps' reads stay short.
-- One table constructor (a table grown field by field is rehashed as it grows).
-- `fid`: the step's flow, which the caller knows (an edge never leaves its flow),
-- so it is not read; nor is `step`, which only a lease needs (flow_complete reads
-- it then), nor `optional`, which only ending the step needs (settle's skip and
-- flow_cancel read it then): each field an HMGET reads costs the call about
-- 2,000 instructions.
local function gate_fields(prefix, id, fid)
  local key = K.execution(prefix, id)
  local v = rcall('HMGET', key, 'state', 'lane', 'priority', 'req_total',
    'req_ok', 'req_bad', 'soft_total', 'soft_done', 'policy', 'quorum', 'wait_event')
  if not v[1] then return {key = key} end  -- (no such step: readers test e.state)
  -- Only the fields present are set (a missing one comes back false; readers test
  -- for nil): a field set to nil, in a constructor too, still costs the table a
  -- new slot (about 250 instructions), and most steps have most of these missing.
  local e = {key = key, id = id, state = v[1], lane = v[2] or nil, flow = fid, req_total = v[4] or nil}
  if v[3] then e.priority = v[3] end
  if v[5] then e.req_ok = v[5] end
  if v[6] then e.req_bad = v[6] end
  if v[7] then e.soft_total = v[7] end
  if v[8] then e.soft_done = v[8] end
  if v[9] then e.policy = v[9] end
  if v[10] then e.quorum = v[10] end
  if v[11] then
    e.wait_event = v[11]
    local values = rcall('HMGET', key, unpack(WAIT_FIELDS))
    for i, name in ipairs(WAIT_FIELDS) do e[name] = values[i] end
  end
  return e
end

-- 'ready', 'skip' or 'wait' for a blocked step, from its edge counters.
local function gate(e)
  local total = int_of(e.req_total or 0)  -- (int_of: a table lookup for a value seen before)
  local ok, bad = int_of(e.req_ok or 0), int_of(e.req_bad or 0)
  local need = total
  if e.policy == 'any' then need = math.min(1, total)
  elseif e.policy == 'quorum' then need = int_of(e.quorum) end
  if total - bad < need then return 'skip' end
  if ok >= need and int_of(e.soft_done or 0) >= int_of(e.soft_total or 0) then return 'ready' end
  return 'wait'
end

-- The step's fields `fields` plus its edge counters resolve_edges() left
-- unwritten (e.counts), which are then written.
local function with_counts(e, fields)
  local counts = e.counts
  if counts then
    for i = 1, #counts do fields[#fields + 1] = counts[i] end
    e.counts = nil
  end
  return fields
end

-- Lease the child `e` settle() makes ready to the caller of flow_complete(_many) at
-- once, when it may (out.claim_c: the call's claim arguments; room left, one of the
-- caller's lanes, its flow running, its deadline not passed): it moves ready with
-- `fields` and then leased, one HSET for both (move's e.held), its entry goes to
-- out.claimed (exec_claim's flat list) and its lane and lease to out.claimed_lanes and
-- out.lease_args. Returns false, having written nothing, when it may not. (A
-- function made once, its state in `out`: a closure per call and its upvalues cost
-- the call about 5,000 instructions.)
local function lease_child(prefix, out, e, fields)
  local c = out.claim_c
  if #out.claimed_lanes >= c.claim_count or not c.lanes[e.lane] or out.fstates[e.flow] ~= 'running' then
    return false
  end
  local now = out.claim_now
  local v = rcall('HMGET', e.key, 'task', 'payload', 'attempts', 'deadline_ms', 'epoch', 'step')
  local deadline = int_of(v[4] or 0)
  if deadline > 0 and deadline <= now then return false end  -- the next claim expires it
  e.task, e.payload, e.attempts, e.deadline_ms = v[1] or nil, v[2] or nil, v[3] or nil, v[4] or nil
  e.epoch, e.step = v[5] or nil, v[6] or nil
  e.held = true  -- (its ready fields are written with its lease's: move)
  move(prefix, e, 'ready', fields)
  local max_inputs = int_of(e.req_total or 0) + int_of(e.soft_total or 0)  -- (its edges)
  if max_inputs == 1 and #e.written / 2 <= out.inputs_left then
    -- its one edge was resolved just now: its inputs are what that wrote, no read
    e.known_inputs, max_inputs = e.written, 0
  end
  local expiry
  expiry, out.inputs_left = lease_one(prefix, e, now, c.lease_ms, c.worker, out.inputs_left, max_inputs,
    out.claimed)
  local lanes, args = out.claimed_lanes, out.lease_args
  lanes[#lanes + 1] = e.lane
  args[#args + 1] = expiry
  args[#args + 1] = e.id
  return true
end

-- Apply the gate to a blocked step: make it ready, skip it, or leave it. `why`,
-- the reason a skip records: a string, or the upstream whose outcome it names
-- (resolve_edges; the words are joined only for a skip).
local function settle(prefix, e, now, out, why)
  if e.state ~= 'blocked' then return end
  local verdict = gate(e)
  if verdict == 'ready' and e.wait_event then
    start_wait(prefix, e, now, out)
  elseif verdict == 'ready' then
    local counts, fields = e.counts, nil
    if counts and #counts == 2 then  -- (one counter: made whole, not grown)
      fields, e.counts = {'ready_ms', now, counts[1], counts[2]}, nil
    else
      fields = with_counts(e, {'ready_ms', now})
    end
    if out.claim_c and lease_child(prefix, out, e, fields) then return end  -- (flow_complete)
    move(prefix, e, 'ready', fields)
    if enqueue_ready(prefix, e, now, out.ready_z) then
      local ready = out.ready  -- (flat: id, lane, id, lane, ...; a table a step costs its reply ~8,000)
      ready[#ready + 1] = e.id
      ready[#ready + 1] = e.lane
    end
  elseif verdict == 'skip' then
    if type(why) == 'table' then why = 'upstream ' .. why.step .. ' ' .. why.state end
    e.optional = rcall('HGET', e.key, 'optional') or nil  -- (for finish(); gate_fields leaves it out)
    move(prefix, e, 'skipped', with_counts(e, {'finished_ms', now, 'error_kind', 'upstream_failed',
      'error_msg', why or 'a required upstream step did not succeed'}), why)
    out.skipped_count = (out.skipped_count or 0) + 1
    -- Only a skipped step with children of its own needs the dispatcher.
    if finish(prefix, e, now) == 1 then out.skipped[#out.skipped + 1] = e.id end
  end
end

-- Resolve the edges ups[i] -> child (every up terminal): mark each satisfied
-- or impossible (one resolved already is left as it is), write the inputs of
-- its ref edges, add to the child's counters, and settle the child when
-- `settle_child`. Several edges into one child (a join fed by the steps of one
-- flow_complete_many) cost one read of its gate fields and one write of each
-- counter. Adds each edge's outcome ('satisfied', 'impossible' or 'already')
-- to `tally` when given. The settle reason names the first upstream that made
-- an edge impossible, else the last one.
local function resolve_edges(prefix, ups, child_id, now, out, settle_child, tally)
  local in_key = K.edges_in(prefix, child_id)
  local n = #ups
  local values, value
  if n == 1 then
    value = rcall('HGET', in_key, ups[1].step)
  else
    local names = {}
    for i = 1, n do names[i] = ups[i].step end
    values = rcall('HMGET', in_key, unpack(names))
  end
  -- marks: the edges' new values; written: the inputs, as HGETALL of the inputs
  -- would list them. Each is made by a constructor with its first pair (an empty
  -- table grown by appends costs about 700 instructions more per value).
  local marks, written = nil, nil
  local ok, bad, soft, why = 0, 0, 0, nil
  for i = 1, n do
    local up = ups[i]
    if values then value = values[i] end
    local edge = PENDING_EDGES[value]
    if not edge and value then  -- (resolved already, or a kind no call writes: parsed)
      local kind, state = string.match(value, '^([%w_]+)|(%w+)$')
      if state == 'pending' then
        edge = {kind = kind, satisfied = kind .. '|satisfied', impossible = kind .. '|impossible'}
      end
    end
    local outcome = 'already'
    if edge then
      local kind = edge.kind
      outcome = up.state ~= 'succeeded' and REQUIRED_EDGE[kind] and 'impossible' or 'satisfied'
      if marks then
        marks[#marks + 1] = up.step
        marks[#marks + 1] = edge[outcome]
      else
        marks = {up.step, edge[outcome]}
      end
      if kind == 'ref' and outcome == 'satisfied' or kind == 'ref_or_default' then
        local input = up.result
        if up.state ~= 'succeeded' then input = rcall('HGET', K.defaults(prefix, child_id), up.step) end
        if input == nil or input == false or input == '' then input = 'null' end
        if written then
          written[#written + 1] = up.step
          written[#written + 1] = input
        else
          written = {up.step, input}
        end
      end
      if not REQUIRED_EDGE[kind] then
        soft = soft + 1
      elseif outcome == 'satisfied' then
        ok = ok + 1
      else
        bad = bad + 1
        why = why or ('upstream ' .. up.step .. ' ' .. up.state)
      end
    end
    if tally then tally[outcome] = tally[outcome] + 1 end
  end
  if not marks then return end
  local e = gate_fields(prefix, child_id, ups[1].flow)
  rcall('HSET', in_key, unpack(marks))
  if not written then
    written = NO_INPUTS
  elseif (e.req_total and #e.req_total > 2 or e.soft_total and #e.soft_total > 2)
      and not e.req_ok and not e.req_bad and not e.soft_done
      and int_of(e.req_total or 0) + int_of(e.soft_total or 0) > WIDE_ENTRIES then
    -- the first inputs of a wide step (no edge resolved yet: the length tests spare
    -- the common narrow step two conversions)
    hset_wide(K.inputs(prefix, child_id), written)
  else
    rcall('HSET', K.inputs(prefix, child_id), unpack(written))
  end
  e.written = written
  if out.fstates and e.flow then e.fstate = out.fstates[e.flow] end  -- read in this call
  -- The new counter values, written with the step's move when settling moves it
  -- (with_counts), else by themselves: one write either way, no HINCRBY.
  local counts = nil  -- (at least one of them: every edge marked adds to one)
  if ok > 0 then e.req_ok = int_of(e.req_ok or 0) + ok; counts = {'req_ok', e.req_ok} end
  if bad > 0 then
    e.req_bad = int_of(e.req_bad or 0) + bad
    if counts then
      counts[#counts + 1] = 'req_bad'; counts[#counts + 1] = e.req_bad
    else
      counts = {'req_bad', e.req_bad}
    end
  end
  if soft > 0 then
    e.soft_done = int_of(e.soft_done or 0) + soft
    if counts then
      counts[#counts + 1] = 'soft_done'; counts[#counts + 1] = e.soft_done
    else
      counts = {'soft_done', e.soft_done}
    end
  end
  e.counts = counts
  if settle_child then
    settle(prefix, e, now, out, why or ups[n])
  end
  if e.counts then rcall('HSET', e.key, unpack(e.counts)) end
  -- (a flow with a step not terminal is not finished: its check can be spared)
  if out.alive and e.flow and not TERMINAL[e.state] then out.alive[e.flow] = true end
end

-- Validate one decoded step spec; returns nothing, raises BAD_ARGS. A spec is
-- a new step, or {step, append = 1, edges} adding further incoming edges to a
-- step created earlier in the same unsealed submit (a step with more edges
-- than one call may carry). A new step whose edges continue in later calls
-- says how many it will have in all: edge_counts = {required, soft}.
-- A refusal's message is built only when it is raised: a concatenation per
-- checked field cost more than all the checks. (The tables and helpers of the
-- checks are local to the block: a Lua chunk holds at most 200 top-level locals.)
local check_step
do
  local EDGE_KINDS = {ref = 1, after = 1, ref_or_default = 1, after_any = 1}
  local POLICIES = {all = 1, any = 1, quorum = 1}
  local ON_TIMEOUT = {expire = 1, fail = 1}

  -- A wait step's spec: {event, key (names its waits set and buffer: 22 base64url
  -- characters of a digest of event and correlation, engine/events.py wait_key),
  -- correlate (the canonical JSON, for people; '' for a signal-only wait),
  -- timeout_ms, on_timeout}.
  local function check_wait(w, where)
    if type(w) ~= 'table' then raise('BAD_ARGS', where .. ': wait must be an object') end
    if type(w.event) ~= 'string' or not string.match(w.event, '^[%w_.:%-]+$') or #w.event > 128 then
      raise('BAD_ARGS', where .. ': bad wait event name')
    end
    if type(w.key) ~= 'string' or not string.match(w.key, '^[%w_%-]+$') or #w.key ~= 22 then
      raise('BAD_ARGS', where .. ': wait key must be 22 base64url characters')
    end
    if type(w.correlate) ~= 'string' or #w.correlate > 8192 then
      raise('BAD_ARGS', where .. ': bad wait correlation')
    end
    int_arg(w.timeout_ms, where .. ' timeout_ms', 0, 1e13)
    if not ON_TIMEOUT[w.on_timeout] then raise('BAD_ARGS', where .. ': on_timeout must be expire or fail') end
    if w.home ~= nil or w.here ~= nil then  -- a remote wait: its correlation's partition, and its flow's
      int_arg(w.home, where .. ' wait home', 0, 16383)
      int_arg(w.here, where .. ' wait here', 0, 16383)
      if w.home == w.here then raise('BAD_ARGS', where .. ': a remote wait lives in another partition') end
    end
  end

  local function refuse(s, text) raise('BAD_ARGS', 'step ' .. s.step .. text) end

  -- The integer option `name` of `s` in min..max (nil when left out).
  local function option(s, name, min, max)
    local v = s[name]
    if v == nil then return nil end
    local n = int_of(v)
    if n == nil or n < min or n > max then int_arg(v, 'step ' .. s.step .. ' ' .. name, min, max) end
    return n
  end

  local function check_edges(s)
    if type(s.edges) ~= 'table' then refuse(s, ': edges must be a list') end
    local required = 0
    for _, edge in ipairs(s.edges) do
      if type(edge) ~= 'table' or type(edge[1]) ~= 'string' or not EDGE_KINDS[edge[2]] then
        refuse(s, ': malformed edge')
      end
      if REQUIRED_EDGE[edge[2]] then required = required + 1 end
    end
    return required
  end

  check_step = function(s, index)
    if type(s) ~= 'table' then raise('BAD_ARGS', 'step #' .. index .. ' is not an object') end
    if type(s.step) ~= 'string' or s.step == '' or #s.step > 200 then
      raise('BAD_ARGS', 'step #' .. index .. ': bad step id')
    end
    local required = check_edges(s)
    if s.append then return end
    if type(s.id) ~= 'string' or #s.id > 64 then refuse(s, ': bad execution id') end
    if type(s.task) ~= 'string' or s.task == '' then refuse(s, ': bad task') end
    if type(s.lane) ~= 'string' or s.lane == '' then refuse(s, ': bad lane') end
    if type(s.payload) ~= 'string' then refuse(s, ': bad payload') end
    -- (an option left out is at its default: EXEC_DEFAULTS, 0, no deadline, policy all)
    option(s, 'priority', 0, 255)
    option(s, 'max_attempts', 1, 1000)
    option(s, 'backoff_ms', 0, 1e10)
    option(s, 'backoff_max_ms', 0, 1e10)
    option(s, 'deadline_in_ms', 0, 1e13)
    if s.policy ~= nil and not POLICIES[s.policy] then refuse(s, ': unknown group policy ' .. tostring(s.policy)) end
    if s.edge_counts ~= nil then
      if type(s.edge_counts) ~= 'table' then refuse(s, ': edge_counts must be a list') end
      local where = 'step ' .. s.step
      required = int_arg(s.edge_counts[1], where .. ' required edge count', required, 1e7)
      int_arg(s.edge_counts[2], where .. ' soft edge count', #s.edges - required, 1e7)
    end
    if s.wait ~= nil then check_wait(s.wait, 'step ' .. s.step) end
    if s.policy == 'quorum' then
      int_arg(s.quorum, 'step ' .. s.step .. ' quorum', 1, 1e7)
      if s.quorum > required then
        refuse(s, ': quorum ' .. s.quorum .. ' exceeds its ' .. required .. ' required dependencies')
      end
    end
  end
end

-- Push the children add_edges queued on their upstreams' out lists, in order.
local function flush_pushes(prefix, ids)
  for _, up_id in ipairs(ids.pushes) do
    rcall_sliced('RPUSH', K.edges_out(prefix, up_id), ids.pushes[up_id])
  end
  ids.pushes = {}
end

-- Write the incoming edges of step `id`. Edges from upstream steps that are
-- already terminal are resolved on the spot; an edge already written (a
-- repeated call) is left as it is. `fresh`: the step is created by this call,
-- so it has no edge yet. `ids`: step id -> execution id of the steps this call
-- created (`ids.created`, never terminal) and of those it looked up
-- (`ids.known`), and the states it read (`ids.states`, by execution id; none
-- when `ids.none_terminal`: the flow has no terminal step). A pending edge's
-- child is queued in `ids.pushes` for its upstream's out list: the caller
-- pushes each upstream's children with one RPUSH (flush_pushes). `wide`: a new
-- step with more than WIDE_ENTRIES edges (its in: hash is written by hset_wide).
-- Returns how many edges it wrote pending, and how many it resolved.
local function add_edges(prefix, id, edges, steps_key, now, out, ids, fresh, wide)
  local in_key = K.edges_in(prefix, id)
  local new, marks
  if fresh and #edges == 1 then  -- (the common case: one edge, none written yet)
    new, marks = edges, {edges[1][1], edges[1][2] .. '|pending'}
  else
    local had = {}  -- the edges written already, by upstream step
    if not fresh and #edges > 0 then
      local names = {}
      for i, edge in ipairs(edges) do names[i] = edge[1] end
      local values = rcall_sliced('HMGET', in_key, names)
      for i, edge in ipairs(edges) do
        if values[i] then had[edge[1]] = true end
      end
    end
    new, marks = {}, {}
    for _, edge in ipairs(edges) do
      local up_step, kind = edge[1], edge[2]
      if not had[up_step] then
        had[up_step] = true  -- (an upstream named twice: its first edge counts)
        new[#new + 1] = edge
        marks[#marks + 1] = up_step
        marks[#marks + 1] = kind .. '|pending'
      end
    end
    if #new == 0 then return 0, 0 end
  end
  if wide then hset_wide(in_key, marks) else rcall_sliced('HSET', in_key, marks) end
  local pending, resolved = 0, 0
  for _, edge in ipairs(new) do
    local up_step, kind, default = edge[1], edge[2], edge[3]
    if kind == 'ref_or_default' then
      rcall('HSET', K.defaults(prefix, id), up_step, default or 'null')
    end
    -- Only an upstream that is already terminal (a dynamic step's, or one of a
    -- retried flow) needs its whole hash; steps of this very call never are.
    local up_id, up_state = ids.created[up_step], nil
    if not up_id then
      up_id = ids.known[up_step] or rcall('HGET', steps_key, up_step)
      ids.known[up_step] = up_id
      if not ids.none_terminal then  -- (a flow with no terminal step has nothing to read)
        up_state = ids.states[up_id] or rcall('HGET', K.execution(prefix, up_id), 'state')
        ids.states[up_id] = up_state
      end
    end
    if up_state and TERMINAL[up_state] then
      resolve_edges(prefix, {hash_table(rcall('HGETALL', K.execution(prefix, up_id)))}, id, now, out, false)
      resolved = resolved + 1
    else
      group_add(ids.pushes, up_id, id)  -- pushed on out:<up> once per call (flush_pushes)
      pending = pending + 1
    end
  end
  return pending, resolved
end

-- Append name, value to the flat field list unless value is the default that
-- readers assume for a missing field.
local function put_unless(fields, name, value, default)
  if value ~= nil and value ~= default then
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
end

-- The hash of a wait step. It runs no handler, so it holds no payload, priority,
-- attempts, retry policy or lease epoch, and nothing at its default: readers take
-- a missing optional as 0, policy as all, an edge counter as 0, timeout_ms and
-- deadline_ms as 0 (none), on_timeout as expire, wait_correlate as ''.
local function wait_step_fields(s, fid, now, deadline, req_total, soft_total)
  local w = s.wait
  local fields = {'id', s.id, 'task', s.task, 'lane', s.lane, 'created_ms', now, 'flow', fid,
    'step', s.step, 'wait_event', w.event, 'wait_key', w.key}
  put_unless(fields, 'wait_correlate', w.correlate, '')
  put_unless(fields, 'timeout_ms', w.timeout_ms, 0)
  put_unless(fields, 'on_timeout', w.on_timeout, 'expire')
  put_unless(fields, 'deadline_ms', deadline, 0)
  put_unless(fields, 'optional', s.optional and 1 or 0, 0)
  put_unless(fields, 'policy', s.policy, 'all')
  put_unless(fields, 'quorum', s.quorum or 0, 0)
  put_unless(fields, 'req_total', req_total, 0)
  put_unless(fields, 'soft_total', soft_total, 0)
  if w.home then  -- a remote wait: its correlation's partition, and its flow's
    fields[#fields + 1] = 'wait_home'
    fields[#fields + 1] = w.home
    fields[#fields + 1] = 'wait_here'
    fields[#fields + 1] = w.here
  end
  return fields
end

-- Write one step (state blocked) and its incoming edges; the caller adds it to
-- the flow's steps hash, order list and total. Returns true when the step
-- surely waits (an edge written pending, none resolved, so every counter is 0):
-- settling it would find nothing to do.
local function create_step(prefix, fid, s, steps_key, now, out, ids)
  local key = s.key or K.execution(prefix, s.id)
  local deadline = 0
  if (s.deadline_in_ms or 0) > 0 then deadline = now + s.deadline_in_ms end
  local req_total, soft_total = 0, 0
  for _, edge in ipairs(s.edges) do
    if REQUIRED_EDGE[edge[2]] then req_total = req_total + 1 else soft_total = soft_total + 1 end
  end
  if s.edge_counts then req_total, soft_total = s.edge_counts[1], s.edge_counts[2] end
  local fields
  if s.wait then
    fields = wait_step_fields(s, fid, now, deadline, req_total, soft_total)
  else
    -- Nothing at the default readers assume for a missing field (EXEC_DEFAULTS,
    -- and 0 for attempts, epoch, deadline_ms, optional, quorum and the edge
    -- counters, all for policy): a hash of fewer fields is found faster by
    -- every read and write of the step (a small hash is a list, searched in order).
    fields = {'id', s.id, 'task', s.task, 'lane', s.lane, 'payload', s.payload, 'created_ms', now,
      'flow', fid, 'step', s.step}
    put_unless(fields, 'req_total', req_total, 0)
    put_unless(fields, 'soft_total', soft_total, 0)
    -- (tested inline, not with put_unless: a call per option cost more than its test)
    local n = #fields
    local v = s.priority
    if v ~= nil and v ~= EXEC_DEFAULTS.priority then fields[n + 1] = 'priority'; fields[n + 2] = v; n = n + 2 end
    v = s.max_attempts
    if v ~= nil and v ~= EXEC_DEFAULTS.max_attempts then
      fields[n + 1] = 'max_attempts'; fields[n + 2] = v; n = n + 2
    end
    v = s.backoff_ms
    if v ~= nil and v ~= EXEC_DEFAULTS.backoff_ms then fields[n + 1] = 'backoff_ms'; fields[n + 2] = v; n = n + 2 end
    v = s.backoff_max_ms
    if v ~= nil and v ~= EXEC_DEFAULTS.backoff_max_ms then
      fields[n + 1] = 'backoff_max_ms'; fields[n + 2] = v; n = n + 2
    end
    if deadline ~= 0 then fields[n + 1] = 'deadline_ms'; fields[n + 2] = deadline; n = n + 2 end
    if s.optional then fields[n + 1] = 'optional'; fields[n + 2] = 1; n = n + 2 end
    v = s.policy
    if v ~= nil and v ~= 'all' then fields[n + 1] = 'policy'; fields[n + 2] = v; n = n + 2 end
    v = s.quorum
    if v ~= nil and v ~= 0 then fields[n + 1] = 'quorum'; fields[n + 2] = v end
  end
  move(prefix, {key = key, id = s.id, lane = s.lane, flow = fid}, 'blocked', fields)  -- one HSET: state and fields
  if deadline > 0 then rcall('ZADD', K.deadlines(prefix), deadline, s.id) end
  local pending, resolved = add_edges(prefix, s.id, s.edges, steps_key, now, out, ids, true,
    req_total + soft_total > WIDE_ENTRIES)
  return pending > 0 and resolved == 0 and s.edge_counts == nil
end

--[[ flow_submit: create a flow with a batch of steps, append a batch, or add
  dynamic steps from a running step. Idempotent: resubmitting a sealed flow,
  repeating a batch (the same execution ids), or re-adding a dynamic step
  with the same task, writes nothing again. A batch may carry further edges
  of a step created earlier in the same unsealed submit ({step, append = 1,
  edges}), so no call has to carry more edges than the caller's bound.
  KEYS[1] flow     HASH   the flow
  ARGV[1] flow_id  ARGV[2] name  ARGV[3] labels (JSON)  ARGV[4] steps (JSON list)
  ARGV[5] final (1: seal the flow)  ARGV[6] parent (execution id adding steps, or '')
  Derived: ready, leases, deadlines, terminal, pending_dispatch, counts, events, flows,
    flows_done, unsealed, flow_ops, execution, done, edges_in, edges_out, inputs, defaults, flow,
    flow_steps, flow_order, flow_roots, flow_held, flow_done (flow_ops: "seal:<flow>" while roots
    are still held after the final batch), event_buffer, waits, waiting, outbox, outbox_msgs, outbox_seq,
    build_waits, slice, slices
  Reply:  {flow_state, created (1|0), {id, lane, ... ready}, {skipped id...}, roots_left}
  Errors: BAD_ARGS, NOT_FOUND, INVALID_STATE, ALREADY_EXISTS ]]
local function flow_submit(keys, args)
  local fid = str_arg(args[1], 'flow_id', 64)
  local name = args[2] or ''
  local labels = args[3] or '{}'
  local final = int_arg(args[5], 'final', 0, 1) == 1
  local parent = args[6] or ''
  local ok, steps = pcall(cjson.decode, args[4] or '')
  if not ok or type(steps) ~= 'table' then raise('BAD_ARGS', 'steps must be a JSON list') end
  if #steps > MAX_BATCH then raise('BAD_ARGS', 'more than ' .. MAX_BATCH .. ' steps in one call') end
  local prefix = prefix_of(keys[1])
  local steps_key = K.flow_steps(prefix, fid)
  local fstate, sealed, terminal = unpack(rcall('HMGET', keys[1], 'state', 'sealed', 'terminal'))
  local out = {ready = {}, skipped = {}}

  if parent ~= '' then
    if not fstate then raise('NOT_FOUND', 'no flow ' .. fid) end
    if rcall('HGET', K.execution(prefix, parent), 'flow') ~= fid then
      raise('BAD_ARGS', 'execution ' .. parent .. ' is not a step of flow ' .. fid)
    end
    if FLOW_TERMINAL[fstate] then raise('INVALID_STATE', 'flow ' .. fid .. ' is ' .. fstate .. ', cannot add steps') end
  elseif fstate and sealed == '1' then
    return {fstate, 0, {}, {}, rcall('LLEN', K.flow_roots(prefix, fid))}
  end

  -- Validate the whole batch before the first write: every spec's shape, then
  -- what the specs need read. The entries of the steps hash they need when the
  -- flow exists (each step id: a repeat or a collision; each upstream an edge
  -- names) come from one HMGET (`stored`: name -> execution id or false), and
  -- the new execution ids from one EXISTS (each is checked alone only when one
  -- of them exists): a command per call, not two or three per step.
  for i, s in ipairs(steps) do check_step(s, i) end
  local stored = {}
  if fstate then
    local names = {}
    for _, s in ipairs(steps) do
      if stored[s.step] == nil then stored[s.step] = false; names[#names + 1] = s.step end
      for _, edge in ipairs(s.edges) do
        local up = edge[1]
        if stored[up] == nil then stored[up] = false; names[#names + 1] = up end
      end
    end
    local values = rcall_sliced('HMGET', steps_key, names)
    for i = 1, #names do stored[names[i]] = values[i] end
  end
  local any_exists = false
  do
    local xkeys = {}
    for _, s in ipairs(steps) do
      if not s.append and not stored[s.step] then
        s.key = K.execution(prefix, s.id)  -- (create_step writes it)
        xkeys[#xkeys + 1] = s.key
      end
    end
    if #xkeys > 0 then any_exists = rcall('EXISTS', unpack(xkeys)) > 0 end  -- (MAX_BATCH bounds it)
  end
  local fresh, appends, seen = {}, {}, {}
  local ids = {created = {}, known = {}, states = {}, pushes = {},  -- see add_edges
    none_terminal = not fstate or tonumber(terminal or 0) == 0}
  for _, s in ipairs(steps) do
    local existing = stored[s.step] or nil  -- (a flow not created yet has no steps)
    if s.append then
      if parent ~= '' or sealed == '1' then
        raise('BAD_ARGS', 'step ' .. s.step .. ': edges can be appended only during a batched submit')
      end
      if not seen[s.step] and not (existing and rcall('HGET', K.execution(prefix, existing), 'state') == 'blocked') then
        raise('BAD_ARGS', 'step ' .. s.step .. ': appended edges for a step not created by this submit')
      end
    elseif existing then
      local task = rcall('HGET', K.execution(prefix, existing), 'task')
      -- The same step again: a repeated call (same execution id) or a
      -- redelivered handler re-adding its dynamic step (same task).
      if existing ~= s.id and (parent == '' or task ~= s.task) then
        raise('ALREADY_EXISTS', 'flow ' .. fid .. ' already has a step ' .. s.step)
      end
    elseif seen[s.step] then
      raise('BAD_ARGS', 'duplicate step id ' .. s.step)
    elseif any_exists and rcall('EXISTS', s.key) == 1 then
      raise('ALREADY_EXISTS', 'execution ' .. s.id .. ' exists')
    end
    if s.append or not existing then
      for _, edge in ipairs(s.edges) do
        local up = edge[1]
        if up == s.step then raise('BAD_ARGS', 'step ' .. s.step .. ' depends on itself') end
        if not seen[up] and not ids.known[up] then
          local up_id = stored[up]
          if up_id == nil then up_id = rcall('HGET', steps_key, up) end  -- (not fetched: a new flow)
          ids.known[up] = up_id or nil  -- (add_edges takes the id from here)
          if not ids.known[up] then raise('BAD_ARGS', 'step ' .. s.step .. ' references unknown step ' .. up) end
        end
      end
    end
    if s.append then
      appends[#appends + 1] = s
    elseif not existing then
      seen[s.step] = 1
      fresh[#fresh + 1] = s
    end
  end

  local now = now_ms()
  local created = 0
  if not fstate then
    rcall('HSET', keys[1], 'id', fid, 'name', name, 'labels', labels, 'state', 'running',
      'sealed', 0, 'total', 0, 'terminal', 0, 'bad', 0, 'created_ms', now)
    rcall('ZADD', K.flows(prefix), now, fid)
    emit_flow(prefix, fid, '', 'running', name)
    fstate, sealed, created = 'running', '0', 1
  end
  local waits_surely, step_ids, order = {}, {}, {}
  for _, s in ipairs(fresh) do
    waits_surely[s.step] = create_step(prefix, fid, s, steps_key, now, out, ids)
    ids.created[s.step] = s.id
    step_ids[#step_ids + 1] = s.step
    step_ids[#step_ids + 1] = s.id
    order[#order + 1] = s.id
  end
  if #fresh > 0 then  -- the whole batch's entries at once (MAX_BATCH bounds the unpack)
    if created == 1 and not final then
      hset_wide(steps_key, step_ids)  -- the first of several calls: a large flow
    else
      rcall('HSET', steps_key, unpack(step_ids))
    end
    rcall('RPUSH', K.flow_order(prefix, fid), unpack(order))
    rcall('HINCRBY', keys[1], 'total', #fresh)
  end
  for _, s in ipairs(appends) do
    add_edges(prefix, ids.created[s.step] or rcall('HGET', steps_key, s.step), s.edges, steps_key, now,
      out, ids, false)
  end
  flush_pushes(prefix, ids)
  if sealed ~= '1' and not final then
    -- Held until the final batch; the reconciler cancels it if that never comes.
    if created == 1 then rcall('ZADD', K.unsealed(prefix), now, fid) end
    for _, s in ipairs(fresh) do
      if #s.edges == 0 and s.edge_counts == nil then rcall('RPUSH', K.flow_roots(prefix, fid), s.id) end
    end
  else
    if sealed ~= '1' then
      rcall('HSET', keys[1], 'sealed', 1)
      rcall('ZREM', K.unsealed(prefix), fid)
    end
    out.ready_z = {}  -- the steps made ready, added to their ready sets at once
    for _, s in ipairs(fresh) do
      if not waits_surely[s.step] then settle(prefix, gate_fields(prefix, s.id, fid), now, out) end
    end
    flush_ready(prefix, out.ready_z)
    maybe_finish_flow(prefix, fid, now)
  end
  local roots_left = rcall('LLEN', K.flow_roots(prefix, fid))
  if final and roots_left > 0 then op_pending(prefix, 'seal', fid, true, now) end
  return {rcall('HGET', keys[1], 'state'), created, out.ready, out.skipped, roots_left}
end
register('flow_submit', flow_submit)

--[[ flow_seal: release up to max_count root steps held back while a large
  flow was submitted in batches (call until roots_left is 0).
  KEYS[1] flow     HASH   the flow (already sealed by its final flow_submit)
  ARGV[1] max_count
  Derived: ready, leases, deadlines, terminal, pending_dispatch, counts, events, flows_done,
    flow_ops, execution, done, edges_out, inputs, flow, flow_roots, flow_held, flow_done (flow_ops:
    "seal:<flow>" removed with the last root), event_buffer, waits, waiting, outbox, outbox_msgs, outbox_seq,
    build_waits, slice, slices
  Reply:  {{id, lane, ... ready}, roots_left}
  Errors: BAD_ARGS, NOT_FOUND ]]
local function flow_seal(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  if rcall('EXISTS', keys[1]) == 0 then raise('NOT_FOUND', 'no flow ' .. keys[1]) end
  local prefix, fid = prefix_of(keys[1]), rcall('HGET', keys[1], 'id')
  local now = now_ms()
  local out = {ready = {}, skipped = {}}
  local roots = rcall('LPOP', K.flow_roots(prefix, fid), max_count) or {}
  out.ready_z = {}  -- the roots made ready, added to their ready sets at once
  for _, id in ipairs(roots) do settle(prefix, gate_fields(prefix, id, fid), now, out) end
  flush_ready(prefix, out.ready_z)
  local roots_left = rcall('LLEN', K.flow_roots(prefix, fid))
  op_pending(prefix, 'seal', fid, roots_left > 0, now)
  return {out.ready, roots_left}
end
register('flow_seal', flow_seal)

-- flow_resolve for the build of a data slice: tell up to max_count of the wants
-- waiting for the slice (lua/15_wants.lua settle_slice), in flow_resolve's reply
-- shape: builds whose upstream want failed inline come back to cascade.
local function settle_reply(prefix, up, max_count, now)
  local out = new_out()
  local done = 0
  if settle_slice(prefix, up, max_count, now, out) then
    rcall('ZREM', K.pending_dispatch(prefix), up.id)
    done = 1
  end
  return {done, out.ready, out.dispatch, {0, 0, 0, 0}, out.sent}
end

--[[ flow_resolve: resolve up to max_count outgoing edges of a terminal step;
  the dispatcher calls it until done, hints ready children and cascades
  through skipped ones. Resolving the last edge clears the pending_dispatch
  record; resolving an edge twice is a no-op, so a repeat after a crash is safe.
  For the build of a data slice it tells the wants waiting for the slice instead
  (settle_reply: its sent counts the want_news and build_news messages).
  KEYS[1] exec     HASH   the terminal upstream execution
  ARGV[1] max_count
  Derived: ready, leases, deadlines, terminal, pending_dispatch, counts, events, flows_done,
    execution, done, edges_in, edges_out, inputs, defaults, flow, flow_held, flow_done, event_buffer, waits, waiting, outbox, outbox_msgs, outbox_seq,
    build_waits, missing, slice, slice_wants, slices, want, want_counts, want_due, want_slices, wants, wants_done
  Reply:  {done (1|0), {id, lane, ... ready}, {skipped id with children (to cascade)...},
           {satisfied_count, impossible_count, already_resolved_count, skipped_count},
           sent (outbox messages recorded: remote waits that started, or a slice's news; the
           caller flushes)}
  Errors: BAD_ARGS, NOT_FOUND, INVALID_STATE ]]
local function flow_resolve(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local up = hash_table(rcall('HGETALL', keys[1]))
  if not up.state then raise('NOT_FOUND', 'no execution ' .. keys[1]) end
  if not TERMINAL[up.state] then
    raise('INVALID_STATE', 'execution ' .. up.id .. ' is ' .. up.state .. ', not terminal')
  end
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  if up.slice then return settle_reply(prefix, up, max_count, now) end
  local out = {ready = {}, skipped = {}}
  local out_key = K.edges_out(prefix, up.id)
  local pos = tonumber(up.dispatch_pos or 0)
  local children = rcall('LRANGE', out_key, pos, pos + max_count - 1)
  local live = true
  if up.flow then
    local fstate = rcall('HGET', K.flow(prefix, up.flow), 'state')
    live = fstate ~= 'canceled'
    out.fstates = {[up.flow] = fstate}
  end
  local tally = {satisfied = 0, impossible = 0, already = 0}
  local ups = {up}
  out.ready_z = {}  -- the children made ready, added to their ready sets at once
  for _, child in ipairs(children) do resolve_edges(prefix, ups, child, now, out, live, tally) end
  flush_ready(prefix, out.ready_z)
  pos = pos + #children
  rcall('HSET', keys[1], 'dispatch_pos', pos)
  local done = 0
  if pos >= rcall('LLEN', out_key) then
    rcall('ZREM', K.pending_dispatch(prefix), up.id)
    done = 1
  end
  return {done, out.ready, out.skipped,
    {tally.satisfied, tally.impossible, tally.already, out.skipped_count or 0}, out.sent or 0}
end
register('flow_resolve', flow_resolve)

-- Record the successes of checked flow steps and do the dispatcher's first
-- round and the next claim for them (flow_complete, flow_complete_many).
-- `steps`: each step's fields (complete_fields, the lease checked) with its
-- `result` set, distinct, none succeeded yet; `c`: the caller's max_edges, claim_count, lease_ms,
-- worker and lanes (a set). A step with at most max_edges outgoing edges in a
-- live flow has them all resolved here, grouped by child (a child fed by
-- several of the steps is read, counted and settled once); a child made ready
-- on one of the caller's lanes while its flow runs is leased to the caller, up
-- to claim_count in all, the others are hinted. Returns each step's dispatch
-- flag (1: the dispatcher resolves its edges), the `out` of the resolution
-- (ready, skipped, sent; claimed: the claimed entries, one flat list as
-- exec_claim's; claimed_lanes: their lanes) and their lease expiry (one for the
-- call; 0 when none).
local function steps_succeeded(prefix, leases_key, steps, now, c)
  local fstates = {}  -- the flows' states, read once per call (before any write)
  local children_of = {}  -- (false: none to resolve here)
  for i, f in ipairs(steps) do
    local children = false
    if f.flow and c.max_edges > 0 then
      local fstate = fstates[f.flow]
      if fstate == nil then
        fstate = rcall('HGET', K.flow(prefix, f.flow), 'state') or false
        fstates[f.flow] = fstate
      end
      f.fstate = fstate or nil
      -- (a canceled flow's steps have nothing to dispatch: finish() records no intent)
      if fstate and fstate ~= 'canceled' then
        children = rcall('LRANGE', K.edges_out(prefix, f.id), 0, c.max_edges)  -- one more: is there more?
        if #children > c.max_edges or #children == 0 then children = false end
      end
    end
    children_of[i] = children
  end
  local dispatch, ended = {}, {}
  local feeds = {}  -- child id -> the steps resolving an edge into it, the children in order (group_add)
  for i, f in ipairs(steps) do
    local children = children_of[i]
    local fields
    if children then
      fields = {'result', f.result, 'finished_ms', now, 'dispatch_pos', #children}
    else
      fields = {'result', f.result, 'finished_ms', now}
    end
    move(prefix, f, 'succeeded', fields)
    dispatch[i] = finish(prefix, f, now, true, children and true, ended)
    if children then
      dispatch[i] = 0  -- resolved below, not by the dispatcher
      for _, child in ipairs(children) do group_add(feeds, child, f) end
    end
  end
  -- (one constructor: a table grown field by field is rehashed on the way)
  local out = {ready = {}, skipped = {}, fstates = fstates, alive = {}, ready_z = {},
    claim_c = c.claim_count > 0 and c or nil, claim_now = now, claimed = {}, claimed_lanes = {},
    lease_args = {}, inputs_left = CLAIM_INPUTS}
  ended.alive = out.alive  -- (end_leases spares these flows' outcome checks)
  -- (out.ready_z: the children made ready and not leased, added to their ready sets at once)
  for _, child in ipairs(feeds) do resolve_edges(prefix, feeds[child], child, now, out, true) end
  flush_ready(prefix, out.ready_z)
  end_leases(prefix, leases_key, ended, now)
  local lease_args = out.lease_args
  if #lease_args > 0 then rcall('ZADD', leases_key, unpack(lease_args)) end
  return dispatch, out, lease_args[1] or 0
end

-- The shared arguments of flow_complete and flow_complete_many, from args[first].
-- The set of the caller's lanes is kept by its argument (a worker sends the same
-- one call after call; bounded, and never changed by a reader): parsing it cost
-- every call a gmatch.
local step_claim_args
do
  local lane_sets, lane_sets_n = {}, 0
  step_claim_args = function(args, first)
    local spec = args[first + 4] or ''
    local lanes = lane_sets[spec]
    if not lanes then
      lanes = {}
      for lane in string.gmatch(spec, '%S+') do lanes[lane] = true end
      if lane_sets_n >= 256 then lane_sets, lane_sets_n = {}, 0 end
      lane_sets[spec] = lanes
      lane_sets_n = lane_sets_n + 1
    end
    return {max_edges = int_arg(args[first], 'max_edges', 0, MAX_BATCH),
      claim_count = int_arg(args[first + 1], 'claim_count', 0, MAX_BATCH),
      lease_ms = int_arg(args[first + 2], 'lease_ms', 100, 86400000),
      worker = str_arg(args[first + 3], 'worker_id', 200), lanes = lanes}
  end
end

--[[ flow_complete: a flow step's exec_complete that also does the dispatcher's
  first round and the next claim: it records the success, resolves the step's
  outgoing edges in the same call when there are at most max_edges of them
  (else it records the dispatch intent and leaves them all to the dispatcher,
  as exec_complete does), and leases to the caller up to claim_count of the
  children that became ready on one of its lanes, so a chain step costs one
  round trip. Idempotent per token like exec_complete.
  KEYS[1] exec     HASH   the leased step execution
  ARGV[1] token  ARGV[2] result (JSON)  ARGV[3] max_edges  ARGV[4] claim_count
  ARGV[5] lease_ms  ARGV[6] worker_id  ARGV[7] lanes (space-separated, the caller's)
  Derived: ready, leases, deadlines, terminal, pending_dispatch, counts, events, flows_done,
    execution, done, edges_in, edges_out, inputs, defaults, flow, flow_held, flow_done, event_buffer, waits, waiting,
    outbox, outbox_msgs, outbox_seq, build_waits, slice, slices
  Reply:  {state, first (1|0), dispatch (1: the dispatcher resolves this step's edges),
           {id, lane, ... ready, not leased (to hint)}, {skipped id with children (to cascade)...},
           {claimed entries, one flat list as exec_claim's}, {lane of each claimed entry, ...},
           sent (outbox messages recorded: remote waits that started; the caller flushes),
           lease_expiry_ms (of every claimed entry; 0 when none)}
  Errors: BAD_ARGS, NOT_FOUND, STALE_LEASE, CANCELED, INVALID_STATE ]]
local function flow_complete(keys, args)
  local token = str_arg(args[1], 'token', 32)
  local result = args[2] or ''
  local c = step_claim_args(args, 3)
  local f = leased_execution(keys[1], token, complete_fields)
  if f.state == 'succeeded' then return {'succeeded', 0, 0, {}, {}, {}, {}, 0, 0} end
  check_move(f.id, f.state, 'succeeded')
  local prefix = prefix_of(keys[1])
  f.result = result
  local dispatch, out, expiry = steps_succeeded(prefix, K.leases(prefix), {f}, now_ms(), c)
  return {'succeeded', 1, dispatch[1], out.ready, out.skipped, out.claimed, out.claimed_lanes, out.sent or 0,
    expiry}
end
register('flow_complete', flow_complete)

--[[ flow_complete_many: flow_complete for several flow steps of one partition
  in one call, each recorded as flow_complete records it; one that
  flow_complete would refuse is refused alone (its error in its place of the
  reply) and the others are recorded. The call's clock, event entry, counter
  and index writes, each flow's state read, tallies and outcome check are
  shared, and so is each child's edge resolution: a join fed by several of the
  steps is read, counted and settled once for all of them. claim_count bounds
  the children leased to the caller by the whole call.
  KEYS[1] leases   ZSET   lease expiries of the partition
  ARGV[1] max_edges  ARGV[2] claim_count  ARGV[3] lease_ms  ARGV[4] worker_id
  ARGV[5] lanes (space-separated, the caller's); then ARGV[6] id  ARGV[7] token
    ARGV[8] result (JSON) and the next step's three, at most COMPLETE_MANY_MAX (100) steps
  Derived: ready, leases, deadlines, terminal, pending_dispatch, counts, events, flows_done,
    execution, done, edges_in, edges_out, inputs, defaults, flow, flow_held, flow_done, event_buffer, waits, waiting,
    outbox, outbox_msgs, outbox_seq, build_waits, slice, slices
  Reply:  {{state, first, dispatch, then the next step's three, ...} one flat triple
           per step in ARGV order, as exec_complete_many's,
           {id, lane, ... ready, not leased (to hint)}, {skipped id with children (to cascade)...},
           {claimed entries, one flat list as exec_claim's}, {lane of each claimed entry, ...}, sent,
           lease_expiry_ms (of every claimed entry; 0 when none)}
  Errors: BAD_ARGS ]]
register('flow_complete_many', function(keys, args)
  local c = step_claim_args(args, 1)
  local n = batch_count(args, 3, COMPLETE_MANY_MAX, '(id, token, result) triples', 5)
  local prefix = prefix_of(keys[1])
  local triples, todo = completable_items(prefix, args, 6, n)
  if #todo == 0 then return {triples, {}, {}, {}, {}, 0, 0} end
  local steps, places = {}, {}
  for k = 1, #todo, 2 do
    local j, f = todo[k], todo[k + 1]
    f.result = args[j + 7]
    steps[#steps + 1] = f
    places[#places + 1] = j
  end
  local dispatch, out, expiry = steps_succeeded(prefix, keys[1], steps, now_ms(), c)
  for k, j in ipairs(places) do triples[j + 2] = dispatch[k] end
  return {triples, out.ready, out.skipped, out.claimed, out.claimed_lanes, out.sent or 0, expiry}
end)

--[[ flow_cancel: cancel the flow, then up to max_count of its non-terminal
  steps per call (leased ones too: their workers learn it at renewal, their
  late results are refused). Idempotent; call until remaining is 0.
  KEYS[1] flow     HASH   the flow
  ARGV[1] max_count  ARGV[2] reason
  Derived: ready, delayed, leases, deadlines, terminal, pending_dispatch, counts, events,
    flows_done, unsealed, flow_ops, execution, done, edges_out, flow, flow_order, flow_held,
    flow_done (flow_ops: "cancel:<flow>" until the last step is canceled), waits, waiting, outbox, outbox_msgs, outbox_seq,
    build_waits, slice, slices
  Reply:  {previous_state, remaining}
  Errors: BAD_ARGS, NOT_FOUND, INVALID_STATE ]]
local function flow_cancel(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local reason = args[2] or 'flow canceled'
  local state, pos = unpack(rcall('HMGET', keys[1], 'state', 'cancel_pos'))
  if not state then raise('NOT_FOUND', 'no flow ' .. keys[1]) end
  if state == 'succeeded' or state == 'failed' then
    raise('INVALID_STATE', 'flow is ' .. state .. ', cannot be canceled')
  end
  local prefix = prefix_of(keys[1])
  local fid = rcall('HGET', keys[1], 'id')
  local now = now_ms()
  if state ~= 'canceled' then set_flow_state(prefix, fid, state, 'canceled', now, reason) end
  rcall('ZREM', K.unsealed(prefix), fid)
  pos = tonumber(pos or 0)
  local order = K.flow_order(prefix, fid)
  for _, id in ipairs(rcall('LRANGE', order, pos, pos + max_count - 1)) do
    local e = gate_fields(prefix, id, fid)
    if not TERMINAL[e.state] then
      e.optional = rcall('HGET', e.key, 'optional') or nil  -- (for finish(); gate_fields leaves it out)
      cancel_execution(prefix, e, reason, now)
    end
    pos = pos + 1
  end
  rcall('HSET', keys[1], 'cancel_pos', pos)
  local remaining = math.max(rcall('LLEN', order) - pos, 0)
  op_pending(prefix, 'cancel', fid, remaining > 0, now)
  return {state, remaining}
end
register('flow_cancel', flow_cancel)

--[[ flow_pause: hold the flow's ready and future-ready steps; running steps
  finish. running -> pausing (paused once nothing is leased). Idempotent.
  KEYS[1] flow     HASH   the flow
  Derived: events, flows_done, flow_ops, flow, flow_done (flow_ops: drops an unfinished
    "resume:<flow>")
  Reply:  new state
  Errors: NOT_FOUND, INVALID_STATE ]]
local function flow_pause(keys, args)
  local state, leased = unpack(rcall('HMGET', keys[1], 'state', 'c:leased'))
  if not state then raise('NOT_FOUND', 'no flow ' .. keys[1]) end
  if state == 'pausing' or state == 'paused' then return state end
  if state ~= 'running' then raise('INVALID_STATE', 'flow is ' .. state .. ', cannot be paused') end
  local to = 'paused'
  if tonumber(leased or 0) > 0 then to = 'pausing' end
  local prefix, fid, now = prefix_of(keys[1]), rcall('HGET', keys[1], 'id'), now_ms()
  set_flow_state(prefix, fid, state, to, now, 'pause')
  op_pending(prefix, 'resume', fid, false, now)  -- a pause supersedes an unfinished resume
  return to
end
register('flow_pause', flow_pause)

--[[ flow_resume: run a paused flow again and release up to max_count held
  steps per call to their ready sets (call until remaining is 0). Idempotent.
  KEYS[1] flow     HASH   the flow
  ARGV[1] max_count
  Derived: ready, events, flows_done, flow_ops, execution, flow, flow_held, flow_done (flow_ops:
    "resume:<flow>" until the last held step is released)
  Reply:  {state, {lane...}, remaining}  lanes that received work (to hint)
  Errors: BAD_ARGS, NOT_FOUND, INVALID_STATE ]]
local function flow_resume(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local state = rcall('HGET', keys[1], 'state')
  if not state then raise('NOT_FOUND', 'no flow ' .. keys[1]) end
  if FLOW_TERMINAL[state] then raise('INVALID_STATE', 'flow is ' .. state .. ', cannot be resumed') end
  local prefix, fid = prefix_of(keys[1]), rcall('HGET', keys[1], 'id')
  if state ~= 'running' then
    set_flow_state(prefix, fid, state, 'running', now_ms(), 'resume')
  end
  local held = K.flow_held(prefix, fid)
  local lanes, seen = {}, {}
  local items = rcall('ZRANGE', held, 0, max_count - 1, 'WITHSCORES')
  for i = 1, #items, 2 do
    local id, score = items[i], items[i + 1]
    rcall('ZREM', held, id)
    local lane, st = unpack(rcall('HMGET', K.execution(prefix, id), 'lane', 'state'))
    if st == 'ready' then
      rcall('ZADD', K.ready(prefix, lane), score, id)
      if not seen[lane] then seen[lane] = 1; lanes[#lanes + 1] = lane end
    end
  end
  local remaining = rcall('ZCARD', held)
  op_pending(prefix, 'resume', fid, remaining > 0, now_ms())
  return {'running', lanes, remaining}
end
register('flow_resume', flow_resume)
