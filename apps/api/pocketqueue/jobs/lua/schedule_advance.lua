-- schedule_advance.lua
-- ARGV: prefix, schedule name, slot, job id ('' = the slot was skipped, not fired),
--       fired at (seconds since the epoch; '' with no job), state ttl (seconds)
-- Moves a schedule's marker (`slot`: the last slot handled) forward to `slot`, after the
-- janitor's leader fired that slot's job (or decided to skip it). Only forward: a leader
-- that stalled and lost the lease cannot move the marker back under the new one, so a
-- slot is never handled twice. A fired slot also becomes `fired_slot`, with its `job_id`.
-- The hash's TTL is renewed (see Keys.schedule_state).
-- Returns 1 if the marker moved, 0 if it was already at or past `slot`.

local state = ARGV[1] .. ':schedules:' .. ARGV[2]
local slot = tonumber(ARGV[3])
local last = tonumber(redis.call('HGET', state, 'slot'))
if last and last >= slot then return 0 end
redis.call('HSET', state, 'slot', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', state, 'fired_slot', ARGV[3], 'job_id', ARGV[4], 'fired_at', ARGV[5])
end
redis.call('EXPIRE', state, ARGV[6])
return 1
