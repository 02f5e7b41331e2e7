-- Gives back a stream slot: its stream ended.
-- KEYS: 1 the identity's open streams (see limit-stream-acquire.lua).
-- ARGV: 1 the member (`<owner>:<n>`).
-- Returns 1 when it was held, 0 when not (its lease had run out, or it was never added).
return redis.call('ZREM', KEYS[1], ARGV[1])
