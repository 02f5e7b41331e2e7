-- Opens a stream slot for an identity unless it has `max` open.
-- KEYS: 1 the identity's open streams, a sorted set: member `<owner>:<n>` (owner: one server
--   process), score the member's lease expiry (ms, Redis TIME).
-- ARGV: 1 max, 2 member, 3 lease (ms).
-- Returns 1 when the slot was taken, 0 when the identity already has `max` (nothing changes).
-- Members whose lease ran out (their process died, or could not reach Redis for a whole lease)
-- are removed first; the key lives as long as its longest lease.
local max, member, lease = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= max then return 0 end
redis.call('ZADD', KEYS[1], now + lease, member)
redis.call('PEXPIRE', KEYS[1], lease)
return 1
