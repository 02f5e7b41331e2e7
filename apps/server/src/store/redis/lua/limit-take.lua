-- Takes one publish token from an identity's token bucket (Turner, 1986), on Redis's clock.
-- KEYS: 1 the identity's bucket, a hash: `tokens` (may be fractional), `at` (ms, Redis TIME).
-- ARGV: 1 rate (tokens per second), 2 burst (bucket size).
-- Returns 0 when a token was taken, else the ms to wait until one will be (nothing is taken).
-- The key expires once the bucket would be full again: a missing bucket is a full one.
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then
  tokens, at = burst, now
end
-- TIME going backwards (a failover to a replica whose clock is behind) refills nothing.
if now > at then
  tokens = math.min(burst, tokens + (now - at) / 1000 * rate)
  at = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', at))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return wait
