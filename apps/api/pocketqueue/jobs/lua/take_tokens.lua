-- take_tokens.lua
-- ARGV: capacity (tokens), refill rate (tokens a second), tokens wanted
-- KEYS: the caller's bucket (Keys.rate_bucket)
-- A token bucket shared by every API process (their clocks never meet: Redis's TIME is
-- the only clock). It starts full, refills continuously up to `capacity`, and gives the
-- tokens wanted all or none: a batch of 50 is 50 dispatches, never 30 of them.
-- Returns {1, 0} when taken, or {0, milliseconds until enough tokens are back}.

local capacity, rate, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
if tokens < wanted then
  return {0, math.ceil((wanted - tokens) / rate * 1000)}
end
tokens = tokens - wanted
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
-- Gone once it would be full again: a missing bucket reads as full.
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1)
return {1, 0}
