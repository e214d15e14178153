"""Lua scripts for the job transitions that can race (start vs cancel, finish vs redelivery).

Each runs atomically inside Redis, so a check and the write that depends on it can never
be split by another client. Keys come in KEYS (named by `Keys`); values in ARGV.
"""

from __future__ import annotations

# Shared by FINISH and CANCEL, once the record's fields are written: expire it, drop its
# lease, move its index entry, trim old entries, and wake anyone waiting on the job.
_FINISH_RECORD = """
local function finish_record(job_key, lease_key, from_index, to_index, job_id, ttl, now, channel)
  redis.call('DEL', lease_key)
  redis.call('EXPIRE', job_key, ttl)
  redis.call('ZREM', from_index, job_id)
  redis.call('ZADD', to_index, now, job_id)
  redis.call('ZREMRANGEBYSCORE', to_index, '-inf', tonumber(now) - ttl)
  if redis.call('TTL', to_index) < ttl then redis.call('EXPIRE', to_index, ttl) end
  redis.call('PUBLISH', channel, job_id)
end
"""

# KEYS: job, index:queued, queue (the Celery queue list)
# ARGV: job_id, created_at, message, then the record's field/value pairs
# The record, its index entry and its Celery message, all or nothing. One script rather
# than MULTI/EXEC: the same atomicity in one command instead of five.
CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[3])
return 1
"""

# KEYS: job, lease, index:queued, index:processing
# ARGV: job_id, now, worker, lease_ms
# Returns {'started', attempt} when this worker now owns the job; otherwise {reason}:
# 'missing', 'running' (another worker's lease is alive) or the finished status.
START = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
local takeover = status == 'processing' and redis.call('EXISTS', KEYS[2]) == 0
if status ~= 'queued' and not takeover then
  if status == 'processing' then return {'running'} end
  return {status}
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'processing', 'started_at', ARGV[2], 'worker', ARGV[3])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
return {'started', attempt}
"""

# KEYS: job, lease
# ARGV: attempt, lease_ms, progress ('' to leave it), step ('' to leave it), worker
# Renews the lease (and records progress) only while this attempt still owns the job.
# SET, not PEXPIRE: a lease that lapsed (Redis unreachable for a while, a stalled
# process) is recreated, so no redelivery mistakes a live attempt for a dead one.
# Returns the job's status, or 'superseded' when a newer attempt owns the job, so a
# worker learns within one heartbeat that the job is no longer its to run.
HEARTBEAT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= 'processing' then return status end
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 'superseded' end
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'step', ARGV[4]) end
return status
"""

# KEYS: job, lease, index:processing, index:<new status>, index:queued
# ARGV: job_id, attempt ('*' for any), worker ('' for any), new status, now, field, value, channel
# Writes the outcome only if the job is still processing under that attempt: a cancel or
# a newer attempt always wins over a late finish. With attempt '*', a queued job can be
# failed too (a worker that cannot run it at all). Returns 'ok' or the status it found.
FINISH = (
    _FINISH_RECORD
    + """
local status, attempts, worker, ttl = unpack(redis.call('HMGET', KEYS[1], 'status', 'attempts', 'worker', 'ttl'))
if not status then return 'missing' end
local from_index = KEYS[3]
if status == 'queued' and ARGV[2] == '*' then
  from_index = KEYS[5]
elseif status ~= 'processing' then
  return status
end
if ARGV[2] ~= '*' and attempts ~= ARGV[2] then return 'superseded' end
if ARGV[3] ~= '' and worker ~= ARGV[3] then return 'superseded' end
if ARGV[4] == 'completed' then
  redis.call('HSET', KEYS[1], ARGV[6], ARGV[7], 'status', ARGV[4], 'finished_at', ARGV[5], 'progress', '100')
else
  redis.call('HSET', KEYS[1], ARGV[6], ARGV[7], 'status', ARGV[4], 'finished_at', ARGV[5])
end
finish_record(KEYS[1], KEYS[2], from_index, KEYS[4], ARGV[1], tonumber(ttl) or 86400, ARGV[5], ARGV[8])
return 'ok'
"""
)

# KEYS: job, lease, index:queued, index:processing, index:cancelled
# ARGV: job_id, now, channel
# Returns {status before, flat HGETALL after}; status before is 'missing' for a missing job.
CANCEL = (
    _FINISH_RECORD
    + """
local status, ttl = unpack(redis.call('HMGET', KEYS[1], 'status', 'ttl'))
if not status then return {'missing', {}} end
if status == 'queued' or status == 'processing' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[2])
  local from_index = KEYS[3]
  if status == 'processing' then from_index = KEYS[4] end
  finish_record(KEYS[1], KEYS[2], from_index, KEYS[5], ARGV[1], tonumber(ttl) or 86400, ARGV[2], ARGV[3])
end
return {status, redis.call('HGETALL', KEYS[1])}
"""
)
