--[[ Retry: run again what did not succeed. A standalone execution goes back
  to ready with fresh attempts; a finished flow re-runs its failed, skipped,
  expired and canceled steps while every succeeded step keeps its result. ]]
local function rcall(...) return redis.call(...) end

local RETRYABLE = {failed = 1, skipped = 1, canceled = 1, expired = 1}

--[[ exec_retry: a failed, canceled or expired standalone execution runs again.
  KEYS[1] exec     HASH   the execution
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
  rcall('ZREM', pkey(prefix, 'terminal'), e.id)
  rcall('DEL', done_key(prefix, e.id))
  rcall('HDEL', keys[1], 'finished_ms', 'error_kind', 'error_msg', 'result')
  move(prefix, e, 'ready', {'attempts', 0, 'ready_ms', now, 'deadline_ms', 0}, 'retry')
  enqueue_ready(prefix, e, now)
  return {previous, e.lane}
end)

-- Phase 1: every retryable step back to blocked, out of the flow's tallies.
local function retry_reset(prefix, fkey, id, now)
  local e = hash_table(rcall('HGETALL', exec_key(prefix, id)))
  if not RETRYABLE[e.state] then return end
  rcall('HINCRBY', fkey, 'terminal', -1)
  if e.optional ~= '1' then rcall('HINCRBY', fkey, 'bad', -1) end
  rcall('ZREM', pkey(prefix, 'terminal'), id)
  rcall('ZREM', pkey(prefix, 'pending_dispatch'), id)
  rcall('DEL', done_key(prefix, id))
  rcall('HDEL', exec_key(prefix, id), 'finished_ms', 'error_kind', 'error_msg', 'result')
  move(prefix, e, 'blocked', {'attempts', 0, 'dispatch_pos', 0, 'deadline_ms', 0}, 'retry')
  rcall('SADD', fkey .. ':retry', id)
end

-- Phase 2: edges from re-run upstreams are pending again; recount the gate.
local function retry_edges(prefix, fkey, id)
  local in_key = prefix .. 'in:' .. id
  local edges = rcall('HGETALL', in_key)
  local ok, bad, soft = 0, 0, 0
  for i = 1, #edges, 2 do
    local up, kind, state = edges[i], string.match(edges[i + 1], '^([%w_]+)|(%w+)$')
    local up_id = rcall('HGET', fkey .. ':steps', up)
    if up_id and rcall('SISMEMBER', fkey .. ':retry', up_id) == 1 then
      state = 'pending'
      rcall('HSET', in_key, up, kind .. '|pending')
      rcall('HDEL', prefix .. 'inp:' .. id, up)
    end
    if state ~= 'pending' then
      if kind == 'ref' or kind == 'after' then
        if state == 'satisfied' then ok = ok + 1 else bad = bad + 1 end
      else
        soft = soft + 1
      end
    end
  end
  rcall('HSET', exec_key(prefix, id), 'req_ok', ok, 'req_bad', bad, 'soft_done', soft)
end

--[[ flow_retry: re-run the failed, skipped, expired and canceled steps of a
  failed or canceled flow, in three bounded phases (reset, edges, settle);
  call until done is 1. Succeeded steps keep their results.
  KEYS[1] flow     HASH   the flow
  ARGV[1] max_count
  Derived: f:<flow>:retry SET (steps being re-run), flow_ops ZSET ("retry:<flow>" until done)
  Reply:  {done (1|0), {{id, lane} ready...}, {skipped id...}}
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
    rcall('DEL', keys[1] .. ':done')
    rcall('ZREM', pkey(prefix, 'flows_done'), fid)
    rcall('HDEL', keys[1], 'finished_ms', 'cancel_pos')
    op_pending(prefix, 'cancel', fid, false, now)  -- a retry supersedes an unfinished cancel
    phase, pos = 'reset', 0
  end
  pos = tonumber(pos or 0)
  local list_key, list_len
  if phase == 'reset' then
    for _, id in ipairs(rcall('LRANGE', keys[1] .. ':order', pos, pos + max_count - 1)) do
      retry_reset(prefix, keys[1], id, now)
    end
    list_len = rcall('LLEN', keys[1] .. ':order')
  else
    local members = rcall('SORT', keys[1] .. ':retry', 'ALPHA', 'LIMIT', pos, max_count)
    for _, id in ipairs(members) do
      if phase == 'edges' then retry_edges(prefix, keys[1], id)
      else settle(prefix, gate_fields(prefix, id), now, out, 'upstream failed again') end
    end
    list_len = rcall('SCARD', keys[1] .. ':retry')
  end
  pos = pos + max_count
  local done = 0
  if pos >= list_len then
    if phase == 'reset' then phase = 'edges'
    elseif phase == 'edges' then phase = 'settle'
    else
      rcall('DEL', keys[1] .. ':retry')
      rcall('HDEL', keys[1], 'retry_phase', 'retry_pos')
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
