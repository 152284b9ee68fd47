--[[ Events: deliver an event to the steps waiting for it by correlation.
  A flow with wait steps lives in its correlation's partition, so a delivery
  is one call on one slot: it resumes every waiting step of (event,
  correlation) with the payload as its result, or buffers the event for a wait
  that has not registered yet. A wait whose flow lives in another partition
  (a remote wait, lua/10_states.lua start_wait) registers here through the
  outbox (wait_register, wait_unregister) and is resumed in its own partition
  by a wait_resume message; an event that only a registration whose wait had
  ended took comes back (wait_return). See docs/architecture.md §8. ]]

local SEEN_VALUE = 'applied'
local DEFAULT_BUFFER_TTL_MS = 3600 * 1000  -- engine/events.py DEFAULT_BUFFER_TTL_S

-- Hand an event to up to max_count members of a waits set: a local member (an
-- execution id) is resumed here; a remote wait's registration
-- ("<id>#<gen>@<partition>") leaves the set and gets a wait_resume message,
-- marked `sole` when it is the set's only member (then an ended wait sends the
-- event back, wait_return). Returns {{id, dispatch}...}, {{msg_id, id}...}.
local function deliver_to(prefix, waits, event, payload, buffer_ttl_ms, max_count, now)
  local sole = rcall('SCARD', waits) == 1
  local resumed, sent = {}, {}
  for _, member in ipairs(rcall('SRANDMEMBER', waits, max_count)) do
    local id, gen, home = string.match(member, '^(.+)#(%d+)@(%d+)$')
    if id then
      rcall('SREM', waits, member)
      local msg = outbox_send(prefix, 'wait_resume', tonumber(home),
        {id = id, gen = tonumber(gen), payload = payload, sole = sole, ttl = buffer_ttl_ms, event = event})
      sent[#sent + 1] = {msg, id}
    else
      local e = hash_table(rcall('HGETALL', K.execution(prefix, member)))
      if e.state == 'waiting' and e.wait_event == event then
        resumed[#resumed + 1] = {member, resume_wait(prefix, e, payload, now)}
      else
        rcall('SREM', waits, member)  -- a member that no longer waits
      end
    end
  end
  return resumed, sent
end

-- Keep an event nobody waits for, for the first wait of its correlation
-- (`front`: an event that came back, older than those buffered since).
local function buffer_event(buffer, payload, buffer_ttl_ms, front)
  if front then rcall('LPUSH', buffer, payload) else rcall('RPUSH', buffer, payload) end
  rcall('LTRIM', buffer, -EVENT_BUFFER_CAP, -1)
  rcall('PEXPIRE', buffer, buffer_ttl_ms)
end

--[[ event_deliver: resume up to max_count steps waiting for (event, correlation),
  or buffer the payload when none waits; a repeated event id is applied once.
  KEYS[1] waits    SET    waiting step ids of (event, correlation)
  KEYS[2] buffer   LIST   payloads that came before any wait registered
  KEYS[3] seen     STRING marks an event id as applied (the last call of a delivery sets it)
  ARGV[1] event  ARGV[2] payload (JSON)  ARGV[3] buffer_ttl_ms  ARGV[4] seen_ttl_ms
  ARGV[5] max_count
  Derived: execution, done, deadlines, terminal, pending_dispatch, counts, events, edges_out,
    flow, flow_done, flows_done (through finish of each resumed step), leases, waits, waiting,
    outbox, outbox_msgs, outbox_seq (a wait_resume message to each remote member),
    build_waits, slice, slices
  Reply:  {outcome ('resumed'|'buffered'|'duplicate'), {{id, dispatch (1|0)}, ...}, more (1|0),
           {{msg_id, execution_id}, ...} (wait_resume messages sent to remote waits: flush them)}
  Errors: BAD_ARGS ]]
register('event_deliver', function(keys, args)
  local event = str_arg(args[1], 'event', 128)
  local payload = args[2] or ''
  if #payload > MAX_PAYLOAD then raise('BAD_ARGS', 'payload over ' .. MAX_PAYLOAD .. ' bytes') end
  local buffer_ttl_ms = int_arg(args[3], 'buffer_ttl_ms', 1, 1e10)
  local seen_ttl_ms = int_arg(args[4], 'seen_ttl_ms', 1, 1e10)
  local max_count = int_arg(args[5], 'max_count', 1, MAX_BATCH)
  if rcall('EXISTS', keys[3]) == 1 then return {'duplicate', {}, 0, {}} end
  local resumed, sent = deliver_to(prefix_of(keys[1]), keys[1], event, payload, buffer_ttl_ms, max_count, now_ms())
  if rcall('SCARD', keys[1]) > 0 then return {'resumed', resumed, 1, sent} end
  rcall('SET', keys[3], SEEN_VALUE, 'PX', seen_ttl_ms)
  if #resumed > 0 or #sent > 0 then return {'resumed', resumed, 0, sent} end
  buffer_event(keys[2], payload, buffer_ttl_ms, false)  -- nobody waits yet
  return {'buffered', {}, 0, {}}
end)

--[[ wait_register: (a message from a remote wait's partition) register the wait in its
  correlation's partition, or take an event buffered for it and send it back as wait_resume.
  Applied once per message.
  KEYS[1] waits    SET    waiting members of (event, correlation)
  KEYS[2] buffer   LIST   payloads that came before any wait registered
  ARGV[1] msg_id  ARGV[2] execution_id  ARGV[3] gen  ARGV[4] back (the wait's own partition)
  Derived: inbox, outbox, outbox_msgs, outbox_seq
  Reply:  {outcome ('registered'|'taken'|'duplicate'), msg_id of the wait_resume sent or ''}
  Errors: BAD_ARGS ]]
register('wait_register', function(keys, args)
  local msg_id = str_arg(args[1], 'msg_id', 200)
  local id = str_arg(args[2], 'execution_id', 200)
  local gen = int_arg(args[3], 'gen', 1, 1e15)
  local back = int_arg(args[4], 'back', 0, 16383)
  local prefix = prefix_of(keys[1])
  local ttl = rcall('PTTL', keys[2])
  if ttl <= 0 then ttl = DEFAULT_BUFFER_TTL_MS end
  if not outbox_first(prefix, msg_id) then return {'duplicate', ''} end
  local early = rcall('LPOP', keys[2])
  if early then
    return {'taken', outbox_send(prefix, 'wait_resume', back,
      {id = id, gen = gen, payload = early, sole = true, ttl = ttl})}
  end
  rcall('SADD', keys[1], id .. '#' .. gen .. '@' .. back)
  return {'registered', ''}
end)

--[[ wait_return: (a message from a remote wait that had ended when the event it alone took
  reached it) the event comes back to its correlation's partition and is handled as a delivery
  to the waits registered now (up to 200), or buffered in front when none waits. Applied once.
  KEYS[1] waits    SET    waiting members of (event, correlation)
  KEYS[2] buffer   LIST   payloads that came before any wait registered
  ARGV[1] msg_id  ARGV[2] event  ARGV[3] payload (JSON)  ARGV[4] buffer_ttl_ms
  Derived: inbox, execution, done, deadlines, terminal, pending_dispatch, counts, events, edges_out,
    flow, flow_done, flows_done, leases, waits, waiting, outbox, outbox_msgs, outbox_seq,
    build_waits, slice, slices
  Reply:  {outcome ('resumed'|'buffered'|'duplicate'), {{id, dispatch (1|0)}, ...},
           sent (wait_resume messages recorded: flush them)}
  Errors: BAD_ARGS ]]
register('wait_return', function(keys, args)
  local msg_id = str_arg(args[1], 'msg_id', 200)
  local event = str_arg(args[2], 'event', 128)
  local payload = args[3] or ''
  if #payload > MAX_PAYLOAD then raise('BAD_ARGS', 'payload over ' .. MAX_PAYLOAD .. ' bytes') end
  local buffer_ttl_ms = int_arg(args[4], 'buffer_ttl_ms', 1, 1e10)
  local prefix = prefix_of(keys[1])
  if not outbox_first(prefix, msg_id) then return {'duplicate', {}, 0} end
  if rcall('SCARD', keys[1]) == 0 then
    buffer_event(keys[2], payload, buffer_ttl_ms, true)
    return {'buffered', {}, 0}
  end
  local resumed, sent = deliver_to(prefix, keys[1], event, payload, buffer_ttl_ms, 200, now_ms())
  return {'resumed', resumed, #sent}
end)

--[[ wait_unregister: (a message from a remote wait that ended otherwise: signal, timeout,
  cancel) remove its registration; a member already gone changes nothing. Applied once per message.
  KEYS[1] waits    SET    waiting members of (event, correlation)
  ARGV[1] msg_id  ARGV[2] member ("<id>#<gen>@<partition>")
  Derived: inbox
  Reply:  outcome ('removed'|'absent'|'duplicate')
  Errors: BAD_ARGS ]]
register('wait_unregister', function(keys, args)
  local msg_id = str_arg(args[1], 'msg_id', 200)
  local member = str_arg(args[2], 'member', 300)
  if not outbox_first(prefix_of(keys[1]), msg_id) then return 'duplicate' end
  if rcall('SREM', keys[1], member) == 1 then return 'removed' end
  return 'absent'
end)

--[[ wait_resume: (a message from a remote wait's correlation partition) resume the step with
  the event's payload, only while it still waits with the generation it registered (and for
  that event name, as event_deliver checks a local member's). A step
  that stopped waiting, or waits again under a later generation, is not resumed ('stale');
  when this registration alone took the event (sole = 1), the event goes back to the
  correlation's partition (wait_return: 'returned'), so it is not lost. Applied once per message.
  KEYS[1] exec     HASH   the waiting step
  ARGV[1] msg_id  ARGV[2] gen  ARGV[3] payload (JSON)  ARGV[4] sole (1|0)  ARGV[5] buffer_ttl_ms
  ARGV[6] event (the delivered event's name, checked against the step's; '' for a buffered event)
  Derived: inbox, execution, done, deadlines, terminal, pending_dispatch, counts, events, edges_out,
    flow, flow_done, flows_done, leases, waits, waiting, outbox, outbox_msgs, outbox_seq (through
    resume_wait, and the wait_return message), build_waits, slice, slices
  Reply:  {outcome ('resumed'|'stale'|'returned'|'duplicate'), execution_id, dispatch (1|0)}
  Errors: BAD_ARGS ]]
register('wait_resume', function(keys, args)
  local msg_id = str_arg(args[1], 'msg_id', 200)
  local gen = int_arg(args[2], 'gen', 1, 1e15)
  local payload = args[3] or ''
  if #payload > MAX_PAYLOAD then raise('BAD_ARGS', 'payload over ' .. MAX_PAYLOAD .. ' bytes') end
  local sole = int_arg(args[4], 'sole', 0, 1) == 1
  local buffer_ttl_ms = int_arg(args[5], 'buffer_ttl_ms', 1, 1e10)
  local event = args[6] or ''
  local prefix = prefix_of(keys[1])
  local e = hash_table(rcall('HGETALL', keys[1]))
  if not outbox_first(prefix, msg_id) then return {'duplicate', e.id or '', 0} end
  if e.state == 'waiting' and e.wait_home and tonumber(e.wait_gen) == gen
      and (event == '' or event == e.wait_event) then
    return {'resumed', e.id, resume_wait(prefix, e, payload, now_ms(), false)}
  end
  if sole and e.wait_home and e.wait_key then
    outbox_send(prefix, 'wait_return', tonumber(e.wait_home),
      {key = e.wait_key, event = e.wait_event, payload = payload, ttl = buffer_ttl_ms})
    return {'returned', e.id, 0}
  end
  return {'stale', e.id or '', 0}
end)
