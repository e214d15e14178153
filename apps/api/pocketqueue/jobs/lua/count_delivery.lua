-- count_delivery.lua
-- ARGV: prefix, job_id, delivery token (one per delivery), now, max deliveries, error json,
--       dead-letter ttl
-- A worker received a message the broker had handed out before (kombu marks it redelivered)
-- for a job that has not started: whoever took it earlier died or lost it before the job
-- began, maybe because of the message itself (it killed the worker's main process). Counts
-- the delivery while the job is `queued` only: a running job's message comes back every
-- visibility timeout, and that is not the message's fault. The first delivery is never
-- counted (workers do not call this for a fresh message: no round trip on the hot path),
-- so the count starts at 2. Past `max deliveries` the job fails into the dead letters with
-- `error` (a PoisonMessage) instead of crashing worker after worker. A resent call (same
-- token) counts nothing twice. START clears the count.
-- Returns {'ok', deliveries} (hand the message on), {'quarantined', deliveries} (failed
-- now), or {status found, 0}: 'missing' or anything but queued (the record decides).

--- @include "job"

local status, seen, last = unpack(redis.call('HMGET', job, 'status', 'deliveries', 'last_delivery'))
if not status then return {'missing', 0} end
if status ~= 'queued' then return {status, 0} end
if last == ARGV[3] then return {'ok', tonumber(seen)} end
local deliveries = (tonumber(seen) or 1) + 1
redis.call('HSET', job, 'deliveries', deliveries, 'last_delivery', ARGV[3])
if deliveries <= tonumber(ARGV[5]) then return {'ok', deliveries} end
redis.call('HSET', job, 'status', 'failed', 'finished_at', ARGV[4], 'error', ARGV[6])
finish('queued', 'failed', ARGV[4], tonumber(ARGV[7]))
return {'quarantined', deliveries}
