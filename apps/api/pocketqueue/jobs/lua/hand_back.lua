-- hand_back.lua
-- ARGV: prefix, job_id, claim token, now, message, list
-- A worker shutting down hands back a job it is still running when its grace period ends:
-- queued again at once, the cut attempt not counted (a deploy is not the job's failure).
-- Only the attempt holding that claim token: the job may have been recovered and started
-- again elsewhere meanwhile (this worker cut off from Redis, its process stalled), maybe
-- by a worker of the same name; that newer attempt is not this worker's to hand back.
-- Returns 'ok', 'superseded', or the status it found.

--- @include "job"

local status, claim = unpack(redis.call('HMGET', job, 'status', 'claim'))
if status ~= 'processing' then return status or 'missing' end
if claim ~= ARGV[3] then return 'superseded' end
redis.call('HINCRBY', job, 'attempts', -1)
redis.call('HDEL', job, 'claim', 'started_at', 'worker')
drop_lease()
requeue('processing', ARGV[4], ARGV[6], ARGV[5])
return 'ok'
