--[[ The state machines (docs/architecture.md §3). engine/states.py holds the same
  tables; tests/unit/test_lua_contract.py proves they are equal through
  flowslot_states. Every write of an execution's `state` field goes through
  move(), and of a flow's through set_flow_state(); both refuse a transition
  that is not in the table with a BUG error (callers check with check_move
  before their first write, so a BUG error means a bug in this library).
]]

local EXEC_TRANSITIONS = {
  blocked   = {ready = 1, delayed = 1, waiting = 1, skipped = 1, canceled = 1, expired = 1},
  delayed   = {ready = 1, blocked = 1, canceled = 1, expired = 1},
  ready     = {leased = 1, blocked = 1, canceled = 1, expired = 1},
  leased    = {succeeded = 1, failed = 1, delayed = 1, ready = 1, waiting = 1,
               canceled = 1, expired = 1},
  waiting   = {succeeded = 1, ready = 1, delayed = 1, failed = 1, canceled = 1, expired = 1},
  succeeded = {},
  -- retry (exec_retry: -> ready; flow_retry: -> blocked)
  failed    = {ready = 1, blocked = 1},
  skipped   = {blocked = 1},
  canceled  = {ready = 1, blocked = 1},
  expired   = {ready = 1, blocked = 1},
}

local FLOW_TRANSITIONS = {
  running   = {pausing = 1, paused = 1, succeeded = 1, failed = 1, canceled = 1},
  pausing   = {paused = 1, running = 1, succeeded = 1, failed = 1, canceled = 1},
  paused    = {running = 1, succeeded = 1, failed = 1, canceled = 1},
  succeeded = {},
  failed    = {running = 1},  -- flow_retry
  canceled  = {running = 1},  -- flow_retry
}

-- Wants (lua/15_wants.lua): created waiting; building once every slice it wants is
-- live or being built; then one terminal state. A want never goes back.
local WANT_TRANSITIONS = {
  waiting         = {building = 1, satisfied = 1, failed = 1, upstream_failed = 1, expired = 1,
                     canceled = 1},
  building        = {satisfied = 1, failed = 1, upstream_failed = 1, expired = 1, canceled = 1},
  satisfied       = {},
  failed          = {},
  upstream_failed = {},
  expired         = {},
  canceled        = {},
}
local WANT_TERMINAL = {satisfied = 1, failed = 1, upstream_failed = 1, expired = 1, canceled = 1}

-- Data slices: no record means missing; one build at a time; live until invalidated.
local SLICE_TRANSITIONS = {
  missing  = {building = 1},
  building = {live = 1, failed = 1},
  live     = {building = 1, missing = 1},  -- a forced rebuild, app.invalidate
  failed   = {building = 1, missing = 1},  -- a new want builds it again, app.invalidate
}

local SCORE_EPOCH_MS = 1700000000000
local PRIORITY_BAND = 2199023255552 -- 2^41 ms: ~69 years of age inside one band

-- Ready sets order by priority (0..255, higher first; nil: not stored, 0), then by age.
local function ready_score(priority, now)
  return (255 - (priority or 0)) * PRIORITY_BAND + (now - SCORE_EPOCH_MS)
end

-- What exec_submit and exec_submit_many leave unstored when a standalone
-- execution has these values (fewer arguments per submit); every reader takes
-- a missing field as its default here (engine/handle.py SUBMIT_DEFAULTS, the
-- Python side, is checked against this table by tests/unit/test_lua_contract.py).
-- A missing ready_ms of an execution submitted ready is its created_ms.
local EXEC_DEFAULTS = {priority = 0, max_attempts = 3, backoff_ms = 1000, backoff_max_ms = 300000}

-- Field `name` of execution `e` as a number, its default when not stored.
local function exec_num(e, name)
  return tonumber(e[name] or EXEC_DEFAULTS[name])
end

local TERMINAL = {succeeded = 1, failed = 1, skipped = 1, canceled = 1, expired = 1}

-- States an execution may be created in (move() from no state).
local INITIAL_STATES = {ready = 1, delayed = 1, blocked = 1}

local function can_move(from, to)
  local allowed = EXEC_TRANSITIONS[from]
  return allowed ~= nil and allowed[to] == 1
end

local function check_move(id, from, to)
  if not can_move(from, to) then
    raise('INVALID_STATE', 'execution ' .. id .. ' is ' .. tostring(from) .. ', cannot become ' .. to)
  end
end

local FLOW_TERMINAL = {succeeded = 1, failed = 1, canceled = 1}

local function emit_flow(prefix, fid, from, to, detail)
  note_event(K.events(prefix), nil, from, to, fid, detail or '')
end

local function set_flow_state(prefix, fid, from, to, now, detail)
  local allowed = FLOW_TRANSITIONS[from]
  if allowed == nil or allowed[to] ~= 1 then
    raise('BUG', 'flow ' .. fid .. ' cannot move from ' .. tostring(from) .. ' to ' .. to)
  end
  local fkey = K.flow(prefix, fid)
  rcall('HSET', fkey, 'state', to)
  emit_flow(prefix, fid, from, to, detail)
  if FLOW_TERMINAL[to] then
    rcall('HSET', fkey, 'finished_ms', now)
    rcall('ZADD', K.flows_done(prefix), now, fid)
    local done = K.flow_done(prefix, fid)
    rcall('RPUSH', done, to)
    rcall('PEXPIRE', done, DONE_TTL_MS)
  end
end

-- Multi-call flow operations (seal, cancel, resume, retry) record themselves
-- in the partition's `flow_ops` index ("<op>:<flow id>", by start time) until
-- their last call, so the reconciler finishes one a crashed caller left.
local function op_pending(prefix, op, fid, remaining, now)
  local ops, member = K.flow_ops(prefix), op .. ':' .. fid
  if remaining then
    rcall('ZADD', ops, 'NX', now, member)
  else
    rcall('ZREM', ops, member)
  end
end

-- The transition records of one event-stream entry (its flat field list):
-- an execution's record is one 'e' field, consecutive ones share a 'g' field
-- (note_event) or, in the long form,
-- starts at 'id' (and names its flow after 'to'); a flow's starts at 'flow'
-- followed by 'from'. engine/replies.py event_records reads entries the same way.
local function event_records(flat)
  local records, current = {}, nil
  for i = 1, #flat, 2 do
    local name = flat[i]
    if name == 'g' then
      -- "<from> <to> <flow> <n> <id 1> ... <id n> <detail>" (close_group)
      local from, to, flow, n, rest = string.match(flat[i + 1], '^(%S*) (%S*) (%S*) (%d+) (.*)$')
      current = nil
      local pos, ids = 1, {}
      for _ = 1, tonumber(n or 0) do  -- (bounded: the ids the record holds)
        local sp = string.find(rest, ' ', pos, true)
        if not sp then ids = nil; break end
        ids[#ids + 1] = string.sub(rest, pos, sp - 1)
        pos = sp + 1
      end
      if ids then  -- (else not written by close_group)
        local detail = string.sub(rest, pos)
        for _, id in ipairs(ids) do
          local record = {id = id, from = from, to = to}
          if flow ~= '' then record.flow = flow end
          if detail ~= '' then record.detail = detail end
          records[#records + 1] = record
        end
      end
    elseif name == 'e' then
      local id, from, to, flow, detail = string.match(flat[i + 1], '^(%S*) (%S*) (%S*) (%S*) (.*)$')
      current = nil
      if id then  -- (else not written by note_event)
        local record = {id = id, from = from, to = to}
        if flow ~= '' then record.flow = flow end
        if detail ~= '' then record.detail = detail end
        records[#records + 1] = record
      end
    elseif name == 'id' or (name == 'flow' and flat[i + 2] == 'from') then
      current = {}
      records[#records + 1] = current
    end
    if current then current[name] = flat[i + 1] end
  end
  return records
end

-- Write the new state of execution `e` (its fields, updated in place), keep
-- the per-lane and per-flow counters, record the event. `fields` is an
-- optional flat list of extra HSET field/value pairs. The event record and the
-- lane counters are written once at the end of the call (note_event,
-- note_count), also when the call stops on an error, so the index check
-- (rec_audit) finds any transition that started.
-- Strings move() builds for every transition, kept from call to call (a Lua
-- concatenation hashes and interns its result each time): a partition's event
-- stream and counters keys, by prefix; a lane counter's field, by lane and
-- state. Bounded like INT_SEEN; past the bound they are built each time.
local PARTITION_KEYS, partition_keys_n = {}, 0
local LANE_FIELDS, lane_fields_n = {}, 0

local function partition_keys(prefix)
  local pk = PARTITION_KEYS[prefix]
  if pk then return pk end
  pk = {events = K.events(prefix), counts = K.counts(prefix)}
  if partition_keys_n < 16384 then PARTITION_KEYS[prefix] = pk; partition_keys_n = partition_keys_n + 1 end
  return pk
end

-- "<lane>:<state>", the field of the lane counters.
local function lane_field(lane, state)
  local by_state = LANE_FIELDS[lane]
  if not by_state then
    if lane_fields_n >= 1024 then return lane .. ':' .. state end
    by_state = {}
    LANE_FIELDS[lane] = by_state
    lane_fields_n = lane_fields_n + 1
  end
  local field = by_state[state]
  if not field then
    field = lane .. ':' .. state
    by_state[state] = field
  end
  return field
end

-- `memo`: a table a batch call (exec_claim, exec_complete_many, exec_submit_many)
-- passes to each of its moves, where move() keeps the lane counters of its last
-- move (the counters hash's slot table in c_slot, lane, from, to) and their
-- indexes in c_deltas: the batch's next move of the same kind adds to them
-- without the lookups. Other callers pass none and pay nothing for it.
local function move(prefix, e, to, fields, detail, memo)
  local from = e.state or ''
  if from == '' then
    if INITIAL_STATES[to] ~= 1 then raise('BUG', 'execution ' .. e.id .. ' cannot be created ' .. to) end
  else
    local allowed = EXEC_TRANSITIONS[from]  -- (can_move, inline: a call less per transition)
    if allowed == nil or allowed[to] ~= 1 then
      raise('BUG', 'execution ' .. e.id .. ' cannot move from ' .. from .. ' to ' .. to)
    end
  end
  local pk = PARTITION_KEYS[prefix] or partition_keys(prefix)
  note_event(pk.events, e.id, from, to, e.flow, detail)
  local key = e.key or K.execution(prefix, e.id)  -- (e.key: the reader's, one concatenation less)
  local held = e.held
  if held == true then
    -- the caller moves e again in this call (settle: ready, then leased at once): this
    -- move's fields are written with that one's, one HSET
    e.held = fields or {}
  elseif held then
    e.held = nil
    if fields then
      local n = #held
      for i = 1, #fields do held[n + i] = fields[i] end
    end
    rcall('HSET', key, 'state', to, unpack(held))
  elseif fields and #fields > 0 then
    rcall('HSET', key, 'state', to, unpack(fields))
  else
    rcall('HSET', key, 'state', to)
  end
  e.state = to
  local counts, lane = pk.counts, e.lane
  if memo and memo.slots and memo.slots == c_slot[counts] and lane == memo.lane and from == memo.from
      and to == memo.to then
    local i = memo.ito
    c_deltas[i] = c_deltas[i] + 1
    i = memo.ifrom
    if i then c_deltas[i] = c_deltas[i] - 1 end
  else
    local f_from, f_to = nil, lane_field(lane, to)
    if from ~= '' then
      f_from = lane_field(lane, from)
      note_count(counts, f_from, -1)
    end
    note_count(counts, f_to, 1)
    if memo then
      local slots = c_slot[counts]
      local i_to, i_from = slots and slots[f_to], f_from and slots and slots[f_from]
      if not i_to or (f_from and not i_from) then slots = nil end  -- (written at once: no memo)
      memo.slots, memo.lane, memo.from, memo.to, memo.ito, memo.ifrom = slots, lane, from, to, i_to, i_from
    end
  end
  if e.flow then
    -- the flow's per-state counters: written at the call's end like the lane's
    local fkey = K.flow(prefix, e.flow)
    if from ~= '' then note_count(fkey, 'c:' .. from, -1) end
    note_count(fkey, 'c:' .. to, 1)
    -- (a flow this call saw running, e.fstate, is not pausing: only flow_pause makes it so)
    if from == 'leased' and e.fstate ~= 'running' then
      local leased, fstate = unpack(rcall('HMGET', fkey, 'c:leased', 'state'))
      if fstate == 'pausing' and tonumber(leased or 0) + noted_count(fkey, 'c:leased') == 0 then
        set_flow_state(prefix, e.flow, 'pausing', 'paused', 0, 'last running step finished')
      end
    end
  end
end

-- Put a ready execution where claims find it: its lane's ready set, or its
-- flow's held set while the flow is paused or pausing. `e.fstate` 'running':
-- the caller read the flow's state in this call (no call pauses a flow but
-- flow_pause), so it needs no read here. `batch`: a table of lane -> flat
-- score/id list the caller writes with one ZADD per lane (flush_ready) before
-- its call ends, instead of a ZADD here.
local function enqueue_ready(prefix, e, now, batch)
  local score = ready_score(int_of(e.priority), now)
  if e.flow then
    local fstate = e.fstate
    if fstate ~= 'running' then fstate = rcall('HGET', K.flow(prefix, e.flow), 'state') end
    if fstate == 'paused' or fstate == 'pausing' then
      rcall('ZADD', K.flow_held(prefix, e.flow), score, e.id)
      return false
    end
  end
  if batch then
    group_add(batch, e.lane, score, e.id)
    return true
  end
  rcall('ZADD', K.ready(prefix, e.lane), score, e.id)
  return true
end

-- Write what enqueue_ready() gathered in `batch`: one ZADD per lane.
local function flush_ready(prefix, batch)
  for _, lane in ipairs(batch) do rcall_sliced('ZADD', K.ready(prefix, lane), batch[lane]) end
end

-- A sealed flow whose every step is terminal gets its outcome.
local function maybe_finish_flow(prefix, fid, now)
  local fkey = K.flow(prefix, fid)
  local st, total, terminal, bad, sealed = unpack(rcall('HMGET', fkey, 'state', 'total', 'terminal',
    'bad', 'sealed'))
  if st == nil or FLOW_TERMINAL[st] or sealed ~= '1' then return end
  -- (with what this call counted and has not written yet: finish() with `ended`)
  if int_of(terminal or 0) + noted_count(fkey, 'terminal') < int_of(total or 0) then return end
  local outcome = 'succeeded'
  if int_of(bad or 0) + noted_count(fkey, 'bad') > 0 then outcome = 'failed' end
  set_flow_state(prefix, fid, st, outcome, now, 'every step is terminal')
end

-- A data slice's state change, with its event (no record reads as missing).
local function slice_move(prefix, name, from, to, fields, now, detail)
  local allowed = SLICE_TRANSITIONS[from]
  if allowed == nil or allowed[to] ~= 1 then
    raise('BUG', 'slice ' .. name .. ' cannot move from ' .. tostring(from) .. ' to ' .. to)
  end
  rcall('XADD', K.events(prefix), 'MAXLEN', '~', EVENTS_MAXLEN, '*',
    'slice', name, 'from', from, 'to', to, 'detail', detail or '')
  rcall('HSET', K.slice(prefix, name), 'state', to, 'updated_ms', now, unpack(fields))
  rcall('ZADD', K.slices(prefix), now, name)
end

-- The build of a data slice ended: the slice is live, or failed with the reason
-- (an upstream slice's, when the build failed because of it). Its waiting wants
-- are told by flow_resolve (settle_slice), through the pending_dispatch record.
local function build_finished(prefix, e, now)
  local name = e.slice
  local state, build = unpack(rcall('HMGET', K.slice(prefix, name), 'state', 'build'))
  if build ~= e.id then return end  -- a superseded build
  if state == 'failed' and e.state == 'succeeded' then  -- its failed build, retried (exec_retry)
    slice_move(prefix, name, 'failed', 'building', {}, now, 'build ' .. e.id .. ' retried')
    state = 'building'
  end
  if state ~= 'building' then return end
  if e.state == 'succeeded' then
    slice_move(prefix, name, 'building', 'live', {'live_ms', now, 'error', '', 'root', ''}, now, e.id)
    return
  end
  local kind, msg, up_root, up_error = unpack(rcall('HMGET', K.execution(prefix, e.id),
    'error_kind', 'error_msg', 'up_root', 'up_error'))
  local root, err = name, (kind or e.state) .. ': ' .. string.match(msg or '', '^[^\n]*')
  if up_root and up_root ~= '' then root, err = up_root, up_error or '' end
  if kind == 'dependency_cycle' then err = msg end
  slice_move(prefix, name, 'building', 'failed', {'root', root, 'error', err}, now, err)
end

-- Terminal bookkeeping shared by complete, fail, cancel, skip and expiry:
-- leave the time indexes, enter the retention index, wake result waiters
-- (push the done marker when `watched` is '1': e.watched, or read here),
-- record the dispatch intent, and account the flow. Returns 1 when the
-- execution has outgoing edges for the dispatcher to resolve, else 0.
-- `from_lease`: it ends a lease, so it is in the deadlines index only with a
-- deadline of its own (a wait timeout never outlives a suspension).
-- `resolving_here`: the caller found outgoing edges in a live flow and
-- resolves every one in this same call (flow_complete): no dispatch intent.
-- `ended`: a list the id is appended to instead of leaving `leases` and
-- entering `terminal` here; the flow's `terminal` and `bad` tallies are then
-- counted with note_count (written once at the call's end) and its outcome
-- check left to end_leases(), which writes all of it at once
-- (exec_complete_many, flow_complete_many: one ZREM and one ZADD per call, and
-- per flow one write of each tally and one check, not per execution).
-- `e.fstate`, when the caller read the flow's state in this call, spares the read here.
local function finish(prefix, e, now, from_lease, resolving_here, ended)
  local id = e.id
  if ended then
    ended[#ended + 1] = id
  else
    rcall('ZREM', K.leases(prefix), id)
    rcall('ZADD', K.terminal(prefix), now, id)
  end
  if not from_lease or int_of(e.deadline_ms or 0) > 0 then rcall('ZREM', K.deadlines(prefix), id) end
  -- The done marker only when a result waiter asked for it (exec_watch):
  -- most executions nobody waits on, and their marker cost two commands and a key.
  local watched = e.watched or rcall('HGET', e.key or K.execution(prefix, id), 'watched')
  if watched == '1' then
    local done = K.done(prefix, id)
    rcall('RPUSH', done, '1')
    rcall('PEXPIRE', done, DONE_TTL_MS)
  end
  local dispatch = 0
  if e.flow then
    local fkey = K.flow(prefix, e.flow)
    -- A required step that did not succeed fails its flow: failed, skipped,
    -- expired, or canceled on its own (a canceled flow is canceled already).
    local bad = e.optional ~= '1' and e.state ~= 'succeeded'
    if ended then
      -- counted like move()'s counters, written at the call's end (after an error too)
      note_count(fkey, 'terminal', 1)
      if bad then note_count(fkey, 'bad', 1) end
      local flows = ended.flows or {}  -- the flows to check at the end, in order (a set too)
      ended.flows = flows
      if not flows[e.flow] then
        flows[e.flow] = true
        flows[#flows + 1] = e.flow
      end
    else
      rcall('HINCRBY', fkey, 'terminal', 1)
      if bad then rcall('HINCRBY', fkey, 'bad', 1) end
    end
    -- A canceled flow's steps are all canceled by flow_cancel: nothing to dispatch.
    if resolving_here then
      dispatch = 1  -- the caller read the edges and the flow's state, and resolves them now
    elseif rcall('LLEN', K.edges_out(prefix, id)) > 0
        and (e.fstate or rcall('HGET', fkey, 'state')) ~= 'canceled' then
      rcall('ZADD', K.pending_dispatch(prefix), now, id)
      dispatch = 1
    end
    if not ended then maybe_finish_flow(prefix, e.flow, now) end
  elseif e.slice then
    -- A data slice's build: the dispatcher tells the slice's waiting wants (settle_slice).
    build_finished(prefix, e, now)
    rcall('ZADD', K.pending_dispatch(prefix), now, id)
    dispatch = 1
  end
  return dispatch
end

-- Write what finish() left in `ended` for the whole call: the ids leave the
-- lease index `leases_key` and enter `terminal`, and each flow gets its
-- outcome check, but for a flow in the set `ended.alive` (a step of it the
-- call left not terminal: the check could not end it, so it reads nothing).
local function end_leases(prefix, leases_key, ended, now)
  if #ended > 0 then
    local scored = {}
    for j, id in ipairs(ended) do
      scored[2 * j - 1] = now
      scored[2 * j] = id
    end
    rcall('ZREM', leases_key, unpack(ended))
    rcall('ZADD', K.terminal(prefix), unpack(scored))
  end
  local alive = ended.alive
  for _, fid in ipairs(ended.flows or {}) do
    if not (alive and alive[fid]) then maybe_finish_flow(prefix, fid, now) end
  end
end

-- Waits (steps that wait for an event by correlation). A waiting step is a
-- member of its correlation's `waits` set, which event_deliver reads, and of
-- the partition's `waiting` index (by start time, for `flowslot waits`);
-- events that came before any wait registered sit in the correlation's buffer.
--
-- A remote wait (its correlation lives in another partition, `wait_home`, than
-- its flow, `wait_here`) cannot join that set in the same call: it sends a
-- `wait_register` message through the outbox (engine/events.py applies it with
-- wait_register in lua/60_events.lua), and the correlation partition answers
-- a delivery with a `wait_resume` message. Each start of a remote wait gets a
-- new generation (`wait_gen`); its member in the waits set is
-- "<id>#<gen>@<wait_here>", and wait_resume only resumes the step while it
-- still waits with that generation, so a stale registration never wakes a
-- later wait of the same step (a flow retried).
local EVENT_BUFFER_CAP = 1000

-- The waits-set member of a remote wait's current registration.
local function remote_member(e)
  return e.id .. '#' .. e.wait_gen .. '@' .. e.wait_here
end

-- A waiting step that ends (resumed, canceled, timed out) leaves its waits set
-- and the waiting index; a remote wait sends `wait_unregister` to its
-- correlation partition instead (unless `registered` is false: the delivery
-- that resumes it took its member out already). A suspended handler
-- (exec_suspend) leaves the waiting index.
local function leave_waits(prefix, e, registered)
  if e.state == 'waiting' and e.wait_key then
    if not e.wait_home then
      rcall('SREM', K.waits(prefix, e.wait_key), e.id)
    elseif registered ~= false then
      outbox_send(prefix, 'wait_unregister', tonumber(e.wait_home), {key = e.wait_key, member = remote_member(e)})
    end
    rcall('ZREM', K.waiting(prefix), e.id)
  elseif e.state == 'waiting' and e.suspend_on then
    rcall('ZREM', K.waiting(prefix), e.id)
    if e.suspend_on == 'flowslot.slices' then rcall('ZREM', K.build_waits(prefix), e.id) end
  end
end

-- The event came: the waiting step succeeds with its payload as its result.
-- Returns finish()'s dispatch flag.
local function resume_wait(prefix, e, payload, now, registered)
  leave_waits(prefix, e, registered)
  move(prefix, e, 'succeeded', {'result', payload, 'finished_ms', now}, 'event ' .. e.wait_event)
  return finish(prefix, e, now)
end

-- A wait step whose edges are met starts waiting: it takes a buffered event at
-- once if one came early, else it joins the correlation's waits set (and the
-- deadlines index, when it has a timeout). Terminal ids to dispatch go to
-- out.skipped. A remote wait registers through the outbox instead (out.sent
-- counts the messages, so the caller flushes them).
local function start_wait(prefix, e, now, out)
  local timeout = tonumber(e.timeout_ms or 0)
  local deadline = 0
  if timeout > 0 then deadline = now + timeout end
  local fields = {'waiting_ms', now}
  if deadline > 0 then fields = {'waiting_ms', now, 'deadline_ms', deadline} end
  if e.wait_home then
    e.wait_gen = tostring(tonumber(e.wait_gen or 0) + 1)
    fields[#fields + 1] = 'wait_gen'
    fields[#fields + 1] = e.wait_gen
    move(prefix, e, 'waiting', fields)
    outbox_send(prefix, 'wait_register', tonumber(e.wait_home),
      {key = e.wait_key, id = e.id, gen = tonumber(e.wait_gen), back = tonumber(e.wait_here)})
    out.sent = (out.sent or 0) + 1
  else
    move(prefix, e, 'waiting', fields)
    local early = rcall('LPOP', K.event_buffer(prefix, e.wait_key))
    if early then
      if resume_wait(prefix, e, early, now) == 1 then out.skipped[#out.skipped + 1] = e.id end
      return
    end
    rcall('SADD', K.waits(prefix, e.wait_key), e.id)
  end
  rcall('ZADD', K.waiting(prefix), now, e.id)
  if deadline > 0 then rcall('ZADD', K.deadlines(prefix), deadline, e.id) end
end

-- A handler suspended on a wait name (exec_suspend) got its signal: it leaves
-- the waiting index, its deadline entry goes back to the execution's own
-- deadline (a wait timeout may have replaced it), and it is ready to run again.
-- Returns true when it went to its lane's ready set (the caller hints the lane).
local function resume_suspended(prefix, e, now)
  rcall('ZREM', K.waiting(prefix), e.id)
  local deadline = tonumber(e.deadline_ms or 0)
  if deadline > 0 then
    rcall('ZADD', K.deadlines(prefix), deadline, e.id)
  else
    rcall('ZREM', K.deadlines(prefix), e.id)
  end
  move(prefix, e, 'ready', {'ready_ms', now, 'wait_deadline_ms', 0}, 'signal ' .. e.suspend_on)
  rcall('HDEL', K.execution(prefix, e.id), 'suspend_on')
  return enqueue_ready(prefix, e, now)
end

--[[ flowslot_states: both transition tables, for the parity test.
  KEYS: none   ARGV: none
  Derived: none
  Reply:  JSON {"execution": {from: {to: 1}}, "flow": {...}, "initial": {state: 1}, "want": {...},
           "slice": {...}} ]]
register('flowslot_states', function(keys, args)
  return cjson.encode({execution = EXEC_TRANSITIONS, flow = FLOW_TRANSITIONS, initial = INITIAL_STATES,
    want = WANT_TRANSITIONS, slice = SLICE_TRANSITIONS})
end, {'no-writes'})
