-- includes/observe.lua: what every transition writes so the queue can be seen (pocketqueue/observe/).
-- Included by job.lua. Written by the same scripts as the records, in the same atomic step,
-- so the listing, the counters and the event streams can never disagree with the records.
-- Every key here is bounded:
-- - listing indexes (`list:*`, sorted sets by creation time) and the status indexes: an
--   entry leaves with its record (reap.lua removes it shortly before the record expires);
-- - events: the global stream is trimmed by length; a job's own list is trimmed by length
--   and expires with its record;
-- - counters and histograms (`metrics:<host>` hashes): one field per task, queue and host;
--   a host's hash is dropped a week after its last sign of life (observe/metrics.py);
-- - per-minute outcome counts (`stats:<minute>`) expire after 65 minutes (the dashboard
--   charts the last hour), and the recent
--   run times per task (`runtimes:<task>`) are trimmed to the last 1000 once they pass
--   1100, and expire a week after the last trim.

-- Bounds, as strings where they go to Redis as they are (a number made a string costs a
-- printf on every call).
local EVENTS_MAXLEN, JOB_EVENTS_MAXLEN, RUNTIMES_KEPT, WEEK = '10000', 1000, 1000, '604800'

-- Listing indexes (`list:*`), all scored by creation time, so a cursor never skips or
-- repeats a job (the status indexes, `index:<status>`, are scored so too: job.lua). A new
-- job's entries; `rec`: its fields as create.lua wrote them.
local function list_job(created, rec)
  redis.call('ZADD', key('list', 'all'), created, job_id)
  redis.call('ZADD', key('list', 'ids'), '0', job_id)  -- by id, for a search by id prefix (ZRANGEBYLEX)
  redis.call('ZADD', key('list', 'task', rec.task), created, job_id)
  if rec.tags then
    for name, value in pairs(cjson.decode(rec.tags)) do
      redis.call('ZADD', key('list', 'tag', name .. '=' .. value), created, job_id)
    end
  end
end

-- Counters live in one hash per host (the worker, or '' for the API and the janitor),
-- fields `metric\ttask\tqueue`. `metrics` lists the hosts by their last sign of life:
-- each worker notes itself there as it announces (announce.lua), and '' is noted by
-- the scripts that count for it (create.lua, recover.lua) with `touch`.
local function count(host, field)
  redis.call('HINCRBY', key('metrics', host), field, '1')
end

local function touch(host, now)
  redis.call('ZADD', key('metrics'), now, host)
end

-- A histogram's bucket for `seconds`: '1' for the first bound, ..., one past the last
-- for +Inf. Written out by the loader from jobs/keys.py HISTOGRAM_BUCKETS (comparisons,
-- not a table: a table would be built on every call).
local function bucket_of(seconds)
  __BUCKET_OF__
end

-- One observation of a histogram (seconds): its bucket (not cumulative: the exposition
-- adds them up) and its sum, in whole microseconds (HINCRBY: HINCRBYFLOAT's long-double
-- parsing and printing cost more than the rest of the observation).
local function observe_seconds(host, name, labels, seconds)
  local counters = key('metrics', host)
  redis.call('HINCRBY', counters, name .. '_bucket\t' .. labels .. '\t' .. bucket_of(seconds), '1')
  redis.call('HINCRBY', counters, name .. '_sum\t' .. labels, math.floor(seconds * 1000000 + 0.5))
end

-- One event, `fields` (a table of strings, `job` among them), as JSON: an entry of the
-- global stream (field `event`), whose id (what SSE clients send back as Last-Event-ID)
-- also heads its copy in the job's own list, `<id> <JSON>`. A list, not a stream: a stream
-- costs about 4.7 KB even for one entry (Redis allocates a whole node), a short list a few
-- hundred bytes, and a job's events are read whole.
local function emit(fields)
  local event = cjson.encode(fields)
  local id = redis.call('XADD', key('events'), 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'event', event)
  local own = key('events', job_id)
  if redis.call('RPUSH', own, id .. ' ' .. event) > JOB_EVENTS_MAXLEN then
    redis.call('LTRIM', own, -JOB_EVENTS_MAXLEN, -1)
  end
end

-- What reaching `status` counts as, in celery-exporter's names (`started` is also
-- celery_task_received: PocketQueue claims a message as it starts its job); nil: nothing.
local function counted_as(status)
  if status == 'processing' then return 'started' end
  if status == 'completed' or status == 'partial' then return 'succeeded' end
  if status == 'retrying' then return 'retried' end
  if status == 'failed' then return 'failed' end
  if status == 'cancelled' then return 'revoked' end
end

-- A status change (job.lua's move() has moved the job between the status indexes): the
-- event and the counters. `now` and `rec` as move() has them. Returns the job's task, and
-- how long the attempt ran if it ended here (else nil), for observe_finish.
local function observe_move(from_status, to_status, now, rec)
  local task, host = rec.task or '', rec.worker or ''
  if to_status == 'queued' and from_status == 'scheduled' then host = '' end  -- the janitor's promotion
  local event = {job = job_id, type = 'status', status = to_status, task = task, attempt = rec.attempts or '0',
    progress = rec.progress or '0', step = rec.step or '', at = now}
  if (to_status == 'retrying' or to_status == 'failed') and rec.error then event.error = rec.error end
  emit(event)
  local labels = task .. '\t' .. (rec.queue or '')
  local counted = counted_as(to_status)
  if counted then count(host, counted .. '\t' .. labels) end
  local ran
  if from_status == 'processing' and rec.started_at and to_status ~= 'queued' then
    ran = math.max(0, tonumber(now) - tonumber(rec.started_at))
    observe_seconds(host, 'runtime', labels, ran)
  end
  return task, ran
end

-- A finished job's entry in `list:expiring`: its id, task and tags (JSON or ''), tab
-- separated, so reap.lua can take it out of its task and tag indexes even once its record
-- has expired (no janitor ran in time to reap it first).
local function expiring_entry(task, tags)
  return job_id .. '\t' .. task .. '\t' .. (tags or '')
end

-- A job ended: its listing entries are reaped just before the record expires, its event
-- list expires with it, and the minute's outcome count and the task's recent run times
-- go up. `task` and `ran` (seconds, nil if no attempt ended here) as observe_move
-- returned them. Each trim and expiry is paid only when due: a minute's bucket gets its
-- TTL with its first count, a task's run times are cut back to the last 1000 (and their
-- TTL renewed) once 100 more have come.
local function observe_finish(to_status, now, ttl, task, ran)
  redis.call('ZADD', key('list', 'expiring'), tonumber(now) + ttl, expiring_entry(task, redis.call('HGET', job, 'tags')))
  redis.call('EXPIRE', key('events', job_id), ttl)
  local bucket = key('stats', math.floor(tonumber(now) / 60))
  if redis.call('HINCRBY', bucket, to_status, '1') == 1 then redis.call('EXPIRE', bucket, '3900') end
  if ran then
    local runtimes = key('runtimes', task)
    local kept = redis.call('LPUSH', runtimes, string.format('%.6f', ran))
    if kept == 1 or kept > RUNTIMES_KEPT + 99 then
      redis.call('LTRIM', runtimes, 0, RUNTIMES_KEPT - 1)
      redis.call('EXPIRE', runtimes, WEEK)
    end
  end
end
