-- includes/job.lua: the helpers every transition script shares (see scripts.py for how they are included).
-- ARGV[1] is the key prefix and ARGV[2] the job id in every script; keys are named from
-- them the way pocketqueue/jobs/keys.py names them.
local prefix, job_id = ARGV[1], ARGV[2]
local function key(...) return prefix .. ':' .. table.concat({...}, ':') end
local job = key('job', job_id)
local ACTIVE = {scheduled = true, queued = true, processing = true, retrying = true}
-- The record format these scripts understand (jobs/models.py RECORD_FORMAT, filled in by
-- the loader). A record written by a newer version is left alone (see start.lua).
local FORMAT = __RECORD_FORMAT__

-- Seconds since the epoch by the Redis server's clock: due times and lease deadlines
-- compared across machines must not depend on each one's clock.
local function server_time()
  local now = redis.call('TIME')
  return tonumber(now[1]) + tonumber(now[2]) / 1000000
end

--- @include "observe"

-- A status change: the status index (by time of the change), and what observe.lua keeps.
local function move(from_status, to_status, score)
  redis.call('ZREM', key('index', from_status), job_id)
  redis.call('ZADD', key('index', to_status), score, job_id)
  return observe_move(from_status, to_status, score)
end

-- Push the job's message to `list`, and note where and when (server time) in the record
-- and in the list's published set. The set holds queued jobs until they start or end: it
-- is how the janitor finds a queued job whose message is gone (purged, popped by a
-- process that died), without scanning the broker's lists (republish.lua).
local function publish(list, message)
  local at = string.format('%.6f', server_time())
  redis.call('LPUSH', list, message)
  redis.call('HSET', job, 'published_to', list, 'published_at', at)
  redis.call('ZADD', key('published', list), at, job_id)
end

-- The job left the queue (it started, or ended): out of its list's published set.
local function unpublish()
  local list = redis.call('HGET', job, 'published_to')
  if list then
    redis.call('ZREM', key('published', list), job_id)
    redis.call('HDEL', job, 'published_to', 'published_at')
  end
end

-- Put the job back on the broker: status queued, indexed as such, its message pushed.
local function requeue(from_status, now, list, message)
  redis.call('HSET', job, 'status', 'queued')
  move(from_status, 'queued', now)
  publish(list, message)
end

-- A running job's lease: a key that lives while its worker renews it, and its deadline
-- (server time, ms) in the leases set, so the janitor finds lapsed leases in order of
-- deadline instead of checking every running job (recover.lua).
local function hold_lease(worker, lease_ms)
  redis.call('SET', key('lease', job_id), worker, 'PX', lease_ms)
  redis.call('ZADD', key('leases'), math.floor(server_time() * 1000) + tonumber(lease_ms), job_id)
end

local function drop_lease()
  redis.call('DEL', key('lease', job_id))
  redis.call('ZREM', key('leases'), job_id)
end

-- The record's fields are written; end the job: drop its lease, schedule entry and
-- unique key, expire it, move and trim its index, and wake anyone waiting on it.
local function finish(from_status, to_status, now, ttl)
  drop_lease()
  unpublish()
  redis.call('ZREM', key('schedule'), job_id)
  local unique = redis.call('HGET', job, 'unique_key')
  if unique and redis.call('GET', key('unique', unique)) == job_id then
    redis.call('DEL', key('unique', unique))
  end
  redis.call('EXPIRE', job, ttl)
  local task, started = move(from_status, to_status, now)
  observe_finish(from_status, to_status, now, ttl, task, started)
  local index = key('index', to_status)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', tonumber(now) - ttl)
  if redis.call('TTL', index) < ttl then redis.call('EXPIRE', index, ttl) end
  redis.call('PUBLISH', key('finished'), job_id)
end
