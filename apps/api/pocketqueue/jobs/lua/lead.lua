-- lead.lua
-- ARGV: prefix, worker name, lease ms
-- The janitor's leadership: one worker at a time publishes due jobs, recovers lapsed
-- leases and republishes lost messages, so that work grows with what is due, not with
-- the number of workers. Renews the lease if `worker` holds it, takes it if nobody
-- does. A leader that dies loses it within `lease ms`, and another worker takes over.
-- Lease ms '0' gives the leadership up, if `worker` holds it (a worker that stops).
-- Returns 1 if `worker` leads now, else 0.

local lead = ARGV[1] .. ':janitor'
if redis.call('GET', lead) == ARGV[2] then
  if ARGV[3] == '0' then
    redis.call('DEL', lead)
    return 0
  end
  redis.call('PEXPIRE', lead, ARGV[3])
  return 1
end
if ARGV[3] == '0' then return 0 end
if redis.call('SET', lead, ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
