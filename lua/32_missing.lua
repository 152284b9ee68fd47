--[[ A build finds inputs missing (MissingDependencies, lua/15_wants.lua): it waits
  for them without counting the attempt, and spawns one upstream want per
  missing slice. ]]

local MAX_MISSING = 100

-- Arguments that let a call lease the builds it makes ready to its caller:
-- claim_count, lease_ms, worker_id, lanes (space-separated) from args[first..];
-- absent (an older caller), nothing is leased.
local function lease_args_from(args, first)
  local count = int_arg(args[first] or '0', 'claim_count', 0, MAX_BATCH)
  local c = {count = count, lanes = {}}
  if count == 0 then return c end
  c.lease_ms = int_arg(args[first + 1], 'lease_ms', 100, 86400000)
  c.worker = str_arg(args[first + 2], 'worker_id', 200)
  for lane in string.gmatch(args[first + 3] or '', '%S+') do c.lanes[lane] = true end
  return c
end

-- Install on `out` a hook that leases a build made ready in this call to the
-- caller (up to c.count, on its lanes), as exec_claim would; out.claimed and
-- out.claimed_lanes collect the claim entries, lease_expiries() writes them.
local function lease_to_caller(prefix, out, c, now)
  out.claimed, out.claimed_lanes = {}, {}
  local expiries = {}
  out.lease = function(e)
    if #out.claimed >= c.count or not c.lanes[e.lane] or e.flow then return false end
    local deadline = tonumber(e.deadline_ms or 0)
    if deadline > 0 and deadline <= now then return false end  -- the next claim expires it
    local entry = lease_one(prefix, e, now, c.lease_ms, c.worker, 0, 0)
    out.claimed[#out.claimed + 1] = entry
    out.claimed_lanes[#out.claimed_lanes + 1] = e.lane
    expiries[#expiries + 1] = entry[7]
    expiries[#expiries + 1] = e.id
    return true
  end
  return function()
    if #expiries > 0 then rcall('ZADD', K.leases(prefix), unpack(expiries)) end
  end
end

-- A want call's reply plus the builds leased to the caller.
local function leased_reply(outcome, out)
  return {outcome, out.sent, out.ready, out.dispatch, out.claimed or {}, out.claimed_lanes or {}}
end

-- "dependency cycle: A → B → A" when a missing slice is the build's own slice or
-- one it descends from (chain: the slices whose builds wait, down to this one).
local function cycle_in_chain(chain, name, deps)
  for _, dep in ipairs(deps) do
    local path = nil
    if dep.name == name then path = {name, name} end
    for i, c in ipairs(chain) do
      if not path and c == dep.name then
        path = {}
        for j = i, #chain do path[#path + 1] = chain[j] end
        path[#path + 1] = name
        path[#path + 1] = c
      end
    end
    if path then return 'dependency cycle: ' .. table.concat(path, ' → ') end
  end
  return nil
end

--[[ slice_missing: a leased build raised MissingDependencies. It leaves its lease
  and waits (state waiting, attempt not counted) for every missing slice, each
  asked for by an upstream want (source: this build; data timestamp, SLA and TTL
  inherited); when they are all live it is ready again (build_news). A missing
  slice that closes a cycle fails the build for good instead (dependency_cycle).
  An upstream build this call starts in its own partition is leased to the caller
  at once when it asks (claim_count > 0, the build's lane among its lanes), so
  the worker that found the input missing builds it next without a claim.
  KEYS[1] exec     HASH   the build
  ARGV[1] token  ARGV[2] deps (JSON [{name, partition, want, spec}], distinct, 1..100)
  ARGV[3] claim_count (0 or absent: lease nothing)  ARGV[4] lease_ms  ARGV[5] worker_id
  ARGV[6] lanes (space-separated, the caller's)
  Derived: build_waits, counts, deadlines, done, edges_out, events, execution, flow, flow_done,
    flow_held, flows_done, inputs, leases, missing, outbox, outbox_msgs, outbox_seq, pending_dispatch,
    ready, slice, slice_wants, slices, terminal, waiting, waits, want, want_counts, want_due,
    want_slices, wants, wants_done
  Reply:  {state ('waiting'|'ready'|'failed'), messages sent, {id, lane, ... to hint},
           {id to dispatch...}, {claimed entry as in exec_claim...}, {lane of each claimed entry...}}
  Errors: BAD_ARGS, NOT_FOUND, STALE_LEASE, CANCELED, INVALID_STATE ]]
register('slice_missing', function(keys, args)
  local token = str_arg(args[1], 'token', 32)
  local deps = decode_body(args[2])
  if #deps < 1 or #deps > MAX_MISSING then raise('BAD_ARGS', 'deps must list 1..' .. MAX_MISSING .. ' slices') end
  local c = lease_args_from(args, 3)
  local f = leased_execution(keys[1], token)
  if not f.slice then raise('INVALID_STATE', 'execution ' .. f.id .. ' builds no slice') end
  check_move(f.id, f.state, 'waiting')
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local out = new_out()
  local chain = cjson.decode(f.chain or '[]')
  local cycle = cycle_in_chain(chain, f.slice, deps)
  rcall('ZREM', K.leases(prefix), f.id)
  if cycle then
    move(prefix, f, 'failed', {'finished_ms', now, 'error_kind', 'dependency_cycle', 'error_msg', cycle},
      'dependency_cycle')
    if finish(prefix, f, now) == 1 then out.dispatch[#out.dispatch + 1] = f.id end
    return leased_reply('failed', out)
  end
  local write_leases = lease_to_caller(prefix, out, c, now)
  local mkey = K.missing(prefix, f.id)
  rcall('DEL', mkey)
  for _, dep in ipairs(deps) do rcall('HSET', mkey, dep.name, dep.want .. '|waiting') end
  move(prefix, f, 'waiting', {'attempts', tonumber(f.attempts) - 1, 'suspend_on', BUILD_WAIT,
    'waiting_ms', now, 'missing_left', #deps}, 'missing ' .. #deps .. ' slice(s)')
  rcall('ZADD', K.waiting(prefix), now, f.id)
  rcall('ZADD', K.build_waits(prefix), now, f.id)
  local below = {}
  for i, c in ipairs(chain) do below[i] = c end
  below[#below + 1] = f.slice
  local here = exec_partition(f.id)
  for _, dep in ipairs(deps) do
    local body = {want = dep.want, slices = {{name = dep.name, partition = dep.partition, spec = dep.spec}},
                  data_ts_ms = tonumber(f.data_ts_ms), sla_ms = tonumber(f.sla_ms), ttl_ms = tonumber(f.ttl_ms),
                  source = 'build of ' .. f.slice .. ' (' .. f.id .. ')', comment = '', force = false,
                  parent = f.id, chain = below, breach_task = ''}
    deliver(prefix, here, tonumber(dep.partition), 'want_create', body, now, out)
  end
  write_leases()
  return leased_reply(rcall('HGET', keys[1], 'state'), out)
end)

--[[ slice_complete: a build's exec_complete that also does the dispatcher's first
  round and the next claim: it records the success (the slice goes live), tells
  up to max_count of the wants waiting for the slice in the same call (as
  flow_resolve does), and leases to the caller up to claim_count of the builds
  that this made ready on one of its lanes (a build that waited for the slice,
  resumed), so a discovery level costs one round trip. When wants are left to
  tell, the build stays in pending_dispatch and comes back in the reply's
  dispatch list. An execution that builds no slice (or is a flow step) is
  completed as exec_complete completes it. Idempotent per token like exec_complete.
  KEYS[1] exec     HASH   the leased build
  ARGV[1] token  ARGV[2] result (JSON)  ARGV[3] max_count  ARGV[4] claim_count
  ARGV[5] lease_ms  ARGV[6] worker_id  ARGV[7] lanes (space-separated, the caller's)
  Derived: build_waits, counts, deadlines, done, edges_out, events, execution, flow, flow_done,
    flow_held, flows_done, inputs, leases, missing, outbox, outbox_msgs, outbox_seq, pending_dispatch,
    ready, slice, slice_wants, slices, terminal, waiting, waits, want, want_counts, want_due,
    want_slices, wants, wants_done
  Reply:  {state, messages sent, {id, lane, ... to hint}, {id to dispatch...},
           {claimed entry as in exec_claim...}, {lane of each claimed entry...}}
  Errors: BAD_ARGS, NOT_FOUND, STALE_LEASE, CANCELED, INVALID_STATE ]]
register('slice_complete', function(keys, args)
  local token = str_arg(args[1], 'token', 32)
  local result = args[2] or ''
  local max_count = int_arg(args[3], 'max_count', 1, MAX_BATCH)
  local c = lease_args_from(args, 4)
  local f = leased_execution(keys[1], token, complete_fields)
  local out = new_out()
  if f.state == 'succeeded' then return leased_reply('succeeded', out) end
  check_move(f.id, f.state, 'succeeded')
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  move(prefix, f, 'succeeded', {'result', result, 'finished_ms', now})
  if finish(prefix, f, now, true) == 0 then return leased_reply('succeeded', out) end
  if not f.slice or f.flow then
    out.dispatch[#out.dispatch + 1] = f.id
    return leased_reply('succeeded', out)
  end
  local write_leases = lease_to_caller(prefix, out, c, now)
  if settle_slice(prefix, f, max_count, now, out) then
    rcall('ZREM', K.pending_dispatch(prefix), f.id)
  else
    out.dispatch[#out.dispatch + 1] = f.id
  end
  write_leases()
  return leased_reply('succeeded', out)
end)

--[[ slice_cycle: the want_cycles scanner walked the builds a waiting build waits
  for and came back to its slice (a cycle none of the builds could see when it
  found its input missing): the build fails for good (dependency_cycle), which
  fails its slice and, through the upstream wants, every build of the cycle.
  A build that no longer waits for missing slices is left alone.
  KEYS[1] exec     HASH   the waiting build
  ARGV[1] cycle (text: "dependency cycle: A → B → C → A")
  Derived: build_waits, counts, deadlines, done, edges_out, events, execution, flow, flow_done,
    flows_done, leases, pending_dispatch, slice, slices, terminal, waiting, waits,
    outbox, outbox_msgs, outbox_seq
  Reply:  {outcome ('failed'|'ignored'), messages sent, {id, lane, ... to hint}, {id to dispatch...}}
  Errors: BAD_ARGS ]]
register('slice_cycle', function(keys, args)
  local cycle = str_arg(args[1], 'cycle', 4000)
  local e = hash_table(rcall('HGETALL', keys[1]))
  local out = new_out()
  if e.state ~= 'waiting' or e.suspend_on ~= BUILD_WAIT then return out_reply('ignored', out) end
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  leave_waits(prefix, e)
  move(prefix, e, 'failed', {'finished_ms', now, 'error_kind', 'dependency_cycle', 'error_msg', cycle},
    'dependency_cycle')
  if finish(prefix, e, now) == 1 then out.dispatch[#out.dispatch + 1] = e.id end
  return out_reply('failed', out)
end)
