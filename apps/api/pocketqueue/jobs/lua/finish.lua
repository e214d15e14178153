-- finish.lua
-- ARGV: prefix, job_id, claim token, worker, new status, now, ttl ('' for the record's
--       own), started_before, then field/value pairs to write.
-- Writes the outcome only if the job is still processing under that claim: a cancel or a
-- newer attempt always wins over a late finish. Two callers cannot know the claim:
-- - token '*' and worker '': a worker that cannot run the job at all (unknown task)
--   fails it only while it is queued, never while another worker runs it;
-- - token '*' and worker W (the hard time limit, seen by W's main process): fails the
--   attempt W runs, only if it started before `started_before` (so not a newer attempt).
-- Returns 'ok' or why not: the status it found, or 'superseded'.

--- @include "job"

local rec = read({'status', 'attempts', 'worker', 'ttl', 'claim', 'started_at', 'task', 'queue', 'created_at',
  'progress', 'step', 'unique_key', 'batch'})
local status, attempts, worker, started_at = rec.status, rec.attempts, rec.worker, rec.started_at
if not status then return 'missing' end
local from_status = 'processing'
if status == 'queued' and ARGV[3] == '*' and ARGV[4] == '' then
  from_status = 'queued'
elseif status ~= 'processing' or (ARGV[3] == '*' and ARGV[4] == '') then
  return status
end
if ARGV[3] ~= '*' and rec.claim ~= ARGV[3] then return 'superseded' end
if ARGV[4] ~= '' and worker ~= ARGV[4] then return 'superseded' end
if ARGV[8] ~= '' and from_status == 'processing' and tonumber(started_at) > tonumber(ARGV[8]) then
  return 'superseded'
end
-- Read only when they can matter: a queued job is still in its message's published set (a
-- running one left it as it started), and only a failure keeps its error with the attempt.
rec.published_to = from_status == 'queued' and redis.call('HGET', job, 'published_to')
rec.error = ARGV[5] == 'failed' and redis.call('HGET', job, 'error')
redis.call('HSET', job, 'status', ARGV[5], 'finished_at', ARGV[6], unpack(ARGV, 9))
for i = 9, #ARGV, 2 do rec[ARGV[i]] = ARGV[i + 1] end  -- what was just written (progress, error, ...)
if ARGV[5] == 'failed' and from_status == 'processing' then
  redis.call('HSET', job, 'error:' .. attempts, rec.error)  -- kept with every attempt's error
end
finish(from_status, ARGV[5], ARGV[6], tonumber(ARGV[7]) or tonumber(rec.ttl) or 86400, rec)
return 'ok'
