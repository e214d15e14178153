-- republish.lua
-- ARGV: prefix, job_id, list, grace seconds, message, kombu's unacked hash
-- A queued job whose message is gone: purged (`celery purge`), deleted by hand, or popped by
-- a worker that died before kombu noted it as unacknowledged. Publishes `message` again
-- when the record still says queued on `list`, it was published over `grace` seconds ago
-- (server time), and either
-- - a job published to the same list after it has started (the list is first in, first
--   out, so its message was taken without the job starting), or
-- - the list is empty (nothing is left to take).
-- and no message of the job is held in kombu's unacked hash (a worker took it; if that
-- worker died, kombu hands it back after the visibility timeout, counted as a redelivery).
-- That hash holds only messages in flight (about one per worker process), so looking
-- through it is cheap. A message that is only late (a worker popped it a moment ago, or
-- kombu restored it to the list) can still be published twice: the record lets one run
-- and drops the other, so a duplicate costs a message, never a second run.
-- Returns 'republished', 'waiting' (nothing says its message is gone), 'recent',
-- 'in_flight' (a worker holds its message), or the
-- status found (the job moved on; its stale published entry is removed).

--- @include "job"

local list = ARGV[3]
local status, published_to, published_at = unpack(redis.call('HMGET', job, 'status', 'published_to', 'published_at'))
if status ~= 'queued' or published_to ~= list then
  redis.call('ZREM', key('published', list), job_id)
  return status or 'missing'
end
published_at = tonumber(published_at)
if published_at > server_time() - tonumber(ARGV[4]) then return 'recent' end
local mark = tonumber(redis.call('HGET', key('watermark'), list))
if not (mark and published_at < mark) and redis.call('LLEN', list) > 0 then return 'waiting' end
for _, held in ipairs(redis.call('HVALS', ARGV[6])) do
  if string.find(held, job_id, 1, true) then return 'in_flight' end
end
publish(list, ARGV[5])
redis.call('HINCRBY', job, 'republished', 1)
return 'republished'
