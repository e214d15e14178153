-- hand_back.lua
-- ARGV: prefix, job_id, worker, now, message, list
-- A worker shutting down hands back a job it is still running when its grace period ends:
-- queued again at once, the cut attempt not counted (a deploy is not the job's failure).
-- Only if `worker` still runs it. Returns 'ok' or the status it found.

--- @include "job"

local status, worker = unpack(redis.call('HMGET', job, 'status', 'worker'))
if status ~= 'processing' or worker ~= ARGV[3] then return status or 'missing' end
redis.call('HINCRBY', job, 'attempts', -1)
redis.call('HDEL', job, 'claim', 'started_at', 'worker')
drop_lease()
requeue('processing', ARGV[4], ARGV[6], ARGV[5])
return 'ok'
