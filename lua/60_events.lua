--[[ Events: deliver an event to the steps waiting for it by correlation.
  A flow with wait steps lives in its correlation's partition, so a delivery
  is one call on one slot: it resumes every waiting step of (event,
  correlation) with the payload as its result, or buffers the event for a wait
  that has not registered yet. See docs/architecture.md §8. ]]
local function rcall(...) return redis.call(...) end

local SEEN_VALUE = 'applied'

--[[ event_deliver: resume up to max_count steps waiting for (event, correlation),
  or buffer the payload when none waits; a repeated event id is applied once.
  KEYS[1] waits    SET    waiting step ids of (event, correlation)
  KEYS[2] buffer   LIST   payloads that came before any wait registered
  KEYS[3] seen     STRING marks an event id as applied (the last call of a delivery sets it)
  ARGV[1] event  ARGV[2] payload (JSON)  ARGV[3] buffer_ttl_ms  ARGV[4] seen_ttl_ms
  ARGV[5] max_count
  Derived: execution, done, deadlines, terminal, pending_dispatch, counts, events, edges_out,
    flow, flow_done, flows_done (through finish of each resumed step), leases, waits, waiting,
    slice, slices
  Reply:  {outcome ('resumed'|'buffered'|'duplicate'), {{id, dispatch (1|0)}, ...}, more (1|0)}
  Errors: BAD_ARGS ]]
register('event_deliver', function(keys, args)
  local event = str_arg(args[1], 'event', 128)
  local payload = args[2] or ''
  if #payload > MAX_PAYLOAD then raise('BAD_ARGS', 'payload over ' .. MAX_PAYLOAD .. ' bytes') end
  local buffer_ttl_ms = int_arg(args[3], 'buffer_ttl_ms', 1, 1e10)
  local seen_ttl_ms = int_arg(args[4], 'seen_ttl_ms', 1, 1e10)
  local max_count = int_arg(args[5], 'max_count', 1, MAX_BATCH)
  if rcall('EXISTS', keys[3]) == 1 then return {'duplicate', {}, 0} end
  local prefix = prefix_of(keys[1])
  local now = now_ms()
  local ids = rcall('SRANDMEMBER', keys[1], max_count)
  local resumed = {}
  for _, id in ipairs(ids) do
    local e = hash_table(rcall('HGETALL', K.execution(prefix, id)))
    if e.state == 'waiting' and e.wait_event == event then
      resumed[#resumed + 1] = {id, resume_wait(prefix, e, payload, now)}
    else
      rcall('SREM', keys[1], id)  -- a member that no longer waits
    end
  end
  if rcall('SCARD', keys[1]) > 0 then return {'resumed', resumed, 1} end
  rcall('SET', keys[3], SEEN_VALUE, 'PX', seen_ttl_ms)
  if #resumed > 0 then return {'resumed', resumed, 0} end
  -- Nobody waits yet: keep the event for the first wait of this correlation.
  rcall('RPUSH', keys[2], payload)
  rcall('LTRIM', keys[2], -EVENT_BUFFER_CAP, -1)
  rcall('PEXPIRE', keys[2], buffer_ttl_ms)
  return {'buffered', {}, 0}
end)
