-- clear.lua
-- ARGV: prefix, '' (no job), now, clear_schedule ('1' or '0'), request token (new per
--       call), then the queue's lists.
-- Empties the lists and cancels the queued jobs whose messages they held (and, with
-- clear_schedule, every scheduled and retrying job), so no record is left waiting for a
-- message that is gone. Returns how many jobs were cancelled. Safe to replay: the count
-- is kept for a minute under the request token, so a call resent after its reply was
-- lost answers the same count instead of 0.

--- @include "job"

local now, cancelled = ARGV[3], 0
local reply = key('reply', ARGV[5])
local replayed = redis.call('GET', reply)
if replayed then return tonumber(replayed) end
local function cancel(id)
  -- The library's helpers act on `job_id` and `job`; point them at this job first.
  job_id, job = id, key('job', id)
  local status, ttl = unpack(redis.call('HMGET', job, 'status', 'ttl'))
  if status == 'queued' or status == 'scheduled' or status == 'retrying' then
    redis.call('HSET', job, 'status', 'cancelled', 'finished_at', now)
    redis.call('HDEL', job, 'run_at')
    finish(status, 'cancelled', now, tonumber(ttl) or 86400)
    cancelled = cancelled + 1
  end
end
for i = 6, #ARGV do
  for _, message in ipairs(redis.call('LRANGE', ARGV[i], 0, -1)) do
    local ok, decoded = pcall(cjson.decode, message)
    if ok and type(decoded) == 'table' and type(decoded.headers) == 'table' and decoded.headers.id then
      cancel(decoded.headers.id)
    end
  end
  redis.call('DEL', ARGV[i])
end
if ARGV[4] == '1' then
  for _, id in ipairs(redis.call('ZRANGE', key('schedule'), 0, -1)) do cancel(id) end
end
redis.call('SET', reply, cancelled, 'EX', 60)
return cancelled
