--[[ A build finds inputs missing (MissingDependencies, lua/15_wants.lua): it waits
  for them without counting the attempt, and spawns one upstream want per
  missing slice. ]]
local function rcall(...) return redis.call(...) end

local MAX_MISSING = 100

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
  KEYS[1] exec     HASH   the build
  ARGV[1] token  ARGV[2] deps (JSON [{name, partition, want, spec}], distinct, 1..100)
  Derived: build_waits, counts, deadlines, done, edges_out, events, execution, flow, flow_done,
    flow_held, flows_done, leases, missing, outbox, outbox_msgs, outbox_seq, pending_dispatch,
    ready, slice, slice_wants, slices, terminal, waiting, waits, want, want_counts, want_due,
    want_slices, wants, wants_done
  Reply:  {state ('waiting'|'ready'|'failed'), messages sent, {{id, lane} to hint...},
           {id to dispatch...}}
  Errors: BAD_ARGS, NOT_FOUND, STALE_LEASE, CANCELED, INVALID_STATE ]]
register('slice_missing', function(keys, args)
  local token = str_arg(args[1], 'token', 32)
  local deps = decode_body(args[2])
  if #deps < 1 or #deps > MAX_MISSING then raise('BAD_ARGS', 'deps must list 1..' .. MAX_MISSING .. ' slices') end
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
    return out_reply('failed', out)
  end
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
  return out_reply(rcall('HGET', keys[1], 'state'), out)
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
  Reply:  {outcome ('failed'|'ignored'), messages sent, {{id, lane} to hint...}, {id to dispatch...}}
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
