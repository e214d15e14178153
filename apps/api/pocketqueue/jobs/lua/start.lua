-- start.lua
-- ARGV: prefix, job_id, now, worker, lease_ms, claim token (unique per claim)
-- Returns {'started', attempt, max_retries} when this claim now owns the job (also when
-- it already did: a claim retried after a lost reply); otherwise {why}: 'missing',
-- 'running' (a live lease: this message is a duplicate), 'orphaned' (processing with no
-- lease: the janitor recovers it) or the job's status. Every later write of the attempt
-- (heartbeat, outcome, retry) must present the token: attempt numbers repeat after a
-- re-drive, tokens never do. Starting clears the poison-message count (see COUNT_DELIVERY):
-- the message was carried all the way, whatever crashed before. It also clears what the
-- previous attempt left: its `error` (kept in `error:<attempt>`, the attempt history), so a
-- retry that succeeds does not show an old failure, and its progress and step, so progress
-- never runs backwards as the new attempt starts from 0. A record of a newer format than
-- this version knows (a rolling upgrade) is not claimed: {'newer'}, and the worker hands
-- the message back for a newer worker.

--- @include "job"

local rec = read({'status', 'max_retries', 'claim', 'attempts', 'v', 'published_to', 'published_at', 'ttl', 'task',
  'queue', 'created_at'})
local status, max_retries = rec.status, rec.max_retries
if not status then return {'missing'} end
if (tonumber(rec.v) or 1) > FORMAT then return {'newer'} end
if status == 'processing' then
  if rec.claim == ARGV[6] then return {'started', tonumber(rec.attempts), tonumber(max_retries) or 0} end
  if redis.call('EXISTS', key('lease', job_id)) == 1 then return {'running'} end
  return {'orphaned'}
end
if status ~= 'queued' then return {status} end
local attempt = redis.call('HINCRBY', job, 'attempts', 1)
-- The watermark of the job's list: the latest publish time of a job that started from it.
-- Lists are first in, first out, so a job still queued that was published before it has
-- lost its message (see republish.lua).
-- It expires when no job has started for a record's lifetime (it is set again by the next).
local list, published_at = rec.published_to, rec.published_at
if list then
  local mark = redis.call('HGET', key('watermark'), list)
  if not mark or tonumber(published_at) > tonumber(mark) then
    redis.call('HSET', key('watermark'), list, published_at)
  end
  redis.call('EXPIRE', key('watermark'), rec.ttl or '86400')
end
local waited = tonumber(ARGV[3]) - tonumber(published_at or rec.created_at or ARGV[3])
observe_seconds(ARGV[4], 'queue_wait', rec.task .. '\t' .. (rec.queue or ''), math.max(0, waited))
unpublish(list)
redis.call('HSET', job, 'status', 'processing', 'started_at', ARGV[3], 'worker', ARGV[4], 'claim', ARGV[6],
  'progress', '0')
redis.call('HDEL', job, 'run_at', 'deliveries', 'last_delivery', 'unknown_since', 'error', 'step')
hold_lease(ARGV[4], ARGV[5])
-- What observe_move needs, as just written.
rec.started_at, rec.worker, rec.attempts, rec.progress, rec.step, rec.error = ARGV[3], ARGV[4], tostring(attempt), '0',
  false, false
move('queued', 'processing', ARGV[3], rec)
return {'started', attempt, tonumber(max_retries) or 0}
