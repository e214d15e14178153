-- includes/job.lua: the helpers every transition script shares (see scripts.py for how they are included).
-- ARGV[1] is the key prefix and ARGV[2] the job id in every script; keys are named from
-- them the way pocketqueue/jobs/keys.py names them.
local prefix, job_id = ARGV[1], ARGV[2]
local function key(...) return prefix .. ':' .. table.concat({...}, ':') end
local job = key('job', job_id)
local ACTIVE = {scheduled = true, queued = true, processing = true, retrying = true}

local function move(from_status, to_status, score)
  redis.call('ZREM', key('index', from_status), job_id)
  redis.call('ZADD', key('index', to_status), score, job_id)
end

-- Put the job back on the broker: status queued, indexed as such, its message pushed.
local function requeue(from_status, now, list, message)
  redis.call('HSET', job, 'status', 'queued')
  move(from_status, 'queued', now)
  redis.call('LPUSH', list, message)
end

-- The record's fields are written; end the job: drop its lease, schedule entry and
-- unique key, expire it, move and trim its index, and wake anyone waiting on it.
local function finish(from_status, to_status, now, ttl)
  redis.call('DEL', key('lease', job_id))
  redis.call('ZREM', key('schedule'), job_id)
  local unique = redis.call('HGET', job, 'unique_key')
  if unique and redis.call('GET', key('unique', unique)) == job_id then
    redis.call('DEL', key('unique', unique))
  end
  redis.call('EXPIRE', job, ttl)
  move(from_status, to_status, now)
  local index = key('index', to_status)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', tonumber(now) - ttl)
  if redis.call('TTL', index) < ttl then redis.call('EXPIRE', index, ttl) end
  redis.call('PUBLISH', key('finished'), job_id)
end
