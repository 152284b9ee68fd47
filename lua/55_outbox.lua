--[[ The outbox: messages one partition sends to another (engine/outbox.py).
  A writing function records them with outbox_send (lua/00_helpers.lua) in the
  same call as its own writes; Python reads the due ones (outbox_due), applies
  each on its target partition with the function its kind names (which calls
  outbox_first, so applying twice changes nothing), then acknowledges them
  (outbox_ack). The target's inbox remembers applied ids for 24 hours
  (the reconciler's outbox_sweep drops older ones). ]]

-- Up to max_count messages of `outbox` recorded at least age_ms ago, oldest
-- first, as {id, JSON}; an id without its message (never written so) comes
-- back with '' and the caller leaves it in place, logged.
local function due_messages(outbox, msgs, age_ms, max_count)
  local ids = rcall('ZRANGEBYSCORE', outbox, '-inf', now_ms() - age_ms, 'LIMIT', 0, max_count)
  local out = {}
  for _, id in ipairs(ids) do out[#out + 1] = {id, rcall('HGET', msgs, id) or ''} end
  return out
end

-- ARGV msg_ids: a JSON list of at most MAX_BATCH message ids (strings).
local function msg_ids_arg(value)
  local ok, ids = pcall(cjson.decode, value or '')
  if not ok or type(ids) ~= 'table' or #ids > MAX_BATCH then
    raise('BAD_ARGS', 'msg_ids must be a JSON list of at most ' .. MAX_BATCH .. ' ids')
  end
  local entries = 0
  for _, id in pairs(ids) do  -- a JSON object decodes to a table too: every entry must be a list item
    entries = entries + 1
    if entries > #ids then raise('BAD_ARGS', 'msg_ids must be a JSON list, not an object') end
    if type(id) ~= 'string' then raise('BAD_ARGS', 'msg_ids must be strings') end
  end
  return ids
end

--[[ outbox_due: messages recorded at least age_ms ago and not yet acknowledged, oldest first.
  KEYS[1] outbox   ZSET   message ids by creation time
  KEYS[2] msgs     HASH   message id -> JSON {kind, to, body}
  ARGV[1] age_ms  ARGV[2] max_count
  Derived: none
  Reply:  {{msg_id, message JSON}, ...}
  Errors: BAD_ARGS ]]
register('outbox_due', function(keys, args)
  local age_ms = int_arg(args[1], 'age_ms', 0, 1e13)
  local max_count = int_arg(args[2], 'max_count', 1, MAX_BATCH)
  return due_messages(keys[1], keys[2], age_ms, max_count)
end, {'no-writes'})

--[[ outbox_ack: delete acknowledged messages (applied on their target); unknown ids are ignored.
  KEYS[1] outbox   ZSET   message ids by creation time
  KEYS[2] msgs     HASH   message id -> JSON {kind, to, body}
  ARGV[1] msg_ids (JSON list, at most 1,000)
  Derived: none
  Reply:  deleted_count
  Errors: BAD_ARGS ]]
register('outbox_ack', function(keys, args)
  local ids = msg_ids_arg(args[1])
  local deleted = 0
  for _, id in ipairs(ids) do
    deleted = deleted + rcall('ZREM', keys[1], id)
    rcall('HDEL', keys[2], id)
  end
  return deleted
end)

--[[ outbox_defer: move messages that could not be applied (unknown kind, failed target call)
  behind the others: their score becomes now (or just after the newest other message's, if
  that is not earlier), so a flush reading the oldest ones reaches the messages recorded after them. Ids no longer in the outbox are ignored.
  KEYS[1] outbox   ZSET   message ids by creation time (by last failure, for deferred ones)
  ARGV[1] msg_ids (JSON list, at most 1,000)
  Derived: none
  Reply:  deferred_count
  Errors: BAD_ARGS ]]
register('outbox_defer', function(keys, args)
  local ids = msg_ids_arg(args[1])
  -- behind every other message recorded so far, also one recorded within this millisecond
  local score, mine = now_ms(), {}
  for _, id in ipairs(ids) do mine[id] = true end
  local newest = rcall('ZREVRANGE', keys[1], 0, #ids, 'WITHSCORES')
  for i = 1, #newest, 2 do
    if not mine[newest[i]] then
      if tonumber(newest[i + 1]) >= score then score = tonumber(newest[i + 1]) + 1 end
      break
    end
  end
  local deferred = 0
  for _, id in ipairs(ids) do deferred = deferred + rcall('ZADD', keys[1], 'XX', 'CH', score, id) end
  return deferred
end)

--[[ outbox_sweep: the reconciler's call: forget applied ids older than inbox_age_ms (up to
  max_pruned), and return the messages recorded at least age_ms ago, as outbox_due does.
  KEYS[1] outbox   ZSET   message ids by creation time
  KEYS[2] msgs     HASH   message id -> JSON {kind, to, body}
  KEYS[3] inbox    ZSET   applied message ids by when they were applied
  ARGV[1] age_ms  ARGV[2] max_count  ARGV[3] inbox_age_ms  ARGV[4] max_pruned
  Derived: none
  Reply:  {pruned_count, {{msg_id, message JSON}, ...}}
  Errors: BAD_ARGS ]]
register('outbox_sweep', function(keys, args)
  local age_ms = int_arg(args[1], 'age_ms', 0, 1e13)
  local max_count = int_arg(args[2], 'max_count', 1, MAX_BATCH)
  local inbox_age_ms = int_arg(args[3], 'inbox_age_ms', 0, 1e13)
  local max_pruned = int_arg(args[4], 'max_pruned', 1, MAX_BATCH)
  local old = rcall('ZRANGEBYSCORE', keys[3], '-inf', now_ms() - inbox_age_ms, 'LIMIT', 0, max_pruned)
  if #old > 0 then rcall('ZREM', keys[3], unpack(old)) end
  return {#old, due_messages(keys[1], keys[2], age_ms, max_count)}
end)
