--[[ Signals: complete one waiting step of a flow, named by a signed token.
  engine/signals.py checks a token (format, namespace, key id, HMAC) before
  wait_signal runs, so a forged token never reaches the server; the token's
  times (its own expiry, its key's end of grace) are checked here against
  the server's clock. The namespace's signing keys live in one HASH
  (<ns>:secrets: current -> key id, secret:<id> -> hex secret, retired:<id>
  -> valid until, ms), created on first use by Python and rolled by
  secrets_rotate. ]]

-- The arguments every signal call shares (a wait name, the payload, the token's
-- expiry and its key's grace deadline), checked on the server clock: returns
-- name, payload, now, and 'expired' / 'retired' when the token no longer holds.
local function signal_args(args)
  local name = str_arg(args[1], 'name', 200)
  local payload = str_arg(args[2], 'payload', MAX_PAYLOAD)
  local expires_ms = int_arg(args[3], 'expires_ms', 0, 1e15)
  local key_until_ms = int_arg(args[4], 'key_until_ms', 0, 1e15)
  local now = now_ms()
  if expires_ms > 0 and now >= expires_ms then return name, payload, now, 'expired' end
  if key_until_ms > 0 and now >= key_until_ms then return name, payload, now, 'retired' end
  return name, payload, now, nil
end

--[[ wait_signal: resume one waiting step of a flow with a signal's payload as its result.
  A repeat of the signal that resumed the step (the same payload) replies
  'duplicate' and writes nothing; any other step state is refused.
  KEYS[1] flow     HASH   the flow
  ARGV[1] step  ARGV[2] payload (JSON)  ARGV[3] expires_ms (0: never)  ARGV[4] key_until_ms (0: current key)
  Derived: flow_steps, execution, waits, waiting, events, counts, flow, flow_done, flows_done,
    leases, deadlines, terminal, done, edges_out, pending_dispatch (through resume_wait), outbox, outbox_msgs, outbox_seq,
    build_waits, slice, slices
  Reply:  {outcome ('resumed'|'duplicate'|'expired'|'retired'), execution_id or '', dispatch (1|0)}
  Errors: BAD_ARGS, NOT_FOUND, INVALID_STATE ]]
register('wait_signal', function(keys, args)
  local step, payload, now, stale = signal_args(args)
  if stale then return {stale, '', 0} end
  local fstate, fid = unpack(rcall('HMGET', keys[1], 'state', 'id'))
  if not fstate then raise('NOT_FOUND', 'no flow ' .. keys[1]) end
  if fstate == 'canceled' then raise('INVALID_STATE', 'flow ' .. fid .. ' is canceled: its waits take no signal') end
  local prefix = prefix_of(keys[1])
  local id = rcall('HGET', K.flow_steps(prefix, fid), step)
  if not id then raise('NOT_FOUND', 'flow ' .. fid .. ' has no step ' .. step) end
  local e = hash_table(rcall('HGETALL', K.execution(prefix, id)))
  if not e.wait_event then raise('INVALID_STATE', 'step ' .. step .. ' is not a wait step') end
  if e.state == 'succeeded' and e.signaled == '1' and e.result == payload then
    return {'duplicate', id, 0}
  end
  if e.state ~= 'waiting' then
    raise('INVALID_STATE', 'step ' .. step .. ' of flow ' .. fid .. ' is ' .. tostring(e.state) .. ', not waiting')
  end
  local dispatch = resume_wait(prefix, e, payload, now)
  rcall('HSET', K.execution(prefix, id), 'signaled', 1)
  return {'resumed', id, dispatch}
end)

--[[ exec_signal: deliver a signal to one execution's named wait (a handler's wait_for).
  The payload is stored under the name in the execution's signals HASH; when
  the execution is suspended on that name it becomes ready (its handler runs
  again and wait_for returns the payload). A signal that comes before the wait
  stays stored, and wait_for takes it. A repeat (the same payload) replies
  'duplicate' and writes nothing; another payload for a name that has one, or
  any signal to a terminal execution, is refused.
  KEYS[1] exec     HASH   the execution
  ARGV[1] name  ARGV[2] payload (JSON)  ARGV[3] expires_ms (0: never)  ARGV[4] key_until_ms (0: current key)
  Derived: signals, waiting, deadlines, execution, ready, flow, flow_held, counts, events, flows_done,
    flow_done (through resume_suspended)
  Reply:  {outcome ('resumed'|'stored'|'duplicate'|'expired'|'retired'), lane, hinted (1 when
           it went to its lane's ready set: the caller hints the lane)}
  Errors: BAD_ARGS, NOT_FOUND, INVALID_STATE ]]
register('exec_signal', function(keys, args)
  local name, payload, now, stale = signal_args(args)
  if stale then return {stale, '', 0} end
  local e = hash_table(rcall('HGETALL', keys[1]))
  if not e.state then raise('NOT_FOUND', 'no execution ' .. keys[1]) end
  local prefix = prefix_of(keys[1])
  local sig = K.signals(prefix, e.id)
  local stored = rcall('HGET', sig, name)
  if stored == payload then return {'duplicate', e.lane, 0} end
  if stored then
    raise('INVALID_STATE', 'execution ' .. e.id .. ' already received signal ' .. name .. ' (another payload)')
  end
  if TERMINAL[e.state] then
    raise('INVALID_STATE', 'execution ' .. e.id .. ' is ' .. e.state .. ': it takes no signal')
  end
  rcall('HSET', sig, name, payload)
  if e.state == 'waiting' and e.suspend_on == name then
    local hinted = 0
    if resume_suspended(prefix, e, now) then hinted = 1 end
    return {'resumed', e.lane, hinted}
  end
  return {'stored', e.lane, 0}
end)

--[[ secrets_rotate: make a new signing key current. The previous current key
  stays valid grace_ms more (server time); retired keys whose grace has
  passed are dropped (up to max_keys fields are read).
  KEYS[1] secrets  HASH   the namespace's signing keys
  ARGV[1] key_id (8 hex digits)  ARGV[2] secret (64 hex digits)  ARGV[3] grace_ms  ARGV[4] max_keys
  Derived: none
  Reply:  {previous key id or '', previous key valid until (ms, 0: none), dropped key count}
  Errors: BAD_ARGS, ALREADY_EXISTS ]]
register('secrets_rotate', function(keys, args)
  local key_id = args[1] or ''
  if not string.match(key_id, '^%x%x%x%x%x%x%x%x$') then raise('BAD_ARGS', 'key_id must be 8 hex digits') end
  local secret = args[2] or ''
  if #secret ~= 64 or not string.match(secret, '^%x+$') then raise('BAD_ARGS', 'secret must be 64 hex digits') end
  local grace_ms = int_arg(args[3], 'grace_ms', 0, 1e12)
  local max_keys = int_arg(args[4], 'max_keys', 1, MAX_BATCH)
  if rcall('HEXISTS', keys[1], 'secret:' .. key_id) == 1 then
    raise('ALREADY_EXISTS', 'signing key ' .. key_id .. ' exists')
  end
  local now = now_ms()
  local flat = rcall('HGETALL', keys[1])
  local dropped = 0
  for i = 1, math.min(#flat, 2 * max_keys), 2 do
    local retired = string.match(flat[i], '^retired:(%x+)$')
    if retired and tonumber(flat[i + 1]) <= now then
      rcall('HDEL', keys[1], flat[i], 'secret:' .. retired)
      dropped = dropped + 1
    end
  end
  local previous = rcall('HGET', keys[1], 'current')
  local until_ms = 0
  if previous then
    until_ms = now + grace_ms
    rcall('HSET', keys[1], 'retired:' .. previous, until_ms)
  end
  rcall('HSET', keys[1], 'secret:' .. key_id, secret, 'current', key_id)
  return {previous or '', until_ms, dropped}
end)
