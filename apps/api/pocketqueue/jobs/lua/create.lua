-- create.lua
-- ARGV: prefix, job_id, now, message, list ('' with no run_at: a worker adopting a message
--       it already holds, so nothing is published), run_at ('' = now), idempotency key,
--       fingerprint, idempotency ttl, unique key, the record's field/value pairs (a JSON
--       array of strings: one argument is far cheaper for the caller to send than dozens).
-- Returns {'created'|'duplicate'|'conflict'|'unique', job id}. 'duplicate': the same
-- idempotency key and body made that job; 'conflict': the key made it from another body;
-- 'unique': that active job holds the unique key. Nothing is written unless 'created'.
-- Safe to replay: a call resent after its reply was lost (the job id is new per dispatch)
-- finds its own record and answers 'created' again, writing nothing twice.

--- @include "job"

if redis.call('EXISTS', job) == 1 then return {'created', job_id} end
local now, idem_key, fingerprint, unique_key = ARGV[3], ARGV[7], ARGV[8], ARGV[10]
if idem_key ~= '' then
  local held = redis.call('GET', key('idempotency', idem_key))
  if held then
    local space = string.find(held, ' ', 1, true)
    local held_id = string.sub(held, 1, space - 1)
    if redis.call('EXISTS', key('job', held_id)) == 1 then
      if string.sub(held, space + 1) == fingerprint then
        count('', 'idempotent_repeats\t' .. (redis.call('HGET', key('job', held_id), 'task') or '') .. '\t')
        touch('', now)
        return {'duplicate', held_id}
      end
      return {'conflict', held_id}
    end
  end
end
if unique_key ~= '' then
  local held_id = redis.call('GET', key('unique', unique_key))
  if held_id and active(redis.call('HGET', key('job', held_id), 'status')) then return {'unique', held_id} end
  redis.call('SET', key('unique', unique_key), job_id)
end
if idem_key ~= '' then
  redis.call('SET', key('idempotency', idem_key), job_id .. ' ' .. fingerprint, 'EX', ARGV[9])
end
local fields = cjson.decode(ARGV[11])
redis.call('HSET', job, unpack(fields))
local rec = {}
for i = 1, #fields, 2 do rec[fields[i]] = fields[i + 1] end
local status = 'queued'
if ARGV[6] ~= '' then
  status = 'scheduled'
  redis.call('ZADD', key('schedule'), ARGV[6], job_id)
  redis.call('ZADD', key('delayed', status, rec.queue or ''), now, job_id)
elseif ARGV[5] ~= '' then
  publish(ARGV[5], ARGV[4])
end
redis.call('ZADD', key('index', status), now, job_id)
list_job(now, rec)
emit({job = job_id, type = 'status', status = status, task = rec.task, attempt = '0', progress = '0', step = '',
  at = now})
count('', 'sent\t' .. rec.task .. '\t' .. (rec.queue or ''))
-- Every queue a job was sent to: the janitor sweeps each for lost messages, stats show each.
if rec.queue then redis.call('SADD', key('queues'), rec.queue) end
touch('', now)
return {'created', job_id}
