--[[ The state machines (ARCHITECTURE.md §3). engine/states.py holds the same
  tables; tests/unit/test_states.py proves they are equal through
  flowslot_states. Every write of a `state` field goes through move(), which
  checks the table, keeps the per-lane counters and appends the event.
]]
local function rcall(...) return redis.call(...) end

local EXEC_TRANSITIONS = {
  blocked   = {ready = 1, delayed = 1, skipped = 1, canceled = 1, expired = 1},
  delayed   = {ready = 1, blocked = 1, canceled = 1, expired = 1},
  ready     = {leased = 1, blocked = 1, canceled = 1, expired = 1},
  leased    = {succeeded = 1, failed = 1, delayed = 1, ready = 1, waiting = 1,
               canceled = 1, expired = 1},
  waiting   = {ready = 1, delayed = 1, failed = 1, canceled = 1, expired = 1},
  succeeded = {},
  failed    = {},
  skipped   = {},
  canceled  = {},
  expired   = {},
}

local FLOW_TRANSITIONS = {
  running   = {pausing = 1, paused = 1, succeeded = 1, failed = 1, canceled = 1},
  pausing   = {paused = 1, running = 1, succeeded = 1, failed = 1, canceled = 1},
  paused    = {running = 1, succeeded = 1, failed = 1, canceled = 1},
  succeeded = {},
  failed    = {},
  canceled  = {},
}

local SCORE_EPOCH_MS = 1700000000000
local PRIORITY_BAND = 2199023255552 -- 2^41 ms: ~69 years of age inside one band

-- Ready sets order by priority (0..255, higher first), then by age.
local function ready_score(priority, now)
  return (255 - priority) * PRIORITY_BAND + (now - SCORE_EPOCH_MS)
end

local TERMINAL = {succeeded = 1, failed = 1, skipped = 1, canceled = 1, expired = 1}

local function can_move(from, to)
  local allowed = EXEC_TRANSITIONS[from]
  return allowed ~= nil and allowed[to] == 1
end

local function check_move(id, from, to)
  if not can_move(from, to) then
    raise('INVALID_STATE', 'execution ' .. id .. ' is ' .. tostring(from) .. ', cannot become ' .. to)
  end
end

-- Write the new state, keep counters and the event stream. `fields` is an
-- optional flat list of extra HSET field/value pairs.
local function move(prefix, id, lane, from, to, fields, detail)
  local key = exec_key(prefix, id)
  if fields and #fields > 0 then
    rcall('HSET', key, 'state', to, unpack(fields))
  else
    rcall('HSET', key, 'state', to)
  end
  local counts = pkey(prefix, 'counts')
  if from ~= '' then rcall('HINCRBY', counts, lane .. ':' .. from, -1) end
  rcall('HINCRBY', counts, lane .. ':' .. to, 1)
  emit(prefix, id, from, to, detail)
end

-- Terminal bookkeeping shared by complete, fail, cancel and expiry: leave the
-- time indexes, enter the retention index, wake result waiters.
local function finish(prefix, id, now)
  rcall('ZREM', pkey(prefix, 'leases'), id)
  rcall('ZREM', pkey(prefix, 'deadlines'), id)
  rcall('ZADD', pkey(prefix, 'terminal'), now, id)
  local done = done_key(prefix, id)
  rcall('RPUSH', done, '1')
  rcall('PEXPIRE', done, DONE_TTL_MS)
end

--[[ flowslot_states: both transition tables, for the parity test.
  KEYS: none   ARGV: none
  Reply:  JSON {"execution": {from: {to: 1}}, "flow": {...}} ]]
register('flowslot_states', function(keys, args)
  return cjson.encode({execution = EXEC_TRANSITIONS, flow = FLOW_TRANSITIONS})
end, {'no-writes'})
