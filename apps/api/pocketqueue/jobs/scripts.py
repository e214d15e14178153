"""Lua scripts for every job transition that can race (start, finish, retry, cancel, ...).

Each runs atomically inside Redis, so a check and the write that depends on it can never
be split by another client. Every script takes the key prefix as ARGV[1] and the job id
as ARGV[2], and names the job's keys from them the way `Keys` does. (PocketQueue targets
one Redis server, not Cluster, so keys built inside a script are fine.)

The record's `status` is the single source of truth: a message the broker delivers twice,
or late, is run only if the record says the job is `queued`.
"""

from __future__ import annotations

_LIBRARY = """
local prefix, job_id = ARGV[1], ARGV[2]
local function key(...) return prefix .. ':' .. table.concat({...}, ':') end
local job = key('job', job_id)
local ACTIVE = {scheduled = true, queued = true, processing = true, retrying = true}

local function move(from_status, to_status, score)
  redis.call('ZREM', key('index', from_status), job_id)
  redis.call('ZADD', key('index', to_status), score, job_id)
end

-- Put the job back on the broker: status queued, indexed as such, its message pushed.
local function requeue(from_status, now, list, message)
  redis.call('HSET', job, 'status', 'queued')
  move(from_status, 'queued', now)
  redis.call('LPUSH', list, message)
end

-- The record's fields are written; end the job: drop its lease, schedule entry and
-- unique key, expire it, move and trim its index, and wake anyone waiting on it.
local function finish(from_status, to_status, now, ttl)
  redis.call('DEL', key('lease', job_id))
  redis.call('ZREM', key('schedule'), job_id)
  local unique = redis.call('HGET', job, 'unique_key')
  if unique and redis.call('GET', key('unique', unique)) == job_id then
    redis.call('DEL', key('unique', unique))
  end
  redis.call('EXPIRE', job, ttl)
  move(from_status, to_status, now)
  local index = key('index', to_status)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', tonumber(now) - ttl)
  if redis.call('TTL', index) < ttl then redis.call('EXPIRE', index, ttl) end
  redis.call('PUBLISH', key('finished'), job_id)
end
"""

# ARGV: prefix, job_id, now, message, list, run_at ('' = now), idempotency key,
#       fingerprint, idempotency ttl, unique key, then the record's field/value pairs.
# Returns {'created'|'duplicate'|'conflict'|'unique', job id}. 'duplicate': the same
# idempotency key and body made that job; 'conflict': the key made it from another body;
# 'unique': that active job holds the unique key. Nothing is written unless 'created'.
CREATE = (
    _LIBRARY
    + """
local now, idem_key, fingerprint, unique_key = ARGV[3], ARGV[7], ARGV[8], ARGV[10]
if idem_key ~= '' then
  local held = redis.call('GET', key('idempotency', idem_key))
  if held then
    local space = string.find(held, ' ', 1, true)
    local held_id = string.sub(held, 1, space - 1)
    if redis.call('EXISTS', key('job', held_id)) == 1 then
      if string.sub(held, space + 1) == fingerprint then return {'duplicate', held_id} end
      return {'conflict', held_id}
    end
  end
end
if unique_key ~= '' then
  local held_id = redis.call('GET', key('unique', unique_key))
  if held_id and ACTIVE[redis.call('HGET', key('job', held_id), 'status')] then return {'unique', held_id} end
  redis.call('SET', key('unique', unique_key), job_id)
end
if idem_key ~= '' then
  redis.call('SET', key('idempotency', idem_key), job_id .. ' ' .. fingerprint, 'EX', ARGV[9])
end
redis.call('HSET', job, unpack(ARGV, 11))
if ARGV[6] ~= '' then
  redis.call('ZADD', key('index', 'scheduled'), now, job_id)
  redis.call('ZADD', key('schedule'), ARGV[6], job_id)
else
  redis.call('ZADD', key('index', 'queued'), now, job_id)
  redis.call('LPUSH', ARGV[5], ARGV[4])
end
return {'created', job_id}
"""
)

# ARGV: prefix, job_id, now, worker, lease_ms, claim token (unique per claim)
# Returns {'started', attempt, max_retries} when this claim now owns the job (also when
# it already did: a claim retried after a lost reply); otherwise {why}: 'missing',
# 'running' (a live lease: this message is a duplicate), 'orphaned' (processing with no
# lease: the janitor recovers it) or the job's status. Every later write of the attempt
# (heartbeat, outcome, retry) must present the token: attempt numbers repeat after a
# re-drive, tokens never do. Starting clears the poison-message count (see COUNT_DELIVERY):
# the message was carried all the way, whatever crashed before.
START = (
    _LIBRARY
    + """
local status, max_retries, claim, attempts =
  unpack(redis.call('HMGET', job, 'status', 'max_retries', 'claim', 'attempts'))
if not status then return {'missing'} end
if status == 'processing' then
  if claim == ARGV[6] then return {'started', tonumber(attempts), tonumber(max_retries) or 0} end
  if redis.call('EXISTS', key('lease', job_id)) == 1 then return {'running'} end
  return {'orphaned'}
end
if status ~= 'queued' then return {status} end
local attempt = redis.call('HINCRBY', job, 'attempts', 1)
redis.call('HSET', job, 'status', 'processing', 'started_at', ARGV[3], 'worker', ARGV[4], 'claim', ARGV[6])
redis.call('HDEL', job, 'run_at', 'deliveries', 'last_delivery')
redis.call('SET', key('lease', job_id), ARGV[4], 'PX', ARGV[5])
move('queued', 'processing', ARGV[3])
return {'started', attempt, tonumber(max_retries) or 0}
"""
)

# ARGV: prefix, job_id, claim token, lease_ms, progress ('' to leave it), step ('' to leave it), worker
# Renews the lease (and records progress) only while this attempt still owns the job.
# SET, not PEXPIRE: a lease that lapsed (Redis unreachable for a while, a stalled
# process) is recreated. Returns the job's status, or 'superseded' when a newer attempt
# owns the job, so a worker learns within one heartbeat that the job is no longer its own.
HEARTBEAT = (
    _LIBRARY
    + """
local status, claim = unpack(redis.call('HMGET', job, 'status', 'claim'))
if not status then return 'missing' end
if status ~= 'processing' then return status end
if claim ~= ARGV[3] then return 'superseded' end
redis.call('SET', key('lease', job_id), ARGV[7], 'PX', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', job, 'progress', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', job, 'step', ARGV[6]) end
return status
"""
)

# ARGV: prefix, job_id, claim token, worker, new status, now, ttl ('' for the record's
#       own), started_before, then field/value pairs to write.
# Writes the outcome only if the job is still processing under that claim: a cancel or a
# newer attempt always wins over a late finish. Two callers cannot know the claim:
# - token '*' and worker '': a worker that cannot run the job at all (unknown task)
#   fails it only while it is queued, never while another worker runs it;
# - token '*' and worker W (the hard time limit, seen by W's main process): fails the
#   attempt W runs, only if it started before `started_before` (so not a newer attempt).
# Returns 'ok' or why not: the status it found, or 'superseded'.
FINISH = (
    _LIBRARY
    + """
local status, attempts, worker, ttl, claim, started_at = unpack(
  redis.call('HMGET', job, 'status', 'attempts', 'worker', 'ttl', 'claim', 'started_at'))
if not status then return 'missing' end
local from_status = 'processing'
if status == 'queued' and ARGV[3] == '*' and ARGV[4] == '' then
  from_status = 'queued'
elseif status ~= 'processing' or (ARGV[3] == '*' and ARGV[4] == '') then
  return status
end
if ARGV[3] ~= '*' and claim ~= ARGV[3] then return 'superseded' end
if ARGV[4] ~= '' and worker ~= ARGV[4] then return 'superseded' end
if ARGV[8] ~= '' and from_status == 'processing' and tonumber(started_at) > tonumber(ARGV[8]) then
  return 'superseded'
end
redis.call('HSET', job, 'status', ARGV[5], 'finished_at', ARGV[6], unpack(ARGV, 9))
if ARGV[5] == 'failed' and from_status == 'processing' then
  redis.call('HSET', job, 'error:' .. attempts, redis.call('HGET', job, 'error'))  -- kept with every attempt's error
end
finish(from_status, ARGV[5], ARGV[6], tonumber(ARGV[7]) or tonumber(ttl) or 86400)
return 'ok'
"""
)

# ARGV: prefix, job_id, delivery token (one per delivery), now, max deliveries, error json,
#       dead-letter ttl
# A worker received a message the broker had handed out before (kombu marks it redelivered)
# for a job that has not started: whoever took it earlier died or lost it before the job
# began, maybe because of the message itself (it killed the worker's main process). Counts
# the delivery while the job is `queued` only: a running job's message comes back every
# visibility timeout, and that is not the message's fault. The first delivery is never
# counted (workers do not call this for a fresh message: no round trip on the hot path),
# so the count starts at 2. Past `max deliveries` the job fails into the dead letters with
# `error` (a PoisonMessage) instead of crashing worker after worker. A resent call (same
# token) counts nothing twice. START clears the count.
# Returns {'ok', deliveries} (hand the message on), {'quarantined', deliveries} (failed
# now), or {status found, 0}: 'missing' or anything but queued (the record decides).
COUNT_DELIVERY = (
    _LIBRARY
    + """
local status, seen, last = unpack(redis.call('HMGET', job, 'status', 'deliveries', 'last_delivery'))
if not status then return {'missing', 0} end
if status ~= 'queued' then return {status, 0} end
if last == ARGV[3] then return {'ok', tonumber(seen)} end
local deliveries = (tonumber(seen) or 1) + 1
redis.call('HSET', job, 'deliveries', deliveries, 'last_delivery', ARGV[3])
if deliveries <= tonumber(ARGV[5]) then return {'ok', deliveries} end
redis.call('HSET', job, 'status', 'failed', 'finished_at', ARGV[4], 'error', ARGV[6])
finish('queued', 'failed', ARGV[4], tonumber(ARGV[7]))
return {'quarantined', deliveries}
"""
)

# ARGV: prefix, job_id, claim token, now, run_at, error field, error json
# A failed attempt with retries left: 'retrying', in the schedule until run_at.
RETRY = (
    _LIBRARY
    + """
local status, claim = unpack(redis.call('HMGET', job, 'status', 'claim'))
if not status then return 'missing' end
if status ~= 'processing' then return status end
if claim ~= ARGV[3] then return 'superseded' end
redis.call('HSET', job, 'status', 'retrying', 'run_at', ARGV[5], 'error', ARGV[7], ARGV[6], ARGV[7])
redis.call('DEL', key('lease', job_id))
move('processing', 'retrying', ARGV[4])
redis.call('ZADD', key('schedule'), ARGV[5], job_id)
return 'ok'
"""
)

# ARGV: prefix, job_id, now, message, list
# Publishes a scheduled or retrying job that is due. Returns 'ok', 'not_due', or the
# status it found (the job was cancelled, or another worker published it first).
PROMOTE = (
    _LIBRARY
    + """
local status = redis.call('HGET', job, 'status')
if status ~= 'scheduled' and status ~= 'retrying' then
  redis.call('ZREM', key('schedule'), job_id)
  return status or 'missing'
end
local due = redis.call('ZSCORE', key('schedule'), job_id)
if not due or tonumber(due) > tonumber(ARGV[3]) then return 'not_due' end
redis.call('HDEL', job, 'run_at')
redis.call('ZREM', key('schedule'), job_id)
requeue(status, ARGV[3], ARGV[5], ARGV[4])
return 'ok'
"""
)

# ARGV: prefix, job_id, claim token seen, now, error json, message, list, dead-letter ttl
# A processing job whose lease lapsed: its worker died (SIGKILL, OOM, lost machine). The
# attempt's error is kept; the job is queued again at once, or fails if no retries are left.
RECOVER = (
    _LIBRARY
    + """
local status, attempts, max_retries, claim =
  unpack(redis.call('HMGET', job, 'status', 'attempts', 'max_retries', 'claim'))
if not status then
  redis.call('ZREM', key('index', 'processing'), job_id)
  return 'missing'
end
if status ~= 'processing' then return status end
if (claim or '') ~= ARGV[3] then return 'superseded' end
if redis.call('EXISTS', key('lease', job_id)) == 1 then return 'alive' end
redis.call('HSET', job, 'error', ARGV[5], 'error:' .. attempts, ARGV[5])
redis.call('HDEL', job, 'claim')
if tonumber(attempts) > (tonumber(max_retries) or 0) then
  redis.call('HSET', job, 'status', 'failed', 'finished_at', ARGV[4])
  finish('processing', 'failed', ARGV[4], tonumber(ARGV[8]))
  return 'failed'
end
requeue('processing', ARGV[4], ARGV[7], ARGV[6])
return 'requeued'
"""
)

# ARGV: prefix, job_id, worker, now, message, list
# A worker shutting down hands back a job it is still running when its grace period ends:
# queued again at once, the cut attempt not counted (a deploy is not the job's failure).
# Only if `worker` still runs it. Returns 'ok' or the status it found.
HAND_BACK = (
    _LIBRARY
    + """
local status, worker = unpack(redis.call('HMGET', job, 'status', 'worker'))
if status ~= 'processing' or worker ~= ARGV[3] then return status or 'missing' end
redis.call('HINCRBY', job, 'attempts', -1)
redis.call('HDEL', job, 'claim', 'started_at', 'worker')
redis.call('DEL', key('lease', job_id))
requeue('processing', ARGV[4], ARGV[6], ARGV[5])
return 'ok'
"""
)

# ARGV: prefix, job_id, now
# Returns {status before, flat HGETALL after}; status before is 'missing' for a missing job.
CANCEL = (
    _LIBRARY
    + """
local status, ttl = unpack(redis.call('HMGET', job, 'status', 'ttl'))
if not status then return {'missing', {}} end
if ACTIVE[status] then
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', ARGV[3])
  redis.call('HDEL', job, 'run_at')
  finish(status, 'cancelled', ARGV[3], tonumber(ttl) or 86400)
end
return {status, redis.call('HGETALL', job)}
"""
)

# ARGV: prefix, job_id, now, message, list
# Re-drives a failed (dead-lettered) job: same id, attempts and errors reset, queued.
# Returns 'ok', {'unique', holder} as 'unique:<id>' when another active job holds its
# unique key, or the status it found.
REDRIVE = (
    _LIBRARY
    + """
local status = redis.call('HGET', job, 'status')
if status ~= 'failed' then return status or 'missing' end
local unique = redis.call('HGET', job, 'unique_key')
if unique then
  local held_id = redis.call('GET', key('unique', unique))
  if held_id and held_id ~= job_id and ACTIVE[redis.call('HGET', key('job', held_id), 'status')] then
    return 'unique:' .. held_id
  end
  redis.call('SET', key('unique', unique), job_id)
end
for _, field in ipairs(redis.call('HKEYS', job)) do
  if string.sub(field, 1, 6) == 'error:' then redis.call('HDEL', job, field) end
end
redis.call('HDEL', job, 'error', 'result', 'partial_errors', 'started_at', 'finished_at', 'worker', 'step', 'claim',
  'deliveries', 'last_delivery')
redis.call('HSET', job, 'attempts', '0', 'progress', '0')
redis.call('PERSIST', job)
requeue('failed', ARGV[3], ARGV[5], ARGV[4])
return 'ok'
"""
)

# ARGV: prefix, '' (no job), now, clear_schedule ('1' or '0'), then the queue's lists.
# Empties the lists and cancels the queued jobs whose messages they held (and, with
# clear_schedule, every scheduled and retrying job), so no record is left waiting for a
# message that is gone. Returns how many jobs were cancelled.
CLEAR = (
    _LIBRARY
    + """
local now, cancelled = ARGV[3], 0
local function cancel(id)
  -- The library's helpers act on `job_id` and `job`; point them at this job first.
  job_id, job = id, key('job', id)
  local status, ttl = unpack(redis.call('HMGET', job, 'status', 'ttl'))
  if status == 'queued' or status == 'scheduled' or status == 'retrying' then
    redis.call('HSET', job, 'status', 'cancelled', 'finished_at', now)
    redis.call('HDEL', job, 'run_at')
    finish(status, 'cancelled', now, tonumber(ttl) or 86400)
    cancelled = cancelled + 1
  end
end
for i = 5, #ARGV do
  for _, message in ipairs(redis.call('LRANGE', ARGV[i], 0, -1)) do
    local ok, decoded = pcall(cjson.decode, message)
    if ok and type(decoded) == 'table' and type(decoded.headers) == 'table' and decoded.headers.id then
      cancel(decoded.headers.id)
    end
  end
  redis.call('DEL', ARGV[i])
end
if ARGV[4] == '1' then
  for _, id in ipairs(redis.call('ZRANGE', key('schedule'), 0, -1)) do cancel(id) end
end
return cancelled
"""
)
