-- includes/observe.lua: what every transition writes so the queue can be seen (pocketqueue/observe/).
-- Included by job.lua. Written by the same scripts as the records, in the same atomic step,
-- so the listing, the counters and the event streams can never disagree with the records.
-- Every key here is bounded:
-- - listing indexes (`list:*`, sorted sets by creation time): an entry leaves with its
--   record (reap.lua removes it shortly before the record expires);
-- - events: the global stream is trimmed by length; a job's own list is trimmed by length
--   and expires with its record;
-- - counters and histograms (`metrics:<host>` hashes): one field per task, queue and host;
--   a host's hash is dropped a week after its last write (observe/metrics.py);
-- - per-minute outcome counts (`stats:<minute>`) expire after 20 minutes, and the recent
--   run times per task (`runtimes:<task>`) are trimmed to the last 1000 once they pass
--   1100, and expire a week after the last trim.

local EVENTS_MAXLEN, JOB_EVENTS_MAXLEN, RUNTIMES_KEPT = 10000, 1000, 1000
local BUCKETS = {__HISTOGRAM_BUCKETS__}
local WEEK = 7 * 86400

-- Listing indexes, all scored by creation time, so a cursor never skips or repeats a job.
local function listed(...) return key('list', ...) end

local function list_job(status, created)
  local task, tags = unpack(redis.call('HMGET', job, 'task', 'tags'))
  redis.call('ZADD', listed('all'), created, job_id)
  redis.call('ZADD', listed('ids'), 0, job_id)  -- by id, for a search by id prefix (ZRANGEBYLEX)
  redis.call('ZADD', listed('status', status), created, job_id)
  redis.call('ZADD', listed('task', task), created, job_id)
  if tags then
    for name, value in pairs(cjson.decode(tags)) do
      redis.call('ZADD', listed('tag', name .. '=' .. value), created, job_id)
    end
  end
end

-- Counters live in one hash per host (the worker, or '' for the API), fields
-- `metric\ttask\tqueue`; `metrics` lists the hosts by their last write, noted once per
-- transition (`touch`), with the transition's own time.
local function count(host, field, by)
  redis.call('HINCRBY', key('metrics', host), field, by or 1)
end

local function touch(host, now)
  redis.call('ZADD', key('metrics'), now, host)
end

-- One observation of a histogram (seconds): its bucket (not cumulative: the exposition
-- adds them up) and its sum, in whole microseconds (HINCRBY: HINCRBYFLOAT's long-double
-- parsing and printing cost more than the rest of the observation). Bucket #BUCKETS + 1
-- is +Inf.
local function observe_seconds(host, name, labels, seconds)
  local bucket = #BUCKETS + 1
  for i, bound in ipairs(BUCKETS) do
    if seconds <= bound then bucket = i break end
  end
  redis.call('HINCRBY', key('metrics', host), name .. '_bucket\t' .. labels .. '\t' .. bucket, 1)
  redis.call('HINCRBY', key('metrics', host), name .. '_sum\t' .. labels, math.floor(seconds * 1000000 + 0.5))
end

-- One event: an entry of the global stream, whose id (what SSE clients send back as
-- Last-Event-ID) also heads its copy in the job's own list, `<id> <JSON of the fields>`.
-- A list, not a stream: a stream costs about 4.7 KB even for one entry (Redis allocates
-- a whole node), a short list a few hundred bytes, and a job's events are read whole.
-- Fields are name/value pairs.
local function emit(...)
  local id = redis.call('XADD', key('events'), 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'job', job_id, ...)
  local given, fields = {...}, {job = job_id}
  for i = 1, #given, 2 do fields[given[i]] = given[i + 1] end
  local own = key('events', job_id)
  if redis.call('RPUSH', own, id .. ' ' .. cjson.encode(fields)) > JOB_EVENTS_MAXLEN then
    redis.call('LTRIM', own, -JOB_EVENTS_MAXLEN, -1)
  end
end

-- What each status reached counts as, in celery-exporter's names (`started` is also
-- celery_task_received: PocketQueue claims a message as it starts its job).
local COUNTED = {processing = 'started', retrying = 'retried', completed = 'succeeded', partial = 'succeeded',
  failed = 'failed', cancelled = 'revoked'}

-- A status change: the status index, the event, and the counters. `now` is the caller's
-- timestamp (the same one the record gets). Returns the job's task and start time, for
-- observe_finish.
local function observe_move(from_status, to_status, now)
  local task, queue, host, created, started, attempts, progress, step = unpack(redis.call('HMGET', job,
    'task', 'queue', 'worker', 'created_at', 'started_at', 'attempts', 'progress', 'step'))
  queue, host = queue or '', host or ''
  if created then
    redis.call('ZREM', listed('status', from_status), job_id)
    redis.call('ZADD', listed('status', to_status), created, job_id)
  end
  if to_status == 'queued' and from_status == 'scheduled' then host = '' end  -- the janitor's promotion
  local fields = {'type', 'status', 'status', to_status, 'task', task or '', 'attempt', attempts or '0',
    'progress', progress or '0', 'step', step or '', 'at', now}
  local error = (to_status == 'retrying' or to_status == 'failed') and redis.call('HGET', job, 'error')
  if error then
    fields[#fields + 1] = 'error'
    fields[#fields + 1] = error
  end
  emit(unpack(fields))
  local labels = (task or '') .. '\t' .. queue
  local counted = COUNTED[to_status]
  if counted then
    count(host, counted .. '\t' .. labels)
    touch(host, now)
  end
  if from_status == 'processing' and started and to_status ~= 'queued' then
    observe_seconds(host, 'runtime', labels, math.max(0, tonumber(now) - tonumber(started)))
  end
  return task, started
end

-- A job ended: its listing entries are reaped just before the record expires, its event
-- stream expires with it, and the minute's outcome count and the task's recent run times
-- go up.
-- `task` and `started` as observe_move read them. Each trim and expiry is paid only when
-- due: a minute's bucket gets its TTL with its first count, a task's run times are cut
-- back to the last 1000 (and their TTL renewed) once 100 more have come.
local function observe_finish(from_status, to_status, now, ttl, task, started)
  redis.call('ZADD', listed('expiring'), tonumber(now) + ttl, job_id)
  redis.call('EXPIRE', key('events', job_id), ttl)
  local bucket = key('stats', math.floor(tonumber(now) / 60))
  if redis.call('HINCRBY', bucket, to_status, 1) == 1 then redis.call('EXPIRE', bucket, 1200) end
  if from_status == 'processing' and started then
    local runtimes = key('runtimes', task)
    local kept = redis.call('LPUSH', runtimes, string.format('%.6f', math.max(0, tonumber(now) - tonumber(started))))
    if kept == 1 or kept > RUNTIMES_KEPT + 99 then
      redis.call('LTRIM', runtimes, 0, RUNTIMES_KEPT - 1)
      redis.call('EXPIRE', runtimes, WEEK)
    end
  end
end

-- A finished job is active again (a re-drive): it stays listed, and its stream stays.
local function observe_revive()
  redis.call('ZREM', listed('expiring'), job_id)
  redis.call('PERSIST', key('events', job_id))
end
