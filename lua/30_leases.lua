--[[ Leases: claim, renew, complete, fail, release, and lease expiry.
  A lease token is the execution's claim epoch: every claim increments it, so
  a worker whose lease was lost (and re-granted) holds a stale token and every
  call it makes with it is refused with STALE_LEASE. ]]

local MAX_ERROR_MSG = 8192
-- Upstream inputs one claim returns in all. A step with more (a 20,000-way
-- fan-in) gets the count instead, and its worker reads inp:<id> in pages with
-- HSCAN, so no claim copies an unbounded hash.
local CLAIM_INPUTS = 1000


-- HMGET of `names` -> table (absent fields stay nil).
local function hash_fields(key, names)
  local values = rcall('HMGET', key, unpack(names))
  local f = {}
  for i, name in ipairs(names) do
    if values[i] then f[name] = values[i] end
  end
  return f
end

-- What a success reads (exec_complete, flow_complete): the lease check, the
-- transition and finish(); every field a command argument less to copy. One
-- table constructor (a table grown field by field is rehashed on the way).
-- `id`, when the caller knows it (the key was built from it), is not read: each
-- field an HMGET reads costs the call about 2,000 instructions. With `no_step`
-- (exec_complete, exec_complete_many: only flow_complete names the step in its
-- children's inputs) the step is not read either.
local function complete_fields(key, id, no_step)
  local v
  if no_step then
    if id then
      v = rcall('HMGET', key, 'state', 'epoch', 'lane', 'flow', 'optional', 'deadline_ms', 'slice', 'watched')
    else
      v = rcall('HMGET', key, 'state', 'epoch', 'lane', 'flow', 'optional', 'deadline_ms', 'slice', 'watched',
        'id')
      id = v[9] or nil
    end
    -- Only the fields present are set (a missing one comes back false; readers test for
    -- nil): a field set to nil, in a constructor too, still costs the table a slot, and a
    -- standalone execution has none of flow, optional, slice and most have no deadline.
    -- (Six in the constructor: two more fit its eight slots without a rehash.)
    local f = {key = key, id = id, state = v[1] or nil, epoch = v[2] or nil, lane = v[3] or nil,
      watched = v[8] or nil}
    if v[4] then f.flow = v[4] end
    if v[5] then f.optional = v[5] end
    if v[6] then f.deadline_ms = v[6] end
    if v[7] then f.slice = v[7] end
    return f
  end
  -- (`or nil`: a missing field comes back false; readers test for nil)
  if id then
    v = rcall('HMGET', key, 'state', 'epoch', 'lane', 'flow', 'step', 'optional', 'deadline_ms', 'slice', 'watched')
  else
    v = rcall('HMGET', key, 'state', 'epoch', 'lane', 'flow', 'step', 'optional', 'deadline_ms', 'slice', 'watched',
      'id')
    id = v[10] or nil
  end
  return {key = key, id = id, state = v[1] or nil, epoch = v[2] or nil, lane = v[3] or nil,
    flow = v[4] or nil, step = v[5] or nil, optional = v[6] or nil, deadline_ms = v[7] or nil, slice = v[8] or nil,
    watched = v[9] or nil}
end

-- What the other ends of a lease read (renew, fail, release, suspend): the
-- lease check, the retry policy, the transition (move, finish, enqueue_ready:
-- `slice` names a want's build) and the waits a suspension leaves. (The list is
-- an upvalue, not a top-level local: a Lua chunk holds at most 200 of those.)
local lease_fields
do
  local names = {'id', 'state', 'epoch', 'lane', 'flow', 'step', 'optional', 'priority',
    'attempts', 'max_attempts', 'backoff_ms', 'backoff_max_ms', 'deadline_ms', 'lease_expiry_ms',
    'wait_key', 'suspend_on', 'slice', 'watched'}
  lease_fields = function(key) return hash_fields(key, names) end
end

-- Check that `token` is the live lease of the execution at `key`; returns its
-- fields as `read(key, id, option)` gives them (complete_fields, lease_fields; `id`
-- when the caller knows it), or all of
-- them. Read-only, so callers may use it before their first write. Every reader
-- reads 'watched', so a missing one is '0' (no result waiter) and finish()
-- needs no read of its own.
local function leased_execution(key, token, read, id, option)
  local f
  if read then f = read(key, id, option) else f = hash_table(rcall('HGETALL', key)) end
  if f.state == nil then raise('NOT_FOUND', 'no execution ' .. key) end
  f.watched = f.watched or '0'
  f.epoch = f.epoch or '0'  -- not stored until the first claim (exec_submit)
  if f.state == 'canceled' and f.epoch == token then
    raise('CANCELED', 'execution ' .. f.id .. ' was canceled while leased')
  end
  if f.epoch ~= token then
    raise('STALE_LEASE', 'execution ' .. f.id .. ' lease ' .. token .. ' is not the current lease ' .. f.epoch)
  end
  return f
end

-- Retry with exponential back-off and jitter, or fail for good.
local function retry_or_fail(prefix, f, kind, msg, retryable, jitter, now)
  local attempts = tonumber(f.attempts)
  rcall('ZREM', K.leases(prefix), f.id)
  if retryable and attempts < exec_num(f, 'max_attempts') then
    local base = exec_num(f, 'backoff_ms') * (2 ^ (attempts - 1))
    local delay = math.min(base, exec_num(f, 'backoff_max_ms'))
    delay = math.floor(delay / 2 + delay * jitter / 2)
    if delay <= 0 then
      move(prefix, f, 'ready', {'ready_ms', now, 'error_kind', kind, 'error_msg', msg}, kind)
      enqueue_ready(prefix, f, now)
      return 'ready'
    end
    rcall('ZADD', K.delayed(prefix), now + delay, f.id)
    move(prefix, f, 'delayed', {'due_ms', now + delay, 'error_kind', kind, 'error_msg', msg}, kind)
    return 'delayed', delay
  end
  move(prefix, f, 'failed', {'finished_ms', now, 'error_kind', kind, 'error_msg', msg}, kind)
  return 'failed', 0, finish(prefix, f, now, true)
end

-- The fields a claim reads of the execution `id` it popped from the ready set of
-- `lane`, as a table: one
-- constructor (a table grown field by field is rehashed each time it outgrows its size).
-- What only a claim that does not lease needs (`priority` for a held set, `optional`
-- and `slice` for finish()) is read by exec_claim on those paths: each field an
-- HMGET reads costs the call about 2,000 instructions. The lane is the ready set's
-- (enqueue_ready and the index check put an execution in its own lane's set only).
local function claim_fields(key, id, lane)
  local v = rcall('HMGET', key, 'state', 'epoch', 'flow', 'step', 'task', 'payload', 'attempts', 'deadline_ms')
  -- (`or nil`: a missing field comes back false; readers test for nil)
  return {key = key, id = id, lane = lane, state = v[1] or nil, epoch = v[2] or nil, flow = v[3] or nil,
    step = v[4] or nil, task = v[5] or nil, payload = v[6] or nil, attempts = v[7] or nil,
    deadline_ms = v[8] or nil}
end

-- The inputs of a claimed execution that has none (shared: never written).
local NO_INPUTS = {}

-- Lease one ready execution `f` (its claim_fields, already out of its ready
-- set) to `worker`: returns its claim entry and the inputs budget left.
-- `max_inputs`, when the caller knows it (a step's edge count), spares the HLEN.
-- With `flat` (exec_claim's reply list), the entry is appended to it as exec_claim
-- replies it, and the lease expiry is returned in its place: one flat list
-- converts to a reply with fewer tables than a list of entries (a table costs its
-- reply conversion about 2,300 instructions), and no entry table is built; the
-- flat entry leaves out what it can (the lease expiry, the call's for all; the
-- paged count, in the input count's sign; a standalone execution's step), each
-- reply element costing about 1,300 instructions. `memo`: move()'s (exec_claim's
-- leases are a batch of one kind).
local function lease_one(prefix, f, now, lease_ms, worker, inputs_left, max_inputs, flat, memo)
  local id = f.id
  local epoch = int_of(f.epoch or 0) + 1
  local attempt = int_of(f.attempts or 0) + 1
  local expiry = now + lease_ms
  move(prefix, f, 'leased', {'epoch', epoch, 'attempts', attempt, 'worker', worker,
    'started_ms', now, 'lease_expiry_ms', expiry}, worker, memo)
  -- (f.known_inputs: what the caller wrote as its inputs in this call, with max_inputs 0)
  local inputs, paged = f.known_inputs or NO_INPUTS, nil  -- paged: the input count, when they are left out
  if f.flow and max_inputs and max_inputs <= inputs_left then
    if max_inputs > 0 then inputs = rcall('HGETALL', K.inputs(prefix, id)) end
    inputs_left = inputs_left - #inputs / 2
  elseif f.flow then
    local inp = K.inputs(prefix, id)
    local count = rcall('HLEN', inp)
    if count <= inputs_left then
      if count > 0 then inputs = rcall('HGETALL', inp) end
      inputs_left = inputs_left - count
    else
      paged = count
    end
  end
  if not flat then
    return {id, tostring(epoch), f.task, f.payload, attempt, int_of(f.deadline_ms or 0), expiry,
      paged or inputs, f.flow or '', f.step or ''}, inputs_left
  end
  local n = #flat
  flat[n + 1] = id; flat[n + 2] = tostring(epoch); flat[n + 3] = f.task; flat[n + 4] = f.payload
  flat[n + 5] = attempt; flat[n + 6] = int_of(f.deadline_ms or 0)
  if paged then
    flat[n + 7] = -paged
    n = n + 7
  else
    local m = #inputs
    flat[n + 7] = m / 2
    n = n + 7
    for k = 1, m do flat[n + k] = inputs[k] end
    n = n + m
  end
  if f.flow then
    flat[n + 1] = f.flow; flat[n + 2] = f.step or ''
  else
    flat[n + 1] = ''
  end
  return expiry, inputs_left
end

--[[ exec_claim: lease up to max_count ready executions of one lane.
  KEYS[1] ready    ZSET   ready set of the lane, by priority then age
  ARGV[1] max_count  ARGV[2] lease_ms  ARGV[3] worker_id
  Derived: ready, delayed, leases, deadlines, terminal, pending_dispatch, counts, events,
    flows_done, execution, done, edges_out, inputs, flow, flow_held, flow_done, waits, waiting, outbox, outbox_msgs, outbox_seq,
    build_waits, slice, slices
  Reply:  {remaining_ready, {id, token, task, payload, attempt, deadline_ms, n,
           <n pairs upstream_step, input_json>, flow_id, <step_id when flow_id is not ''>,
           then the next claimed execution's, ...}, {expired_id, ...}, lease_expiry_ms}
           one flat list (lease_one with `flat`); n >= 0 input pairs are carried, or
           n is minus the number of inputs when they would take the claim past
           CLAIM_INPUTS (none carried: read inp:<id> with HSCAN); every lease of the
           call ends at lease_expiry_ms. flow_complete(_many) reply their leased
           children the same way; slice_complete and slice_missing carry
           lease_one's entries as a list of lists instead
           ({id, token, task, payload, attempt, deadline_ms, lease_expiry_ms,
           inputs or their count, flow_id, step_id}).
  Errors: BAD_ARGS ]]
local function exec_claim(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local lease_ms = int_arg(args[2], 'lease_ms', 100, 86400000)
  local worker = str_arg(args[3], 'worker_id', 200)
  local prefix = prefix_of(keys[1])
  local lane = string.sub(keys[1], #prefix + 7)  -- (K.ready: prefix .. 'ready:' .. lane)
  if string.sub(keys[1], #prefix + 1, #prefix + 6) ~= 'ready:' or lane == '' then
    raise('BAD_ARGS', 'not a ready set key: ' .. keys[1])
  end
  local now = now_ms()
  local popped = rcall('ZPOPMIN', keys[1], max_count)
  local claimed, expired, lease_args = {}, {}, {}
  local inputs_left = CLAIM_INPUTS
  local fstates = {}  -- flow id -> state, read once per call
  local memo = {}  -- move()'s counters of the last lease (the batch's leases are of one kind)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local f = claim_fields(K.execution(prefix, id), id, lane)
    local fstate = nil
    if f.flow then
      fstate = fstates[f.flow]
      if fstate == nil then
        fstate = rcall('HGET', K.flow(prefix, f.flow), 'state')
        fstates[f.flow] = fstate
      end
    end
    if f.state ~= 'ready' then
      -- index drift: nothing to lease
    elseif fstate == 'paused' or fstate == 'pausing' then
      local priority = rcall('HGET', f.key, 'priority') or nil
      rcall('ZADD', K.flow_held(prefix, f.flow), ready_score(int_of(priority), now), id)
    else
      local deadline = int_of(f.deadline_ms or 0)
      local expires = deadline > 0 and deadline <= now
      if fstate == 'canceled' or expires then  -- it ends here: what finish() reads
        local v = rcall('HMGET', f.key, 'optional', 'slice')
        f.optional, f.slice = v[1] or nil, v[2] or nil
      end
      if fstate == 'canceled' then
        cancel_execution(prefix, f, 'flow canceled', now)
      elseif expires then
        move(prefix, f, 'expired', {'finished_ms', now, 'error_kind', 'deadline',
          'error_msg', 'deadline passed before a worker started it'}, 'deadline')
        finish(prefix, f, now)
        expired[#expired + 1] = id  -- the caller dispatches these
      else
        local expiry
        expiry, inputs_left = lease_one(prefix, f, now, lease_ms, worker, inputs_left, nil, claimed, memo)
        lease_args[#lease_args + 1] = expiry
        lease_args[#lease_args + 1] = id
      end
    end
  end
  if #lease_args > 0 then rcall('ZADD', K.leases(prefix), unpack(lease_args)) end
  -- ZPOPMIN returning fewer than asked emptied the set.
  local remaining = 0
  if #popped >= 2 * max_count then remaining = rcall('ZCARD', keys[1]) end
  return {remaining, claimed, expired, now + lease_ms}
end
register('exec_claim', exec_claim)

--[[ exec_renew: extend a live lease.
  KEYS[1] exec     HASH   the execution
  ARGV[1] token  ARGV[2] lease_ms
  Derived: leases
  Reply:  new lease expiry (ms)
  Errors: BAD_ARGS, NOT_FOUND, STALE_LEASE, CANCELED ]]
local function exec_renew(keys, args)
  local token = str_arg(args[1], 'token', 32)
  local lease_ms = int_arg(args[2], 'lease_ms', 100, 86400000)
  local f = leased_execution(keys[1], token, lease_fields)
  if f.state ~= 'leased' then
    raise('STALE_LEASE', 'execution ' .. f.id .. ' is ' .. f.state .. ', no longer leased')
  end
  local expiry = now_ms() + lease_ms
  rcall('HSET', keys[1], 'lease_expiry_ms', expiry)
  rcall('ZADD', K.leases(prefix_of(keys[1])), expiry, f.id)
  return expiry
end
register('exec_renew', exec_renew)

--[[ exec_complete: record success and the result; idempotent per token.
  KEYS[1] exec     HASH   the execution
  ARGV[1] token  ARGV[2] result (JSON)
  Derived: leases, deadlines, terminal, pending_dispatch, counts, events, flows_done, execution,
    done, edges_out, flow, flow_done, slice, slices
  Reply:  {state, first (1 when this call made the transition, 0 on a repeat),
           dispatch (1 when the dispatcher must resolve its outgoing edges)}
  Errors: BAD_ARGS, NOT_FOUND, STALE_LEASE, CANCELED, INVALID_STATE ]]
local function exec_complete(keys, args)
  local token = str_arg(args[1], 'token', 32)
  local result = args[2] or ''
  local f = leased_execution(keys[1], token, complete_fields, nil, true)
  if f.state == 'succeeded' then return {'succeeded', 0, 0} end
  check_move(f.id, f.state, 'succeeded')
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  move(prefix, f, 'succeeded', {'result', result, 'finished_ms', now})
  return {'succeeded', 1, finish(prefix, f, now, true)}
end
register('exec_complete', exec_complete)

-- Executions one exec_complete_many call records (three ARGV each): bounds the
-- call's time and keeps unpack() of its index writes small.
local COMPLETE_MANY_MAX = 100

-- exec_complete's checks, read-only: the fields of a live lease that may succeed.
local function completable(prefix, id, token, no_step)
  local f = leased_execution(K.execution(prefix, id), token, complete_fields, id, no_step)
  if f.state ~= 'succeeded' then check_move(f.id, f.state, 'succeeded') end
  return f
end

-- The n (id, token, result) triples of `args` from position `first`, checked as
-- exec_complete would, read-only (exec_complete_many, flow_complete_many). Returns
-- the reply's flat triples with each refused execution's ("CODE detail", -1, 0) and
-- each repeat's ('succeeded', 0, 0, also one earlier in this call) filled in, and
-- a flat list of (j, fields) for the others: their reply starts at out[j], their
-- result is args[first + j + 1], and out[j + 2] is left for the caller. `no_step`:
-- as complete_fields (exec_complete_many).
local function completable_items(prefix, args, first, n, no_step)
  local out, todo, seen = {}, {}, {}
  for i = 1, n do
    local a, j = first + 3 * (i - 1), 3 * i - 2
    local id = str_arg(args[a], 'id', 64)
    local token = str_arg(args[a + 1], 'token', 32)
    local ok, f = pcall(completable, prefix, id, token, no_step)
    if not ok then
      if type(f) ~= 'table' or not f.fs then error(f) end
      out[j] = f.fs; out[j + 1] = -1; out[j + 2] = 0
    elseif f.state == 'succeeded' or seen[id] then
      out[j] = 'succeeded'; out[j + 1] = 0; out[j + 2] = 0
    else
      seen[id] = 1
      out[j] = 'succeeded'; out[j + 1] = 1
      todo[#todo + 1] = j
      todo[#todo + 1] = f
    end
  end
  return out, todo
end

--[[ exec_complete_many: record the success of several executions of one partition
  in one call, each as exec_complete would; one that exec_complete would refuse is
  refused alone (its error in its place of the reply) and the others are recorded.
  The call's clock, event entry, counter writes, lease removal and terminal index
  entry are shared; per execution remain its read, its write and its done list.
  KEYS[1] leases   ZSET   lease expiries of the partition
  ARGV[1] id  ARGV[2] token  ARGV[3] result (JSON); then the next execution's three,
    at most COMPLETE_MANY_MAX (100) executions
  Derived: leases, deadlines, terminal, pending_dispatch, counts, events, flows_done, execution,
    done, edges_out, flow, flow_done, slice, slices
  Reply:  {state, first, dispatch, then the next execution's three, ...} one flat
           triple per execution, in ARGV order: exec_complete's reply, or
           "CODE detail", -1, 0 for an execution exec_complete would refuse
  Errors: BAD_ARGS ]]
local function exec_complete_many(keys, args)
  local n = batch_count(args, 3, COMPLETE_MANY_MAX, '(id, token, result) triples')
  local prefix = prefix_of(keys[1])
  local out, todo = completable_items(prefix, args, 1, n, true)
  if #todo == 0 then return out end
  local now = now_ms()
  local ended, memo = {}, {}  -- (memo: move()'s counters of the last success, for the next)
  for k = 1, #todo, 2 do
    local j, f = todo[k], todo[k + 1]
    move(prefix, f, 'succeeded', {'result', args[j + 2], 'finished_ms', now}, nil, memo)
    out[j + 2] = finish(prefix, f, now, true, false, ended)
  end
  end_leases(prefix, keys[1], ended, now)
  return out
end
register('exec_complete_many', exec_complete_many)

--[[ exec_fail: record a failed attempt; retry with back-off or fail for good.
  KEYS[1] exec     HASH   the execution
  ARGV[1] token  ARGV[2] error_kind  ARGV[3] error_msg  ARGV[4] retryable (0|1)
  ARGV[5] jitter (0..1, the caller's random draw)
  Derived: ready, delayed, leases, deadlines, terminal, pending_dispatch, counts, events,
    flows_done, execution, done, edges_out, flow, flow_held, flow_done, slice, slices
  Reply:  {state ('ready', 'delayed' or 'failed'), first (1 made the transition, 0 repeat),
           delay_ms (until a delayed retry is due; 0 otherwise), dispatch (1|0)}
  Errors: BAD_ARGS, NOT_FOUND, STALE_LEASE, CANCELED, INVALID_STATE ]]
local function exec_fail(keys, args)
  local token = str_arg(args[1], 'token', 32)
  local kind = str_arg(args[2], 'error_kind', 200)
  local msg = string.sub(args[3] or '', 1, MAX_ERROR_MSG)
  local retryable = int_arg(args[4], 'retryable', 0, 1) == 1
  local jitter = num_arg(args[5], 'jitter', 0, 1)
  local f = leased_execution(keys[1], token, lease_fields)
  if f.state ~= 'leased' then
    if f.state == 'failed' or f.state == 'delayed' or f.state == 'ready' then return {f.state, 0, 0, 0} end
  end
  check_move(f.id, f.state, 'failed')
  local state, delay, dispatch = retry_or_fail(prefix_of(keys[1]), f, kind, msg, retryable, jitter, now_ms())
  return {state, 1, delay or 0, dispatch or 0}
end
register('exec_fail', exec_fail)

--[[ exec_release: hand a leased execution back (worker shutdown); the attempt
  does not count.
  KEYS[1] exec     HASH   the execution
  ARGV[1] token
  Derived: ready, leases, counts, events, flows_done, execution, flow, flow_held, flow_done
  Reply:  lane (to hint)
  Errors: BAD_ARGS, NOT_FOUND, STALE_LEASE, CANCELED, INVALID_STATE ]]
local function exec_release(keys, args)
  local token = str_arg(args[1], 'token', 32)
  local f = leased_execution(keys[1], token, lease_fields)
  check_move(f.id, f.state, 'ready')
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  rcall('ZREM', K.leases(prefix), f.id)
  move(prefix, f, 'ready', {'attempts', tonumber(f.attempts) - 1, 'ready_ms', now}, 'released')
  enqueue_ready(prefix, f, now)
  return f.lane
end
register('exec_release', exec_release)

--[[ exec_suspend: a handler called wait_for(name) and no signal of that name has
  come: it leaves the lease and waits (attempt not counted), in the partition's
  waiting index and, with a timeout, in the deadlines index (the earlier of the
  wait's and the execution's deadline). When the signal came meanwhile
  (exec_signal stored it), it is ready to run again at once instead.
  KEYS[1] exec     HASH   the execution
  ARGV[1] token  ARGV[2] name (the wait name)  ARGV[3] timeout_ms (0: none)
  Derived: ready, leases, deadlines, counts, events, flows_done, execution, signals, waiting,
    flow, flow_held, flow_done
  Reply:  {state ('waiting'|'ready'), lane (to hint when ready)}
  Errors: BAD_ARGS, NOT_FOUND, STALE_LEASE, CANCELED, INVALID_STATE ]]
local function exec_suspend(keys, args)
  local token = str_arg(args[1], 'token', 32)
  local name = str_arg(args[2], 'name', 200)
  local timeout_ms = int_arg(args[3], 'timeout_ms', 0, 1e12)
  local f = leased_execution(keys[1], token, lease_fields)
  check_move(f.id, f.state, 'waiting')
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local attempts = tonumber(f.attempts) - 1
  rcall('ZREM', K.leases(prefix), f.id)
  if rcall('HEXISTS', K.signals(prefix, f.id), name) == 1 then
    move(prefix, f, 'ready', {'attempts', attempts, 'ready_ms', now}, 'signal ' .. name)
    enqueue_ready(prefix, f, now)
    return {'ready', f.lane}
  end
  local wait_deadline = 0
  if timeout_ms > 0 then wait_deadline = now + timeout_ms end
  move(prefix, f, 'waiting', {'attempts', attempts, 'suspend_on', name, 'waiting_ms', now,
    'wait_deadline_ms', wait_deadline}, 'wait ' .. name)
  rcall('ZADD', K.waiting(prefix), now, f.id)
  local deadline = tonumber(f.deadline_ms or 0)
  if wait_deadline > 0 and (deadline == 0 or wait_deadline < deadline) then
    rcall('ZADD', K.deadlines(prefix), wait_deadline, f.id)
  end
  return {'waiting', f.lane}
end
register('exec_suspend', exec_suspend)

--[[ exec_expire_leases: fail the attempts whose lease expired (lease_lost).
  KEYS[1] leases   ZSET   lease expiries
  ARGV[1] max_count  ARGV[2] jitter (0..1)
  Derived: ready, delayed, leases, deadlines, terminal, pending_dispatch, counts, events,
    flows_done, execution, done, edges_out, flow, flow_held, flow_done, slice, slices
  Reply:  {{id, new_state, lane, dispatch (1|0)}, ...}
  Errors: BAD_ARGS ]]
local function exec_expire_leases(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local jitter = num_arg(args[2], 'jitter', 0, 1)
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local ids = rcall('ZRANGEBYSCORE', keys[1], '-inf', now, 'LIMIT', 0, max_count)
  local out = {}
  for _, id in ipairs(ids) do
    local f = hash_table(rcall('HGETALL', K.execution(prefix, id)))
    if f.state == 'leased' then
      local state, _, dispatch = retry_or_fail(prefix, f, 'lease_lost',
        'lease expired at ' .. f.lease_expiry_ms, true, jitter, now)
      out[#out + 1] = {id, state, f.lane, dispatch or 0}
    else
      rcall('ZREM', keys[1], id)
    end
  end
  return out
end
register('exec_expire_leases', exec_expire_leases)
