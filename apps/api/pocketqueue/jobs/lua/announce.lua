-- announce.lua
-- ARGV: prefix, worker name, heartbeat JSON, ttl seconds
-- A live worker's heartbeat (worker/heartbeat.py says what the JSON holds): its key
-- `worker:<name>` lapses `ttl` seconds after the last refresh, and the registry `workers`
-- (names by last refresh, Redis server time) lets a reader find the live ones without a
-- SCAN. Entries older than `ttl` (workers killed before they could retire) are dropped
-- here and by every read, and the set expires `ttl` after the last refresh of any worker.
-- It also notes the worker in `metrics` (see observe.lua).
-- Returns the server time of this refresh (seconds, as a string).

local workers = ARGV[1] .. ':workers'
local ttl = tonumber(ARGV[4])
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local at = string.format('%.6f', now)
redis.call('SET', ARGV[1] .. ':worker:' .. ARGV[2], ARGV[3], 'EX', ttl)
redis.call('ZADD', workers, at, ARGV[2])
redis.call('ZREMRANGEBYSCORE', workers, '-inf', string.format('(%.6f', now - ttl))
redis.call('EXPIRE', workers, ttl)
-- The worker's sign of life for its counters too (`metrics:<name>`, see observe.lua): the
-- transitions it runs leave that to this beat rather than pay for it on every job.
redis.call('ZADD', ARGV[1] .. ':metrics', at, ARGV[2])
return at
