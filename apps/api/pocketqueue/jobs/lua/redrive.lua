-- redrive.lua
-- ARGV: prefix, job_id, now, message, list, request token (new per call)
-- Re-drives a failed (dead-lettered) job: same id, attempts and errors reset, queued.
-- Returns 'ok', {'unique', holder} as 'unique:<id>' when another active job holds its
-- unique key, or the status it found. Safe to replay: a call resent after its reply was
-- lost finds its own token on the record and answers 'ok' again, queueing nothing twice.

--- @include "job"

local status, token = unpack(redis.call('HMGET', job, 'status', 'redrive_token'))
if status and status ~= 'failed' and token == ARGV[6] then return 'ok' end
if status ~= 'failed' then return status or 'missing' end
local unique = redis.call('HGET', job, 'unique_key')
if unique then
  local held_id = redis.call('GET', key('unique', unique))
  if held_id and held_id ~= job_id and active(redis.call('HGET', key('job', held_id), 'status')) then
    return 'unique:' .. held_id
  end
  redis.call('SET', key('unique', unique), job_id)
end
for _, field in ipairs(redis.call('HKEYS', job)) do
  if string.sub(field, 1, 6) == 'error:' then redis.call('HDEL', job, field) end
end
redis.call('HDEL', job, 'error', 'result', 'partial_errors', 'started_at', 'finished_at', 'worker', 'step', 'claim',
  'deliveries', 'last_delivery')
redis.call('HSET', job, 'attempts', '0', 'progress', '0', 'redrive_token', ARGV[6])
redis.call('PERSIST', job)
-- Active again: it stays listed, and its events stay (see observe.lua).
redis.call('ZREM', key('list', 'expiring'), expiring_entry(unpack(redis.call('HMGET', job, 'task', 'tags'))))
redis.call('PERSIST', key('events', job_id))
requeue('failed', ARGV[3], ARGV[5], ARGV[4])
return 'ok'
