-- heartbeat.lua
-- ARGV: prefix, job_id, claim token, lease_ms, progress ('' to leave it), step ('' to leave it), worker
-- Renews the lease (and records progress) only while this attempt still owns the job.
-- SET, not PEXPIRE: a lease that lapsed (Redis unreachable for a while, a stalled
-- process) is recreated. Returns the job's status, or 'superseded' when a newer attempt
-- owns the job, so a worker learns within one heartbeat that the job is no longer its own.

--- @include "job"

local status, claim = unpack(redis.call('HMGET', job, 'status', 'claim'))
if not status then return 'missing' end
if status ~= 'processing' then return status end
if claim ~= ARGV[3] then return 'superseded' end
hold_lease(ARGV[7], ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', job, 'progress', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', job, 'step', ARGV[6]) end
return status
