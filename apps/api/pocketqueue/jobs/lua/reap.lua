-- reap.lua
-- ARGV: prefix, '' (no job of its own), lead seconds, most
-- Takes listing entries out with their records: for up to `most` finished jobs whose
-- record expires within `lead` seconds (by `list:expiring`), removes the job from every
-- listing index and its status index. Run by the janitor's leader every sweep, so the listing never shows a
-- job that is gone, and its indexes hold no more than the records do. A job re-driven
-- meanwhile is active again and left alone; a record given a longer life is rescheduled.
-- The entries of `list:expiring` carry the job's task and tags (observe.lua's
-- expiring_entry), so a record that already expired (no janitor ran for `lead` seconds)
-- still leaves every index: the status ones by trying each.
-- Returns how many due entries it handled (fewer than `most`: none is left due).

--- @include "job"

local now = server_time()
local lead = tonumber(ARGV[3])
local expiring = key('list', 'expiring')
local STATUSES = {'scheduled', 'queued', 'processing', 'retrying', 'completed', 'partial', 'failed', 'cancelled'}
local due = redis.call('ZRANGEBYSCORE', expiring, '-inf', now + lead, 'LIMIT', 0, tonumber(ARGV[4]))
for _, entry in ipairs(due) do
  local id, named_task, named_tags = string.match(entry, '^([^\t]*)\t([^\t]*)\t(.*)$')
  if not id then id = entry end  -- an entry written before entries carried task and tags
  job_id, job = id, key('job', id)
  local status, task, tags = unpack(redis.call('HMGET', job, 'status', 'task', 'tags'))
  local left = redis.call('PTTL', job)
  if status and active(status) then
    redis.call('ZREM', expiring, entry)
  elseif left > lead * 1000 then
    redis.call('ZADD', expiring, now + left / 1000, entry)
  else
    redis.call('ZREM', key('list', 'all'), id)
    redis.call('ZREM', key('list', 'ids'), id)
    if status then
      redis.call('ZREM', key('index', status), id)
      if status == 'failed' then redis.call('ZREM', key('list', 'status', 'failed'), id) end
    else
      for _, each in ipairs(STATUSES) do redis.call('ZREM', key('index', each), id) end
      redis.call('ZREM', key('list', 'status', 'failed'), id)
      task, tags = named_task, named_tags ~= '' and named_tags
    end
    if task then redis.call('ZREM', key('list', 'task', task), id) end
    if tags then
      for name, value in pairs(cjson.decode(tags)) do redis.call('ZREM', key('list', 'tag', name .. '=' .. value), id) end
    end
    redis.call('ZREM', expiring, entry)
  end
end
return #due
