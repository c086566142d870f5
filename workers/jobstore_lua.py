"""Lua scripts behind JobStore: each runs atomically inside Redis, so two workers (or a worker and the API)
can never interleave halfway through a transition, a count or a progress merge. The scripts that create or end
a job also count it in the service-wide figures (workers.job_metrics) in the same atomic step.
"""

from workers.job_metrics import COUNT_END_LUA, TERMINAL_LUA

# KEYS: job, owner index, idempotency key, metrics, deadlines. ARGV: has_idem, job_id, score_ms, idem_ttl, request_hash,
# prefix, kind, then the record's field/value pairs. Returns {job_id, request_hash, created (0|1)}.
CREATE = """
if ARGV[1] == '1' then
  local existing = redis.call('GET', KEYS[3])
  if existing then
    local sep = string.find(existing, ':', 1, true)
    local jid = string.sub(existing, 1, sep - 1)
    if redis.call('EXISTS', ARGV[6] .. 'job:' .. jid) == 1 then
      return {jid, string.sub(existing, sep + 1), 0}
    end
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('job ' .. ARGV[2] .. ' already exists; use a new job id')
end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
local deadline = redis.call('HGET', KEYS[1], 'deadline')
if deadline and deadline ~= '' then redis.call('ZADD', KEYS[5], deadline, ARGV[2]) end
redis.call('HINCRBY', KEYS[4], 'active:' .. ARGV[7] .. ':queued', 1)
redis.call('ZADD', KEYS[4] .. ':queued:' .. ARGV[7], tonumber(ARGV[3]) / 1000000, ARGV[2])
if ARGV[1] == '1' then
  redis.call('SET', KEYS[3], ARGV[2] .. ':' .. ARGV[5], 'EX', ARGV[4])
end
return {ARGV[2], ARGV[5], 1}
"""

# KEYS: job, items, item_errors, metrics, images slot. ARGV: to, now, ttl, terminal (0|1), result JSON or '',
# error JSON or '', event JSON, channel, allowed-from statuses... Returns 1 if the status moved (or stayed
# running on a repeated start), 0 otherwise. A terminal status is final whatever the caller allows.
TRANSITION = (
    COUNT_END_LUA
    + """
local cur = redis.call('HGET', KEYS[1], 'status')
if is_terminal(cur) then return 0 end
local ok = false
for i = 9, #ARGV do
  if ARGV[i] == cur then ok = true end
end
if not ok then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_at', ARGV[2])
if ARGV[1] == 'running' then redis.call('HSETNX', KEYS[1], 'started_at', ARGV[2]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[6]) end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[2])
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
  release_slot(KEYS[1])
end
if cur ~= ARGV[1] then
  local kind, started, done, id = unpack(redis.call('HMGET', KEYS[1], 'kind', 'started_at', 'done', 'id'))
  if cur == 'queued' then leave_queue(KEYS[4], kind, id) end
  if ARGV[4] == '1' then
    count_end(KEYS[4], KEYS[5], kind, cur, ARGV[1], started, ARGV[2], done)
  else
    redis.call('HINCRBY', KEYS[4], 'active:' .. kind .. ':' .. cur, -1)
    redis.call('HINCRBY', KEYS[4], 'active:' .. kind .. ':' .. ARGV[1], 1)
  end
  redis.call('HSET', KEYS[1], 'last_event', ARGV[7])
  redis.call('PUBLISH', ARGV[8], ARGV[7])
end
return 1
"""
)

# KEYS: job, items, item_errors, metrics, images slot. ARGV: now, ttl, canceled-event JSON, channel.
CANCEL = (
    COUNT_END_LUA
    + """
local cur = redis.call('HGET', KEYS[1], 'status')
if is_terminal(cur) then return 0 end
redis.call('HSET', KEYS[1], 'cancel', '1', 'cancel_reason', 'user', 'updated_at', ARGV[1])
if cur == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', ARGV[1], 'last_event', ARGV[3])
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
  local kind, done, id = unpack(redis.call('HMGET', KEYS[1], 'kind', 'done', 'id'))
  leave_queue(KEYS[4], kind, id)
  count_end(KEYS[4], KEYS[5], kind, cur, 'canceled', false, ARGV[1], done)
  release_slot(KEYS[1])
  redis.call('PUBLISH', ARGV[4], ARGV[3])
end
return 1
"""
)

# KEYS: job, items, item_errors, metrics, images slot, deadlines. ARGV: now, ttl, job_id, error JSON, event JSON,
# channel. A job whose deadline has passed: queued, it ends expired here (it never runs); running, its stop flag is
# set (reason "deadline") and its worker ends it expired at its next check. Returns 1 (expired), 2 (stop
# requested), 0 (already terminal), -1 (not due: no deadline, or a later one).
EXPIRE = (
    COUNT_END_LUA
    + """
local cur = redis.call('HGET', KEYS[1], 'status')
if is_terminal(cur) then
  redis.call('ZREM', KEYS[6], ARGV[3])
  return 0
end
local deadline = tonumber(redis.call('HGET', KEYS[1], 'deadline') or '')
if not deadline or deadline > tonumber(ARGV[1]) then return -1 end
redis.call('ZREM', KEYS[6], ARGV[3])
if redis.call('HGET', KEYS[1], 'cancel') ~= '1' then
  redis.call('HSET', KEYS[1], 'cancel', '1', 'cancel_reason', 'deadline')
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
if cur ~= 'queued' then return 2 end
redis.call('HSET', KEYS[1], 'status', 'expired', 'finished_at', ARGV[1], 'error', ARGV[4], 'last_event', ARGV[5])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
local kind, done = unpack(redis.call('HMGET', KEYS[1], 'kind', 'done'))
leave_queue(KEYS[4], kind, ARGV[3])
count_end(KEYS[4], KEYS[5], kind, cur, 'expired', false, ARGV[1], done)
release_slot(KEYS[1])
redis.call('PUBLISH', ARGV[6], ARGV[5])
return 1
"""
)

# KEYS: job, items, item_errors. ARGV: index, counter field (done | failed), error JSON or ''.
# SADD decides "first time" and HINCRBY counts it in the same atomic step: exactly-once accounting.
MARK_ITEM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[3]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[3], ttl) end
end
return 1
"""

# KEYS: job. ARGV: fields JSON, done or '', total or '', now, channel, job_id, list field or '', keep_last,
# list item JSON, unique-by field or ''. Merges fields into the progress JSON (or appends to a list in it,
# first dropping any item with the same value of the unique-by field) and publishes the result.
SET_PROGRESS = (
    TERMINAL_LUA
    + """
local cur = redis.call('HGET', KEYS[1], 'status')
if is_terminal(cur) then return 0 end
local progress = cjson.decode(redis.call('HGET', KEYS[1], 'progress') or '{}')
for k, v in pairs(cjson.decode(ARGV[1])) do progress[k] = v end
if ARGV[7] ~= '' then
  local list = progress[ARGV[7]]
  if type(list) ~= 'table' then list = {} end
  local item = cjson.decode(ARGV[9])
  if ARGV[10] ~= '' then
    local kept = {}
    for _, old in ipairs(list) do
      if type(old) ~= 'table' or old[ARGV[10]] ~= item[ARGV[10]] then kept[#kept + 1] = old end
    end
    list = kept
  end
  list[#list + 1] = item
  local keep = tonumber(ARGV[8])
  if keep > 0 and #list > keep then
    local trimmed = {}
    for i = #list - keep + 1, #list do trimmed[#trimmed + 1] = list[i] end
    list = trimmed
  end
  progress[ARGV[7]] = list
end
redis.call('HSET', KEYS[1], 'progress', cjson.encode(progress), 'updated_at', ARGV[4])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'done', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'total', ARGV[3]) end
for _, name in ipairs({'done', 'failed', 'total'}) do
  progress[name] = tonumber(redis.call('HGET', KEYS[1], name))
end
local event = cjson.encode({event = 'progress', job_id = ARGV[6], ts = tonumber(ARGV[4]), progress = progress})
redis.call('HSET', KEYS[1], 'last_event', event)
redis.call('PUBLISH', ARGV[5], event)
return 1
"""
)

# KEYS: job. ARGV: now, unit field ('attempts:<unit>'). Counts one more lost delivery in the job's total
# (`attempts`, shown to users) and in the unit's own counter, which decides; returns the unit's count, or 0 for a
# missing job.
ADD_ATTEMPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
"""

# KEYS: job, owner index, deadlines, then the job's companion keys. ARGV: job_id. Deletes an ended job's record
# and every key of it; returns 1, 0 for a job that has not ended (cancel it first), -1 for a missing one.
DELETE = (
    TERMINAL_LUA
    + """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return -1 end
if not TERMINAL[cur] then return 0 end
redis.call('DEL', KEYS[1], unpack(KEYS, 4))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
)
