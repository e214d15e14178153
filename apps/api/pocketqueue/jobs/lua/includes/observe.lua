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
--   run times per task (`runtimes:<task>`) are trimmed to the last 1000 and expire.

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
-- `metric\ttask\tqueue`; `metrics` lists the hosts by their last write.
local function count(host, field, by)
  redis.call('HINCRBY', key('metrics', host), field, by or 1)
  redis.call('ZADD', key('metrics'), server_time(), host)
end

-- One observation of a histogram (seconds): its bucket (not cumulative: the exposition
-- adds them up) and its sum. Bucket #BUCKETS + 1 is +Inf.
local function observe_seconds(host, name, labels, seconds)
  local bucket = #BUCKETS + 1
  for i, bound in ipairs(BUCKETS) do
    if seconds <= bound then bucket = i break end
  end
  redis.call('HINCRBY', key('metrics', host), name .. '_bucket\t' .. labels .. '\t' .. bucket, 1)
  redis.call('HINCRBYFLOAT', key('metrics', host), name .. '_sum\t' .. labels, seconds)
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
  redis.call('RPUSH', own, id .. ' ' .. cjson.encode(fields))
  redis.call('LTRIM', own, -JOB_EVENTS_MAXLEN, -1)
end

-- What each status reached counts as, in celery-exporter's names.
local COUNTED = {processing = 'started', retrying = 'retried', completed = 'succeeded', partial = 'succeeded',
  failed = 'failed', cancelled = 'revoked'}

-- A status change: the status index, the event, and the counters. `now` is the caller's
-- timestamp (the same one the record gets).
local function observe_move(from_status, to_status, now)
  local task, queue, host, created, started, attempts, progress, step, error = unpack(redis.call('HMGET', job,
    'task', 'queue', 'worker', 'created_at', 'started_at', 'attempts', 'progress', 'step', 'error'))
  queue, host = queue or '', host or ''
  if created then
    redis.call('ZREM', listed('status', from_status), job_id)
    redis.call('ZADD', listed('status', to_status), created, job_id)
  end
  if to_status == 'queued' and from_status == 'scheduled' then host = '' end  -- the janitor's promotion
  local fields = {'type', 'status', 'status', to_status, 'task', task or '', 'attempt', attempts or '0',
    'progress', progress or '0', 'step', step or '', 'at', now}
  if error and (to_status == 'retrying' or to_status == 'failed') then
    fields[#fields + 1] = 'error'
    fields[#fields + 1] = error
  end
  emit(unpack(fields))
  local labels = (task or '') .. '\t' .. queue
  local counted = COUNTED[to_status]
  if counted == 'started' then count(host, 'received\t' .. labels) end
  if counted then count(host, counted .. '\t' .. labels) end
  if from_status == 'processing' and started and to_status ~= 'queued' then
    observe_seconds(host, 'runtime', labels, math.max(0, tonumber(now) - tonumber(started)))
  end
end

-- A job ended: its listing entries are reaped just before the record expires, its event
-- stream expires with it, and the minute's outcome count and the task's recent run times
-- go up.
local function observe_finish(from_status, to_status, now, ttl)
  redis.call('ZADD', listed('expiring'), tonumber(now) + ttl, job_id)
  redis.call('EXPIRE', key('events', job_id), ttl)
  local bucket = key('stats', math.floor(server_time() / 60))
  redis.call('HINCRBY', bucket, to_status, 1)
  redis.call('EXPIRE', bucket, 1200)
  local task, started = unpack(redis.call('HMGET', job, 'task', 'started_at'))
  if from_status == 'processing' and started then
    local runtimes = key('runtimes', task)
    redis.call('LPUSH', runtimes, string.format('%.6f', math.max(0, tonumber(now) - tonumber(started))))
    redis.call('LTRIM', runtimes, 0, RUNTIMES_KEPT - 1)
    redis.call('EXPIRE', runtimes, WEEK)
  end
end

-- A finished job is active again (a re-drive): it stays listed, and its stream stays.
local function observe_revive()
  redis.call('ZREM', listed('expiring'), job_id)
  redis.call('PERSIST', key('events', job_id))
end
