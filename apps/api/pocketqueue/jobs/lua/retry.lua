-- retry.lua
-- ARGV: prefix, job_id, claim token, now, backoff seconds, error field, error json
-- A failed attempt with retries left: 'retrying', in the schedule until its backoff has
-- passed by the Redis server's clock (a worker's skewed clock cannot move it).
-- Returns 'ok' or the status found, or 'superseded'.

--- @include "job"

local status, claim = unpack(redis.call('HMGET', job, 'status', 'claim'))
if not status then return 'missing' end
if status ~= 'processing' then return status end
if claim ~= ARGV[3] then return 'superseded' end
local run_at = string.format('%.6f', server_time() + tonumber(ARGV[5]))
redis.call('HSET', job, 'status', 'retrying', 'run_at', run_at, 'error', ARGV[7], ARGV[6], ARGV[7])
drop_lease()
move('processing', 'retrying', ARGV[4])
redis.call('ZADD', key('schedule'), run_at, job_id)
return 'ok'
