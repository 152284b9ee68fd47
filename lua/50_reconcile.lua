--[[ The reconciler's functions: each reads a time-ordered index from its due
  end, so the cost of a pass depends on what is due, never on how many
  executions are stored; each is bounded by an ARGV batch size. ]]
local function rcall(...) return redis.call(...) end

--[[ rec_due: members of a time-scored index that came due at least age_ms ago.
  KEYS[1] index    ZSET   scored by time (pending_dispatch, unsealed, ...)
  ARGV[1] age_ms  ARGV[2] max_count
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
  Reply:  {{id, dispatch (1|0)}, ...}
  Errors: BAD_ARGS ]]
register('exec_expire_deadlines', function(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local out = {}
  for _, id in ipairs(rcall('ZRANGEBYSCORE', keys[1], '-inf', now, 'LIMIT', 0, max_count)) do
    local e = hash_table(rcall('HGETALL', exec_key(prefix, id)))
    rcall('ZREM', keys[1], id)
    if e.state and not TERMINAL[e.state] then
      rcall('ZREM', ready_key(prefix, e.lane), id)
      rcall('ZREM', pkey(prefix, 'delayed'), id)
      if e.flow then rcall('ZREM', flow_key(prefix, e.flow) .. ':held', id) end
      move(prefix, e, 'expired', {'finished_ms', now, 'error_kind', 'deadline',
        'error_msg', 'deadline passed while ' .. e.state}, 'deadline')
      out[#out + 1] = {id, finish(prefix, e, now)}
    end
  end
  return out
end)

--[[ rec_stale_ready: lanes whose first ready execution has waited at least
  age_ms (its hint was lost, or no worker serves the lane).
  KEYS[1] counts   HASH   "<lane>:<state>" -> count, kept by every transition
  ARGV[1] age_ms  ARGV[2] max_lanes
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
      local head = rcall('ZRANGE', ready_key(prefix, lane), 0, 0)[1]
      if head then
        local since = tonumber(rcall('HGET', exec_key(prefix, head), 'ready_ms') or now)
        if now - since >= age_ms then lanes[#lanes + 1] = lane end
      end
    end
  end
  return lanes
end, {'no-writes'})

local function delete_execution(prefix, id)
  rcall('DEL', exec_key(prefix, id), done_key(prefix, id), prefix .. 'in:' .. id,
    prefix .. 'out:' .. id, prefix .. 'inp:' .. id, prefix .. 'def:' .. id)
  rcall('ZREM', pkey(prefix, 'terminal'), id)
end

--[[ rec_purge: delete standalone executions that finished at least age_ms ago
  (flow steps are deleted with their flow), and trim the event stream to the
  same age.
  KEYS[1] terminal ZSET   terminal executions by finish time
  ARGV[1] age_ms  ARGV[2] max_count
  Reply:  purged_count
  Errors: BAD_ARGS ]]
register('rec_purge', function(keys, args)
  local age_ms = int_arg(args[1], 'age_ms', 0, 1e13)
  local max_count = int_arg(args[2], 'max_count', 1, MAX_BATCH)
  local prefix = prefix_of(keys[1])
  local cutoff = now_ms() - age_ms
  local purged = 0
  for _, id in ipairs(rcall('ZRANGEBYSCORE', keys[1], '-inf', cutoff, 'LIMIT', 0, max_count)) do
    local flow, idem, state, lane = unpack(rcall('HMGET', exec_key(prefix, id), 'flow', 'idem', 'state', 'lane'))
    if flow then
      rcall('ZREM', keys[1], id)
    else
      if idem and rcall('GET', idem) == id then rcall('DEL', idem) end
      if state and lane then rcall('HINCRBY', pkey(prefix, 'counts'), lane .. ':' .. state, -1) end
      delete_execution(prefix, id)
      purged = purged + 1
    end
  end
  rcall('XTRIM', pkey(prefix, 'events'), 'MINID', '~', cutoff)
  return purged
end)

--[[ flow_purge: delete flows that finished at least age_ms ago, with their
  steps, at most max_steps steps per call (a big flow takes several calls).
  KEYS[1] flows_done ZSET  terminal flows by finish time
  ARGV[1] age_ms  ARGV[2] max_steps
  Reply:  {flows_purged, steps_purged}
  Errors: BAD_ARGS ]]
register('flow_purge', function(keys, args)
  local age_ms = int_arg(args[1], 'age_ms', 0, 1e13)
  local budget = int_arg(args[2], 'max_steps', 1, MAX_BATCH)
  local prefix = prefix_of(keys[1])
  local flows, steps = 0, 0
  for _, fid in ipairs(rcall('ZRANGEBYSCORE', keys[1], '-inf', now_ms() - age_ms, 'LIMIT', 0, 10)) do
    local fkey = flow_key(prefix, fid)
    local ids = rcall('LPOP', fkey .. ':order', budget - steps) or {}
    for _, id in ipairs(ids) do
      local state, lane = unpack(rcall('HMGET', exec_key(prefix, id), 'state', 'lane'))
      if state and lane then rcall('HINCRBY', pkey(prefix, 'counts'), lane .. ':' .. state, -1) end
      delete_execution(prefix, id)
    end
    steps = steps + #ids
    if rcall('LLEN', fkey .. ':order') == 0 then
      rcall('DEL', fkey, fkey .. ':steps', fkey .. ':roots', fkey .. ':held', fkey .. ':done')
      rcall('ZREM', keys[1], fid)
      rcall('ZREM', pkey(prefix, 'flows'), fid)
      flows = flows + 1
    end
    if steps >= budget then break end
  end
  return {flows, steps}
end)

--[[ rec_check: repair drift between index sets and entity states in a
  bounded window from the head of each index: a member whose execution is
  gone or in another state is removed. A healthy partition fixes nothing.
  KEYS[1] counts   HASH   lanes come from its "<lane>:<state>" fields
  ARGV[1] max_count (per index)
  Reply:  {{index, id, found_state}, ...}
  Errors: BAD_ARGS ]]
register('rec_check', function(keys, args)
  local max_count = int_arg(args[1], 'max_count', 1, MAX_BATCH)
  local prefix = prefix_of(keys[1])
  local indexes = {{pkey(prefix, 'leases'), 'leased'}, {pkey(prefix, 'delayed'), 'delayed'}}
  local flat, seen = rcall('HGETALL', keys[1]), {}
  for i = 1, #flat, 2 do
    local lane = string.match(flat[i], '^(.*):[a-z]+$')
    if lane and not seen[lane] then
      seen[lane] = 1
      indexes[#indexes + 1] = {ready_key(prefix, lane), 'ready'}
    end
  end
  local fixed = {}
  for _, index in ipairs(indexes) do
    for _, id in ipairs(rcall('ZRANGE', index[1], 0, max_count - 1)) do
      local state = rcall('HGET', exec_key(prefix, id), 'state')
      if state ~= index[2] then
        rcall('ZREM', index[1], id)
        fixed[#fixed + 1] = {index[1], id, state or 'missing'}
      end
    end
  end
  return fixed
end)

--[[ own_claim: take or renew the reconciler lease on one partition.
  KEYS[1] owner    STRING daemon id holding the partition, with a TTL
  ARGV[1] daemon_id  ARGV[2] ttl_ms
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
