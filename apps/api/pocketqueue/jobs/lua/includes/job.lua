-- includes/job.lua: the helpers every transition script shares (see scripts.py for how they are included).
-- ARGV[1] is the key prefix and ARGV[2] the job id in every script; keys are named from
-- them the way pocketqueue/jobs/keys.py names them.
-- Each top-level definition is a block of its own (blank lines between): the loader keeps
-- only the blocks a script uses, since Lua builds every helper anew on each call.
local prefix, job_id = ARGV[1], ARGV[2]

-- A key's name from up to three parts, by plain concatenation: building a table per name
-- (table.concat) cost more than many of the commands it names.
local function key(a, b, c)
  if c then return prefix .. ':' .. a .. ':' .. b .. ':' .. c end
  if b then return prefix .. ':' .. a .. ':' .. b end
  return prefix .. ':' .. a
end

local job = key('job', job_id)

-- Whether a job in `status` is still to run (it holds its unique key, is never reaped).
local function active(status)
  return status == 'queued' or status == 'processing' or status == 'scheduled' or status == 'retrying'
end

-- The record format these scripts understand (jobs/models.py RECORD_FORMAT, filled in by
-- the loader). A record written by a newer version is left alone (see start.lua).
local FORMAT = __RECORD_FORMAT__

-- Seconds since the epoch by the Redis server's clock: due times and lease deadlines
-- compared across machines must not depend on each one's clock.
local function server_time()
  local now = redis.call('TIME')
  return tonumber(now[1]) + tonumber(now[2]) / 1000000
end

-- The record's fields `names` (a list), read in one HMGET, as a table by name; a field
-- the record lacks is false. Scripts read what they and the helpers below need at once,
-- and pass the table on (`rec`): each HMGET is a round of the hash's whole encoding.
local function read(names)
  local values, rec = redis.call('HMGET', job, unpack(names)), {}
  for i, name in ipairs(names) do rec[name] = values[i] end
  return rec
end

--- @include "observe"

-- A status change: the job moves between the status indexes (`index:<status>`), and
-- observe.lua records it. The indexes are scored by creation time, so they also serve the
-- listing's status filter with cursors that never skip or repeat a job; all but `failed`,
-- the dead-letter set, which is scored by the time of the failure (the most recent
-- failures first) and has a listing set of its own (`list:status:failed`; few jobs fail).
-- `now` is the caller's timestamp (the same one the record gets); `rec`: the record's
-- fields observe_move needs, as a caller that read them all has them (kept up to date
-- with what it wrote since), or nil to read them here.
local function move(from_status, to_status, now, rec)
  if rec == nil or rec.task == nil then
    rec = read({'task', 'queue', 'worker', 'created_at', 'started_at', 'attempts', 'progress', 'step', 'error'})
  end
  local created = rec.created_at or now
  redis.call('ZREM', key('index', from_status), job_id)
  if from_status == 'failed' then redis.call('ZREM', key('list', 'status', 'failed'), job_id) end
  if to_status == 'failed' then
    redis.call('ZADD', key('index', 'failed'), now, job_id)
    redis.call('ZADD', key('list', 'status', 'failed'), created, job_id)
  else
    redis.call('ZADD', key('index', to_status), created, job_id)
  end
  -- The jobs waiting out a delay or a backoff, per queue too (the schedule is one set).
  if from_status == 'scheduled' or from_status == 'retrying' then
    redis.call('ZREM', key('delayed', from_status, rec.queue or ''), job_id)
  end
  if to_status == 'scheduled' or to_status == 'retrying' then
    redis.call('ZADD', key('delayed', to_status, rec.queue or ''), created, job_id)
  end
  return observe_move(from_status, to_status, now, rec)
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
-- `list`: the record's `published_to` if the caller read it (false: it has none).
local function unpublish(list)
  if list == nil then list = redis.call('HGET', job, 'published_to') end
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

-- A batch's fan-in (pipelines/batches.py), in the same step that ends a child, so no
-- count can be lost or made twice. The children hash holds each child's final status
-- ('' while active): a child that ends again after a re-drive moves its count from the old
-- status to the new. The first time every child has ended (or, under fail_fast, one
-- failed), the batch leaves 'running' and is due: the janitor leader then dispatches its
-- callback once (an idempotency key) or cancels what is left. `ttl`: the child's record's.
local function fan_in(batch, status, now, ttl)
  local meta, children = key('batch', batch), key('batch', batch, 'children')
  local before = redis.call('HGET', children, job_id)
  if not before or before == status then return end  -- not a child (the batch expired), or counted
  redis.call('HSET', children, job_id, status)
  if before == '' then redis.call('HINCRBY', meta, 'done', 1) else redis.call('HINCRBY', meta, 'n:' .. before, -1) end
  redis.call('HINCRBY', meta, 'n:' .. status, 1)
  if redis.call('TTL', meta) < ttl then redis.call('EXPIRE', meta, ttl); redis.call('EXPIRE', children, ttl) end
  local state, done, total, policy = unpack(redis.call('HMGET', meta, 'state', 'done', 'total', 'policy'))
  if state ~= 'running' then return end
  local ended
  if status == 'failed' and policy == 'fail_fast' then
    ended = 'failed'
  elseif tonumber(done) >= tonumber(total) then
    ended = 'completed'
  end
  if ended then
    redis.call('HSET', meta, 'state', ended, 'finished_at', now)
    redis.call('ZADD', key('batches', 'due'), now, batch)
  end
end

-- The record's fields are written; end the job: drop its lease, schedule entry and
-- unique key, expire it, move it to its final index, and wake anyone waiting on it.
-- `rec` as for move(); with it, `published_to` and `unique_key` too. The final index
-- keeps the job until reap.lua takes it out, just before the record expires; the index
-- itself lives at least as long as its newest record.
local function finish(from_status, to_status, now, ttl, rec)
  drop_lease()
  unpublish(rec and rec.published_to)
  if from_status == 'scheduled' or from_status == 'retrying' then  -- only those wait in the schedule
    redis.call('ZREM', key('schedule'), job_id)
  end
  local unique = rec and rec.unique_key
  if unique == nil then unique = redis.call('HGET', job, 'unique_key') end
  if unique and redis.call('GET', key('unique', unique)) == job_id then
    redis.call('DEL', key('unique', unique))
  end
  redis.call('EXPIRE', job, ttl)
  local batch = rec and rec.batch
  if batch == nil then batch = redis.call('HGET', job, 'batch') end
  if batch then fan_in(batch, to_status, now, ttl) end
  local task, ran = move(from_status, to_status, now, rec)
  observe_finish(to_status, now, ttl, task, ran)
  local index = key('index', to_status)
  if redis.call('TTL', index) < ttl then redis.call('EXPIRE', index, ttl) end
  redis.call('PUBLISH', key('finished'), job_id)
end
